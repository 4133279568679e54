"""A failing test prints a bounded report, whatever its assertion compared."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import MAX_FAILURE_CHARS, bounded

pytest_plugins = ("pytester",)


def test_bounded_keeps_short_text_and_cuts_long_text():
    assert bounded("short") == "short"
    long = "head" + "x" * 100_000 + "tail"
    cut = bounded(long, 1000)
    assert cut.startswith("head") and cut.endswith("tail") and len(cut) < 1200
    assert "characters cut" in cut


def test_a_failure_comparing_megabytes_prints_kilobytes(pytester, monkeypatch):
    """Run as CI runs it: a fresh pytest process, default verbosity."""
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parent.parent))
    monkeypatch.setenv("CI", "true")  # where pytest would print a full diff
    pytester.makeconftest("from tests.conftest import pytest_assertrepr_compare, pytest_runtest_makereport  # noqa\n")
    pytester.makepyfile(
        """
        def test_bytes():
            assert {"a": b"x" * 10**6} == {"a": b"y" * 10**6}

        def test_message():
            assert False, "z" * 10**6
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(failed=2)
    text = "\n".join(result.outlines)
    assert len(text) < 3 * MAX_FAILURE_CHARS and "operands too large to show" in text
    assert "characters cut" in text
