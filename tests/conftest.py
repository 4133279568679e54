"""Test-suite configuration: hypothesis profiles and the mpmath tally.

Hypothesis profiles (select with HYPOTHESIS_PROFILE, or CI=true for "ci"):
  dev       -- the default locally: 60 examples per property.
  ci        -- derandomized (the same examples every run), 100 per property.
  thorough  -- 2000 examples per property; for hunting worst cases.
"""

from __future__ import annotations

import json
import os

import pytest
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


class _RoundingCensus:
    """How often the reproducible path's outputs are correctly rounded."""

    def __init__(self):
        self.rows = {}

    def record(self, quantity: str, n: int, correctly_rounded: int, worst_ulp: float) -> None:
        self.rows[quantity] = (n, correctly_rounded, worst_ulp)


ROUNDING = _RoundingCensus()


#: the most characters one failure may print: a failing comparison of large
#: arrays, reports or files must name what differs, never dump it
MAX_FAILURE_CHARS = 12_000


def bounded(text: str, limit: int = MAX_FAILURE_CHARS) -> str:
    """``text`` if short enough, else its head and tail around a note saying
    how much was cut."""
    if len(text) <= limit:
        return text
    head, tail = (limit * 3) // 4, limit // 4
    cut = len(text) - head - tail
    return f"{text[:head]}\n... [{cut} characters cut: failure output is bounded by tests/conftest.py] ...\n{text[-tail:]}"


def _size(value, budget: int = MAX_FAILURE_CHARS) -> int:
    """Roughly how many characters ``value`` would print as, counted only up
    to ``budget`` (so that sizing a huge value stays cheap)."""
    if isinstance(value, (str, bytes, bytearray)):
        return len(value)
    if isinstance(value, dict):
        value = [x for kv in value.items() for x in kv]
    if isinstance(value, (list, tuple, set, frozenset)):
        total = 0
        for item in value:
            total += 2 + _size(item, budget - total)
            if total > budget:
                break
        return total
    size = getattr(value, "size", None)
    return 8 * size if isinstance(size, int) else 16


def _no_ci_diffs() -> None:
    """With CI set, pytest builds and prints the *full* ndiff of a failing
    ``==`` (quadratic in the operands' size: minutes and megabytes for two
    megabyte values) and disables truncation.  Make CI behave like a
    terminal for assertion output; ``-vv`` still shows everything."""
    try:
        from _pytest.assertion import _compare_sequence, truncate
    except ImportError:  # another pytest layout: MAX_FAILURE_CHARS still bounds the output
        return
    for module in (_compare_sequence, truncate):
        if hasattr(module, "running_on_ci"):
            module.running_on_ci = lambda: False


_no_ci_diffs()


def pytest_assertrepr_compare(config, op, left, right):
    """A comparison of large operands is not diffed (pytest's diff of two
    megabyte values takes minutes and prints megabytes): say what they are
    and how to compare them instead."""
    sizes = (_size(left), _size(right))
    if max(sizes) > MAX_FAILURE_CHARS:
        return [f"{type(left).__name__} {op} {type(right).__name__}: operands too large to show "
                f"(about {sizes[0]} and {sizes[1]} characters); compare digests or name the first difference"]
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Every failure's report is bounded (MAX_FAILURE_CHARS), whatever its
    assertion printed."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and report.longrepr is not None:
        text = str(report.longrepr)
        if len(text) > MAX_FAILURE_CHARS:
            report.longrepr = bounded(text)


def clean_environ(**extra) -> dict:
    """This process's environment for a child that starts a pytest of its
    own, without what an xdist worker sets (pytest-benchmark would take the
    child for a worker and disable itself), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST")}
    env.update(extra)
    return env


# -- the summaries under pytest-xdist: each worker sends its tables to the controller


def _summary() -> dict:
    from tests.test_mutants import KILL_TABLE

    return {"kill": KILL_TABLE, "count": TALLY.count, "worst": TALLY.worst, "rounding": ROUNDING.rows}


def _merge(data: dict) -> None:
    from tests.test_mutants import KILL_TABLE

    KILL_TABLE.update(data["kill"])
    TALLY.count += data["count"]
    for quantity, ulps in data["worst"].items():
        if ulps > TALLY.worst.get(quantity, -1.0):
            TALLY.worst[quantity] = ulps
    ROUNDING.rows.update({k: tuple(v) for k, v in data["rounding"].items()})


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)  # set on an xdist worker only
    if workeroutput is not None:
        workeroutput["sapo_summary"] = json.dumps(_summary())


class _XdistSummary:
    def pytest_testnodedown(self, node, error):
        data = getattr(node, "workeroutput", {}).get("sapo_summary")
        if data:
            _merge(json.loads(data))


def pytest_collection_modifyitems(config, items):
    """Tests marked slow first (a stable sort): spread over xdist workers,
    the long ones start at once instead of holding up the end of the run."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_configure(config):
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistSummary(), "sapo-xdist-summary")


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
    if ROUNDING.rows:
        shown = ", ".join(f"{k} {ok}/{n} (worst {w:.2f} ulp)" for k, (n, ok, w) in sorted(ROUNDING.rows.items()))
        terminalreporter.write_line(f"reproducible path, correctly rounded: {shown}")
    if TALLY.count:
        worst = ", ".join(f"{k} {v:.2f}" for k, v in sorted(TALLY.worst.items()))
        terminalreporter.write_line(
            f"oracle vs mpmath: {TALLY.count} comparisons; worst error (ulp; sums and means in "
            f"units of eps*sum|terms| + 1 ulp): {worst}"
        )
