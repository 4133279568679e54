"""Every validation error of SPEC.md ("Validation"): the right exception type,
a message naming the argument and the problem, and nothing modified."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sapo_ref

LP = np.zeros((2, 3))
ADV = np.ones(2)
MASK = np.ones((2, 3), bool)


def call(**overrides):
    args = dict(logprob=LP, old_logprob=LP, advantages=ADV, mask=MASK)
    kwargs = {k: overrides.pop(k) for k in list(overrides) if k not in args}
    args.update(overrides)
    return sapo_ref.sapo_loss(args["logprob"], args["old_logprob"], args["advantages"], args["mask"], **kwargs)


@pytest.mark.parametrize(
    "overrides, exc, words",
    [
        # shapes
        (dict(old_logprob=np.zeros((2, 4))), ValueError, ["old_logprob", "(2, 4)", "(2, 3)"]),
        (dict(mask=np.ones((3, 2), bool)), ValueError, ["mask", "(3, 2)"]),
        (dict(advantages=np.ones(3)), ValueError, ["advantages", "(3,)", "(2,) or (2, 1)"]),
        (dict(advantages=np.ones((2, 2))), ValueError, ["advantages", "(2, 2)"]),
        (dict(logprob=np.zeros(3), old_logprob=np.zeros(3), mask=np.ones(3)), ValueError, ["logprob", "2-D"]),
        (dict(logprob=np.zeros((1, 2, 3))), ValueError, ["logprob", "2-D"]),
        (dict(logprob=np.float64(0.0)), ValueError, ["logprob", "0-d"]),
        (dict(advantages=1.0), ValueError, ["advantages", "0-d"]),
        # dtypes
        (dict(logprob=np.zeros((2, 3), int)), TypeError, ["logprob", "floating-point", "int64"]),
        (dict(old_logprob=np.zeros((2, 3), bool)), TypeError, ["old_logprob", "floating-point"]),
        (dict(advantages=np.ones(2, complex)), TypeError, ["advantages", "complex"]),
        (dict(logprob=np.zeros((2, 3), np.longdouble)), TypeError, ["logprob", "float64"]),
        (dict(logprob=[["a", "b", "c"], ["d", "e", "f"]]), TypeError, ["logprob", "floating-point"]),
        (dict(logprob=np.zeros((2, 3), object)), TypeError, ["logprob", "object"]),
        # mask
        (dict(mask=np.full((2, 3), 2)), ValueError, ["mask", "0 and 1", "2"]),
        (dict(mask=np.full((2, 3), 0.5)), ValueError, ["mask", "0.5"]),
        (dict(mask=np.full((2, 3), np.nan)), ValueError, ["mask", "nan"]),
        (dict(mask=np.full((2, 3), "1")), TypeError, ["mask", "boolean or numeric"]),
        # temperatures
        (dict(tau_pos=0.0), ValueError, ["tau_pos", "> 0"]),
        (dict(tau_neg=-1.0), ValueError, ["tau_neg", "> 0"]),
        (dict(tau_pos=math.nan), ValueError, ["tau_pos", "finite"]),
        (dict(tau_neg=math.inf), ValueError, ["tau_neg", "finite"]),
        (dict(tau_pos=1e-7), ValueError, ["tau_pos", "[1e-06, 1e+06]"]),
        (dict(tau_neg=2e6), ValueError, ["tau_neg", "[1e-06, 1e+06]"]),
        (dict(tau_pos=True), TypeError, ["tau_pos", "real number", "bool"]),
        (dict(tau_pos="1.0"), TypeError, ["tau_pos", "real number", "str"]),
        (dict(tau_neg=1e5, tau_dtype="float16"), ValueError, ["tau_neg", "float16"]),
        # modes and options
        (dict(loss_agg_mode="mean"), ValueError, ["loss_agg_mode", "'mean'", "token-mean", "seq-mean-token-sum-norm"]),
        (dict(loss_agg_mode=None), ValueError, ["loss_agg_mode", "None"]),
        (dict(profile="deepspeed"), ValueError, ["profile", "'deepspeed'", "canonical", "verl"]),
        (dict(profile=3), TypeError, ["profile", "int"]),
        (dict(empty_rows="drop"), ValueError, ["empty_rows", "exclude, count, nan"]),
        (dict(token_count_eps=-1e-8), ValueError, ["token_count_eps", ">= 0"]),
        (dict(row_count_eps=math.nan), ValueError, ["row_count_eps", "finite"]),
        (dict(token_sum_norm=0.0), ValueError, ["token_sum_norm", "> 0"]),
        (dict(log_ratio_clamp=-20.0), ValueError, ["log_ratio_clamp", "> 0"]),
        (dict(tau_dtype="float8"), ValueError, ["tau_dtype", "bfloat16"]),
        (dict(global_token_count=5), ValueError, ["global_token_count=5", "(6)"]),
        (dict(global_token_count=6.0), TypeError, ["global_token_count", "integer", "float"]),
        (dict(global_seq_count=-1), ValueError, ["global_seq_count=-1", "(2)"]),
        (dict(global_seq_count=True), TypeError, ["global_seq_count", "integer"]),
        (dict(reproducible="yes"), TypeError, ["reproducible", "True or False", "str"]),
    ],
)
def test_errors_name_the_argument_and_the_problem(overrides, exc, words):
    with pytest.raises(exc) as info:
        call(**overrides)
    message = str(info.value)
    for w in words:
        assert w in message, f"{w!r} not in {message!r}"


def test_profile_errors_list_the_valid_profiles():
    with pytest.raises(ValueError, match="valid profiles: canonical, paper, trinity, verl, trl"):
        sapo_ref.get_profile("nope")


@pytest.mark.parametrize("func", [sapo_ref.soft_gate, sapo_ref.gate_weight])
def test_gate_functions_validate(func):
    with pytest.raises(ValueError, match="ratio must be >= 0"):
        func(np.array([0.5, -1e-300]), np.ones(2))
    with pytest.raises(ValueError, match="advantages has shape"):
        func(np.ones((2, 3)), np.ones(3))
    with pytest.raises(TypeError, match="ratio must be a floating-point array"):
        func(np.ones(2, int), np.ones(2))
    with pytest.raises(ValueError, match="tau_neg must be finite"):
        func(np.ones(2), np.ones(2), 1.0, math.inf)


def test_validation_does_not_modify_inputs():
    lp = np.array([[0.1, np.nan]])
    before = lp.copy()
    with pytest.raises(ValueError):
        sapo_ref.sapo_loss(lp, lp, [1.0], [[1, 2]])
    assert np.array_equal(lp, before, equal_nan=True)


def test_narrow_float_inputs_are_accepted_exactly():
    lp32 = np.array([[0.1, -0.3]], np.float32)
    res = sapo_ref.sapo_loss(lp32, np.zeros((1, 2), np.float16), np.array([1.0], np.float32), [[1, 1]])
    ref = sapo_ref.sapo_loss(lp32.astype(np.float64), np.zeros((1, 2)), [1.0], [[1, 1]])
    assert res.loss == ref.loss and np.array_equal(res.grad, ref.grad)
