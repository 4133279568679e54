"""Data-parallel semantics under a real distributed engine (torch.distributed).

A SAPO loss trained with data parallelism runs on shards of one batch, one
per rank; each rank is told the batch's global token and sequence counts,
and the gradients are all-reduced the way DDP/FSDP do.  The shards' losses
and gradients must then add up to the full batch's.  A kernel that
normalises by its local counts passes every single-process check and still
trains with the wrong loss.

The check starts ``world_size`` processes (gloo on the CPU; nccl needs one GPU
per rank and is not used here), gives rank r rows ``r::world_size`` of the
batch -- interleaved, so ranks differ in their token counts -- runs the
candidate through its driver on each shard (optionally in micro-batches whose
gradients are accumulated, as with gradient accumulation), sums the
per-rank losses and full-size gradients with ``all_reduce``, and compares
rank 0's result with the oracle's full-batch loss and gradient.

The ranks are forked from the process running the check, so any candidate
(registered, ``module:attr`` or an in-process object) runs unchanged; each
rank limits itself to one intra-op thread (OpenMP after fork) and the
processes are always joined, or killed on failure or timeout.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._process import describe_exit
from .candidate import Batch, CallOptions, Candidate, CandidateError
from .drivers import get_driver

#: seconds the ranks get to start, run and reduce
TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Reduced:
    loss: float
    grad: np.ndarray
    loss_dtype: str
    grad_dtype: str


def unavailable() -> str | None:
    """Why torch.distributed cannot run here, or None."""
    try:
        import torch.distributed as dist
    except ImportError:
        return "torch is not installed"
    if not dist.is_available():
        return "this torch build has no torch.distributed"
    if not dist.is_gloo_available():
        return "this torch build has no gloo backend"
    if "fork" not in mp.get_all_start_methods():
        return "the ranks are forked, and this platform cannot fork"
    return None


def _rows(B: int, rank: int, world: int) -> np.ndarray:
    return np.arange(rank, B, world)


def rank_parts(B: int, rank: int, world: int, micro_batches: int) -> list[np.ndarray]:
    """The rows of each call a rank makes: its rows, split into micro-batches."""
    return [part for part in np.array_split(_rows(B, rank, world), micro_batches) if part.size]


def all_parts(B: int, world: int, micro_batches: int) -> tuple[np.ndarray, ...]:
    """The rows of every call of a sharded run, over all ranks."""
    return tuple(p for rank in range(world) for p in rank_parts(B, rank, world, micro_batches))


def _take(batch: Batch, rows: np.ndarray) -> Batch:
    adv = batch.advantages[rows]
    w = None if batch.weights is None else batch.weights[rows]
    return Batch(batch.logprob[rows], batch.old_logprob[rows], adv, batch.mask[rows], w)


def _rank_main(rank: int, world: int, store: str, candidate: Candidate, batch: Batch, dtype: str,
               options: CallOptions, micro_batches: int, conn) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # OpenMP after fork: no parallel regions in the child
    inductor_config = sys.modules.get("torch._inductor.config")  # only if torch.compile is in use (slow import)
    if inductor_config is not None:
        inductor_config.compile_threads = 1  # no compile worker pool in a forked rank
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    stage = "candidate"
    try:
        driver = get_driver(candidate.info.framework)
        B, T = batch.shape
        grad = torch.zeros((B, T), dtype=torch.float64)
        loss = torch.zeros((), dtype=torch.float64)
        loss_dtype = grad_dtype = ""
        for part in rank_parts(B, rank, world, micro_batches):  # gradient accumulation over micro-batches
            out = driver.call(candidate, _take(batch, part), dtype, "cpu", options)
            if out.grad is None:
                raise CandidateError("produced no gradient")
            loss += out.loss
            grad[torch.from_numpy(part)] += torch.from_numpy(out.grad)
            loss_dtype, grad_dtype = out.loss_dtype or dtype, out.grad_dtype or dtype
        stage = "all_reduce"
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        dist.all_reduce(loss, op=dist.ReduceOp.SUM)
        conn.send(("ok", float(loss), grad.numpy() if rank == 0 else None, loss_dtype, grad_dtype))
    except BaseException as exc:  # report, then let the process end
        first = str(exc).splitlines()[0] if str(exc) else ""
        conn.send((stage, f"rank {rank}: {type(exc).__name__}: {first}", None, "", ""))
    finally:
        try:
            dist.destroy_process_group()
        finally:
            conn.close()


def run_sharded(candidate: Candidate, batch: Batch, dtype: str, options: CallOptions, *, world_size: int = 2,
                micro_batches: int = 1, timeout_s: float = TIMEOUT_S) -> Reduced:
    """The all-reduced (summed) loss and full-batch gradient of the candidate
    run on ``world_size`` ranks.  CandidateError with the reason if a rank
    fails, dies or times out."""
    why = unavailable()
    if why:
        raise CandidateError(f"cannot run the data-parallel check: {why}")
    if candidate.info.framework != "torch":
        raise CandidateError("the data-parallel check runs torch candidates")
    # one call here first: it compiles what the candidate compiles (torch.compile,
    # Triton), and the forked ranks inherit that instead of each compiling anew.
    # With one intra-op thread, as in the ranks: dynamo guards on the thread count
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        get_driver(candidate.info.framework).call(
            candidate, _take(batch, _rows(batch.shape[0], 0, world_size)[:1]), dtype, "cpu", options)
    finally:
        torch.set_num_threads(threads)
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="sapo-dist-") as tmp:
        store = os.path.join(tmp, "store")
        receivers, procs = [], []
        try:
            for rank in range(world_size):
                recv, send = ctx.Pipe(duplex=False)
                p = ctx.Process(target=_rank_main, name=f"sapo-rank-{rank}",
                                args=(rank, world_size, store, candidate, batch, dtype, options, micro_batches,
                                      send), daemon=True)
                with warnings.catch_warnings():
                    # JAX, if something in this process imported it, warns at every
                    # fork; the ranks run torch only and never touch JAX's threads
                    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called", category=RuntimeWarning)
                    p.start()
                send.close()
                receivers.append(recv)
                procs.append(p)
            messages: list = [None] * world_size
            deadline = time.monotonic() + timeout_s
            timed_out = False
            for rank, recv in enumerate(receivers):  # every rank reports; a dead one closes its pipe
                if recv.poll(max(deadline - time.monotonic(), 0.0)):
                    try:
                        messages[rank] = recv.recv()
                    except EOFError:
                        pass
                else:
                    timed_out = True
            for p in procs:
                p.join(timeout=0 if timed_out else 10)
        finally:
            for p in procs:
                if p.is_alive():
                    p.kill()
                    p.join(5)
            for recv in receivers:
                recv.close()
        # the root cause first: the candidate failing on a rank, then a rank
        # that died, then the collective failures those cause on the others
        by_kind = {}
        for rank, m in enumerate(messages):
            if m is not None:
                by_kind.setdefault(m[0], []).append(m[1])
        if "candidate" in by_kind:
            raise CandidateError(by_kind["candidate"][0])
        dead = [f"rank {i} died ({describe_exit(p.exitcode)})" for i, (p, m) in enumerate(zip(procs, messages))
                if m is None and p.exitcode not in (None, -signal.SIGKILL) and not timed_out]
        if dead:
            raise CandidateError(f"{dead[0]} without a result")
        if "all_reduce" in by_kind:
            raise CandidateError(by_kind["all_reduce"][0])
        missing = [str(i) for i, m in enumerate(messages) if m is None]
        if missing:
            raise CandidateError(f"timed out after {timeout_s:g} s: no result from rank {', '.join(missing)}")
        _, loss, grad, loss_dtype, grad_dtype = messages[0]
        return Reduced(loss, grad, loss_dtype, grad_dtype)
