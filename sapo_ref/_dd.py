"""Vectorised double-double arithmetic for the oracle's precise path.

A double-double ("dd") is an unevaluated sum ``hi + lo`` of two float64 arrays
with ``|lo| <= ulp(hi) / 2``; it carries about 106 significant bits.  A *scaled*
dd is a triple ``(hi, lo, k)`` meaning ``(hi + lo) * 2**k`` with ``k`` an int64
array, so that products of very large and very small factors neither overflow
nor underflow before the single rounding at the end (:func:`to_float`).

The algorithms are the classical error-free transformations (Knuth's TwoSum,
Dekker's split and product) and the double-double operations built from them.
Numpy has no fused multiply-add, so products are made exact by splitting.
Every function is elementwise and assumes finite inputs of moderate size; the
callers in :mod:`sapo_ref._kernels` guarantee that.

Everything here is built from IEEE-754 basic operations (+, -, *, /, and the
exact ``frexp``/``ldexp``/``rint``), with constants computed in Python's
``decimal`` module: no libm or SIMD-dispatched transcendental is involved, so
every result is bit-identical on every CPU, OS and NumPy version.
"""

from __future__ import annotations

import math
from decimal import Decimal, localcontext
from fractions import Fraction

import numpy as np

_SPLITTER = 134217729.0  # 2**27 + 1


def two_sum(a, b):
    """``s + e == a + b`` exactly, with ``s = fl(a + b)``."""
    s = a + b
    v = s - a
    e = (a - (s - v)) + (b - v)
    return s, e


def quick_two_sum(a, b):
    """Like :func:`two_sum`, valid when ``|a| >= |b|`` (or ``a == 0``)."""
    s = a + b
    e = b - (s - a)
    return s, e


def split(a):
    """``hi + lo == a`` with ``hi`` holding the top 26 bits (|a| < 2**995)."""
    t = _SPLITTER * a
    hi = t - (t - a)
    return hi, a - hi


def two_prod(a, b):
    """``p + e == a * b`` exactly, with ``p = fl(a * b)``."""
    p = a * b
    ah, al = split(a)
    bh, bl = split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def add(ah, al, bh, bl):
    """dd + dd (the accurate variant: relative error about 2**-104)."""
    s, e = two_sum(ah, bh)
    t, f = two_sum(al, bl)
    e = e + t
    s, e = quick_two_sum(s, e)
    e = e + f
    return quick_two_sum(s, e)


def add_d(ah, al, b):
    """dd + float64."""
    s, e = two_sum(ah, b)
    e = e + al
    return quick_two_sum(s, e)


def mul(ah, al, bh, bl):
    """dd * dd."""
    p, e = two_prod(ah, bh)
    e = e + (ah * bl + al * bh)
    return quick_two_sum(p, e)


def mul_d(ah, al, b):
    """dd * float64."""
    p, e = two_prod(ah, b)
    e = e + al * b
    return quick_two_sum(p, e)


def div(ah, al, bh, bl):
    """dd / dd, by two correction steps of long division."""
    q1 = ah / bh
    ph, pl = mul_d(bh, bl, q1)
    rh, rl = add(ah, al, -ph, -pl)
    q2 = rh / bh
    ph, pl = mul_d(bh, bl, q2)
    rh, rl = add(rh, rl, -ph, -pl)
    q3 = rh / bh
    q1, q2 = quick_two_sum(q1, q2)
    return add_d(q1, q2, q3)


# --------------------------------------------------------------------------
# exp in double-double, scaled by a power of two
# --------------------------------------------------------------------------


def _decimal_split(value: Decimal) -> tuple[float, float]:
    hi = float(value)
    lo = float(value - Decimal(hi))
    return hi, lo


def _exp_constants():
    """ln2/64 in three parts, 64/ln2, and the table 2**(j/64), from 60-digit
    decimals (never from libm: its last bit differs between machines).

    ``LN2_64[0]`` keeps 32 significant bits so that ``n * LN2_64[0]`` is exact
    for the |n| < 2**21 that :func:`exp_scaled` meets.
    """
    with localcontext() as ctx:
        ctx.prec = 60
        step = Decimal(2).ln() / 64
        mant, expo = math.frexp(float(step))
        l1 = math.ldexp(math.floor(math.ldexp(mant, 32)), expo - 32)
        rest = step - Decimal(l1)
        l2 = float(rest)
        l3 = float(rest - Decimal(l2))
        table = [_decimal_split(Decimal(2) ** (Decimal(j) / 64)) for j in range(64)]
        inverse = float(64 / Decimal(2).ln())
    hi = np.array([t[0] for t in table])
    lo = np.array([t[1] for t in table])
    return (l1, l2, l3), inverse, hi, lo


LN2_64, _INV_LN2_64, _TABLE_HI, _TABLE_LO = _exp_constants()
# Taylor coefficients 1/k! for k = 3..8 (|r| <= ln2/128 makes the k = 9 term < 2**-85).
_C = (1.0 / 6, 1.0 / 24, 1.0 / 120, 1.0 / 720, 1.0 / 5040, 1.0 / 40320)

#: |x| beyond which :func:`exp_scaled` is not used (its range reduction needs |n| < 2**21).
EXP_ARG_LIMIT = 4096.0


def exp_scaled(xh, xl):
    """``exp(xh + xl)`` as a scaled dd ``(mh, ml, k)`` with ``mh`` in [0.99, 2).

    Valid for finite ``|xh| <= EXP_ARG_LIMIT``; relative error below 2**-74
    (tests/oracle/test_dd.py measures it), far more than the oracle needs:
    its worst use, exp(-z) with z near 1500, needs about 2**-64.
    Method: x = n*ln2/64 + r with |r| <= ln2/128 (the reduction exact in dd),
    exp(r) = 1 + r + r**2/2 + c(r), with r**2/2 exact and the cubic and higher
    terms c(r) in float64, which is enough at their size; times the tabulated
    2**(j/64), j = n mod 64.
    """
    l1, l2, l3 = LN2_64
    n = np.rint(xh * _INV_LN2_64)
    t1 = xh - n * l1  # exact: n*l1 is exact and close to xh
    p2, e2 = two_prod(n, l2)
    rh, re = two_sum(t1, -p2)
    rl = ((re - e2) - n * l3) + xl
    rh, rl = quick_two_sum(rh, rl)
    sq, sqe = two_prod(rh, rh)
    c = sq * rh * (_C[0] + rh * (_C[1] + rh * (_C[2] + rh * (_C[3] + rh * (_C[4] + rh * _C[5])))))
    # exp(r) - 1 = r + r**2/2 + c(r); to first order rl adds rl * (1 + rh).
    sh, sl = add(rh, rl + rh * rl, 0.5 * sq, 0.5 * sqe + c)
    eh, el = add_d(sh, sl, 1.0)
    ni = n.astype(np.int64)
    j = ni & 63
    mh, ml = mul(_TABLE_HI[j], _TABLE_LO[j], eh, el)
    return mh, ml, (ni - j) >> 6


def to_float(h, l, k=None):
    """Round a (scaled) dd to the nearest float64 (one rounding; subnormal
    and overflowing results are rounded by ``ldexp``)."""
    v = h + l
    if k is None:
        return v
    return np.ldexp(v, k)


def normalise(x):
    """A float64 array as a scaled value ``(m, 0, k)`` with ``m`` in [0.5, 1)."""
    m, k = np.frexp(x)
    return m, np.zeros_like(m), k.astype(np.int64)


# --------------------------------------------------------------------------
# summation
# --------------------------------------------------------------------------


def fsum(x, scratch=None, overwrite=False, bound=None) -> float:
    """Sum of a float64 array, correct to within 1 ulp of the exact sum.

    One extraction step of Rump, Ogita and Oishi's AccSum: with
    sigma = 2**(M + e) >= (n + 2) * max|x|, q = (x + sigma) - sigma holds the
    high bits of each x (all multiples of one power of two, so their sum is
    exact in any order) and p = x - q the rest (exact).  Sum(p) carries an
    error of at most about (log2 n) * n**2 * 2**-106 * max|x|, far below the
    final rounding of Sum(q) + Sum(p) unless the sum cancels to almost
    nothing.  Non-finite input gives the IEEE result of a plain sum; sizes
    where sigma would overflow or the split would underflow use
    :func:`exact_sum`.
    ``scratch``: an array of ``x``'s size to work in, instead of allocating;
    ``overwrite``: ``x`` may be overwritten (it must then be a float64 array);
    ``bound``: a known upper bound on max|x| for finite x, which saves the
    two passes that find it (a loose bound costs accuracy: keep it within a
    small factor).
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0
    if bound is None:
        amax = max(float(v.max()), -float(v.min()))
    else:  # a known bound on max|x| (the caller guarantees x is finite)
        amax = float(bound)
    if not math.isfinite(amax):
        return float(np.sum(v))
    if amax == 0.0:
        return 0.0 if bound is None else float(np.sum(v))
    m_bits = int(v.size + 2).bit_length()
    e = math.frexp(amax)[1]
    if m_bits + e > 1020 or m_bits + e - 53 < -1020:
        return exact_sum(v)
    sigma = math.ldexp(1.0, m_bits + e)
    q = np.empty_like(v) if scratch is None else scratch.reshape(-1)
    np.add(v, sigma, out=q)
    q -= sigma
    p = np.subtract(v, q, out=v if overwrite else None)
    return float(np.sum(q) + np.sum(p))


def exact_sum(x) -> float:
    """The correctly rounded sum of a float64 array, the same in any order and
    on any machine; never raises.

    Non-finite terms give the IEEE result (NaN if any term is NaN or +inf
    meets -inf, else that infinity); a finite exact sum beyond the float64
    range gives the infinity of its sign (a plain float64 sum would say the
    same, where ``math.fsum`` raises OverflowError).
    """
    v = np.asarray(x, dtype=np.float64).ravel()
    finite = np.isfinite(v)
    if not finite.all():
        with np.errstate(invalid="ignore"):
            return float(np.sum(v[~finite]))
    values = v.tolist()
    try:
        return math.fsum(values)
    except OverflowError:  # a partial sum overflowed: exact rationals decide
        total = sum(map(Fraction, values), Fraction(0))
        try:
            return float(total)  # int / int: correctly rounded
        except OverflowError:
            return math.inf if total > 0 else -math.inf
