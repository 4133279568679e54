"""Rollout importance-sampling weights and the sequence-level ratio: the
identities and edge cases SPEC.md §2.1-§2.2 promise (values against mpmath
are in test_against_mpmath.py)."""

from __future__ import annotations

import numpy as np
import pytest

import sapo_ref

RNG = np.random.default_rng(7)
B, T = 4, 6
OLP = -RNG.exponential(1.0, (B, T))
LP = OLP + RNG.normal(0, 0.3, (B, T))
ADV = RNG.normal(size=B)
MASK = np.arange(T)[None, :] < np.array([6, 3, 1, 0])[:, None]
W = RNG.uniform(0.2, 3.0, (B, T))


def loss(**kw):
    kw.setdefault("loss_agg_mode", "seq-mean-token-mean")
    return sapo_ref.sapo_loss(kw.pop("lp", LP), kw.pop("olp", OLP), kw.pop("adv", ADV), kw.pop("mask", MASK), **kw)


# --- importance weights ----------------------------------------------------------


def test_unit_weights_change_nothing():
    a, b = loss(), loss(rollout_is_weights=np.ones((B, T)))
    assert a.loss == b.loss and np.array_equal(a.grad, b.grad) and np.array_equal(a.token_loss, b.token_loss)


def test_weights_multiply_token_loss_and_gradient():
    a, b = loss(), loss(rollout_is_weights=W)
    m = MASK
    np.testing.assert_allclose(b.token_loss[m], a.token_loss[m] * W[m], rtol=4e-16)
    np.testing.assert_allclose(b.grad[m], a.grad[m] * W[m], rtol=8e-16)
    assert np.array_equal(a.gate, b.gate) and np.array_equal(a.ratio, b.ratio)  # the gate is not weighted
    assert dict(a.metrics) == dict(b.metrics)  # nor are the metrics


def test_zero_weight_silences_a_token():
    w = np.ones((B, T))
    w[0, 2] = 0.0
    res = loss(rollout_is_weights=w)
    assert res.token_loss[0, 2] == 0 and res.grad[0, 2] == 0 and res.gate[0, 2] == loss().gate[0, 2]


def test_weight_does_not_choose_the_temperature():
    """tau follows the sign of A, not of A*w: a zero or negative weight keeps A's branch."""
    adv = np.array([1.0, -1.0, 1.0, 1.0])
    for w in (0.0, -2.0, 1e-300):
        res = loss(adv=adv, rollout_is_weights=np.full((B, T), w), tau_pos=0.5, tau_neg=4.0)
        ref = loss(adv=adv, tau_pos=0.5, tau_neg=4.0)
        assert np.array_equal(res.gate, ref.gate)


def test_weights_per_row_are_broadcast():
    w = RNG.uniform(0.5, 2.0, B)
    a = loss(rollout_is_weights=w)
    b = loss(rollout_is_weights=np.repeat(w[:, None], T, axis=1))
    c = loss(rollout_is_weights=w[:, None])
    assert a.loss == b.loss == c.loss and np.array_equal(a.grad, b.grad) and np.array_equal(a.grad, c.grad)


def test_nonfinite_weight_at_unmasked_position_is_nan_and_masked_is_ignored():
    w = np.ones((B, T))
    w[0, 1] = np.nan
    w[1, 5] = np.inf  # masked (row 1 has 3 tokens)
    res = loss(rollout_is_weights=w)
    assert np.isnan(res.token_loss[0, 1]) and np.isnan(res.grad[0, 1]) and np.isnan(res.loss)
    assert res.grad[1, 5] == 0
    w[0, 1] = 1.0
    assert loss(rollout_is_weights=w).loss == loss().loss


def test_weights_bad_shape_is_a_value_error():
    with pytest.raises(ValueError, match="rollout_is_weights has shape"):
        loss(rollout_is_weights=np.ones(T))
    with pytest.raises(TypeError, match="rollout_is_weights"):
        loss(rollout_is_weights=np.ones((B, T), dtype=int))


# --- the sequence level ------------------------------------------------------------


@pytest.mark.parametrize("mode", sapo_ref.LOSS_AGG_MODES)
def test_sequence_level_equals_token_level_when_each_row_has_one_log_ratio(mode):
    d = RNG.normal(0, 0.4, (B, 1))
    lp = OLP + d  # every token of a row has the same log-ratio (up to rounding of OLP + d)
    lp_exact = OLP + d
    tok = sapo_ref.sapo_loss(lp_exact, OLP, ADV, MASK, loss_agg_mode=mode)
    seq = sapo_ref.sapo_loss(lp, OLP, ADV, MASK, loss_agg_mode=mode, importance_sampling_level="sequence")
    np.testing.assert_allclose(seq.token_loss, tok.token_loss, rtol=1e-14, atol=0)
    # the row's gradient is spread evenly: per token, the mean of the token-level gradients of its row
    n = MASK.sum(1)
    for i in range(B):
        if n[i]:
            np.testing.assert_allclose(seq.grad[i, MASK[i]], tok.grad[i, MASK[i]].mean(), rtol=1e-13)


def test_single_token_rows_are_the_same_at_both_levels():
    mask = np.zeros((B, T), bool)
    mask[:, 2] = True
    a = loss(mask=mask)
    b = loss(mask=mask, importance_sampling_level="sequence")
    assert a.loss == pytest.approx(b.loss, rel=1e-15) and np.allclose(a.grad, b.grad, rtol=1e-15, atol=0)


def test_sequence_level_uses_the_geometric_mean_ratio():
    res = loss(importance_sampling_level="sequence")
    for i in range(B):
        if MASK[i].any():
            s = np.mean((LP - OLP)[i, MASK[i]])
            np.testing.assert_allclose(res.ratio[i, MASK[i]], np.exp(s), rtol=1e-15)
        assert np.all(res.ratio[i, ~MASK[i]] == 0)


def test_sequence_level_gradient_is_uniform_within_a_row():
    res = loss(importance_sampling_level="sequence", rollout_is_weights=W)
    for i in range(B):
        g = res.grad[i, MASK[i]]
        assert np.all(g == g[0]) if g.size else True


def test_mean_advantage_replaces_each_tokens_advantage():
    adv = RNG.normal(size=(B, T))
    a = loss(adv=adv, importance_sampling_level="sequence", sequence_advantage="mean")
    for i in range(B):
        if MASK[i].any():
            mean = np.mean(adv[i, MASK[i]])
            row = np.where(MASK[i], mean, 0.0)
            b = loss(adv=np.where(np.arange(B)[:, None] == i, row[None, :], adv), importance_sampling_level="sequence")
            np.testing.assert_allclose(a.token_loss[i], b.token_loss[i], rtol=1e-15)
    # with per-row advantages the mean is the advantage itself
    c = loss(importance_sampling_level="sequence", sequence_advantage="mean")
    d = loss(importance_sampling_level="sequence")
    assert c.loss == d.loss and np.array_equal(c.grad, d.grad)


def test_sequence_level_nan_in_a_row_poisons_only_that_row():
    lp = LP.copy()
    lp[0, 3] = np.nan
    res = loss(lp=lp, importance_sampling_level="sequence")
    assert np.all(np.isnan(res.grad[0, MASK[0]])) and np.isnan(res.loss)
    assert np.all(np.isfinite(res.grad[1:]))


def test_sequence_level_ppo_kl_is_the_token_level_one():
    a, b = loss(), loss(importance_sampling_level="sequence")
    assert b.metrics["ppo_kl"] == pytest.approx(a.metrics["ppo_kl"], rel=1e-15)
    assert b.metrics["pos_adv_frac"] == a.metrics["pos_adv_frac"]


def test_sequence_level_clamp_applies_to_the_row_log_ratio():
    lp = OLP.copy()
    lp[0, :] += 30.0  # row mean 30 > clamp 20: the row's gradient is 0
    res = loss(lp=lp, importance_sampling_level="sequence", log_ratio_clamp=20.0)
    assert np.all(res.grad[0] == 0) and np.allclose(res.ratio[0, MASK[0]], np.exp(20.0))
    assert np.any(res.grad[1] != 0)


@pytest.mark.parametrize("mode", sapo_ref.LOSS_AGG_MODES)
def test_sequence_level_shards_sum_to_the_full_batch(mode):
    full = loss(loss_agg_mode=mode, importance_sampling_level="sequence", rollout_is_weights=W)
    n_tok, n_seq = int(MASK.sum()), int((MASK.sum(1) > 0).sum())
    parts = [sapo_ref.sapo_loss(LP[s], OLP[s], ADV[s], MASK[s], loss_agg_mode=mode, rollout_is_weights=W[s],
                                importance_sampling_level="sequence", global_token_count=n_tok,
                                global_seq_count=n_seq, token_sum_norm=T) for s in (slice(0, 2), slice(2, 4))]
    assert sum(p.loss for p in parts) == pytest.approx(full.loss, rel=1e-15, abs=1e-300)
    np.testing.assert_array_equal(np.concatenate([p.grad for p in parts]), full.grad)


def test_unknown_level_or_advantage_is_a_value_error():
    with pytest.raises(ValueError, match="importance_sampling_level"):
        loss(importance_sampling_level="batch")
    with pytest.raises(ValueError, match="sequence_advantage"):
        loss(importance_sampling_level="sequence", sequence_advantage="median")


def test_sequence_level_infinite_log_ratio_saturates_its_row():
    """One token with log-ratio +inf makes the row's mean +inf: the gate
    saturates at 4/tau, the row's gradient is 0 (not NaN)."""
    olp = OLP.copy()
    olp[0, 2] = -np.inf  # logprob finite: log-ratio +inf
    res = loss(olp=olp, importance_sampling_level="sequence")
    assert np.all(res.ratio[0, MASK[0]] == np.inf) and np.all(res.grad[0] == 0)
    assert np.isfinite(res.loss)
    lp = LP.copy()
    lp[0, 4] = -np.inf  # and -inf in the same row: the mean is undefined
    res = loss(lp=lp, olp=olp, importance_sampling_level="sequence")
    assert np.all(np.isnan(res.grad[0, MASK[0]])) and np.isnan(res.loss)
