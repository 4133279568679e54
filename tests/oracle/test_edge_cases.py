"""Each edge case of SPEC.md ("Edge cases"), one test per row, named there.

Expected values come from closed forms or from the mpmath reference, never
from the oracle itself.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

import sapo_ref
from tests import mpref

MODES = sapo_ref.LOSS_AGG_MODES
OLP = math.log(0.3)


def one_token(delta, adv=1.0, tau_pos=1.0, tau_neg=1.05, **kw):
    lp = np.array([[OLP + delta]]) if np.isfinite(delta) else np.array([[delta]])
    olp = np.array([[OLP]]) if np.isfinite(delta) else np.array([[0.0]])
    return sapo_ref.sapo_loss(lp, olp, [adv], [[1]], tau_pos=tau_pos, tau_neg=tau_neg, **kw)


def sigmoid(x):
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("tau", [0.1, 1.0, 1.05, 20.0])
@pytest.mark.parametrize("adv", [1.0, -2.5])
def test_log_ratio_zero(tau, adv):
    """r = 1: f = 2/tau, f'(1) = 1, gradient = -c A exactly."""
    res = sapo_ref.sapo_loss([[OLP, OLP]], [[OLP, OLP]], [adv], [[1, 1]], tau_pos=tau, tau_neg=tau)
    assert np.all(res.ratio == 1.0)
    assert np.all(res.gate == 2.0 / tau)
    assert np.all(res.grad == -adv / 2)
    assert res.loss == -adv * (2.0 / tau)


def test_zero_advantage():
    """A = 0: token loss and gradient exactly +0; the gate uses tau_neg."""
    res = sapo_ref.sapo_loss([[0.3, -0.2]], [[0.0, 0.0]], [0.0], [[1, 1]], tau_pos=0.5, tau_neg=4.0)
    assert np.all(res.token_loss == 0) and not np.any(np.signbit(res.token_loss))
    assert np.all(res.grad == 0) and not np.any(np.signbit(res.grad))
    assert res.loss == 0.0
    ref = sapo_ref.soft_gate(res.ratio, [-1.0], 0.5, 4.0)
    assert np.array_equal(res.gate, ref)
    assert res.metrics["pos_adv_frac"] == 0.0


def test_tau_branch_by_advantage_sign():
    """A > 0 takes tau_pos, A <= 0 takes tau_neg (well-separated temperatures)."""
    r = 1.3
    g = sapo_ref.soft_gate(np.full(3, r), np.array([1e-300, 0.0, -1e-300]), 0.5, 4.0)
    assert g[0] == pytest.approx(4 / 0.5 * sigmoid(0.5 * (r - 1)), rel=1e-15)
    assert g[1] == g[2] == pytest.approx(4 / 4.0 * sigmoid(4.0 * (r - 1)), rel=1e-15)


def test_equal_temperatures():
    res_p = sapo_ref.sapo_loss([[0.4]], [[0.0]], [2.0], [[1]], tau_pos=3.0, tau_neg=3.0)
    res_n = sapo_ref.sapo_loss([[0.4]], [[0.0]], [-2.0], [[1]], tau_pos=3.0, tau_neg=3.0)
    assert res_p.gate[0, 0] == res_n.gate[0, 0]
    assert res_p.grad[0, 0] == -res_n.grad[0, 0]


@pytest.mark.parametrize("delta", [88.8, 709.8, 1000.0, np.inf])
@pytest.mark.parametrize("tau", [0.05, 1.0, 50.0])
def test_log_ratio_plus_infinity(delta, tau):
    """r -> inf: f = 4/tau, gradient exactly 0, ratio overflows to inf past 709.78."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if np.isinf(delta):
            res = sapo_ref.sapo_loss([[0.0]], [[-np.inf]], [1.5], [[1]], tau_pos=tau, tau_neg=tau)
        else:
            res = one_token(delta, 1.5, tau, tau)
    assert res.gate[0, 0] == 4.0 / tau
    assert res.grad[0, 0] == 0.0
    assert res.token_loss[0, 0] == -1.5 * (4.0 / tau)
    if np.isinf(delta):
        assert res.ratio[0, 0] == math.inf
    else:
        assert mpref.ulps(res.ratio[0, 0], mpref.token(OLP + delta, OLP, 1.5, tau, tau)[0]) <= 1


@pytest.mark.parametrize("tau", [0.05, 1.0, 1.05, 50.0])
def test_log_ratio_minus_infinity(tau):
    """r = 0 (logprob = -inf): f = (4/tau) sigmoid(-tau), gradient exactly 0."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sapo_ref.sapo_loss([[-np.inf]], [[OLP]], [-1.0], [[1]], tau_pos=tau, tau_neg=tau)
    exact = mpref.gate(mpref.mpf(0.0), mpref.mpf(tau))
    assert mpref.ulps(res.gate[0, 0], exact) <= 1
    assert res.grad[0, 0] == 0.0 and res.ratio[0, 0] == 0.0
    assert res.metrics["ppo_kl"] == math.inf


@pytest.mark.parametrize("delta", [11.1, -11.1, 88.8, -88.8, 709.8, -709.8, 1000.0, -1000.0])
@pytest.mark.parametrize("tau", [0.05, 1.0, 50.0])
def test_exp_overflow_thresholds(delta, tau):
    """Where exp overflows in fp16, fp32, fp64 (and beyond): exact values, no
    NaN, no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = one_token(delta, -0.7, tau, tau)
    r, f, loss_tok, g = mpref.token(OLP + delta, OLP, -0.7, tau, tau)
    assert mpref.ulps(res.gate[0, 0], f) <= 1
    assert mpref.ulps(res.grad[0, 0], g) <= 1
    assert mpref.ulps(res.ratio[0, 0], r) <= 1
    assert np.isfinite(res.loss)


def test_both_log_probs_minus_infinity():
    """logprob = old_logprob = -inf: the ratio is 0/0, undefined: NaN."""
    res = sapo_ref.sapo_loss([[-np.inf, 0.1]], [[-np.inf, 0.0]], [1.0], [[1, 1]])
    assert np.isnan(res.ratio[0, 0]) and np.isnan(res.gate[0, 0])
    assert np.isnan(res.token_loss[0, 0]) and np.isnan(res.grad[0, 0])
    assert np.isfinite(res.grad[0, 1])
    assert math.isnan(res.loss) and math.isnan(res.metrics["ppo_kl"])


@pytest.mark.parametrize("where", ["logprob", "old_logprob", "advantages"])
def test_nan_at_unmasked_position(where):
    """NaN in, NaN out: the token's loss and gradient, and the loss, are NaN;
    other tokens are unaffected."""
    lp = np.array([[0.1, 0.2]])
    olp = np.array([[0.0, 0.0]])
    adv = np.array([[1.0, 1.0]])
    {"logprob": lp, "old_logprob": olp, "advantages": adv}[where][0, 0] = np.nan
    res = sapo_ref.sapo_loss(lp, olp, adv, [[1, 1]])
    clean = sapo_ref.sapo_loss([[0.2]], [[0.0]], [1.0], [[1]])
    assert np.isnan(res.grad[0, 0]) and np.isnan(res.token_loss[0, 0])
    assert res.grad[0, 1] == clean.grad[0, 0] / 2
    assert math.isnan(res.loss)


@pytest.mark.parametrize("adv", [np.inf, -np.inf])
def test_infinite_advantage(adv):
    """An infinite advantage: token loss and gradient undefined (NaN); the
    gate is still defined, with the temperature of the advantage's sign."""
    res = sapo_ref.sapo_loss([[0.3]], [[0.0]], [adv], [[1]], tau_pos=0.5, tau_neg=4.0)
    tau = 0.5 if adv > 0 else 4.0
    assert res.gate[0, 0] == pytest.approx(4 / tau * sigmoid(tau * (math.exp(0.3) - 1)), rel=1e-15)
    assert np.isnan(res.token_loss[0, 0]) and np.isnan(res.grad[0, 0]) and math.isnan(res.loss)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("junk", [np.nan, np.inf, -np.inf])
def test_nonfinite_values_at_masked_positions(mode, junk):
    """Masked positions never influence anything: same result as zeros there,
    gradient exactly 0 there."""
    lp = np.array([[0.1, junk, 0.3], [junk, -0.2, junk]])
    olp = np.array([[0.0, junk, 0.1], [junk, 0.4, junk]])
    adv = np.array([[1.0, junk, -1.0], [junk, 2.0, junk]])
    mask = np.array([[1, 0, 1], [0, 1, 0]])
    res = sapo_ref.sapo_loss(lp, olp, adv, mask, loss_agg_mode=mode)
    clean = sapo_ref.sapo_loss(np.where(mask, lp, 0), np.where(mask, olp, 0), np.where(mask, adv, 0), mask,
                               loss_agg_mode=mode)
    assert res.loss == clean.loss
    for name in ("grad", "token_loss", "gate", "ratio", "agg_weight"):
        assert np.array_equal(getattr(res, name), getattr(clean, name))
    masked = res.grad[mask == 0]
    assert np.all(masked == 0) and not np.any(np.signbit(masked))


ROWS = dict(lp=np.array([[0.2, 0.1], [0.0, 0.0], [-0.3, 0.0]]), olp=np.zeros((3, 2)),
            adv=np.array([1.0, 5.0, -1.0]), mask=np.array([[1, 1], [0, 0], [1, 0]]))


def _rows(**kw):
    return sapo_ref.sapo_loss(ROWS["lp"], ROWS["olp"], ROWS["adv"], ROWS["mask"], **kw)


def test_empty_row_policies():
    """A row with no unmasked token: excluded from S (canonical), counted
    (count), or making the loss NaN (nan) in seq-mean-token-mean."""
    tok = _rows(loss_agg_mode="seq-mean-token-sum").token_loss
    row_sums = tok.sum(axis=1)
    ex = _rows(loss_agg_mode="seq-mean-token-mean")
    assert ex.denominators.sequences == 2
    assert ex.loss == pytest.approx((row_sums[0] / 2 + row_sums[2] / 1) / 2, rel=1e-15)
    cnt = _rows(loss_agg_mode="seq-mean-token-mean", empty_rows="count")
    assert cnt.denominators.sequences == 3
    assert cnt.loss == pytest.approx((row_sums[0] / 2 + row_sums[2] / 1) / 3, rel=1e-15)
    assert np.all(ex.grad[1] == 0) and np.all(cnt.grad[1] == 0)
    nan = _rows(loss_agg_mode="seq-mean-token-mean", empty_rows="nan")
    assert math.isnan(nan.loss) and np.all(np.isnan(nan.grad[1]))
    assert np.array_equal(nan.grad[[0, 2]], cnt.grad[[0, 2]])
    # seq-mean-token-sum has no per-row mean, so "nan" only counts the row
    nan_sum = _rows(loss_agg_mode="seq-mean-token-sum", empty_rows="nan")
    assert nan_sum.loss == _rows(loss_agg_mode="seq-mean-token-sum", empty_rows="count").loss


def test_single_token_row():
    """A row of length 1 has weight 1/S in seq-mean-token-mean."""
    res = _rows(loss_agg_mode="seq-mean-token-mean")
    assert res.agg_weight[2, 0] == 0.5 and res.agg_weight[0, 0] == 0.25


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("empty_rows", ["exclude", "count"])
def test_all_masked_batch(mode, empty_rows):
    """No unmasked token: loss 0, gradient 0, metrics 0, no NaN, no warning."""
    lp = np.array([[np.nan, 0.5], [np.inf, -1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sapo_ref.sapo_loss(lp, np.zeros((2, 2)), [1.0, -1.0], np.zeros((2, 2), bool),
                                 loss_agg_mode=mode, empty_rows=empty_rows)
    assert res.loss == 0.0 and not math.copysign(1, res.loss) < 0
    assert np.all(res.grad == 0) and np.all(res.token_loss == 0)
    assert all(v == 0.0 for v in res.metrics.values())


def test_single_element_batch():
    res = sapo_ref.sapo_loss([[0.5]], [[0.0]], [2.0], [[True]], loss_agg_mode="seq-mean-token-mean")
    r, f, loss_tok, g = mpref.token(0.5, 0.0, 2.0, 1.0, 1.05)
    assert mpref.ulps(res.loss, loss_tok) <= 1 and mpref.ulps(res.grad[0, 0], g) <= 1


@pytest.mark.parametrize("shape", [(0, 4), (3, 0), (0, 0)])
@pytest.mark.parametrize("mode", MODES)
def test_empty_batch(shape, mode):
    z = np.zeros(shape)
    res = sapo_ref.sapo_loss(z, z, np.zeros(shape[0]), z.astype(bool), loss_agg_mode=mode)
    assert res.loss == 0.0 and res.grad.shape == shape


@pytest.mark.parametrize("mode", MODES)
def test_advantage_shapes_are_equivalent(mode):
    """(B,), (B, 1) and (B, T) advantages give identical results, including
    B == T, where NumPy's own broadcasting of (B,) would be wrong."""
    rng = np.random.default_rng(3)
    lp, olp = rng.normal(size=(2, 3, 3))
    mask = rng.random((3, 3)) < 0.7
    a = np.array([1.0, -2.0, 0.5])
    results = [sapo_ref.sapo_loss(lp, olp, x, mask, loss_agg_mode=mode)
               for x in (a, a[:, None], np.repeat(a[:, None], 3, axis=1))]
    for res in results[1:]:
        assert res.loss == results[0].loss and np.array_equal(res.grad, results[0].grad)


def test_clamp_boundary():
    """With a clamp c: |log-ratio| <= c passes the gradient (also at exactly c);
    beyond, the log-ratio is c and the gradient 0."""
    c = 2.0
    lp = np.array([[2.0, 2.0 + 2**-51, -2.0, -3.0, 25.0]])
    res = sapo_ref.sapo_loss(lp, np.zeros_like(lp), [1.0], np.ones_like(lp), log_ratio_clamp=c,
                             loss_agg_mode="seq-mean-token-sum")
    assert res.grad[0, 0] != 0 and res.grad[0, 2] != 0
    assert res.grad[0, 1] == 0 and res.grad[0, 3] == 0 and res.grad[0, 4] == 0
    assert res.ratio[0, 1] == res.ratio[0, 4] == res.ratio[0, 0] == math.exp(2.0)
    assert res.ratio[0, 3] == res.ratio[0, 2]
    assert res.metrics["ppo_kl"] == pytest.approx(-(2 + 2 + 2 - 2 - 2) / 5, rel=1e-15)


@pytest.mark.parametrize("mode", MODES)
def test_long_row(mode):
    """T = 32768 identical tokens: the row's loss is the token's (token-mean,
    seq-mean-token-mean), within the summation bound."""
    T = 32768
    lp = np.full((1, T), OLP + 0.37)
    res = sapo_ref.sapo_loss(lp, np.full((1, T), OLP), [1.3], np.ones((1, T)), loss_agg_mode=mode)
    r, f, loss_tok, g = mpref.token(OLP + 0.37, OLP, 1.3, 1.0, 1.05)
    factor = {"token-mean": 1, "seq-mean-token-mean": 1, "seq-mean-token-sum": T,
              "seq-mean-token-sum-norm": 1}[mode]
    assert mpref.ulps(res.loss, loss_tok * factor) <= 4
    assert np.all(res.grad == res.grad[0, 0])


def test_extreme_temperatures_in_range():
    """tau at both ends of the accepted range [1e-6, 1e6] gives exact results."""
    for tau in sapo_ref.TAU_RANGE:
        res = sapo_ref.sapo_loss([[0.1, -0.1, 5.0]], [[0.0, 0.0, 0.0]], [1.0], [[1, 1, 1]],
                                 tau_pos=tau, tau_neg=tau)
        for t, d in enumerate((0.1, -0.1, 5.0)):
            r, f, loss_tok, g = mpref.token(d, 0.0, 1.0, tau, tau, Fraction(1, 3))
            assert mpref.ulps(res.gate[0, t], f) <= 4 and mpref.ulps(res.grad[0, t], g) <= 4
