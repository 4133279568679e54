"""Finding and loading candidates: entry points, ``module:attr``, objects.

Loading a candidate imports and runs its code (the module, its factory):
only load candidates you trust, as you would any Python package.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass

from .candidate import Candidate, CandidateError

ENTRY_POINT_GROUP = "sapo_conformance.candidates"
ENV_VAR = "SAPO_CANDIDATE"


@dataclass(frozen=True)
class Registered:
    """One entry point: its candidate, or why it could not be loaded."""

    name: str
    target: str  # the entry point's "module:attr"
    candidate: Candidate | None
    error: str | None


def _entry_points():
    return sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _from_object(obj, label: str) -> Candidate:
    """A Candidate, or a zero-argument factory returning one."""
    if isinstance(obj, Candidate):
        return obj
    if callable(obj):
        needed = _required_parameters(obj)
        if needed:
            what = "a class whose constructor takes" if isinstance(obj, type) else "a loss function taking"
            raise CandidateError(
                f"candidate {label!r}: this is {what} {', '.join(needed)}, not a Candidate or a factory of one: "
                f"wrap it with conformance.adapters.from_torch_loss (or from_jax_loss, from_verl_policy_loss, "
                f"from_trinity_policy_loss; README, \"Your own function, in a few lines\")")
        try:
            made = obj()
        except CandidateError as exc:
            raise CandidateError(f"candidate {label!r}: {exc}") from None
        except Exception as exc:
            raise CandidateError(f"candidate {label!r}: its factory raised {_one_line(exc)}") from None
        if isinstance(made, Candidate):
            return made
        raise CandidateError(
            f"candidate {label!r}: its factory returned {type(made).__name__}, not a Candidate"
        )
    raise CandidateError(
        f"candidate {label!r}: expected a Candidate or a factory returning one, got {type(obj).__name__}"
    )


def _required_parameters(obj) -> list[str]:
    """The parameters a call with no arguments would miss (a factory has none)."""
    import inspect

    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):  # a builtin without a signature: just call it
        return []
    return [p.name for p in sig.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


def _from_target(target: str, label: str | None = None) -> Candidate:
    label = label or target
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise CandidateError(f"candidate {label!r}: expected 'module:attribute', got {target!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise CandidateError(f"candidate {label!r}: cannot import {module_name!r}: {_one_line(exc)}") from None
    obj = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CandidateError(f"candidate {label!r}: {module_name!r} has no attribute {attr!r}") from None
    return _from_object(obj, label)


def registrations() -> list[tuple[str, str, str | None]]:
    """(name, "module:attr", problem) of every entry point, without loading
    anything; the problem is set for a name registered twice."""
    out = []
    seen: dict[str, str] = {}
    for ep in _entry_points():
        twice = f"registered twice ({seen[ep.name]} and {ep.value})" if ep.name in seen else None
        seen.setdefault(ep.name, ep.value)
        out.append((ep.name, ep.value, twice))
    return out


def load_registered(name: str, target: str) -> Candidate:
    """The candidate an entry point ``name = target`` registers (it must be named ``name``)."""
    cand = _from_target(target, name)
    if cand.name != name:
        raise CandidateError(f"candidate {name!r}: entry point produced a candidate named {cand.name!r}")
    return cand


def registered_candidates() -> list[Registered]:
    """Every candidate registered by entry point, each loaded (in this
    process) or with its one-line error; one broken candidate never hides
    the others."""
    out = []
    for name, target, problem in registrations():
        if problem:
            out.append(Registered(name, target, None, problem))
            continue
        try:
            out.append(Registered(name, target, load_registered(name, target), None))
        except CandidateError as exc:
            out.append(Registered(name, target, None, str(exc)))
    return out


def search_working_directory() -> None:
    """Let ``module:attr`` resolve from the current directory, as with
    ``python -m`` (the command line and the pytest plugin both load so)."""
    import sys

    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def registered_names() -> list[str]:
    return [ep.name for ep in _entry_points()]


def load_candidate(spec=None) -> Candidate:
    """Load one candidate.

    ``spec`` may be a :class:`Candidate`, a zero-argument factory, a
    registered name, or ``"module:attr"`` (the attribute a Candidate or a
    factory).  ``None`` reads the ``SAPO_CANDIDATE`` environment variable.
    Raises :class:`CandidateError` with a one-line message naming the candidate.
    """
    if spec is None:
        spec = os.environ.get(ENV_VAR)
        if not spec:
            raise CandidateError(f"no candidate given (pass a name or module:attr, or set {ENV_VAR})")
    if not isinstance(spec, str):
        return _from_object(spec, getattr(spec, "__name__", type(spec).__name__))
    if ":" in spec:
        return _from_target(spec)
    for ep in _entry_points():
        if ep.name == spec:
            return load_registered(spec, ep.value)
    names = registered_names()
    raise CandidateError(
        f"unknown candidate {spec!r}; registered: {', '.join(names) or 'none'} (or use module:attr)"
    )
