"""An independent mpmath implementation of SAPO, for the oracle's own tests.

It shares no code with ``sapo_ref``: every quantity is computed from its
definition at high precision (60 significant digits by default), with exact
rational aggregation weights.  Inputs are float64 values, converted exactly.
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath as mp
import numpy as np

DPS = 60
mp.mp.dps = DPS


def mpf(x) -> mp.mpf:
    return mp.mpf(float(x))


def sigmoid(z):
    return 1 / (1 + mp.exp(-z))


def tau_for(a, tau_pos, tau_neg):
    return mpf(tau_pos) if a > 0 else mpf(tau_neg)


def gate(r, tau):
    """f(r) = (4/tau) sigmoid(tau (r - 1)); r, tau mp numbers."""
    return 4 / tau * sigmoid(tau * (r - 1))


def weight(r, tau):
    """f'(r) = 4 sigmoid(z) sigmoid(-z), each factor evaluated directly."""
    z = tau * (r - 1)
    return 4 * sigmoid(z) * sigmoid(-z)


def log_ratio(lp, olp, clamp=None):
    """Exact lp - olp (as mp), clamped; second value: does the gradient pass."""
    d = mpf(lp) - mpf(olp)
    if clamp is not None:
        c = mpf(clamp)
        if d > c:
            return c, False
        if d < -c:
            return -c, False
    return d, True


def token(lp, olp, a, tau_pos, tau_neg, c=Fraction(1), clamp=None, w=1.0, d=None):
    """Per-token (ratio, gate, token_loss, grad) for finite inputs, c a
    Fraction, w an importance weight multiplying the token's loss.  ``d``,
    an exact (log-ratio, gradient passes) pair, replaces lp - olp (the
    sequence level passes the row's)."""
    d, passes = log_ratio(lp, olp, clamp) if d is None else d
    tau = tau_for(a, tau_pos, tau_neg)
    r = mp.exp(d)
    f = gate(r, tau)
    am = mpf(a) * mpf(w)
    cm = mp.mpf(c.numerator) / c.denominator
    g = -cm * am * weight(r, tau) * r if passes else mp.mpf(0)
    return r, f, -am * f, g


def row_log_ratio(lps, olps, clamp=None):
    """The exact sequence-level log-ratio of one row's unmasked tokens: the
    mean of lp - olp, then the clamp; and whether the gradient passes."""
    s = mp.fsum(mpf(a) - mpf(b) for a, b in zip(lps, olps)) / len(lps)
    if clamp is not None and abs(s) > mpf(clamp):
        return mp.sign(s) * mpf(clamp), False
    return s, True


def row_mean(values):
    return mp.fsum(mpf(v) for v in values) / len(values)


def row_weights(n_rows, mode, empty_rows="exclude", token_eps=0.0, row_eps=0.0, norm=None,
                global_tokens=None, global_seqs=None):
    """Exact per-row weights c_i (Fractions; None for a NaN weight)."""
    n_rows = [int(n) for n in n_rows]
    B = len(n_rows)
    N = sum(n_rows) if global_tokens is None else global_tokens
    S_local = sum(1 for n in n_rows if n > 0) if empty_rows == "exclude" else B
    S = S_local if global_seqs is None else global_seqs
    if mode == "token-mean":
        D = N + Fraction(token_eps)
        return [Fraction(0) if D == 0 else 1 / D] * B
    if mode == "seq-mean-token-sum":
        return [Fraction(0) if S == 0 else Fraction(1, S)] * B
    if mode == "seq-mean-token-sum-norm":
        return [1 / Fraction(norm)] * B
    out = []
    for n in n_rows:
        if n == 0:
            out.append(None if empty_rows == "nan" else Fraction(0))
        else:
            out.append(1 / (S * (n + Fraction(row_eps))))
    return out


def ulps(got: float, ref) -> float:
    """|got - ref| in units of the float64 spacing at ref (subnormal spacing
    below the normal range); 0 for equal infinities, inf for a mismatch."""
    got = float(got)
    ref_f = float(ref)
    if math.isnan(got) or math.isinf(ref_f) or math.isinf(got):
        return 0.0 if got == ref_f else math.inf
    spacing = float(np.spacing(abs(ref_f))) if ref_f != 0 else 5e-324
    return float(abs(mpf(got) - ref) / spacing)
