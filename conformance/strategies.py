"""Hypothesis strategies for SAPO inputs.

The bulk of each batch looks like real training data -- log-ratios drawn
from a normal distribution of scale 0.05 to 0.3 around 0 (numpy, from a drawn
seed), or, in one batch in five, all on the steep knee of the gate of the
temperatures drawn for it -- and hypothesis injects what breaks kernels at
drawn positions: heavy tails, the exp-overflow thresholds of
fp16/fp32/fp64, +-inf log-ratios, NaN/inf in masked padding, exact-zero and
zero-variance advantages, ragged and empty rows.  Shrinking minimises the
shape, the injections and the seed, so a counterexample is small.

Every input dimension reaches the whole range SPEC.md accepts, in every
profile (``DOMAIN`` says how far; tests/harness/test_strategies.py finds a
batch in each region): temperatures log-uniform over [1e-6, 1e6], each
with batches on its own knee; |A| over ``advantage_range``; rows up to 32768 tokens, and B == T; global
counts up to 1000x the local ones; importance weights at 0, tiny and large.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from .candidate import Batch

#: log-ratios where kernels break: fp16/fp32/fp64 exp overflow and beyond
EXTREME_LOG_RATIOS = (11.1, -11.1, 88.8, -88.8, 709.8, -709.8, 1000.0, -1000.0, np.inf, -np.inf)
#: temperature pairs (tau_pos, tau_neg): the paper's, well-separated both
#: ways (default temperatures barely expose a swapped branch), equal, extreme
TAU_PAIRS = ((1.0, 1.05), (0.5, 4.0), (0.1, 20.0), (4.0, 0.5), (2.0, 2.0), (0.05, 50.0))
SCALES = (0.05, 0.1, 0.2, 0.3)


@dataclass(frozen=True)
class Domain:
    """How far the strategies reach in each dimension (SPEC.md §9 accepts the
    temperatures; the rest is what the checks certify, SPEC.md §10.3)."""

    tau: tuple[float, float] = (1e-6, 1e6)
    #: the longest row
    max_tokens: int = 32768
    #: global counts up to this multiple of the local ones
    max_global_factor: float = 1000.0
    #: the largest |A|, as a fraction of float32's (float64's for float64)
    #: range: the loss's terms, 4/tau_min * r * w * |A| summed over 32768
    #: tokens, stay finite in the accumulation dtype; the smallest, the
    #: smallest normal value over it (``advantage_range``)
    advantage_headroom: float = 1e-14
    #: weights injected at their limits (a large one capped at half the dtype's range)
    weight_limits: tuple[float, ...] = (0.0, 1.0, 1e-3, 50.0, 1e-30, 1e6)


DOMAIN = Domain()


def advantage_range(dtype: str = "float64") -> tuple[float, float]:
    """|A| drawn from ``Domain.advantage_headroom``'s inverse times the
    accumulation dtype's smallest normal value (at least the input dtype's)
    to the top of what its sums can hold; float16 stops at half its largest
    finite value.  Smaller advantages are accepted but not certified:
    flush-to-zero platforms (XLA on CPU, GPU kernels built with -ftz) flush
    a subnormal A -- which picks tau_neg instead of tau_pos -- or an
    intermediate like c A before f'(r) r (up to ~1e8 on a small
    temperature's knee) scales it back up (SPEC.md 10.3)."""
    info = np.finfo(_NP_DTYPES.get(dtype, np.float32))
    acc = np.finfo(np.float64 if dtype == "float64" else np.float32)
    bottom = max(float(info.tiny), float(acc.tiny) / DOMAIN.advantage_headroom)
    top = min(float(acc.max) * DOMAIN.advantage_headroom, float(info.max) / 2)
    return bottom, top


_NP_DTYPES = {"float64": np.float64, "float32": np.float32, "float16": np.float16}  # bfloat16: float32's range


def _log_uniform(lo: float, hi: float):
    return st.floats(math.log(lo), math.log(hi)).map(lambda x: min(max(math.exp(x), lo), hi))

_INJECTIONS = st.one_of(
    st.tuples(st.just("tail"), st.floats(-25.0, 25.0, allow_nan=False)),
    st.tuples(st.just("extreme"), st.sampled_from(EXTREME_LOG_RATIOS)),
    st.tuples(st.just("near-one"), st.floats(-1e-6, 1e-6, allow_nan=False)),
    st.tuples(st.just("knee"), st.floats(1.0, 8.0, allow_nan=False)),  # the gate's knee: z of 5 to 50
)


def tau_pairs(requires_order: bool = False):
    """A third of the pairs from ``TAU_PAIRS``, a third around the paper's
    (0.05 to 50), a third log-uniform over the whole accepted range, each
    temperature on its own."""
    pairs = tuple(p for p in TAU_PAIRS if not requires_order or p[1] >= p[0])
    lo, hi = DOMAIN.tau  # hypothesis's floats favour no decade evenly: the far ends are named outright too
    wide = st.one_of(st.sampled_from((lo, lo * 100, hi / 100, hi)), _log_uniform(lo, hi))
    drawn = st.one_of(st.tuples(st.floats(0.05, 50.0), st.floats(0.05, 50.0)), st.tuples(wide, wide))
    if requires_order:
        drawn = drawn.map(lambda p: (min(p), max(p)))
    return st.one_of(st.sampled_from(pairs), drawn)


def _knee(rng, tau: np.ndarray, positive: bool) -> np.ndarray:
    """Log-ratios on the knee of each token's gate: z = tau (r - 1) with |z|
    log-uniform over [1, 50], where the gate is nearly saturated while its
    gradient is still far from 0.  Below r = 1, |z| < tau: temperatures up
    to ~1 have no negative knee and get r = 1/10 there instead."""
    z = np.exp(rng.uniform(0.0, math.log(50.0), tau.shape))
    if positive:
        return np.log1p(z / tau)
    return np.log1p(-np.minimum(z, 0.9 * tau) / tau)


@st.composite
def batches(draw, max_rows: int = 6, max_cols: int = 48, per_token_advantages: bool = False,
            extremes: bool = True, weights: bool = False, taus: tuple[float, float] = (1.0, 1.05),
            dtype: str = "float64") -> Batch:
    """A batch as above, for the temperatures ``taus`` (whose knees it may
    put every token on) and the input ``dtype`` (which bounds |A| and the
    weights).  One batch in eight is a few long rows (up to 32768 tokens,
    empty rows among them), one in eight has B == T; the rest are up to
    ``max_rows`` x ``max_cols``.  ``per_token_advantages`` allows (B, T)
    advantages; ``weights`` adds (B, T) rollout importance weights: mostly
    near 1 (a truncated importance ratio), with exact 0s and 1s, values at
    their limits, and junk in the padding."""
    shape = draw(st.integers(0, 7))  # shrinks towards the ordinary shapes
    if shape == 6:  # chunked kernels' row limits
        # (hypothesis favours small integers: the far end is named outright too)
        B = draw(st.integers(1, 3))
        T = draw(st.one_of(st.sampled_from((DOMAIN.max_tokens // 2 + 1, DOMAIN.max_tokens)),
                           st.integers(max_cols + 1, DOMAIN.max_tokens)))
    elif shape == 7:  # (B,) advantages broadcast against the token axis run without error
        B = T = draw(st.integers(2, max(max_rows, 8)))
    else:
        B, T = draw(st.integers(1, max_rows)), draw(st.integers(1, max_cols))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from(SCALES))
    rng = np.random.default_rng(seed)
    olp = -rng.exponential(1.5, (B, T))

    kind = draw(st.sampled_from(("normal", "zero-variance", "with-zeros")))
    if kind == "zero-variance":
        adv = np.full(B, draw(st.sampled_from((0.0, 1.0, -0.5))))
    else:
        adv = rng.normal(0.0, 1.0, B)
        if kind == "with-zeros":
            adv[draw(st.integers(0, B - 1))] = 0.0
    if per_token_advantages and draw(st.booleans()):
        adv = adv[:, None] + rng.normal(0.0, 0.1, (B, T))
    if draw(st.integers(0, 3)) == 0:  # |A| anywhere in advantage_range, tiny to huge
        lo, hi = advantage_range(dtype)
        scaled = adv * draw(st.one_of(st.sampled_from((lo, hi)), _log_uniform(lo, hi)))
        adv = np.where(adv == 0, 0.0, np.copysign(np.clip(np.abs(scaled), lo, hi), adv))  # zeros stay exact

    if draw(st.integers(0, 4)) == 0:
        # every token on its gate's knee: no token near r = 1 dominates the
        # gradient, so each is held to its own accuracy
        a = np.broadcast_to(adv.reshape(B, -1), (B, T))
        d = _knee(rng, np.where(a > 0, taus[0], taus[1]), draw(st.booleans()))
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

    lengths = draw(st.lists(st.one_of(st.just(T), st.integers(0, T)), min_size=B, max_size=B))
    mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
    for i, t in draw(st.lists(st.tuples(st.integers(0, B - 1), st.integers(0, T - 1)), max_size=3)):
        mask[i, t] = not mask[i, t]  # holes inside rows, tokens after them

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
        top = advantage_range(dtype)[1] if dtype == "float16" else math.inf
        for value in draw(st.lists(st.sampled_from(DOMAIN.weight_limits), max_size=3)):
            w[draw(st.integers(0, B - 1)), draw(st.integers(0, T - 1))] = min(value, top)
        w = np.where(mask, w, draw(st.sampled_from((np.nan, np.inf, 0.0, 1.0))))
    return Batch(lp, olp, adv, mask, w)


@st.composite
def random_inputs(draw, *, max_rows: int, max_cols: int, dtype: str, advantage_shapes=("B",),
                  weights: bool = False, requires_tau_order: bool = False, global_counts: bool = False):
    """What the random check sends: (taus, batch, advantage layout, global
    counts as keyword arguments -- up to 1000x the local ones, when the
    candidate takes them)."""
    taus = draw(tau_pairs(requires_tau_order))
    batch = draw(batches(max_rows, max_cols, per_token_advantages="BT" in advantage_shapes, weights=weights,
                         taus=taus, dtype=dtype))
    layout = draw(st.sampled_from(advantage_shapes))
    counts = {}
    if global_counts and draw(st.booleans()):
        factor = draw(_log_uniform(1.0, DOMAIN.max_global_factor))
        counts = {"global_token_count": math.ceil(max(int(batch.mask.sum()), 1) * factor),
                  "global_seq_count": math.ceil(batch.shape[0] * factor)}
    return taus, batch, layout, counts
