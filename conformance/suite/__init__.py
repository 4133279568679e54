"""The conformance suites: every check, as data, and how units of them run.

A *check* (:class:`CheckDef`) is run as *units*, one per dtype (and
aggregation mode, for checks that depend on it) the candidate claims.  A unit
produces *records* (:class:`Record`): one per compared quantity (loss, grad,
grad-masked-zero, each claimed metric, ...) for the oracle comparisons, or
one per self-consistency relation.  Every record carries its worst measured
error in units of the tolerance scale, with its bound, pass or fail.

The families, one module each: ``oracle_checks`` (random batches, the edge
table, low precision, the gate, finite differences), ``invariants``,
``distributed_checks`` and ``golden_replay``.
"""

from __future__ import annotations

from .catalogue import CHECKS, CHECKS_BY_NAME
from .records import Counterexample, Record, Tally
from ..profiles import SUITE_PROFILES, SuiteProfile
from .registry import CheckDef, Context, unit_seed
from .runner import (
    InProcessRunner,
    ProgressFn,
    RepeatedError,
    Runner,
    StopFn,
    Unit,
    failed_unit,
    plan,
    run_unit,
    run_units,
    terminal_progress,
)

__all__ = [
    "CHECKS",
    "CHECKS_BY_NAME",
    "CheckDef",
    "Context",
    "Counterexample",
    "InProcessRunner",
    "ProgressFn",
    "Record",
    "RepeatedError",
    "Runner",
    "SUITE_PROFILES",
    "StopFn",
    "SuiteProfile",
    "Tally",
    "Unit",
    "failed_unit",
    "plan",
    "run_unit",
    "run_units",
    "terminal_progress",
    "unit_seed",
]
