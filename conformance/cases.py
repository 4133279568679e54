"""The edge cases of SPEC.md as data: named input batches every candidate
must get right.  The conformance suites pin each as an explicit example;
the expected values always come from the oracle on the candidate's rounded
inputs, never from this table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sapo_ref import DEFAULT_TAU_NEG, DEFAULT_TAU_POS

from .candidate import Batch
from .portable_random import PortableRandom


@dataclass(frozen=True)
class Case:
    id: str
    title: str
    make: Callable[[], Batch]
    tau_pos: float = DEFAULT_TAU_POS
    tau_neg: float = DEFAULT_TAU_NEG
    #: the case needs a candidate that takes this many tokens in one row
    long: bool = False


def _rng(seed=0):
    # the same bits on every machine: these batches are frozen into the golden fixtures
    return PortableRandom(seed)


def _realistic(B=4, T=24, scale=0.1, seed=0, ragged=True) -> Batch:
    rng = _rng(seed)
    olp = -rng.exponential(1.5, (B, T))
    lp = olp + rng.normal(0, scale, (B, T))
    adv = rng.normal(0, 1, B)
    mask = np.ones((B, T), bool)
    if ragged:
        for i, n in enumerate(rng.integers(1, T + 1, B)):
            mask[i, n:] = False
    return Batch(lp, olp, adv, mask)


def _with_deltas(deltas, adv=(1.0, -0.7), seed=1) -> Batch:
    """One column per log-ratio, one row per advantage, plus ordinary tokens."""
    rng = _rng(seed)
    d = np.concatenate([np.asarray(deltas, float), rng.normal(0, 0.2, 6)])
    B, T = len(adv), d.size
    olp = np.broadcast_to(-rng.exponential(1.0, T), (B, T)).copy()
    lp = olp + d
    return Batch(lp, olp, np.asarray(adv, float), np.ones((B, T), bool))


def _zero_log_ratio():
    b = _realistic(seed=2)
    return Batch(b.old_logprob.copy(), b.old_logprob, b.advantages, b.mask)


def _zero_advantage():
    b = _realistic(seed=3)
    adv = b.advantages.copy()
    adv[1] = 0.0
    return Batch(b.logprob, b.old_logprob, adv, b.mask)


def _equal_advantages():
    b = _realistic(seed=4)
    return Batch(b.logprob, b.old_logprob, np.full(b.shape[0], 0.7), b.mask)


def _separated():
    b = _realistic(B=6, T=20, scale=0.4, seed=5)
    adv = np.array([1.0, -1.0, 0.5, -0.5, 2.0, 0.0])
    return Batch(b.logprob, b.old_logprob, adv, b.mask)


def _infinite_log_ratios():
    b = _with_deltas([0.0, 0.3], seed=6)
    lp, olp = b.logprob.copy(), b.old_logprob.copy()
    lp[:, 0] = -np.inf  # r = 0
    olp[:, 1] = -np.inf  # r = inf
    return Batch(lp, olp, b.advantages, b.mask)


def _masked_garbage():
    b = _realistic(seed=7)
    lp, olp = b.logprob.copy(), b.old_logprob.copy()
    adv = np.repeat(b.advantages[:, None], b.shape[1], axis=1)
    pad = ~b.mask
    for arr, junk in ((lp, np.nan), (olp, np.inf), (adv, np.nan)):
        arr[pad] = junk
    lp[pad & (np.arange(b.shape[1]) % 2 == 0)] = -np.inf
    return Batch(lp, olp, adv, b.mask)


def _empty_row():
    b = _realistic(seed=8)
    mask = b.mask.copy()
    mask[2] = False
    return Batch(b.logprob, b.old_logprob, b.advantages, mask)


def _single_token_rows():
    b = _realistic(seed=9)
    mask = np.zeros(b.shape, bool)
    mask[:, 0] = True
    mask[0, :5] = True
    return Batch(b.logprob, b.old_logprob, b.advantages, mask)


def _all_masked():
    b = _realistic(seed=10)
    lp = b.logprob.copy()
    lp[0, 0] = np.nan
    return Batch(lp, b.old_logprob, b.advantages, np.zeros(b.shape, bool))


def _single_element():
    return Batch(np.array([[-0.9]]), np.array([[-1.2]]), np.array([0.8]), np.ones((1, 1), bool))


def _square_batch():
    return _realistic(B=5, T=5, scale=0.3, seed=11, ragged=False)


def _per_token_advantages():
    b = _realistic(seed=12)
    rng = _rng(12)
    return Batch(b.logprob, b.old_logprob, rng.normal(0, 1, b.shape), b.mask)


def _nan_unmasked():
    b = _realistic(seed=13)
    lp = b.logprob.copy()
    lp[1, 0] = np.nan
    return Batch(lp, b.old_logprob, b.advantages, b.mask)


def _heavy_tails():
    rng = _rng(14)
    B, T = 4, 32
    olp = -rng.exponential(2.0, (B, T))
    lp = olp + rng.standard_t(2, (B, T)) * 0.5
    return Batch(lp, olp, rng.normal(0, 1, B), rng.random((B, T)) < 0.85)


def _gate_knee():
    """Log-ratios where the gate is steep (z from about 1 to 50): every
    gradient is small, so each is held to its own accuracy, and forming
    1 - sigmoid(z) in float32 shows."""
    rng = _rng(16)
    B, T = 3, 40
    olp = -rng.exponential(1.0, (B, T))
    d = np.linspace(0.7, 4.0, T)[None, :] + rng.normal(0, 0.01, (B, T))
    return Batch(olp + d, olp, np.array([1.0, -0.8, 0.5]), np.ones((B, T), bool))


def _long_row():
    rng = _rng(15)
    T = 32768
    olp = -rng.exponential(1.0, (1, T))
    return Batch(olp + rng.normal(0, 0.1, (1, T)), olp, np.array([0.9]), np.ones((1, T), bool))


CASES: tuple[Case, ...] = (
    Case("realistic", "ratios near 1, ragged mask, mixed-sign advantages", _realistic),
    Case("log-ratio-zero", "log-ratio exactly 0 everywhere (r = 1)", _zero_log_ratio),
    Case("zero-advantage", "a row with advantage exactly 0", _zero_advantage),
    Case("equal-advantages", "all advantages equal (a zero-variance group)", _equal_advantages),
    Case("temperatures-0.5-4", "well-separated temperatures 0.5 / 4", _separated, 0.5, 4.0),
    Case("temperatures-0.1-20", "well-separated temperatures 0.1 / 20", _separated, 0.1, 20.0),
    Case("temperatures-equal", "tau_pos == tau_neg", _separated, 2.0, 2.0),
    Case("exp-overflow", "log-ratios +-11.1, +-88.8, +-709.8, +-1000 (fp16/fp32/fp64 exp overflow)",
         lambda: _with_deltas([11.1, -11.1, 88.8, -88.8, 709.8, -709.8, 1000.0, -1000.0])),
    Case("log-ratio-infinite", "log-ratios -inf (logprob = -inf) and +inf (old_logprob = -inf)", _infinite_log_ratios),
    Case("masked-nonfinite", "NaN and +-inf in every input at masked positions", _masked_garbage),
    Case("empty-row", "a row with no unmasked token", _empty_row),
    Case("single-token-rows", "rows of length 1", _single_token_rows),
    Case("all-masked", "every token masked", _all_masked),
    Case("single-element", "B = 1, T = 1", _single_element),
    Case("square-batch", "B == T with per-row advantages (the (B,) broadcasting trap)", _square_batch),
    Case("per-token-advantages", "advantages of shape (B, T)", _per_token_advantages),
    Case("nan-unmasked", "NaN log-prob at an unmasked position (the loss is NaN)", _nan_unmasked),
    Case("heavy-tails", "log-ratios with Student-t tails", _heavy_tails),
    Case("gate-knee", "every log-ratio on the gate's steep knee (z from 1 to 50)", _gate_knee),
    Case("long-row", "T = 32768", _long_row, long=True),
)

CASES_BY_ID = {c.id: c for c in CASES}
