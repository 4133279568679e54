"""Aggregation weights: the loss is sum over tokens of c[i] * token_loss[i, t].

Every mode is a per-row weight c[i] (SPEC.md, "Aggregation").  The weights are
computed as exact rationals and rounded once, to a double-double, so the
oracle's error does not depend on how awkward the denominators are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from . import _dd


@dataclass(frozen=True)
class Denominators:
    """The counts behind the weights, as reported in results."""

    tokens: int  # N: unmasked tokens used by token-mean (global if given)
    sequences: int  # S: rows counted by the seq-mean modes (global if given)
    token_sum_norm: float  # normaliser of seq-mean-token-sum-norm


def _dd_of(value: Fraction) -> tuple[float, float]:
    hi = float(value)
    return hi, float(value - Fraction(hi))


def row_weights(n_rows: np.ndarray, sem, global_tokens, global_seqs):
    """Per-row weights and the denominators behind them.

    Returns ``(c_hi, c_lo, denom, denominators)``: ``c_hi + c_lo`` is the
    exact weight 1/D of each row to about 2**-106, and ``denom`` holds D
    itself as float64 when every D is exactly representable (then A / D is
    correctly rounded), else None.  Rows with no token get weight 0 (D = inf),
    except in ``empty_rows="nan"`` mode for ``seq-mean-token-mean``, where
    their per-row mean is 0/0 and the weight NaN.
    """
    B = n_rows.shape[0]
    nonempty = n_rows > 0
    n_tok = int(n_rows.sum())
    n_seq_local = int(nonempty.sum()) if sem.empty_rows == "exclude" else B
    N = n_tok if global_tokens is None else global_tokens
    S = n_seq_local if global_seqs is None else global_seqs
    mode = sem.loss_agg_mode
    eps = sem.token_count_eps if mode == "token-mean" else sem.row_count_eps if mode == "seq-mean-token-mean" else 0
    counts_exact = max(N, S) * max(int(n_rows.max(initial=0)), 1) < 2**53
    if eps == 0 and counts_exact:
        # integer (or, for the norm, float64) denominators: exact as float64
        if mode == "token-mean":
            D = np.full(B, float(N))
        elif mode == "seq-mean-token-sum":
            D = np.full(B, float(S))
        elif mode == "seq-mean-token-sum-norm":
            D = np.full(B, float(sem.token_sum_norm))
        else:
            D = float(S) * n_rows.astype(np.float64)
        zero = D == 0
        Ds = np.where(zero, 1.0, D)
        hi = 1.0 / Ds  # correctly rounded; its residual by TwoProd
        p, e = _dd.two_prod(hi, Ds)
        lo = ((1.0 - p) - e) / Ds
        hi, lo = np.where(zero, 0.0, hi), np.where(zero, 0.0, lo)
        denom = np.where(zero, math.inf, D)
    else:  # an epsilon in the count: exact rationals, rounded once
        if mode == "token-mean":
            rows = [N + Fraction(eps)] * B
        else:
            rows = [S * (int(n) + Fraction(eps)) if n else Fraction(0) for n in n_rows]
        table = {d: (0.0, 0.0) if d == 0 else _dd_of(1 / d) for d in set(rows)}
        hi = np.array([table[d][0] for d in rows], dtype=np.float64).reshape(B)
        lo = np.array([table[d][1] for d in rows], dtype=np.float64).reshape(B)
        denom = None
    if mode == "seq-mean-token-mean" and sem.empty_rows == "nan":
        hi = np.where(nonempty, hi, np.nan)
        lo = np.where(nonempty, lo, np.nan)
        if denom is not None:
            denom = np.where(nonempty, denom, np.nan)
    return hi, lo, denom, Denominators(tokens=N, sequences=S, token_sum_norm=sem.token_sum_norm)
