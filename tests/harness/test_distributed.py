"""The data-parallel checks: real torch.distributed ranks (gloo), gradients
all-reduced, compared with the oracle's full batch."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace

import numpy as np
import pytest

from conformance import distributed
from conformance.candidate import Batch, CallOptions, CandidateError
from conformance.suite import CHECKS
from conformance.loading import load_candidate
from conformance.suite import plan, run_units

from .conftest import available_or_skip

pytestmark = pytest.mark.skipif(distributed.unavailable() is not None, reason=str(distributed.unavailable()))

DP_CHECKS = ["distributed.*"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["torch-eager", "torch-compile", "torch-sequence"])
def test_builtin_torch_candidates_pass_on_two_gloo_ranks(name):
    cand = available_or_skip(load_candidate(name))
    units = plan(cand, checks=DP_CHECKS)
    assert {u.check.name for u in units} == {"distributed.data-parallel", "distributed.grad-accumulation"}
    records = run_units(cand, units, profile="default", seed=3)
    assert records and all(r.status == "pass" for r in records), [(r.id, r.message) for r in records
                                                                    if r.status != "pass"]


def test_a_candidate_normalising_by_its_local_count_fails():
    from tests.mutants import MUTANTS

    cand = next(m.candidate for m in MUTANTS if m.name == "local-counts")
    records = run_units(cand, plan(cand, checks=["distributed.data-parallel"]), profile="quick", seed=0)
    failed = [r for r in records if r.status == "fail"]
    assert failed and all(r.check.startswith("distributed.data-parallel:") for r in failed)
    assert any(r.check.endswith(":loss") or r.check.endswith(":grad") for r in failed)


def _batch(B=6, T=12, seed=0):
    rng = np.random.default_rng(seed)
    olp = -rng.exponential(1.0, (B, T))
    mask = np.arange(T)[None, :] < rng.integers(1, T + 1, B)[:, None]
    return Batch(olp + rng.normal(0, 0.3, (B, T)), olp, rng.normal(size=B), mask)


def test_the_reduced_result_is_the_sum_over_interleaved_shards():
    """Independently of the checks: the all-reduced gradient is each rank's
    shard gradient in its rows, computed with the global counts."""
    import sapo_ref

    cand = load_candidate("torch-eager")
    b = _batch()
    n_tok, n_seq = int(b.mask.sum()), int((b.mask.sum(1) > 0).sum())
    opts = CallOptions(loss_agg_mode="seq-mean-token-mean", global_token_count=n_tok, global_seq_count=n_seq)
    red = distributed.run_sharded(cand, b, "float64", opts, world_size=3, micro_batches=2)
    ref = sapo_ref.sapo_loss(b.logprob, b.old_logprob, b.advantages, b.mask, loss_agg_mode="seq-mean-token-mean")
    assert red.loss == pytest.approx(ref.loss, rel=1e-12)
    np.testing.assert_allclose(red.grad, ref.grad, rtol=1e-12, atol=1e-15)
    assert red.grad_dtype == "float64"


def _crashing(kind):
    base = load_candidate("torch-eager")

    def kernel(logprob, *args, **kwargs):
        import os
        import time

        import torch.distributed as dist

        if dist.is_initialized() and dist.get_rank() == 1:
            if kind == "raise":
                raise RuntimeError("rank 1 gave up")
            if kind == "exit":
                os._exit(3)
            time.sleep(3600)
        return base.kernel(logprob, *args, **kwargs)

    return replace(base, kernel=kernel, _ready=set())


@pytest.mark.parametrize("kind,message", [("raise", "rank 1: RuntimeError: rank 1 gave up"),
                                          ("exit", r"rank 1 died \(exited with status 3\) without a result"),
                                          ("hang", "timed out after 3 s: no result from rank")])
def test_a_failing_rank_is_an_error_and_no_process_is_left(kind, message):
    # A rank that raises or exits is reported as soon as it does (well under a
    # second here): the default deadline only bounds a broken test.  A hang
    # can only be seen by waiting, and times out however slow the machine.
    timeout_s = 3 if kind == "hang" else distributed.TIMEOUT_S
    before = set(mp.active_children())
    with pytest.raises(CandidateError, match=message):
        distributed.run_sharded(_crashing(kind), _batch(), "float32", CallOptions(global_token_count=50,
                                                                                   global_seq_count=6),
                                timeout_s=timeout_s)
    assert set(mp.active_children()) <= before


def test_the_check_records_a_failing_rank_as_an_error():
    cand = _crashing("raise")
    unit = next(c for c in CHECKS if c.name == "distributed.data-parallel")
    from conformance.suite import Unit

    records = run_units(cand, [Unit(unit, "float32", "token-mean")], profile="quick")
    assert [r.status for r in records] == ["error"] and "rank 1 gave up" in records[0].message


def test_only_torch_candidates_claiming_data_parallel_get_the_check():
    dp = [c for c in CHECKS if c.name.startswith("distributed.")]
    eager = load_candidate("torch-eager")
    assert all(c.applies(eager, "float32") for c in dp)
    assert not any(c.applies(eager, "float16") for c in dp)  # one dtype suffices: the semantics are dtype-free
    assert not any(c.applies(eager.with_info(data_parallel=False), "float32") for c in dp)
    assert not any(c.applies(load_candidate("numpy-fp32"), "float32") for c in dp)
