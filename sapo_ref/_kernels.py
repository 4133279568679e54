"""The gate, its derivative and the per-token loss terms, evaluated accurately.

Two evaluation paths share one definition (SPEC.md, "Formulas"):

* the *fast* path, plain float64 on whole arrays, used where it is
  accurate: -1/2 <= log-ratio <= 1 and |z| <= Z_FAST, z = tau * (r - 1).
  There f = (2/tau) * (1 + tanh(z/2)) and f'(r) = 1 - tanh(z/2)**2 lose
  nothing to cancellation (SPEC.md, "Accuracy").  Real batches (ratios near
  1) fall almost entirely in this region.
* the *precise* path, double-double with separate binary exponents
  (:mod:`sapo_ref._dd`), for every other element -- and for every element
  when a bit-reproducible result is asked for: it uses IEEE basic
  operations only, never libm, so its bits are the same on every machine.  It is needed because
  the gate and its gradient are ill-conditioned in z: exp(-z) with z near 700
  needs z to 1e-16 *absolute*, i.e. exp(logratio) to about 2**-64 relative.
  Outputs are rounded once, at the end, so they are correct to about 0.5 ulp
  even when they are subnormal or when a factor alone would overflow.

Limits (exact in float64): f -> 4/tau and f'(r) * r -> 0 as r -> inf;
f -> (4/tau) * sigmoid(-tau) and f'(r) * r -> 0 as r -> 0.
"""

from __future__ import annotations

import numpy as np

from . import _dd

#: |z| bound of the fast path.
Z_FAST = 0.5
#: log-ratio interval of the fast path: there |expm1| / (1 + expm1) <= 0.65,
#: so forming r = 1 + expm1 at most doubles expm1's relative error.
D_FAST = (-0.5, 1.0)
#: log-ratios below this give r = exp(logratio) so small that r times any
#: finite advantage and weight underflows: f'(r) * r * |A * c| < 2**-1075.
D_NEG = -1500.0
#: exp(-|z|) with |z| beyond this times any finite factor the oracle meets
#: underflows to 0, so it is taken as exactly 0.
Z_ZERO = 2300.0
#: z - logratio beyond this makes f'(r) * r * |A * c| < 2**-1075.
Z_SAT_MARGIN = 1500.0


def select_tau(adv: np.ndarray, tau_pos: float, tau_neg: float) -> np.ndarray:
    """tau_pos where the advantage is > 0, else tau_neg (A == 0 -> tau_neg)."""
    return np.where(adv > 0, tau_pos, tau_neg)


# ---------------------------------------------------------------------------
# fast path
# ---------------------------------------------------------------------------


def fast_from_logratio(d, d_lo, tau, *, em, r, h, gate):
    """Ratio, gate and f'(r)*r from the log-ratio ``d + d_lo``, written into
    the given float64 buffers (``em`` is scratch; ``d`` and ``d_lo`` are read
    only).  Accurate where D_FAST[0] <= d <= D_FAST[1] and |z| <= Z_FAST;
    finite elsewhere as long as ``|d| <= 2`` and ``|d_lo| <= 1``.  Returns a
    boolean array marking |z| > Z_FAST (NaN included).
    """
    np.expm1(d, out=em)
    np.add(em, 1.0, out=r)
    r *= d_lo
    em += r  # expm1(d + d_lo) to first order; |d_lo| <= ulp(d)/2
    np.add(em, 1.0, out=r)
    np.multiply(em, tau, out=h)  # z
    steep = np.abs(h) > Z_FAST
    h *= 0.5
    np.tanh(h, out=h)  # t = tanh(z/2)
    np.add(h, 1.0, out=gate)
    gate /= 0.5 * tau  # f = (2/tau) (1 + tanh(z/2))
    # f'(r) r = (1 - t**2) r, as 1 + (expm1 - t**2 r): one rounding fewer
    # than forming 1 - t**2 first.
    h *= h
    h *= r
    np.subtract(em, h, out=h)
    h += 1.0
    return steep


def fast_from_ratio(r, tau):
    """Gate and f'(r) from the ratio itself (float64); see :func:`fast_ok_ratio`."""
    z = (r - 1.0) * tau  # r - 1 is exact for r in [0.5, 2]
    t = np.tanh(0.5 * z)
    gate = (t + 1.0) / (0.5 * tau)
    weight = 1.0 - t * t
    return gate, weight, z


def fast_ok_ratio(r, z):
    return (r >= 0.5) & (r <= 2.0) & (np.abs(z) <= Z_FAST)


# ---------------------------------------------------------------------------
# precise path (subsets of elements; every input finite unless stated)
# ---------------------------------------------------------------------------


def _gate_from_z(zh, zl, tau, sat):
    """Gate f and f'(r) as scaled dds, from z = zh + zl.

    ``sat`` marks elements whose z is +inf or so large that exp(-z) is 0 for
    every use; their zh/zl are ignored.
    """
    neg = (zh < 0) & ~sat
    azh = np.where(neg, -zh, zh)
    azl = np.where(neg, -zl, zl)
    zero = sat | (azh > Z_ZERO)
    xh = np.where(zero, 0.0, -azh)
    xl = np.where(zero, 0.0, -azl)
    eh, el, ke = _dd.exp_scaled(xh, xl)  # E = exp(-|z|) <= 1
    eh = np.where(zero, 0.0, eh)
    el = np.where(zero, 0.0, el)
    ke = np.where(zero, 0, ke)
    qh, ql = _dd.add_d(np.ldexp(eh, ke), np.ldexp(el, ke), 1.0)  # Q = 1 + E
    tqh, tql = _dd.mul_d(qh, ql, tau)
    # sigmoid(z) = 1/Q for z >= 0 and E/Q for z < 0; f = (4/tau) sigmoid(z)
    numh = np.where(neg, 4.0 * eh, 4.0)
    numl = np.where(neg, 4.0 * el, 0.0)
    fh, fl = _dd.div(numh, numl, tqh, tql)
    kf = np.where(neg, ke, 0)
    # f'(r) = 4 sigmoid(z) sigmoid(-z) = 4E / Q**2
    q2h, q2l = _dd.mul(qh, ql, qh, ql)
    wh, wl = _dd.div(4.0 * eh, 4.0 * el, q2h, q2l)
    return (fh, fl, kf), (wh, wl, ke)


def precise_gate_from_ratio(r, tau):
    """Gate and f'(r) for ratios ``r >= 0`` (``inf`` allowed), as float64."""
    zf = (r - 1.0) * tau
    sat = ~(zf <= Z_ZERO)  # includes r == inf
    rs = np.where(sat, 1.0, r)
    ph, pl = _dd.two_prod(rs, tau)
    zh, zl = _dd.add_d(ph, pl, -tau)  # z = tau*r - tau, exact to ~2**-106
    (fh, fl, kf), (wh, wl, kw) = _gate_from_z(zh, zl, tau, sat)
    return _dd.to_float(fh, fl, kf), _dd.to_float(wh, wl, kw)


def precise_from_logratio(dh, dl, tau, adv, ch, cl, weight=None):
    """All per-token outputs for log-ratios ``dh + dl`` (``+-inf`` allowed).

    ``adv`` (and ``weight``, an importance weight multiplying the token's
    loss, if given) must be finite; ``ch + cl`` is the token's aggregation
    weight.
    Returns float64 arrays: ratio, gate, token_loss (-A f), grad (-c A f'(r) r)
    and weighted (-c A f, the token's share of the loss), each rounded once.
    """
    low = ~(dh >= D_NEG)  # includes -inf
    # R = exp(logratio), scaled; 0 below D_NEG.  For the ratio output only,
    # saturated elements still need R (it may be finite): clip the argument.
    big = dh > _dd.EXP_ARG_LIMIT
    xh = np.clip(dh, D_NEG, _dd.EXP_ARG_LIMIT)
    xl = np.where(low | big, 0.0, dl)
    rh, rl, kr = _dd.exp_scaled(xh, xl)
    # z to a few ulp (inf where R overflows), only to decide saturation
    zf = (np.ldexp(rh, kr) - 1.0) * tau
    sat = (dh > 700.0) | ((dh > 0) & (zf > dh + Z_SAT_MARGIN))  # includes +inf
    rh = np.where(low, 0.0, rh)
    rl = np.where(low, 0.0, rl)
    kr = np.where(low, 0, kr)
    ratio = np.where(big, np.inf, _dd.to_float(rh, rl, kr))
    # z = tau * (R - 1): R unscaled is at most exp(~22) where not saturated.
    mid = ~(low | sat)
    kr_mid = np.where(mid, kr, 0)
    mh, ml = _dd.add_d(np.ldexp(np.where(mid, rh, 0.0), kr_mid), np.ldexp(np.where(mid, rl, 0.0), kr_mid), -1.0)
    zh, zl = _dd.mul_d(mh, ml, tau)  # low: R = 0 so z = -tau exactly
    (fh, fl, kf), (wh, wl, kw) = _gate_from_z(zh, zl, tau, sat)
    gate = _dd.to_float(fh, fl, kf)
    # scale-free factors: A = am * 2**ka, c = cm * 2**kc
    am, _, ka = _dd.normalise(adv)
    if weight is not None:  # A w as an exact double-double, scaled
        wm, _, kw_ = _dd.normalise(weight)
        amh, aml = _dd.two_prod(am, wm)
        ka = ka + kw_
    else:
        amh, aml = am, np.zeros_like(am)
    cm, kc = np.frexp(ch)
    cml = np.ldexp(cl, -kc)
    kc = kc.astype(np.int64)
    # token loss -A f and its weighted share -c A f
    lh, ll = _dd.mul(fh, fl, -amh, -aml)
    token_loss = _dd.to_float(lh, ll, kf + ka)
    xh2, xl2 = _dd.mul(lh, ll, cm, cml)
    weighted = _dd.to_float(xh2, xl2, kf + ka + kc)
    # gradient -c A f'(r) r (0 when R = 0 or the gate is saturated)
    hh, hl = _dd.mul(wh, wl, rh, rl)
    hh, hl = _dd.mul(hh, hl, -amh, -aml)
    hh, hl = _dd.mul(hh, hl, cm, cml)
    grad = _dd.to_float(hh, hl, kw + kr + ka + kc)
    grad = np.where(sat | low, 0.0, grad)
    return ratio, gate, token_loss, grad, weighted
