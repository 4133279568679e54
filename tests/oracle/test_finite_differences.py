"""The analytic gradient against central differences of the loss (float64)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import sapo_ref
from tests.oracle.strategies import batches, loss_agg_modes, taus

moderate = st.floats(-2.5, 2.5)


@settings(max_examples=60)
@given(batch=batches(log_ratios=moderate), tau_pos=taus.filter(lambda t: t <= 20),
       tau_neg=taus.filter(lambda t: t <= 20), mode=loss_agg_modes, seed=st.integers(0, 2**32 - 1),
       level=st.sampled_from(("token", "sequence")), seq_adv=st.sampled_from(("token", "mean")),
       weighted=st.booleans())
def test_gradient_matches_central_differences(batch, tau_pos, tau_neg, mode, seed, level, seq_adv, weighted):
    """At both importance-sampling levels, with and without importance weights."""
    lp, olp, adv, mask = batch
    kw = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode, importance_sampling_level=level,
              sequence_advantage=seq_adv)
    if weighted:
        kw["rollout_is_weights"] = np.random.default_rng(seed + 1).uniform(0.0, 3.0, lp.shape)
    res = sapo_ref.sapo_loss(lp, olp, adv, mask, **kw)
    grad = res.grad
    loss_scale = float(np.sum(np.abs(res.agg_weight * res.token_loss)))
    rng = np.random.default_rng(seed)
    v = rng.normal(size=lp.shape) * mask
    h = 1e-6

    def loss_at(x):
        return sapo_ref.sapo_loss(lp + x * v, olp, adv, mask, **kw).loss

    # Richardson-extrapolated central difference: truncation O(h**4), rounding
    # about eps * sum|c l| / h (each loss is accurate to eps * sum|c l|).
    d1 = (loss_at(h) - loss_at(-h)) / (2 * h)
    d2 = (loss_at(2 * h) - loss_at(-2 * h)) / (4 * h)
    fd = (4 * d1 - d2) / 3
    directional = float(np.sum(grad * v))
    scale = float(np.sum(np.abs(grad * v))) + 1e-12
    rounding = 32 * 2.0**-52 * loss_scale / h
    assert abs(fd - directional) <= 1e-6 * scale + rounding, (fd, directional)


def test_masked_positions_have_no_influence_on_the_loss():
    rng = np.random.default_rng(0)
    lp = rng.normal(size=(3, 5))
    olp = rng.normal(size=(3, 5))
    mask = rng.random((3, 5)) < 0.5
    base = sapo_ref.sapo_loss(lp, olp, [1.0, -2.0, 0.5], mask).loss
    moved = sapo_ref.sapo_loss(np.where(mask, lp, lp + 10), olp, [1.0, -2.0, 0.5], mask).loss
    assert base == moved
