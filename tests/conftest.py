"""Test-suite configuration: hypothesis profiles and the mpmath tally.

Hypothesis profiles (select with HYPOTHESIS_PROFILE, or CI=true for "ci"):
  dev       -- the default locally: 60 examples per property.
  ci        -- derandomized (the same examples every run), 100 per property.
  thorough  -- 2000 examples per property; for hunting worst cases.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("dev", max_examples=60, **_COMMON)
settings.register_profile("ci", max_examples=100, derandomize=True, print_blob=True, **_COMMON)
settings.register_profile("thorough", max_examples=2000, **_COMMON)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)


class _Tally:
    """Counts oracle-vs-mpmath comparisons and the largest error seen."""

    def __init__(self):
        self.count = 0
        self.worst = {}

    def record(self, quantity: str, ulps: float) -> None:
        self.count += 1
        if ulps > self.worst.get(quantity, -1.0):
            self.worst[quantity] = ulps


TALLY = _Tally()


def pytest_terminal_summary(terminalreporter):
    from tests.test_mutants import KILL_TABLE, MUTANTS

    if KILL_TABLE:
        terminalreporter.write_sep("-", "mutant kill table (mutant -> checks that caught it)")
        for m in MUTANTS:
            caught = KILL_TABLE.get(m.name)
            if caught is None:
                shown = "NOT CAUGHT (or not run)"
            else:
                shown = ", ".join(caught[:6]) + (f" (+{len(caught) - 6} more)" if len(caught) > 6 else "")
            terminalreporter.write_line(f"  {m.name:<26} {shown}")
    if TALLY.count:
        worst = ", ".join(f"{k} {v:.2f}" for k, v in sorted(TALLY.worst.items()))
        terminalreporter.write_line(
            f"oracle vs mpmath: {TALLY.count} comparisons; worst error (ulp; sums and means in "
            f"units of eps*sum|terms| + 1 ulp): {worst}"
        )
