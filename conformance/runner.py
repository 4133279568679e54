"""Planning and running the suites for one candidate."""

from __future__ import annotations

import fnmatch
import sys
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from .candidate import Candidate, CandidateError
from .checks import CHECKS, SUITE_PROFILES, CheckDef, Context, Record


@dataclass(frozen=True)
class Unit:
    check: CheckDef
    dtype: str
    mode: str | None

    @property
    def id(self) -> str:
        return f"{self.check.name}[{self.dtype}{'' if self.mode is None else ',' + self.mode}]"


def plan(candidate: Candidate, *, dtypes: Iterable[str] | None = None, modes: Iterable[str] | None = None,
         checks: Iterable[str] | None = None) -> list[Unit]:
    """Every unit to run: each check for each claimed dtype (x mode).

    ``dtypes``/``modes`` restrict to a subset of the claims (asking for an
    unclaimed one is an error); ``checks`` are glob patterns on check names.
    """
    info = candidate.info
    use_dtypes = _subset(dtypes, info.dtypes, "dtype", info.name)
    use_modes = _subset(modes, info.loss_agg_modes, "loss_agg_mode", info.name)
    patterns = list(checks or ["*"])
    units = []
    for check in CHECKS:
        if not any(fnmatch.fnmatchcase(check.name, p) for p in patterns):
            continue
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


ProgressFn = Callable[[int, int, Unit, list], None]


def run_units(candidate: Candidate, units: list[Unit], *, device: str = "cpu", profile: str = "default",
              seed: int = 0, progress: ProgressFn | None = None) -> list[Record]:
    """Run the units in order; a unit that raises is recorded as an error."""
    ctx = Context(candidate, device, SUITE_PROFILES[profile], seed)
    records: list[Record] = []
    for i, unit in enumerate(units):
        start = time.perf_counter()
        try:
            recs = unit.check.run(ctx, unit.dtype, unit.mode)
        except Exception as exc:  # a bug in a check: report it, keep going
            rec = Record(check=f"{unit.check.name}:harness", group=unit.check.group, title=unit.check.title,
                         dtype=unit.dtype, mode=unit.mode, device=device, status="error",
                         message=f"harness error {type(exc).__name__}: {exc}",
                         duration_s=time.perf_counter() - start)
            recs = [rec]
        records.extend(recs)
        if progress:
            progress(i + 1, len(units), unit, recs)
    return records


def terminal_progress(stream=None) -> ProgressFn:
    """One line per check group: count, failures so far."""
    stream = stream or sys.stderr
    state = {"group": None, "fails": 0}

    def report(done: int, total: int, unit: Unit, recs: list) -> None:
        state["fails"] += sum(r.status in ("fail", "error") for r in recs)
        name = unit.check.name.split(".")[0]
        if name != state["group"] or done == total:
            state["group"] = name
            stream.write(f"  [{done:>4}/{total}] {unit.check.name:<32} failures so far: {state['fails']}\n")
            stream.flush()

    return report
