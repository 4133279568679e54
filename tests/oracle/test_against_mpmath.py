"""The oracle against an independent 60-digit mpmath evaluation.

Every per-token output (ratio, gate, token loss, gradient) must be within
4 ulp of the exact value; the scalar loss and the metrics within the
summation bound of SPEC.md ("Accuracy").  Every comparison is tallied and the
tally printed at the end of the run.
"""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import sapo_ref
from tests import mpref
from tests.conftest import TALLY
from tests.oracle.strategies import (
    SPECIAL_LOG_RATIOS,
    advantage_values,
    batches,
    finite_log_ratios,
    loss_agg_modes,
    per_token_advantages,
    taus,
)

ULP_BOUND = 4.0
EPS = 2.0**-52


def _check_ulps(quantity, got, ref, context):
    e = mpref.ulps(got, ref)
    TALLY.record(quantity, e)
    assert e <= ULP_BOUND, f"{quantity}: {got!r} vs exact {mp.nstr(ref, 25)} = {e:.2f} ulp ({context})"


def _check_reduction(quantity, got, terms, count, context):
    """|got - exact| <= 4 (eps sum|terms| / count + 1 ulp of the exact value
    + n 2^-1075 / count): the last term is the rounding of n terms that
    underflow below the normal range, absolute (SPEC.md §10).

    The tally records the error in units of that sum.
    """
    exact = mp.fsum(terms) / count
    if math.isinf(float(exact)):  # beyond the float64 range: must overflow
        assert got == float(exact), f"{quantity}: {got!r}, exact {mp.nstr(exact, 5)} overflows"
        return
    scale = mp.fsum(abs(t) for t in terms) / count
    err = abs(mpref.mpf(got) - exact)
    unit = EPS * scale + float(np.spacing(abs(float(exact)))) + len(terms) * mp.mpf(2) ** -1075 / count
    bound = 4 * unit
    TALLY.record(quantity, float(err / unit))
    assert err <= bound, f"{quantity}: {got!r} vs exact {mp.nstr(exact, 25)} ({context})"


def check_against_mpmath(lp, olp, adv, mask, tau_pos, tau_neg, mode, **options):
    """Compare every output of one sapo_loss call with mpref (token or
    sequence level, with or without importance weights)."""
    res = sapo_ref.sapo_loss(lp, olp, adv, mask, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode, **options)
    B, T = lp.shape
    A = per_token_advantages(adv, lp.shape)
    W = per_token_advantages(options.get("rollout_is_weights", np.ones((B, 1))), lp.shape)
    sem = res.semantics
    sequence = sem.importance_sampling_level == "sequence"
    weights = mpref.row_weights(
        mask.sum(axis=1), sem.loss_agg_mode, sem.empty_rows, sem.token_count_eps, sem.row_count_eps,
        sem.token_sum_norm, options.get("global_token_count"), options.get("global_seq_count"),
    )
    loss_terms, kl_terms, ratio_terms, gate_terms = [], [], [], []
    for i in range(B):
        cols = [t for t in range(T) if mask[i, t]]
        for t in range(T):
            if not mask[i, t]:
                assert res.grad[i, t] == 0 and res.token_loss[i, t] == 0
        if not cols:
            continue
        row_d = mpref.row_log_ratio(lp[i, cols], olp[i, cols], sem.log_ratio_clamp) if sequence else None
        row_a = mpref.row_mean(A[i, cols]) if sequence and sem.sequence_advantage == "mean" else None
        shares = []
        for t in cols:
            a_t = A[i, t] if row_a is None else row_a
            ctx = (f"lp={lp[i, t]!r}, olp={olp[i, t]!r}, A={a_t!r}, w={W[i, t]!r}, tau=({tau_pos}, {tau_neg}), "
                   f"mode={mode}, level={sem.importance_sampling_level}")
            c = weights[i]
            r, f, loss_tok, g = mpref.token(lp[i, t], olp[i, t], a_t, sem.tau_pos, sem.tau_neg, c,
                                            sem.log_ratio_clamp, W[i, t], row_d)
            _check_ulps("ratio", res.ratio[i, t], r, ctx)
            _check_ulps("gate", res.gate[i, t], f, ctx)
            _check_ulps("token_loss", res.token_loss[i, t], loss_tok, ctx)
            if sequence:
                shares.append(g)
            else:
                _check_ulps("grad", res.grad[i, t], g, ctx)
            loss_terms.append(mp.mpf(c.numerator) / c.denominator * loss_tok)
            kl_terms.append(-mpref.log_ratio(lp[i, t], olp[i, t])[0] if sequence
                            else -mpref.log_ratio(lp[i, t], olp[i, t], sem.log_ratio_clamp)[0])
            # SPEC §5: the mean of the ratios as float64 holds them (one beyond its range is +inf)
            ratio_terms.append(mp.inf if math.isinf(float(r)) else r)
            gate_terms.append(f)
        for t in cols if sequence else ():  # d loss / d lp_it = (sum of the row's shares) / n_i
            _check_reduction("grad (sequence level)", res.grad[i, t], shares, len(cols), f"row {i}")
    if loss_terms:
        _check_reduction("loss", res.loss, loss_terms, 1, f"mode={mode}")
        count = mp.mpf(len(loss_terms)) + mpref.mpf(sem.token_count_eps)
        _check_reduction("ppo_kl", res.metrics["ppo_kl"], kl_terms, count, "")
        _check_reduction("avg_ratio", res.metrics["avg_ratio"], ratio_terms, count, "")
        _check_reduction("avg_soft_gate", res.metrics["avg_soft_gate"], gate_terms, count, "")
    else:
        assert res.loss == 0.0
    return res


is_weights = st.floats(0.0, 4.0) | st.sampled_from([0.0, 1.0, 0.5, 2.0, 1e-3])


@st.composite
def weights_for(draw, shape):
    B, T = shape
    layout = draw(st.sampled_from(("token", "row")))
    n = B * T if layout == "token" else B
    w = np.array(draw(st.lists(is_weights, min_size=n, max_size=n)))
    return w.reshape(B, T) if layout == "token" else w


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes, data=st.data())
def test_importance_weights_match_mpmath(batch, tau_pos, tau_neg, mode, data):
    lp, olp, adv, mask = batch
    w = data.draw(weights_for(lp.shape), label="rollout_is_weights")
    check_against_mpmath(lp, olp, adv, mask, tau_pos, tau_neg, mode, rollout_is_weights=w)


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes,
       seq_adv=st.sampled_from(("token", "mean")), weighted=st.booleans(), data=st.data())
def test_sequence_level_matches_mpmath(batch, tau_pos, tau_neg, mode, seq_adv, weighted, data):
    lp, olp, adv, mask = batch
    extra = {"rollout_is_weights": data.draw(weights_for(lp.shape))} if weighted else {}
    check_against_mpmath(lp, olp, adv, mask, tau_pos, tau_neg, mode, importance_sampling_level="sequence",
                         sequence_advantage=seq_adv, **extra)


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes)
def test_loss_gradient_and_metrics_match_mpmath(batch, tau_pos, tau_neg, mode):
    lp, olp, adv, mask = batch
    check_against_mpmath(lp, olp, adv, mask, tau_pos, tau_neg, mode)


@given(
    batch=batches(),
    tau_pos=taus,
    tau_neg=taus,
    mode=loss_agg_modes,
    profile=st.sampled_from(sorted(sapo_ref.PROFILES)),
)
def test_every_profile_matches_mpmath(batch, tau_pos, tau_neg, mode, profile):
    lp, olp, adv, mask = batch
    prof = sapo_ref.get_profile(profile)
    if prof.empty_rows == "nan" and (mask.sum(axis=1) == 0).any():
        return  # NaN by definition; covered by the edge-case tests
    check_against_mpmath(lp, olp, adv, mask, tau_pos, tau_neg, mode, profile=profile)


@pytest.mark.parametrize("tau", [0.05, 0.1, 0.5, 1.0, 1.05, 4.0, 20.0, 50.0])
def test_hand_picked_log_ratios(tau):
    """Every special log-ratio and its neighbours, both advantage signs."""
    d = np.array(sorted(set(SPECIAL_LOG_RATIOS) | {np.nextafter(x, np.inf) for x in SPECIAL_LOG_RATIOS}
                        | {-745.0, 745.0, 709.78, -709.78, 0.2499, -0.4999, 0.9999}))
    olp = np.full((2, d.size), np.log(0.3))
    lp = olp + d
    adv = np.array([1.5, -0.75])
    for mode in sapo_ref.LOSS_AGG_MODES:
        check_against_mpmath(lp, olp, adv, np.ones(lp.shape, bool), tau, tau, mode)


@given(
    d=finite_log_ratios,
    scale=st.sampled_from((1.0, 0.5, 2.0)),
    tau=taus,
    a=advantage_values,
)
def test_gate_and_weight_match_mpmath(d, scale, tau, a):
    """soft_gate and gate_weight take the ratio itself; r in [0, inf)."""
    r = float(np.exp(d)) * scale
    adv = np.array([a])
    ctx = f"r={r!r}, tau={tau}, A={a}"
    rm, tm = mpref.mpf(r), mpref.mpf(tau)
    _check_ulps("soft_gate", sapo_ref.soft_gate(np.array([r]), adv, tau, tau)[0], mpref.gate(rm, tm), ctx)
    _check_ulps("gate_weight", sapo_ref.gate_weight(np.array([r]), adv, tau, tau)[0], mpref.weight(rm, tm), ctx)


# Worked values of the per-token gradient -A f'(r) r (SPEC.md, section 2) with
# c = 1 at olp = log 0.3, to six decimals; sapo_ref/_selfcheck.py checks the same six.
DESIGN_TABLE = [
    (0.0, +1.0, 1.00, -1.000000),
    (0.0, -1.0, 1.05, +1.000000),
    (0.5, +1.0, 1.00, -1.486739),
    (1.0, +1.0, 1.00, -1.402203),
    (2.0, +1.0, 1.00, -0.049483),
    (-3.0, -1.0, 1.05, +0.039196),
]


@pytest.mark.parametrize("delta, a, tau, expected", DESIGN_TABLE)
def test_design_worked_values(delta, a, tau, expected):
    olp = np.log(0.3)
    res = sapo_ref.sapo_loss([[olp + delta]], [[olp]], [a], [[1]], tau_pos=tau, tau_neg=tau)
    assert res.grad[0, 0] == pytest.approx(expected, abs=5e-7)
