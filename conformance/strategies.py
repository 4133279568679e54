"""Hypothesis strategies for SAPO inputs.

The bulk of each batch looks like real training data -- log-ratios drawn
from a normal distribution of scale 0.05 to 0.3 around 0 (numpy, from a drawn
seed), or, in one batch in five, all on the gate's steep knee -- and
hypothesis injects what breaks kernels at drawn positions: heavy
tails, the exp-overflow thresholds of fp16/fp32/fp64, +-inf log-ratios,
NaN/inf in masked padding, exact-zero and zero-variance advantages, ragged
and empty rows.  Shrinking minimises the shape, the injections and the seed,
so a counterexample is small.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from .candidate import Batch

#: log-ratios where kernels break: fp16/fp32/fp64 exp overflow and beyond
EXTREME_LOG_RATIOS = (11.1, -11.1, 88.8, -88.8, 709.8, -709.8, 1000.0, -1000.0, np.inf, -np.inf)
#: temperature pairs (tau_pos, tau_neg): the paper's, well-separated both
#: ways (default temperatures barely expose a swapped branch), equal, extreme
TAU_PAIRS = ((1.0, 1.05), (0.5, 4.0), (0.1, 20.0), (4.0, 0.5), (2.0, 2.0), (0.05, 50.0))
SCALES = (0.05, 0.1, 0.2, 0.3)

_INJECTIONS = st.one_of(
    st.tuples(st.just("tail"), st.floats(-25.0, 25.0, allow_nan=False)),
    st.tuples(st.just("extreme"), st.sampled_from(EXTREME_LOG_RATIOS)),
    st.tuples(st.just("near-one"), st.floats(-1e-6, 1e-6, allow_nan=False)),
    st.tuples(st.just("knee"), st.floats(1.0, 8.0, allow_nan=False)),  # the gate's knee: z of 5 to 50
)


def tau_pairs(requires_order: bool = False):
    pairs = tuple(p for p in TAU_PAIRS if not requires_order or p[1] >= p[0])
    drawn = st.tuples(st.floats(0.05, 50.0), st.floats(0.05, 50.0))
    if requires_order:
        drawn = drawn.map(lambda p: (min(p), max(p)))
    return st.one_of(st.sampled_from(pairs), drawn)


@st.composite
def batches(draw, max_rows: int = 6, max_cols: int = 48, per_token_advantages: bool = False,
            extremes: bool = True, weights: bool = False) -> Batch:
    """A batch as above; ``per_token_advantages`` allows (B, T) advantages;
    ``weights`` adds (B, T) rollout importance weights: mostly near 1 (a
    truncated importance ratio), with exact 0s and 1s, a few large, and junk
    in the padding."""
    B = draw(st.integers(1, max_rows))
    T = draw(st.integers(1, max_cols))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from(SCALES))
    rng = np.random.default_rng(seed)
    olp = -rng.exponential(1.5, (B, T))
    if draw(st.integers(0, 4)) == 0:
        # every token on a gate's knee (z = tau (r - 1) from about 1 to 50):
        # no token near r = 1 dominates the gradient, so each is held to its
        # own accuracy.  Where the knee lies depends on tau, which is drawn
        # separately, so r - 1 is log-uniform over the knees of every
        # temperature from 0.05 (r up to ~1000) to 20 (r - 1 down to 0.05),
        # or r below 1 for the negative side.
        if draw(st.booleans()):
            d = np.log1p(np.exp(rng.uniform(np.log(0.05), np.log(1000.0), (B, T))))
        else:
            d = -rng.uniform(0.7, 4.0, (B, T))
    else:
        d = rng.normal(0.0, scale, (B, T))
    if extremes:
        for kind, value in draw(st.lists(_INJECTIONS, max_size=4)):
            i, t = draw(st.integers(0, B - 1)), draw(st.integers(0, T - 1))
            d[i, t] = value
    # +-inf log-ratios come from -inf log-probabilities, as they do in practice:
    # logprob = -inf gives -inf; old_logprob = -inf (logprob finite) gives +inf
    pos_inf = d == np.inf
    lp = np.where(pos_inf, olp, olp + d)
    olp = np.where(pos_inf, -np.inf, olp)

    lengths = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    for i, t in draw(st.lists(st.tuples(st.integers(0, B - 1), st.integers(0, T - 1)), max_size=3)):
        mask[i, t] = not mask[i, t]  # holes inside rows, tokens after them

    kind = draw(st.sampled_from(("normal", "zero-variance", "with-zeros")))
    if kind == "zero-variance":
        adv = np.full(B, draw(st.sampled_from((0.0, 1.0, -0.5))))
    else:
        adv = rng.normal(0.0, 1.0, B)
        if kind == "with-zeros":
            adv[draw(st.integers(0, B - 1))] = 0.0
    if per_token_advantages and draw(st.booleans()):
        adv = adv[:, None] + rng.normal(0.0, 0.1, (B, T))
    if draw(st.booleans()):  # garbage in the padding
        junk = draw(st.sampled_from((np.nan, np.inf, -np.inf, 0.0)))
        lp = np.where(mask, lp, junk)
        olp = np.where(mask, olp, junk)
        if adv.ndim == 2:
            adv = np.where(mask, adv, junk)
    w = None
    if weights:
        w = np.exp(rng.normal(0.0, draw(st.sampled_from((0.05, 0.3, 1.0))), (B, T)))
        w = np.minimum(w, draw(st.sampled_from((2.0, 5.0, np.inf))))  # truncated IS, or not
        if draw(st.booleans()):  # rejection (verl's IS "mask" mode): some tokens get weight 0
            w = np.where(rng.random((B, T)) < 0.3, 0.0, w)
        for value in draw(st.lists(st.sampled_from((0.0, 1.0, 1e-3, 50.0)), max_size=3)):
            w[draw(st.integers(0, B - 1)), draw(st.integers(0, T - 1))] = value
        w = np.where(mask, w, draw(st.sampled_from((np.nan, np.inf, 0.0, 1.0))))
    return Batch(lp, olp, adv, mask, w)
