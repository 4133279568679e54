"""Every check, in the order units run and reports list them."""

from __future__ import annotations

from . import distributed_checks, golden_replay, invariants, oracle_checks
from .registry import CheckDef

CHECKS: tuple[CheckDef, ...] = (
    *oracle_checks.CHECKS,
    *invariants.CHECKS,
    *oracle_checks.LATE_CHECKS,
    *distributed_checks.CHECKS,
    *oracle_checks.WEIGHTS_CHECKS,
    *golden_replay.CHECKS,
)
CHECKS_BY_NAME: dict[str, CheckDef] = {c.name: c for c in CHECKS}
