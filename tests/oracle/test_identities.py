"""Identities the exact SAPO loss satisfies, as hypothesis properties."""

from __future__ import annotations

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

import sapo_ref
from tests.oracle.strategies import batches, loss_agg_modes, taus

ulp = np.spacing


def _loss(batch, **kw):
    lp, olp, adv, mask = batch
    return sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)


def _close(a, b, scale, ulps=4):
    """|a - b| <= ulps * eps * scale (scale: a sum of magnitudes)."""
    return abs(a - b) <= ulps * 2.0**-52 * scale + 2 * ulp(abs(b))


def _scale(res):
    return float(np.sum(np.abs(res.agg_weight * res.token_loss)))


@given(r_tau=st.tuples(st.just(1.0), taus), adv=st.floats(-5, 5))
def test_gate_at_one_is_two_over_tau(r_tau, adv):
    _, tau = r_tau
    g = sapo_ref.soft_gate(np.array([1.0]), np.array([adv]), tau, tau)[0]
    assert g == 2.0 / tau  # both correctly rounded


@given(tau_pos=taus, tau_neg=taus, adv=st.floats(-5, 5))
def test_gate_derivative_at_one_is_one(tau_pos, tau_neg, adv):
    assert sapo_ref.gate_weight(np.array([1.0]), np.array([adv]), tau_pos, tau_neg)[0] == 1.0


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes)
def test_gradient_on_policy_is_minus_weight_times_advantage(batch, tau_pos, tau_neg, mode):
    """At r = 1 the gradient is -c A for every tau (f'(1) * 1 = 1)."""
    lp, _, adv, mask = batch
    res = sapo_ref.sapo_loss(lp, lp.copy(), adv, mask, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode)
    a = np.broadcast_to(adv.reshape(adv.shape[0], -1), lp.shape)
    expected = -a * res.agg_weight
    assert np.all(np.abs(res.grad - expected) <= ulp(np.abs(expected)))


@given(
    ratios=st.lists(st.floats(0, 1e6), min_size=2, max_size=30),
    tau=taus,
    sign=st.sampled_from((1.0, -1.0)),
)
def test_gate_is_monotone_in_ratio(ratios, tau, sign):
    r = np.sort(np.array(ratios))
    g = sapo_ref.soft_gate(r, np.full(r.shape, sign), tau, tau)
    assert np.all(np.diff(g) >= 0)


@given(tau=taus, sign=st.sampled_from((1.0, -1.0)))
def test_gradient_vanishes_at_both_ends(tau, sign):
    """f'(r) r -> 0 as r -> 0 and r -> inf; exactly 0 at the limits."""
    d = np.array([[-np.inf, -1000.0, -700.0, 700.0, 1000.0, np.inf]])
    olp = np.zeros_like(d)
    res = sapo_ref.sapo_loss(olp + d, olp, [sign], np.ones(d.shape), tau_pos=tau, tau_neg=tau,
                             loss_agg_mode="seq-mean-token-sum")
    g = np.abs(res.grad[0])
    assert g[0] == 0 and g[-1] == 0 and g[4] == 0
    assert g[1] < 1e-300 and g[2] < 1e-300 and g[3] == 0.0
    assert np.all(np.isfinite(res.gate)) and np.isfinite(res.loss)


@given(batch=batches(), tau=taus, mode=loss_agg_modes)
def test_equal_temperatures_make_the_sign_rule_irrelevant(batch, tau, mode):
    lp, olp, adv, mask = batch
    a = _loss(batch, tau_pos=tau, tau_neg=tau, loss_agg_mode=mode)
    b = sapo_ref.sapo_loss(lp, olp, -adv, mask, tau_pos=tau, tau_neg=tau, loss_agg_mode=mode)
    assert np.array_equal(a.gate, b.gate)
    assert a.loss == -b.loss
    assert np.array_equal(a.grad, -b.grad + 0.0)


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes, k=st.integers(-20, 20),
       s=st.floats(0.01, 100))
def test_scaling_advantages_scales_loss_and_gradient(batch, tau_pos, tau_neg, mode, k, s):
    lp, olp, adv, mask = batch
    kw = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode)
    base = sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)
    pow2 = sapo_ref.sapo_loss(lp, olp, adv * 2.0**k, mask, **kw)
    for g in (base.grad, pow2.grad):  # subnormal results round differently when scaled
        assume(np.all((np.abs(g) > 1e-290) | (g == 0)))
    assume(np.array_equal(base.grad == 0, pow2.grad == 0))
    assert np.array_equal(pow2.grad, base.grad * 2.0**k)
    assert pow2.loss == base.loss * 2.0**k
    scaled = sapo_ref.sapo_loss(lp, olp, adv * s, mask, **kw)
    exact_grad = base.grad * s
    assert np.all(np.abs(scaled.grad - exact_grad) <= 8 * ulp(np.abs(exact_grad)) + 1e-300)
    assert _close(scaled.loss, base.loss * s, _scale(scaled), ulps=8)


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes, data=st.data())
def test_permuting_rows_permutes_everything(batch, tau_pos, tau_neg, mode, data):
    lp, olp, adv, mask = batch
    perm = np.array(data.draw(st.permutations(range(lp.shape[0]))))
    kw = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode)
    a = sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)
    b = sapo_ref.sapo_loss(lp[perm], olp[perm], adv[perm], mask[perm], **kw)
    assert np.array_equal(a.grad[perm], b.grad)
    assert _close(b.loss, a.loss, _scale(a), ulps=1)


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes,
       pad=st.integers(1, 5), junk=st.sampled_from((0.0, np.nan, np.inf, -np.inf, -3.0)))
def test_appending_masked_padding_changes_nothing(batch, tau_pos, tau_neg, mode, pad, junk):
    """Padding columns (any values) change nothing, given an explicit
    normaliser for seq-mean-token-sum-norm (its default is the padded T)."""
    lp, olp, adv, mask = batch
    B, T = lp.shape
    kw = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode, token_sum_norm=7.0)
    a = sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)

    def padded(x, fill):
        return np.concatenate([x, np.full((B, pad), fill)], axis=1)

    adv_p = padded(adv, junk) if adv.shape == (B, T) else adv
    b = sapo_ref.sapo_loss(padded(lp, junk), padded(olp, junk), adv_p, padded(mask, False), **kw)
    assert np.array_equal(b.grad[:, :T], a.grad) and np.all(b.grad[:, T:] == 0)
    assert _close(b.loss, a.loss, _scale(a), ulps=1)
    for name in sapo_ref.METRIC_NAMES:
        assert np.array_equal(a.metrics[name], b.metrics[name], equal_nan=True)


@given(batch=batches(max_rows=6), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes,
       empty_rows=st.sampled_from(("exclude", "count")), data=st.data())
def test_shards_with_global_counts_sum_to_the_full_batch(batch, tau_pos, tau_neg, mode, empty_rows, data):
    lp, olp, adv, mask = batch
    B = lp.shape[0]
    cuts = sorted(data.draw(st.lists(st.integers(1, B - 1), unique=True, max_size=3)) if B > 1 else [])
    kw = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode, empty_rows=empty_rows, token_sum_norm=5.0)
    full = sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)
    g = dict(global_token_count=full.denominators.tokens, global_seq_count=full.denominators.sequences)
    total, grads = 0.0, []
    for part in np.split(np.arange(B), cuts):
        res = sapo_ref.sapo_loss(lp[part], olp[part], adv[part], mask[part], **kw, **g)
        total += res.loss
        grads.append(res.grad)
    assert np.array_equal(np.concatenate(grads), full.grad)
    assert _close(total, full.loss, _scale(full), ulps=4)


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes)
def test_inputs_are_never_modified(batch, tau_pos, tau_neg, mode):
    lp, olp, adv, mask = batch
    copies = [x.copy() for x in batch]
    for x in batch:
        x.setflags(write=False)  # and read-only inputs are accepted
    sapo_ref.sapo_loss(lp, olp, adv, mask, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode)
    sapo_ref.soft_gate(np.exp(lp - olp), adv, tau_pos, tau_neg)
    for x, c in zip(batch, copies):
        assert np.array_equal(x, c, equal_nan=True)


def test_results_are_read_only():
    res = sapo_ref.sapo_loss([[0.1, 0.2]], [[0.0, 0.0]], [1.0], [[1, 1]])
    for arr in (res.grad, res.token_loss, res.gate, res.ratio, res.agg_weight):
        assert not arr.flags.writeable


@given(batch=batches(), tau_pos=taus, tau_neg=taus, mode=loss_agg_modes)
def test_memory_layout_does_not_matter(batch, tau_pos, tau_neg, mode):
    """Fortran-ordered and strided inputs give the same results as C-ordered."""
    lp, olp, adv, mask = batch
    kw = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode)
    a = sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)

    def fortran(x):
        return np.asfortranarray(x) if x.ndim == 2 else x

    def strided(x):
        wide = np.repeat(x, 2, axis=-1)
        return wide[..., ::2]

    for layout in (fortran, strided):
        b = sapo_ref.sapo_loss(*(layout(x) for x in batch), **kw)
        assert np.array_equal(a.grad, b.grad, equal_nan=True)
        assert np.array_equal(a.ratio, b.ratio, equal_nan=True)
        assert a.loss == b.loss or (np.isnan(a.loss) and np.isnan(b.loss))
    r = np.exp(np.clip(lp - olp, -700, 700))
    g = sapo_ref.soft_gate(r, adv, tau_pos, tau_neg)
    assert np.array_equal(g, sapo_ref.soft_gate(np.asfortranarray(r), fortran(adv), tau_pos, tau_neg), equal_nan=True)
