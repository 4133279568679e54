"""The double-double building blocks, against exact rationals and mpmath."""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath as mp
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from sapo_ref import _dd

F = Fraction
finite = st.floats(-1e100, 1e100, allow_subnormal=False)


def dd_value(h, l, k=0):
    return (F(float(h)) + F(float(l))) * F(2) ** int(k)


def test_ln2_parts():
    with mp.workdps(80):
        exact = mp.log(2) / 64
        parts = sum(mp.mpf(p) for p in _dd.LN2_64)
        assert abs(parts - exact) < mp.mpf(2) ** -140
    mant, _ = math.frexp(_dd.LN2_64[0])
    assert math.ldexp(mant, 32) == int(math.ldexp(mant, 32))  # 32 significant bits


def test_exp_table():
    with mp.workdps(80):
        for j in range(64):
            exact = mp.mpf(2) ** (mp.mpf(j) / 64)
            got = mp.mpf(_dd._TABLE_HI[j]) + mp.mpf(_dd._TABLE_LO[j])
            assert abs(got / exact - 1) < mp.mpf(2) ** -105


@given(a=finite, b=finite)
def test_two_sum_and_two_prod_are_exact(a, b):
    s, e = _dd.two_sum(np.array(a), np.array(b))
    assert F(float(s)) + F(float(e)) == F(a) + F(b)
    if a == 0 or b == 0 or 1e-290 < abs(a * b) < 1e290:  # the error term must not underflow
        p, e = _dd.two_prod(np.array(a), np.array(b))
        assert F(float(p)) + F(float(e)) == F(a) * F(b)


@given(a=st.floats(-1e50, 1e50).filter(lambda x: abs(x) > 1e-50), b=st.floats(-1e50, 1e50).filter(lambda x: abs(x) > 1e-50),
       a2=st.floats(-1, 1), b2=st.floats(-1, 1))
def test_mul_and_div(a, b, a2, b2):
    ah, al = _dd.quick_two_sum(np.array(a), np.array(a * 1e-17 * a2))
    bh, bl = _dd.quick_two_sum(np.array(b), np.array(b * 1e-17 * b2))
    x, y = dd_value(ah, al), dd_value(bh, bl)
    for got, exact in ((_dd.mul(ah, al, bh, bl), x * y), (_dd.div(ah, al, bh, bl), x / y)):
        assert abs(dd_value(*got) / exact - 1) < F(2) ** -100


@given(x=st.one_of(st.floats(-_dd.EXP_ARG_LIMIT, _dd.EXP_ARG_LIMIT), st.floats(-1, 1), st.floats(-1e-3, 1e-3)),
       lo=st.floats(-1, 1))
def test_exp_scaled(x, lo):
    xh, xl = _dd.quick_two_sum(np.array([x]), np.array([x * lo * 2.0**-54]))
    mh, ml, k = _dd.exp_scaled(xh, xl)
    assert 0.99 < mh[0] < 2
    with mp.workdps(80):
        exact = mp.exp(mp.mpf(float(xh[0])) + mp.mpf(float(xl[0])))
        got = (mp.mpf(float(mh[0])) + mp.mpf(float(ml[0]))) * mp.mpf(2) ** int(k[0])
        assert abs(got / exact - 1) < mp.mpf(2) ** -74


@given(xs=st.lists(st.floats(-1e10, 1e10), max_size=300), scale=st.sampled_from((1.0, 1e-300, 1e290)))
def test_fsum_is_faithful(xs, scale):
    v = np.array(xs) * scale
    exact = sum((F(float(x)) for x in v), F(0))
    got = _dd.fsum(v)
    assert abs(F(got) - exact) <= F(float(np.spacing(abs(float(exact))))) if exact else got == 0


def test_fsum_with_cancellation_and_nonfinite():
    v = np.array([1e16, 1.0, -1e16, 2.0**-60])
    assert _dd.fsum(v) == math.fsum(v)
    assert math.isnan(_dd.fsum(np.array([1.0, np.nan])))
    assert _dd.fsum(np.array([1.0, np.inf])) == math.inf
    assert _dd.fsum(np.array([])) == 0.0
