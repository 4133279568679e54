"""Shape buckets (conformance.buckets): the bucket function, the padding rule
(checked against the oracle itself), that a candidate claiming
``shape_buckets`` is sent bucket shapes only, that a gradient on the padding
is a failure, that buckets change no result, and that the compile count
reaches the report."""

from __future__ import annotations

import json
import types
from dataclasses import replace

import numpy as np
import pytest

import sapo_ref
from conformance import cli
from conformance.buckets import MIN_COLS, MIN_ROWS, bucket, bucket_shape, pad, padded_dims
from conformance.candidate import Batch, CallOptions
from conformance.evaluate import evaluate
from conformance.suite import plan, run_units
from sapo_ref import LOSS_AGG_MODES, PROFILES

from . import bucket_candidates as bc
from .test_run import run_cli


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@pytest.mark.parametrize("n, least, expected", [(0, 8, 8), (1, 8, 8), (8, 8, 8), (9, 8, 16), (1, 64, 64),
                                                (64, 64, 64), (65, 64, 128), (1000, 64, 1024)])
def test_bucket_is_the_next_power_of_two_at_least_the_minimum(n, least, expected):
    assert bucket(n, least) == expected


@pytest.mark.parametrize("bad", [-1, 2.5, True, None])
def test_bucket_rejects_what_is_not_a_size(bad):
    with pytest.raises(ValueError, match="^n must be an integer >= 0"):
        bucket(bad, 8)


# --- the rule ---------------------------------------------------------------

RULE = [  # profile, requested mode, global_seq_count, (pad rows, pad columns)
    ("canonical", "token-mean", None, (True, True)),
    ("canonical", "seq-mean-token-mean", None, (True, True)),
    ("canonical", "seq-mean-token-sum", 4, (True, True)),  # empty rows are excluded from S
    ("canonical", "seq-mean-token-sum-norm", None, (True, False)),  # normalised by the padded length T
    ("trinity", "token-mean", None, (True, True)),  # counts empty rows, but token-mean has no S
    ("trinity", "token-mean", 4, (False, True)),  # ... unless a global S is checked against the local one
    ("trinity", "seq-mean-token-mean", None, (False, True)),
    ("trinity", "seq-mean-token-sum", None, (False, True)),
    ("trinity", "seq-mean-token-sum-norm", None, (True, False)),
    ("trl", "token-mean", None, (False, True)),  # TRL always computes seq-mean-token-mean
    ("verl", "seq-mean-token-sum-norm", None, (True, False)),  # the requested mode counts too
    ("canonical-sequence", "seq-mean-token-mean", None, (True, True)),
]


@pytest.mark.parametrize("profile, mode, gsc, expected", RULE)
def test_padding_rule(profile, mode, gsc, expected):
    assert padded_dims(profile, mode, global_seq_count=gsc) == expected
    rows, cols = expected
    assert bucket_shape((3, 5), profile, mode, global_seq_count=gsc) == (MIN_ROWS if rows else 3,
                                                                         MIN_COLS if cols else 5)


def test_padding_rule_rejects_an_unknown_mode_or_profile():
    with pytest.raises(ValueError, match="loss_agg_mode"):
        padded_dims("canonical", "mean")
    with pytest.raises(ValueError, match="profile"):
        padded_dims("nope", "token-mean")


def _ragged_batch():
    """Ragged rows, an empty row, mixed-sign advantages; float64."""
    rng = np.random.default_rng(7)
    B, T = 3, 5
    olp = -rng.exponential(1.0, (B, T))
    mask = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    return Batch(olp + rng.normal(0, 0.3, (B, T)), olp, np.array([1.2, -0.4, -0.7]), mask)


def _oracle(batch, profile, mode, **kw):
    return sapo_ref.sapo_loss(batch.logprob, batch.old_logprob, batch.advantages, batch.mask, profile=profile,
                              loss_agg_mode=mode, **kw)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
@pytest.mark.parametrize("global_counts", [False, True])
def test_the_padding_the_rule_allows_changes_nothing_in_the_oracle(profile, mode, global_counts):
    batch = _ragged_batch()
    B, T = batch.shape
    ref = _oracle(batch, profile, mode)
    kw = {}
    if global_counts:
        kw = dict(global_token_count=ref.denominators.tokens, global_seq_count=ref.denominators.sequences)
        ref = _oracle(batch, profile, mode, **kw)
    shape = bucket_shape((B, T), profile, mode, global_seq_count=kw.get("global_seq_count"))
    padded = _oracle(pad(batch, shape, "B"), profile, mode, **kw)
    np.testing.assert_allclose(padded.loss, ref.loss, rtol=1e-13, atol=0)
    np.testing.assert_allclose(padded.grad[:B, :T], ref.grad, rtol=1e-13, atol=0)
    assert not np.any(padded.grad[B:]) and not np.any(padded.grad[:, T:])
    for name, value in ref.metrics.items():
        np.testing.assert_allclose(padded.metrics[name], value, rtol=1e-13, atol=0)


@pytest.mark.parametrize("profile", [p for p in sorted(PROFILES) if PROFILES[p].loss_agg_mode is None])
@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_the_padding_the_rule_refuses_would_change_the_loss(profile, mode):
    batch = _ragged_batch()
    B, T = batch.shape
    rows, cols = padded_dims(profile, mode)
    ref = _oracle(batch, profile, mode)
    for allowed, shape in ((rows, (B + 3, T)), (cols, (B, T + 7))):
        if not allowed:
            padded = _oracle(pad(batch, shape, "B"), profile, mode)
            assert not np.isclose(padded.loss, ref.loss, rtol=1e-6), (shape, padded.loss, ref.loss)


def test_rows_are_not_padded_where_the_oracle_would_reject_the_global_count():
    batch = _ragged_batch()
    ref = _oracle(batch, "trinity", "token-mean")
    with pytest.raises(ValueError, match="global_seq_count"):
        _oracle(pad(batch, (8, 5), "B"), "trinity", "token-mean", global_seq_count=ref.denominators.sequences)


# --- the claim ----------------------------------------------------------------


def test_every_adapter_accepts_the_claim():
    from conformance.adapters import from_jax_loss, from_torch_loss, from_trinity_policy_loss, from_verl_policy_loss

    class Loss:
        def __init__(self, **kwargs):
            pass

    for adapt, target in ((from_torch_loss, len), (from_jax_loss, len), (from_verl_policy_loss, len),
                          (from_trinity_policy_loss, Loss)):
        assert adapt(target, name="x", shape_buckets=True).info.shape_buckets is True
        assert adapt(target, name="x", shape_buckets=False).info.shape_buckets is False
        # JAX compiles per shape: its adapter claims the buckets unless told not to
        assert adapt(target, name="x").info.shape_buckets is (adapt is from_jax_loss)


def test_the_claim_must_be_a_bool():
    from conformance.candidate import CandidateError, CandidateInfo

    with pytest.raises(CandidateError, match="shape_buckets must be True or False"):
        CandidateInfo(name="x", framework="numpy", shape_buckets="yes")


# --- in the harness -----------------------------------------------------------


def _run_quick(candidate):
    bc.CALLS.clear()
    units = plan(candidate, dtypes=["float32", "float16"])
    return run_units(candidate, units, profile="quick"), list(bc.CALLS)


@pytest.fixture(scope="module")
def quick_runs():
    """(records, calls) of the same quick run with and without shape buckets."""
    return _run_quick(bc.jit_like), _run_quick(bc.jit_like_unbucketed)


def test_a_candidate_claiming_buckets_sees_only_bucket_shapes(quick_runs):
    (records, calls), (_, unbucketed_calls) = quick_runs
    assert calls and all(r.status in ("pass", "skip") for r in records), \
        [r.id for r in records if r.status not in ("pass", "skip")][:5]
    for lp_shape, adv_shape, mask_shape, _, mode in calls:
        B, T = lp_shape
        assert B >= MIN_ROWS and _pow2(B), lp_shape
        if mode != "seq-mean-token-sum-norm":  # whose T is never padded
            assert T >= MIN_COLS and _pow2(T), lp_shape
        assert mask_shape == lp_shape and adv_shape in ((B,), (B, 1), (B, T))
    assert any(lp[1] < MIN_COLS for lp, _, _, _, mode in calls if mode == "seq-mean-token-sum-norm")
    # the point of it: far fewer distinct shapes, hence compilations, than without
    assert len(calls) == len(unbucketed_calls)

    def distinct(seen):
        return {(lp, adv, dt) for lp, adv, _, dt, mode in seen if mode != "seq-mean-token-sum-norm"}

    assert 4 * len(distinct(calls)) < len(distinct(unbucketed_calls)), (len(distinct(calls)),
                                                                         len(distinct(unbucketed_calls)))


def test_buckets_change_no_result(quick_runs):
    """Statuses and examples are identical; the worst error / bound differs by
    rounding only (float32 sums run in another order over the padded arrays,
    and even elementwise NumPy functions round differently in a SIMD loop's
    tail than in its body), so the worst example, and with it the bound it
    was measured against, may be another one of the same run."""
    (with_buckets, _), (without, _) = quick_runs
    assert [r.id for r in with_buckets] == [r.id for r in without]
    for a, b in zip(with_buckets, without):
        assert (a.status, a.examples) == (b.status, b.examples), a.id
        if a.bound == 0 or b.bound == 0:  # yes/no: grad-dtype, grad-masked-zero, inputs-unmodified, bitwise
            assert (a.bound, a.max_error) == (b.bound, b.max_error), a.id
        elif a.ratio is not None:
            assert abs(a.ratio - b.ratio) <= 0.25, (a.id, a.ratio, b.ratio)


def _all_valid_batch():
    rng = np.random.default_rng(3)
    olp = -rng.exponential(1.0, (3, 5))
    return Batch(olp + rng.normal(0, 0.2, (3, 5)), olp, np.array([1.0, -0.5, 0.3]), np.ones((3, 5), bool))


def test_a_gradient_on_the_padding_is_a_failure():
    batch = _all_valid_batch()  # nothing masked: only the harness's padding is
    plain = replace(bc.grad_on_padding, info=replace(bc.grad_on_padding.info, shape_buckets=False))
    assert evaluate(plain, batch, dtype="float32").passed
    ev = evaluate(bc.grad_on_padding, batch, dtype="float32", options=CallOptions(loss_agg_mode="token-mean"))
    failures = {c.quantity: c for c in ev.failures()}
    assert set(failures) == {"grad-masked-zero"}
    detail = failures["grad-masked-zero"].detail
    assert detail.startswith(f"{8 * 64 - 3 * 5} positions of the masked padding") and len(detail) < 200, detail


def test_a_gradient_on_the_padding_fails_its_check_in_a_run():
    units = [u for u in plan(bc.grad_on_padding, dtypes=["float32"], modes=["token-mean"], checks=["edge.*"])]
    records = run_units(bc.grad_on_padding, units, profile="quick")
    failed = {r.check.rsplit(":", 1)[-1] for r in records if r.status == "fail"}
    assert failed == {"grad-masked-zero"}


# --- compile counts ---------------------------------------------------------


def test_the_compile_count_is_in_the_report(tmp_path):
    code, out, err = run_cli("run", "tests.harness.bucket_candidates:jit_like", "--profile", "quick",
                             "--check", "edge.*", "--dtype", "float32", "--report-dir", str(tmp_path))
    assert code == cli.EXIT_OK, err
    cand = json.loads((tmp_path / "report.json").read_text())["candidate"]
    n = cand["compilations"]
    assert cand["shape_buckets"] is True and isinstance(n, int) and 0 < n < 20
    line = f"compilations: {n}; shape buckets used"
    assert line in (tmp_path / "report.md").read_text()
    assert line in (tmp_path / "report.html").read_text()
    assert line in out


def _batch(B: int, T: int, seed: int = 0) -> Batch:
    rng = np.random.default_rng(seed)
    olp = -rng.exponential(1.0, (B, T))
    return Batch(olp + rng.normal(0, 0.2, (B, T)), olp, rng.normal(0, 1, B), rng.random((B, T)) < 0.8)


def test_jax_compiles_once_per_bucket_and_dtype_whatever_the_mode(builtin):
    cand = builtin("jax")
    from conformance.builtins import jax_impl

    evaluate(cand, _batch(3, 5), dtype="float32")
    before = jax_impl.compile_count()
    for mode in LOSS_AGG_MODES:  # seq-mean-token-sum-norm: the harness keeps T, the kernel pads it
        for B, T in ((1, 1), (2, 40), (8, 64)):  # all in the (8, 64) bucket
            assert evaluate(cand, _batch(B, T), dtype="float32", options=CallOptions(loss_agg_mode=mode)).passed
    assert jax_impl.compile_count() == before == cand.compilations()


def test_torch_compile_compiles_one_graph_for_every_mode_and_bucket(builtin, monkeypatch):
    cand = builtin("torch-compile")
    from conformance.builtins import torch_impl

    core = torch_impl._sapo_core  # a copy with a code object of its own: no graph compiled yet
    fresh = types.FunctionType(core.__code__.replace(), core.__globals__, core.__name__, core.__defaults__,
                               core.__closure__)
    monkeypatch.setattr(torch_impl, "_sapo_core", fresh)
    monkeypatch.setattr(torch_impl, "_compiled", None)
    assert cand.compilations() == 0
    for mode in LOSS_AGG_MODES[:3]:
        for B, T in ((1, 1), (3, 5), (9, 70)):  # buckets (8, 64) and (16, 128)
            assert evaluate(cand, _batch(B, T), dtype="float32", options=CallOptions(loss_agg_mode=mode)).passed
    assert cand.compilations() == 1
