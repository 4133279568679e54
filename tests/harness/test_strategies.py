"""The input strategy reaches the regions its docstring promises.

A check can only catch an error where its inputs go.  These tests ask
hypothesis to *find* a batch in each promised region; if the strategy cannot
produce one, ``find`` raises and the test fails.  They pin down coverage, not
values: a kernel that is wrong only on the knee of a small temperature's gate
(for instance one that clamps the log-ratio at 5 before exp) passes every
check that never puts a token there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, find, settings

from conformance.strategies import EXTREME_LOG_RATIOS, TAU_PAIRS, batches

SETTINGS = settings(max_examples=2000, database=None, derandomize=True,
                    suppress_health_check=list(HealthCheck))


def _log_ratio(b):
    with np.errstate(invalid="ignore"):
        return np.where(b.mask, b.logprob - b.old_logprob, np.nan)


def _on_knee(b, tau, sign):
    """Fraction of the unmasked tokens on the steep part of the gate's knee,
    4 <= |z| <= 50 with z = tau (r - 1), on the given side of r = 1: there
    the gate is nearly saturated while its gradient is still far from 0."""
    d = _log_ratio(b)
    live = b.mask & np.isfinite(d)
    if live.sum() < 8:
        return 0.0
    with np.errstate(over="ignore", invalid="ignore"):
        z = tau * np.expm1(d[live])
    return float(np.mean((np.abs(z) >= 4) & (np.abs(z) <= 50) & (np.sign(z) == sign)))


TAUS = sorted({t for pair in TAU_PAIRS for t in pair})


@pytest.mark.parametrize("tau", TAUS)
def test_every_temperature_gets_batches_on_its_positive_knee(tau):
    b = find(batches(), lambda b: _on_knee(b, tau, 1) > 0.15, settings=SETTINGS)
    assert _on_knee(b, tau, 1) > 0.15


@pytest.mark.parametrize("tau", [t for t in TAUS if t > 8.0])  # below r = 1, |z| <= tau (1 - r)
def test_large_temperatures_get_batches_on_their_negative_knee(tau):
    b = find(batches(), lambda b: _on_knee(b, tau, -1) > 0.15, settings=SETTINGS)
    assert _on_knee(b, tau, -1) > 0.15


@pytest.mark.parametrize("value", EXTREME_LOG_RATIOS)
def test_every_extreme_log_ratio_is_injected_unmasked(value):
    b = find(batches(), lambda b: bool(np.any(_log_ratio(b) == value)), settings=SETTINGS)
    assert np.any(_log_ratio(b) == value)


@pytest.mark.parametrize("junk", [np.nan, np.inf, -np.inf])
def test_padding_carries_non_finite_junk(junk):
    def has(b):
        pad = ~b.mask
        vals = b.logprob[pad]
        return bool(pad.any() and (np.isnan(vals).all() if np.isnan(junk) else np.all(vals == junk)))

    assert has(find(batches(), has, settings=SETTINGS))


def test_empty_rows_and_zero_advantages_occur():
    b = find(batches(), lambda b: bool((b.mask.sum(1) == 0).any() and (b.advantages == 0).any()),
             settings=SETTINGS)
    assert (b.mask.sum(1) == 0).any() and (b.advantages == 0).any()



_FINGERPRINT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from conformance import load_candidate
from conformance.suite import plan, run_units
cand = load_candidate("numpy-fp32")
units = plan(cand, checks=["random"], dtypes=["float32"])
print(json.dumps([r.coverage for r in run_units(cand, units, profile="quick", seed=0)]))
"""


def test_a_seed_names_the_same_batches_whatever_the_process_imported(tmp_path):
    """Hypothesis draws literal constants from the local modules a process
    has imported; the random check must not: the command line, the pytest
    plugin and a user's own modules see the same batches for one seed.  The
    ranges a run exercised (its coverage) fingerprint its batches."""
    import subprocess
    import sys

    from tests.conftest import clean_environ

    (tmp_path / "user_kernel_constants.py").write_text("".join(
        f"C{i} = {v!r}\n" for i, v in enumerate([0.0137, 7.25, -3.5, 11.0, 0.125, 4.0, 12, 48, 3, 2, 1, 5, 6])))
    root = Path(__file__).resolve().parents[2]
    env = clean_environ(PYTHONPATH=f"{root}:{tmp_path}")

    def fingerprint(*imports):
        proc = subprocess.run([sys.executable, "-c", _FINGERPRINT, *imports], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert fingerprint() == fingerprint("user_kernel_constants", "conformance.bench", "conformance.render")
