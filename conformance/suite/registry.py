"""Suite profiles, check definitions and the context a check runs in."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from ..candidate import Candidate
from ..profiles import SuiteProfile
from .records import Tally


@dataclass(frozen=True)
class Context:
    """Where a unit runs: the candidate, device, suite profile and run seed."""

    candidate: Candidate
    device: str
    profile: SuiteProfile
    seed: int


def unit_seed(seed: int, label: str) -> int:
    """A per-unit seed, independent of which other units run (or where)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{label}".encode()).digest()[:4], "little")


#: ``body(ctx, tally)``: run the check for ``tally.dtype`` and ``tally.loss_agg_mode``, recording into ``tally``
Body = Callable[[Context, Tally], None]


def always(candidate: Candidate, dtype: str) -> bool:
    return True


@dataclass(frozen=True)
class CheckDef:
    """A check: its name, group and title (stated here only), whether it runs
    once per aggregation mode, which candidates and dtypes it applies to, and
    its body.  The runner makes the tally from this definition."""

    name: str
    group: str
    title: str
    per_mode: bool
    body: Body
    applies: Callable[[Candidate, str], bool] = always

    def tally(self, dtype: str, loss_agg_mode: str | None, device: str) -> Tally:
        return Tally(self.name, self.group, self.title, dtype, loss_agg_mode, device)
