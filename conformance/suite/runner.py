"""Planning a candidate's check units, and running them in this process.

A runner is anything with the :class:`Runner` interface; there are two:
:class:`InProcessRunner` here, and ``conformance.isolate.IsolatedRunner``,
which runs the same units in a worker process.  A unit that cannot finish
(the harness raised, the worker crashed or timed out) becomes one error
record, made by :func:`failed_unit`.
"""

from __future__ import annotations

import fnmatch
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Protocol

from ..candidate import Availability, Candidate, CandidateError
from ..fused import FUSED_GROUPS
from .catalogue import CHECKS
from ..types import HarnessFault
from .records import HARNESS, Record
from ..profiles import SUITE_PROFILES
from .registry import CheckDef, Context


@dataclass(frozen=True)
class Unit:
    """One check for one dtype (and aggregation mode, for per-mode checks)."""

    check: CheckDef
    dtype: str
    loss_agg_mode: str | None

    @property
    def id(self) -> str:
        return f"{self.check.name}[{self.dtype}{'' if self.loss_agg_mode is None else ',' + self.loss_agg_mode}]"


def plan(candidate: Candidate, *, dtypes: Iterable[str] | None = None, modes: Iterable[str] | None = None,
         checks: Iterable[str] | None = None) -> list[Unit]:
    """Every unit to run: each check for each claimed dtype (x mode).

    ``dtypes``/``modes`` restrict to a subset of the claims (asking for an
    unclaimed one is a CandidateError); ``checks`` are glob patterns on check
    names, a pattern starting with "-" excluding what it matches (with only
    exclusions, every other check runs).
    """
    info = candidate.info
    use_dtypes = _subset(dtypes, info.dtypes, "dtype", info.name)
    use_modes = _subset(modes, info.loss_agg_modes, "loss_agg_mode", info.name)
    patterns = [p for p in (checks or ()) if not p.startswith("-")] or ["*"]
    excluded = [p[1:] for p in (checks or ()) if p.startswith("-")]
    units = []
    for check in CHECKS:
        if not any(fnmatch.fnmatchcase(check.name, p) for p in patterns) \
                or any(fnmatch.fnmatchcase(check.name, p) for p in excluded):
            continue
        if info.inputs != "logprob" and check.group not in FUSED_GROUPS:
            continue  # a fused kernel runs the checks that draw batches through conformance.fused
        for dtype in use_dtypes:
            if not check.applies(candidate, dtype):
                continue
            for mode in (use_modes if check.per_mode else (None,)):
                units.append(Unit(check, dtype, mode))
    return units


def _subset(asked, claimed, what, name):
    if asked is None:
        return tuple(claimed)
    asked = tuple(asked)
    bad = [a for a in asked if a not in claimed]
    if bad:
        raise CandidateError(f"candidate {name!r} does not claim {what} {', '.join(bad)} "
                             f"(it claims {', '.join(claimed)})")
    return asked


def failed_unit(unit: Unit, device: str, message: str, *, where: str) -> Record:
    """The record of a unit that did not finish: ``where`` is "harness" (a
    check raised) or "isolation" (the worker crashed, hung or was not run)."""
    return Record(check=f"{unit.check.name}:{where}", group=unit.check.group, title=unit.check.title,
                  dtype=unit.dtype, loss_agg_mode=unit.loss_agg_mode, device=device, status="error", message=message,
                  category=None if where == HARNESS else "contract")


def run_unit(ctx: Context, unit: Unit) -> list[Record]:
    """One unit's records; a check that raises is a harness error record."""
    start = time.perf_counter()
    tally = unit.check.tally(unit.dtype, unit.loss_agg_mode, ctx.device)
    try:
        unit.check.body(ctx, tally)
    except Exception as exc:  # a bug in a check or the oracle: report it as ours, keep going
        what = str(exc) if isinstance(exc, HarnessFault) else f"{type(exc).__name__}: {exc}"
        rec = failed_unit(unit, ctx.device, f"harness error: {what} -- please report it with this report.json",
                          where=HARNESS)
        rec.duration_s = time.perf_counter() - start
        return [rec]
    return tally.finish(time.perf_counter() - start)


ProgressFn = Callable[[int, int, Unit, list], None]
#: ``stop(unit, records) -> bool``: asked after each unit; True ends the run there
StopFn = Callable[[Unit, list], bool]


class RepeatedError:
    """Ends a run whose candidate raises the same error unit after unit (a
    missing dependency, a wrong signature): after ``units`` units in a row,
    across ``checks`` different checks, whose every record is that error,
    the rest is not run and :meth:`not_run` says so once."""

    def __init__(self, units: int = 5, checks: int = 3):
        self.limit_units, self.limit_checks = units, checks
        self.message: str | None = None
        self.streak: list[Unit] = []
        self.finished: set[str] = set()  # ids of the units run

    def __call__(self, unit: Unit, records: list) -> bool:
        self.finished.add(unit.id)
        messages = {r.message for r in records if r.status == "error"}
        if records and len(messages) == 1 and all(r.status == "error" for r in records):
            message = messages.pop()
            self.streak = self.streak + [unit] if message == self.message else [unit]
            self.message = message
        else:
            self.message, self.streak = None, []
        return (len(self.streak) >= self.limit_units
                and len({u.check.name for u in self.streak}) >= self.limit_checks)

    def not_run(self, remaining: list[Unit], device: str) -> Record:
        return Record(check="run:stopped", group="run", title="the run stopped early", dtype="*", loss_agg_mode=None,
                      device=device, status="error", category="contract",
                      message=f"{len(remaining)} check units not run: the candidate raised the same error in "
                              f"{len(self.streak)} units of {len({u.check.name for u in self.streak})} checks in a "
                              f"row: {self.message}")


class Runner(Protocol):
    """Runs a candidate's units and benchmarks; in-process or isolated."""

    candidate: Candidate
    #: "in this process" or "in a separate process"
    where: str

    def availability(self) -> Availability: ...

    def run_units(self, units: list[Unit], progress: ProgressFn | None = None,
                  stop: StopFn | None = None) -> list[Record]: ...

    def bench(self, profile: str, dtypes: list[str]) -> dict: ...

    def compilations(self) -> int | None: ...

    def close(self) -> None: ...


class InProcessRunner:
    """The candidate called in this process."""

    where = "in this process"

    def __init__(self, candidate: Candidate, *, device: str = "cpu", profile: str = "default", seed: int = 0):
        self.candidate = candidate
        self.context = Context(candidate, device, SUITE_PROFILES[profile], seed)

    def availability(self) -> Availability:
        return self.candidate.availability(self.context.device)

    def run_units(self, units: list[Unit], progress: ProgressFn | None = None,
                  stop: StopFn | None = None) -> list[Record]:
        records: list[Record] = []
        for i, unit in enumerate(units):
            recs = run_unit(self.context, unit)
            records.extend(recs)
            if progress:
                progress(i + 1, len(units), unit, recs)
            if stop and stop(unit, recs):
                break
        return records

    def bench(self, profile: str, dtypes: list[str]) -> dict:
        from ..bench import BENCH_PROFILES, bench

        p = BENCH_PROFILES[profile]
        return bench(self.candidate, shapes=p.shapes, dtypes=dtypes, device=self.context.device, profile=p,
                     seed=self.context.seed)

    def compilations(self) -> int | None:
        return self.candidate.compilations()

    def close(self) -> None:
        pass


def run_units(candidate: Candidate, units: list[Unit], *, device: str = "cpu", profile: str = "default",
              seed: int = 0, progress: ProgressFn | None = None) -> list[Record]:
    """Run the units in this process, in order."""
    return InProcessRunner(candidate, device=device, profile=profile, seed=seed).run_units(units, progress)


def terminal_progress(stream=None) -> ProgressFn:
    """One line per check group: units done, failing records so far."""
    stream = stream or sys.stderr
    state = {"group": None, "fails": 0}

    def report(done: int, total: int, unit: Unit, recs: list) -> None:
        state["fails"] += sum(r.status in ("fail", "error") for r in recs)
        name = unit.check.name.split(".")[0]
        if name != state["group"] or done == total:
            state["group"] = name
            stream.write(f"  [{done:>4}/{total} units] {unit.check.name:<32} failing records so far: "
                         f"{state['fails']}\n")
            stream.flush()

    return report
