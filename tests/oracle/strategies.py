"""Hypothesis strategies for the oracle's own tests."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from sapo_ref import LOSS_AGG_MODES

#: log-ratios where something changes: exp overflow thresholds of fp16, fp32
#: and fp64, the fast path's edges, the gate's knees, tiny values.
SPECIAL_LOG_RATIOS = (
    0.0, 1e-300, -1e-300, 1e-8, -1e-8, 0.25, -0.25, 0.5, -0.5, 1.0, -1.0, 1.5, 2.0, -3.0,
    5.0, 6.6, 7.0, 9.6, 11.1, -11.1, 20.0, -20.0, 88.8, -88.8, 700.0, -700.0,
)

finite_log_ratios = st.one_of(
    st.floats(-0.3, 0.3),
    st.floats(-3.0, 3.0),
    st.floats(-12.0, 12.0),
    st.floats(-700.0, 700.0),
    st.sampled_from(SPECIAL_LOG_RATIOS),
)

taus = st.one_of(st.floats(0.05, 50.0), st.sampled_from((0.05, 0.1, 0.5, 1.0, 1.05, 4.0, 20.0, 50.0)))

advantage_values = st.one_of(
    st.floats(-5.0, 5.0),
    st.sampled_from((0.0, 1.0, -1.0, 1e-3, -1e-3)),
    st.floats(-1e3, 1e3),
)

old_logprobs = st.one_of(st.floats(-50.0, 0.0), st.sampled_from((0.0, -1e-12, np.log(0.3))))


@st.composite
def batches(draw, max_rows=4, max_cols=6, log_ratios=finite_log_ratios):
    """(logprob, old_logprob, advantages, mask) with every shape of advantages."""
    B = draw(st.integers(1, max_rows))
    T = draw(st.integers(1, max_cols))
    olp = np.array(draw(st.lists(old_logprobs, min_size=B * T, max_size=B * T))).reshape(B, T)
    d = np.array(draw(st.lists(log_ratios, min_size=B * T, max_size=B * T))).reshape(B, T)
    lp = olp + d
    mask = np.array(draw(st.lists(st.booleans(), min_size=B * T, max_size=B * T))).reshape(B, T)
    shape = draw(st.sampled_from(("row", "column", "token")))
    n = B * T if shape == "token" else B
    adv = np.array(draw(st.lists(advantage_values, min_size=n, max_size=n)))
    adv = adv.reshape(B, T) if shape == "token" else adv.reshape(B, 1) if shape == "column" else adv
    return lp, olp, adv, mask


loss_agg_modes = st.sampled_from(LOSS_AGG_MODES)


def per_token_advantages(adv, shape):
    """Advantages broadcast to the (B, T) token grid, the way the spec reads them."""
    adv = np.asarray(adv, dtype=np.float64)
    if adv.ndim == 1:
        adv = adv[:, None]
    return np.broadcast_to(adv, shape)
