"""``sapo_ref.sapo_loss`` returns the mathematically right result for every
input SPEC.md §9 accepts; it never raises.

The domain here is wider than the mpmath tests' (tests/oracle/strategies.py):
temperatures log-uniform over the whole accepted [1e-6, 1e6], log-ratios up
to and past the float64 overflow of exp (709.78) and +-inf, many tokens at the
overflow edge at once (their ratios, each finite, sum past the float64
maximum: ``avg_ratio`` is then +inf, not an OverflowError), advantages up to
1e300, importance weights, every mode, profile and level.  Where the inputs
are finite the results are compared with 60-digit mpmath as well.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import sapo_ref
from sapo_ref import LOSS_AGG_MODES
from tests.oracle.test_against_mpmath import check_against_mpmath

#: every accepted temperature, log-uniform (each with its own knee), and the ends
wide_taus = st.one_of(st.floats(-6.0, 6.0).map(lambda e: float(10.0**e)), st.sampled_from((1e-6, 1e6, 1.0)))
#: at and past exp's float64 overflow, both signs, and the rest of the line
edge_log_ratios = st.one_of(
    st.floats(709.0, 709.9),
    st.floats(-745.5, -700.0),
    st.sampled_from((709.78, 709.7, 709.8, 710.0, -709.8, -745.2, 1e4, -1e4, 0.0)),
    st.floats(-30.0, 30.0),
)
nonfinite_log_ratios = st.sampled_from((math.inf, -math.inf))
huge_advantages = st.one_of(st.floats(-1e300, 1e300), st.sampled_from((5e-324, -5e-324, 1.0, -1.0, 0.0)))


@st.composite
def overflow_batches(draw, nonfinite: bool):
    B = draw(st.integers(1, 3))
    T = draw(st.integers(1, 40))
    ratios = st.one_of(edge_log_ratios, nonfinite_log_ratios) if nonfinite else edge_log_ratios
    # many tokens at one edge value: their ratios overflow only when summed
    if draw(st.booleans()):
        d = np.full((B, T), draw(edge_log_ratios))
    else:
        d = np.array(draw(st.lists(ratios, min_size=B * T, max_size=B * T))).reshape(B, T)
    olp = np.array(draw(st.lists(st.floats(-50.0, 0.0), min_size=B * T, max_size=B * T))).reshape(B, T)
    with np.errstate(invalid="ignore"):
        lp = olp + d
    mask = np.array(draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))).reshape(B, T)
    if draw(st.booleans()):
        mask[:] = True
    adv = np.array(draw(st.lists(huge_advantages, min_size=B, max_size=B)))
    return lp, olp, adv, mask


def _options(data, shape):
    opts = {}
    if data.draw(st.booleans(), label="weighted"):
        opts["rollout_is_weights"] = np.array(
            data.draw(st.lists(st.floats(0.0, 1e3), min_size=shape[0], max_size=shape[0])))
    if data.draw(st.booleans(), label="sequence level"):
        opts["importance_sampling_level"] = "sequence"
    return opts


@settings(max_examples=150)
@given(batch=overflow_batches(nonfinite=True), tau_pos=wide_taus, tau_neg=wide_taus,
       mode=st.sampled_from(LOSS_AGG_MODES), profile=st.sampled_from(sorted(sapo_ref.PROFILES)),
       reproducible=st.booleans(), data=st.data())
def test_sapo_loss_never_raises_on_accepted_input(batch, tau_pos, tau_neg, mode, profile, reproducible, data):
    lp, olp, adv, mask = batch
    opts = _options(data, lp.shape)
    with np.errstate(all="raise"):  # no floating-point warning either
        res = sapo_ref.sapo_loss(lp, olp, adv, mask, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode,
                                 profile=profile, reproducible=reproducible, **opts)
        metrics = dict(res.metrics)
    m = mask.astype(bool)
    with np.errstate(invalid="ignore"):
        defined = m & ~np.isnan(lp - olp)
    gate = res.gate[defined]
    assert np.all(np.isnan(gate) | ((gate >= 0) & (gate <= 4 / min(res.semantics.tau_pos, res.semantics.tau_neg)
                                                    * (1 + 1e-15)))), gate
    # NaN only from an undefined token (a NaN log-ratio, or a sequence-level row holding +inf and -inf)
    assert not np.isnan(metrics["avg_ratio"]) or np.isnan(res.ratio[m]).any()
    r = res.ratio[m]
    if r.size and np.all(np.isfinite(r)):  # finite ratios have a finite mean, whatever their sum
        assert math.isfinite(metrics["avg_ratio"]), (r.max(), metrics["avg_ratio"])


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("reproducible", [False, True])
def test_ratios_that_overflow_only_when_summed(mode, reproducible):
    """Two tokens at log-ratio 709.7: each ratio is finite, their sum is not,
    their mean is e^709.7 (once an OverflowError in the oracle's fsum, then
    +inf)."""
    lp = np.full((1, 2), 709.7)
    res = sapo_ref.sapo_loss(lp, np.zeros((1, 2)), np.ones(1), np.ones((1, 2), bool), loss_agg_mode=mode,
                             reproducible=reproducible)
    assert res.metrics["avg_ratio"] == res.ratio[0, 0] == float(mp.exp(mp.mpf(709.7)))
    assert np.all(res.grad == 0.0)
    check_against_mpmath(lp, np.zeros((1, 2)), np.ones(1), np.ones((1, 2), bool), 1.0, 1.05, mode)


@settings(max_examples=30)
@given(batch=overflow_batches(nonfinite=False), tau_pos=wide_taus, tau_neg=wide_taus,
       mode=st.sampled_from(LOSS_AGG_MODES))
def test_the_overflow_edge_agrees_with_mpmath(batch, tau_pos, tau_neg, mode):
    lp, olp, adv, mask = batch
    adv = np.clip(adv, -1e6, 1e6)  # the loss of 1e300 advantages overflows: compared above, not here
    check_against_mpmath(lp, olp, adv, mask, tau_pos, tau_neg, mode)
