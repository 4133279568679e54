"""The input strategy reaches the regions its docstring promises.

A check can only catch an error where its inputs go.  These tests ask
hypothesis to *find* a batch in each promised region; if the strategy cannot
produce one, ``find`` raises and the test fails.  They pin down coverage, not
values: a kernel that is wrong only on the knee of a small temperature's gate
(for instance one that clamps the log-ratio at 5 before exp) passes every
check that never puts a token there.
"""

from __future__ import annotations

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
