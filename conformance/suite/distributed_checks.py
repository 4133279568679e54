"""Shards on the ranks of torch.distributed (conformance.distributed): the
all-reduced loss and gradient against the oracle's full batch."""

from __future__ import annotations

from dataclasses import replace

from .. import distributed
from ..candidate import CallOptions, CandidateError, Output
from ..drivers import get_driver
from ..evaluate import Evaluation, compare, reference_for
from .invariants import invariant_batches
from .records import Counterexample, Tally
from .registry import CheckDef, Context


def _sharded(micro_batches: int):
    def body(ctx: Context, tally: Tally) -> None:
        why = distributed.unavailable() or (None if ctx.device == "cpu" else "runs on the CPU (gloo) only")
        if why:
            tally.record("reduced").skip(why)
            return
        cand = ctx.candidate
        dtype = tally.dtype
        for batch in invariant_batches(ctx, tally, tally.check):
            opts = CallOptions(loss_agg_mode=tally.loss_agg_mode)
            rounded = get_driver(cand.info.framework).prepare(cand, batch, dtype, "cpu", check_inputs=False).rounded
            ref = reference_for(cand, rounded, opts, dtype)
            den = ref.denominators
            gopts = replace(opts, global_token_count=den.tokens, global_seq_count=den.sequences)
            example = Counterexample(batch, gopts, dtype, None)
            try:
                red = distributed.run_sharded(cand, batch, dtype, gopts, world_size=ctx.profile.dp_world_size,
                                              micro_batches=micro_batches)
            except CandidateError as exc:
                tally.raised("reduced", exc, example)
                break
            out = Output(loss=red.loss, grad=red.grad, metrics={}, inputs=rounded, dtype=dtype, device="cpu",
                         grad_dtype=red.grad_dtype, loss_dtype=red.loss_dtype)
            parts = distributed.all_parts(batch.shape[0], ctx.profile.dp_world_size, micro_batches)
            tally.add(Evaluation(out, ref, compare(cand.with_info(metrics=()), out, ref), gopts, None, cand.info.profile,
                                 parts), example)

    return body


def _applies(candidate, dtype: str) -> bool:
    info = candidate.info
    preferred = "float32" if "float32" in info.dtypes else info.dtypes[0]
    return info.framework == "torch" and info.data_parallel and info.global_counts and dtype == preferred


CHECKS: tuple[CheckDef, ...] = (
    CheckDef("distributed.data-parallel", "distributed", "shards on torch.distributed ranks, gradients all-reduced",
             True, _sharded(1), _applies),
    CheckDef("distributed.grad-accumulation", "distributed", "shards on ranks, each in two accumulated micro-batches",
             True, _sharded(2), _applies),
)
