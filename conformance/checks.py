"""The conformance checks, as data, and how each one runs.

A *check* is run as *units*, one per dtype (and aggregation mode, for checks
that depend on it) the candidate claims.  A unit produces *records*: one per
compared quantity (loss, grad, grad-masked-zero, grad-dtype, each claimed
metric, inputs-unmodified) for the oracle comparisons, or one for a
self-consistency invariant.  Every record carries its measured error in units
of the tolerance scale, pass or fail.
"""

from __future__ import annotations

import hashlib
import math
import time
import traceback
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

from . import tolerance as tol
from .candidate import Batch, CallOptions, Candidate, CandidateError
from .cases import CASES
from .drivers import get_driver, layouts_for
from .evaluate import Evaluation, evaluate
from .strategies import batches, tau_pairs


# ---------------------------------------------------------------------------
# profiles and records
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class SuiteProfile:
    name: str
    description: str
    max_examples: int  # hypothesis examples per random unit
    max_rows: int
    max_cols: int
    invariant_batches: int  # batches per invariant unit
    targeted: bool  # hypothesis target() on the error, to hunt worst cases
    throughput: str | None = None  # the bench profile of run's throughput section (None: none)
    dp_world_size: int = 2  # ranks of the distributed.* checks


SUITE_PROFILES = {
    p.name: p
    for p in (
        SuiteProfile("quick", "seconds, for pre-commit hooks", 8, 4, 24, 1, False),
        SuiteProfile("default", "the CI profile", 40, 6, 48, 2, False, "quick"),
        SuiteProfile("thorough", "many examples, hypothesis target() on the error", 400, 8, 256, 4, True, "default",
                     dp_world_size=4),
    )
}


@dataclass(frozen=True)
class Counterexample:
    batch: Batch | None
    options: CallOptions
    dtype: str
    layout: str | None
    case: str | None = None  # an edge case id, when the batch is too large to embed


@dataclass
class Record:
    check: str  # e.g. "random:grad", "edge.exp-overflow:loss", "invariant.shards"
    group: str
    title: str
    dtype: str
    mode: str | None
    device: str
    status: str = "pass"  # pass | fail | error | skip
    max_error: float | None = None
    bound: float | None = None
    examples: int = 0
    duration_s: float = 0.0
    message: str = ""
    counterexample: Counterexample | None = None
    samples: list = field(default_factory=list)  # (log-ratio, error) pairs

    @property
    def id(self) -> str:
        params = self.dtype if self.mode is None else f"{self.dtype},{self.mode}"
        return f"{self.check}[{params}]"


@dataclass(frozen=True)
class Context:
    candidate: Candidate
    device: str
    profile: SuiteProfile
    seed: int


def unit_seed(seed: int, unit_id: str) -> int:
    """A per-unit seed, independent of which other units run (or where)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{unit_id}".encode()).digest()[:4], "little")


MAX_SAMPLES = 200


def _samples(ev: Evaluation, comp: tol.Comparison) -> list:
    if comp.per_element is None:
        return []
    inp = ev.output.inputs
    with np.errstate(invalid="ignore"):
        d = inp.logprob - inp.old_logprob
    sel = inp.mask.astype(bool) & np.isfinite(comp.per_element) & np.isfinite(d)
    d, e = d[sel], comp.per_element[sel]
    if d.size > MAX_SAMPLES:
        keep = np.argsort(e)[-MAX_SAMPLES // 2:]
        rest = np.setdiff1d(np.arange(d.size), keep)
        keep = np.concatenate([keep, rest[:: max(1, rest.size // (MAX_SAMPLES // 2))]])
        d, e = d[keep], e[keep]
    return [(float(a), float(b)) for a, b in zip(d, e)]


class _Tally:
    """Aggregates comparisons into one record per quantity."""

    def __init__(self, unit: str, group: str, title: str, dtype: str, mode: str | None, device: str):
        self.base = dict(group=group, title=title, dtype=dtype, mode=mode, device=device)
        self.unit = unit
        self.records: dict[str, Record] = {}
        self.examples = 0

    def record(self, quantity: str) -> Record:
        if quantity not in self.records:
            self.records[quantity] = Record(check=f"{self.unit}:{quantity}", **self.base)
        return self.records[quantity]

    def add(self, ev: Evaluation, example: Counterexample) -> None:
        self.examples += 1
        for comp in ev.comparisons:
            rec = self.record(comp.quantity)
            rec.examples += 1
            rec.bound = comp.k
            if rec.max_error is None or comp.error > rec.max_error:
                rec.max_error = comp.error
            if len(rec.samples) < MAX_SAMPLES:
                rec.samples.extend(_samples(ev, comp)[: MAX_SAMPLES - len(rec.samples)])
            if not comp.passed and rec.status == "pass":
                rec.status = "fail"
                rec.message = comp.detail or f"error {comp.error:.3g} > {comp.k:g}"
                rec.counterexample = example

    def error(self, quantity: str, exc: BaseException, example: Counterexample | None) -> None:
        rec = self.record(quantity)
        rec.status = "error"
        rec.message = _describe_exception(exc)
        rec.counterexample = example

    def finish(self, duration: float) -> list[Record]:
        out = list(self.records.values())
        for rec in out:
            rec.duration_s = duration / max(len(out), 1)
        return out


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, CandidateError):
        return str(exc)
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename.rsplit('/', 1)[-1]}:{frames[-1].lineno})" if frames else ""
    first = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {first[0] if first else ''}{where}"


# ---------------------------------------------------------------------------
# the checks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckDef:
    name: str
    group: str
    title: str
    per_mode: bool
    applies: Callable[[Candidate, str], bool]
    run: Callable[[Context, str, str | None], list[Record]]


def _always(candidate, dtype):
    return True


class _Found(Exception):
    """Raised inside a hypothesis property to stop at a failing example."""

    def __init__(self, ev: Evaluation | None, example: Counterexample, exc: BaseException | None = None):
        super().__init__("counterexample")
        self.ev, self.example, self.exc = ev, example, exc


def _run_random(ctx: Context, dtype: str, mode: str | None, *, name: str = "random",
                group: str = "random", title: str = "random batches against the oracle",
                weights: bool = False) -> list[Record]:
    """Hypothesis-generated batches against the oracle.  After a failure the
    search continues for the quantities that have not failed yet, so each
    gets its own minimal counterexample."""
    info = ctx.candidate.info
    prof = ctx.profile
    tally = _Tally(name, group, title, dtype, mode, ctx.device)
    start = time.perf_counter()
    failed: set[str] = set()
    layouts = st.sampled_from(info.advantage_shapes)
    strategy = st.tuples(
        batches(max_rows=prof.max_rows, max_cols=prof.max_cols, per_token_advantages="BT" in info.advantage_shapes,
                weights=weights),
        tau_pairs(info.requires_tau_order),
        layouts,
    )
    base_seed = unit_seed(ctx.seed, f"{name}[{dtype},{mode}]")
    for attempt in range(4):

        @hypothesis_seed(base_seed + attempt)
        @settings(max_examples=prof.max_examples, database=None, deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                  phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink))
        @given(strategy)
        def prop(args):
            batch, taus, layout = args
            B, T = batch.shape
            if layout not in layouts_for(batch.advantages, B, T):
                layout = None
            opts = CallOptions(tau_pos=taus[0], tau_neg=taus[1], loss_agg_mode=mode)
            example = Counterexample(batch, opts, dtype, layout)
            try:
                ev = evaluate(ctx.candidate, batch, dtype=dtype, device=ctx.device, options=opts, layout=layout)
            except Exception as exc:  # the candidate crashed: shrink that too
                raise _Found(None, example, exc) from exc
            live = [c for c in ev.comparisons if c.quantity not in failed]
            if prof.targeted and live:
                target(max(min(c.error / c.k, 1e6) if c.k else 0.0 for c in live), label="error / bound")
            if any(not c.passed for c in live):
                raise _Found(ev, example)
            tally.add(ev, example)

        try:
            prop()
            break
        except _Found as found:
            if found.exc is not None:
                tally.error("call", found.exc, found.example)
                break
            tally.add(found.ev, found.example)
            failed |= {c.quantity for c in found.ev.comparisons if not c.passed}
    return tally.finish(time.perf_counter() - start)


def _evaluate_into(tally: _Tally, cand, batch, dtype, device, opts, layout=None, case_id=None):
    embed = batch.logprob.size <= 4096
    example = Counterexample(batch if embed else None, opts, dtype, layout, case_id)
    try:
        ev = evaluate(cand, batch, dtype=dtype, device=device, options=opts, layout=layout)
    except Exception as exc:
        tally.error("call", exc, example)
        return None
    tally.add(ev, example)
    return ev


def _edge_check(case):
    def run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
        tally = _Tally(f"edge.{case.id}", "edge", case.title, dtype, mode, ctx.device)
        start = time.perf_counter()
        opts = CallOptions(tau_pos=case.tau_pos, tau_neg=case.tau_neg, loss_agg_mode=mode)
        _evaluate_into(tally, ctx.candidate, case.make(), dtype, ctx.device, opts, case_id=case.id)
        return tally.finish(time.perf_counter() - start)

    def applies(candidate: Candidate, dtype: str) -> bool:
        return not candidate.info.requires_tau_order or case.tau_neg >= case.tau_pos

    return CheckDef(f"edge.{case.id}", "edge", case.title, True, applies, run)


# --- invariants: the transformed batch against the oracle, and consistency --


def _invariant_batches(ctx: Context, name: str, dtype: str, mode: str | None):
    rng = np.random.default_rng(unit_seed(ctx.seed, f"{name}[{dtype},{mode}]"))
    for k in range(ctx.profile.invariant_batches):
        B, T = int(rng.integers(3, 7)), int(rng.integers(4, 40))
        olp = -rng.exponential(1.5, (B, T))
        lp = olp + rng.normal(0, 0.3, (B, T))
        lengths = rng.integers(0 if k else 1, T + 1, B)
        mask = np.arange(T)[None, :] < lengths[:, None]
        yield Batch(lp, olp, rng.normal(0, 1, B), mask)


def _consistency(tally: _Tally, quantity: str, a_loss, b_loss, a_grad, b_grad, ref, dtype, out) -> None:
    """Two results of the candidate that must agree: within twice the bound
    (each is within the bound of the exact value)."""
    from .evaluate import conditioning

    mask = out.inputs.mask.astype(bool)
    cond = conditioning(ref, out.inputs)
    acc = tol.accumulation_dtype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        weighted = np.abs(ref.agg_weight * ref.token_loss)
        terms, cterms = float(np.nansum(weighted)), float(np.nansum(weighted * cond.gate))
    loss = tol.compare_scalar(f"{quantity}-loss", b_loss, a_loss, terms_abs_sum=2 * terms, n_terms=int(mask.sum()),
                              out_dtype=out.loss_dtype or dtype, acc_dtype=acc, cond_abs_sum=2 * cterms)
    comps = [loss]
    if a_grad is not None and b_grad is not None:
        g = tol.compare_elementwise(f"{quantity}-grad", b_grad, a_grad, out.grad_dtype or dtype, where=mask,
                                    cond=cond.grad, compute_dtype=acc)
        comps.append(replace(g, error=g.error / 2, passed=g.error / 2 <= g.k))
    rec = tally.record(quantity)
    for c in comps:
        rec.bound = c.k
        rec.max_error = max(rec.max_error or 0.0, c.error)
        rec.examples += 1
        if not c.passed and rec.status == "pass":
            rec.status, rec.message = "fail", f"{c.quantity}: {c.detail or c.error}"


def _invariant(name: str, title: str, transform, applies=_always):
    """``transform(batch, rng) -> (batch2, compare(out1, out2) -> (a_loss,
    b_loss, a_grad, b_grad))``: evaluate both against the oracle and check
    that the candidate agrees with itself as the transform says it must."""

    def run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
        tally = _Tally(f"invariant.{name}", "invariant", title, dtype, mode, ctx.device)
        start = time.perf_counter()
        rng = np.random.default_rng(unit_seed(ctx.seed, f"invariant.{name}[{dtype},{mode}]"))
        opts = CallOptions(loss_agg_mode=mode)
        for batch in _invariant_batches(ctx, name, dtype, mode):
            ev1 = _evaluate_into(tally, ctx.candidate, batch, dtype, ctx.device, opts)
            if ev1 is None:
                break
            batch2, opts2, relate = transform(batch, rng, ev1, opts)
            ev2 = _evaluate_into(tally, ctx.candidate, batch2, dtype, ctx.device, opts2)
            if ev2 is None:
                break
            a_loss, b_loss, a_grad, b_grad = relate(ev1.output, ev2.output)
            _consistency(tally, "consistency", a_loss, b_loss, a_grad, b_grad, ev1.reference, dtype, ev1.output)
        return tally.finish(time.perf_counter() - start)

    return CheckDef(f"invariant.{name}", "invariant", title, True, applies, run)


def _permute(batch, rng, ev, opts):
    perm = rng.permutation(batch.shape[0])
    b2 = Batch(batch.logprob[perm], batch.old_logprob[perm], batch.advantages[perm], batch.mask[perm])
    return b2, opts, lambda o1, o2: (o1.loss, o2.loss, None if o1.grad is None else o1.grad[perm], o2.grad)


def _pad(batch, rng, ev, opts):
    B, T = batch.shape
    pad = int(rng.integers(1, 9))
    junk = rng.choice([np.nan, np.inf, -np.inf, 0.0])

    def widen(x, fill):
        return np.concatenate([x, np.full((B, pad), fill)], axis=1)

    b2 = Batch(widen(batch.logprob, junk), widen(batch.old_logprob, junk), batch.advantages, widen(batch.mask, False))
    # seq-mean-token-sum-norm divides by the padded length T by definition
    k = T / (T + pad) if opts.loss_agg_mode == "seq-mean-token-sum-norm" else 1.0
    return b2, opts, lambda o1, o2: (o1.loss * k, o2.loss, None if o1.grad is None else o1.grad * k,
                                     None if o2.grad is None else o2.grad[:, :T])


def _scale(batch, rng, ev, opts):
    k = float(2.0 ** int(rng.integers(-3, 4)))
    b2 = Batch(batch.logprob, batch.old_logprob, batch.advantages * k, batch.mask)
    return b2, opts, lambda o1, o2: (o1.loss * k, o2.loss, None if o1.grad is None else o1.grad * k, o2.grad)


def _shard_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    """Row shards with the global counts of the whole batch: each shard
    against the oracle, and the shard losses summing to the batch's."""
    tally = _Tally("invariant.shards", "invariant", "shards with global counts sum to the batch", dtype, mode,
                   ctx.device)
    start = time.perf_counter()
    for batch in _invariant_batches(ctx, "shards", dtype, mode):
        opts = CallOptions(loss_agg_mode=mode)
        full = _evaluate_into(tally, ctx.candidate, batch, dtype, ctx.device, opts)
        if full is None:
            break
        den = full.reference.denominators
        gopts = replace(opts, global_token_count=den.tokens, global_seq_count=den.sequences)
        B = batch.shape[0]
        parts, grads = [], []
        for rows in np.array_split(np.arange(B), min(3, B)):
            part = Batch(batch.logprob[rows], batch.old_logprob[rows], batch.advantages[rows], batch.mask[rows])
            ev = _evaluate_into(tally, ctx.candidate, part, dtype, ctx.device, gopts)
            if ev is None:
                return tally.finish(time.perf_counter() - start)
            parts.append(ev.output.loss)
            grads.append(ev.output.grad)
        total_grad = None if any(g is None for g in grads) else np.concatenate(grads)
        _consistency(tally, "consistency", full.output.loss, float(sum(parts)), full.output.grad, total_grad,
                     full.reference, dtype, full.output)
    return tally.finish(time.perf_counter() - start)


def _distributed(name: str, title: str, micro_batches: int) -> CheckDef:
    """Shards on ranks of torch.distributed (conformance.distributed): the
    all-reduced loss and gradient against the oracle's full batch."""
    from . import distributed
    from .candidate import Output
    from .evaluate import compare, reference_for

    def run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
        tally = _Tally(f"distributed.{name}", "distributed", title, dtype, mode, ctx.device)
        start = time.perf_counter()
        why = distributed.unavailable() or (None if ctx.device == "cpu" else "runs on the CPU (gloo) only")
        if why:
            rec = tally.record("reduced")
            rec.status, rec.message = "skip", why
            return tally.finish(0.0)
        cand = ctx.candidate
        world = ctx.profile.dp_world_size
        for batch in _invariant_batches(ctx, f"distributed.{name}", dtype, mode):
            opts = CallOptions(loss_agg_mode=mode)
            rounded = get_driver(cand.info.framework).prepare(cand, batch, dtype, "cpu", check_inputs=False).rounded
            ref = reference_for(cand, rounded, opts, dtype)
            den = ref.denominators
            gopts = replace(opts, global_token_count=den.tokens, global_seq_count=den.sequences)
            example = Counterexample(batch, gopts, dtype, None)
            try:
                red = distributed.run_sharded(cand, batch, dtype, gopts, world_size=world, micro_batches=micro_batches)
            except CandidateError as exc:
                tally.error("reduced", exc, example)
                break
            out = Output(loss=red.loss, grad=red.grad, metrics={}, inputs=rounded, dtype=dtype, device="cpu",
                         grad_dtype=red.grad_dtype, loss_dtype=red.loss_dtype)
            tally.add(Evaluation(out, ref, compare(cand.with_info(metrics=()), out, ref)), example)
        return tally.finish(time.perf_counter() - start)

    def applies(candidate: Candidate, dtype: str) -> bool:
        info = candidate.info
        preferred = "float32" if "float32" in info.dtypes else info.dtypes[0]
        return info.framework == "torch" and info.data_parallel and info.global_counts and dtype == preferred

    return CheckDef(f"distributed.{name}", "distributed", title, True, applies, run)


def _layouts_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    tally = _Tally("invariant.layouts", "invariant", "every claimed advantage layout (B,), (B,1), (B,T)", dtype,
                   mode, ctx.device)
    start = time.perf_counter()
    batch = next(c for c in CASES if c.id == "square-batch").make()
    B, T = batch.shape
    opts = CallOptions(loss_agg_mode=mode)
    first = None
    for layout in layouts_for(batch.advantages, B, T):
        if layout not in ctx.candidate.info.advantage_shapes:
            continue
        ev = _evaluate_into(tally, ctx.candidate, batch, dtype, ctx.device, opts, layout=layout)
        if ev is None:
            break
        if first is None:
            first = ev
        else:
            _consistency(tally, "consistency", first.output.loss, ev.output.loss, first.output.grad,
                         ev.output.grad, first.reference, dtype, first.output)
    return tally.finish(time.perf_counter() - start)


def _determinism_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    tally = _Tally("invariant.determinism", "invariant", "bit-identical reruns (claimed deterministic)", dtype,
                   mode, ctx.device)
    start = time.perf_counter()
    for batch in _invariant_batches(ctx, "determinism", dtype, mode):
        opts = CallOptions(loss_agg_mode=mode)
        outs = []
        for _ in range(3):
            ev = _evaluate_into(tally, ctx.candidate, batch, dtype, ctx.device, opts)
            if ev is None:
                return tally.finish(time.perf_counter() - start)
            outs.append(ev.output)
        rec = tally.record("bitwise")
        rec.bound = 0.0
        for o in outs[1:]:
            same = np.array(o.loss).tobytes() == np.array(outs[0].loss).tobytes() and (
                o.grad is None or o.grad.tobytes() == outs[0].grad.tobytes())
            rec.max_error = max(rec.max_error or 0.0, 0.0 if same else math.inf)
            if not same and rec.status == "pass":
                rec.status = "fail"
                rec.message = f"reruns differ: loss {outs[0].loss!r} then {o.loss!r}"
    return tally.finish(time.perf_counter() - start)


def _finite_difference_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    """float64: the candidate's gradient against central differences of its
    own loss along random directions (Richardson-extrapolated)."""
    tally = _Tally("gradient.finite-difference", "gradient", "gradient vs central differences (float64)", dtype,
                   mode, ctx.device)
    start = time.perf_counter()
    driver = get_driver(ctx.candidate.info.framework)
    rng = np.random.default_rng(unit_seed(ctx.seed, f"fd[{mode}]"))
    rec = tally.record("directional")
    for batch in _invariant_batches(ctx, "finite-difference", dtype, mode):
        opts = CallOptions(loss_agg_mode=mode)
        try:
            base = driver.evaluate(ctx.candidate, batch, dtype, ctx.device, opts)
            v = rng.normal(size=batch.shape) * batch.mask
            h = 1e-6

            def loss_at(x):
                b = Batch(batch.logprob + x * v, batch.old_logprob, batch.advantages, batch.mask)
                return driver.evaluate(ctx.candidate, b, dtype, ctx.device, opts).loss

            d1 = (loss_at(h) - loss_at(-h)) / (2 * h)
            d2 = (loss_at(2 * h) - loss_at(-2 * h)) / (4 * h)
        except Exception as exc:
            tally.error("directional", exc, Counterexample(batch, opts, dtype, None))
            break
        fd = (4 * d1 - d2) / 3
        directional = float(np.sum(base.grad * v))
        scale = float(np.sum(np.abs(base.grad * v))) + 1e-300
        loss_scale = abs(base.loss) + scale
        allowed = 1e-6 * scale + 64 * 2.0**-52 * loss_scale / h
        rec.examples += 1
        rec.bound = 1.0
        err = abs(fd - directional) / allowed
        rec.max_error = max(rec.max_error or 0.0, err)
        if err > 1.0 and rec.status == "pass":
            rec.status = "fail"
            rec.message = f"directional derivative {directional!r}, central differences {fd!r}"
            rec.counterexample = Counterexample(batch, opts, dtype, None)
    return tally.finish(time.perf_counter() - start)


def _gate_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    import sapo_ref

    tally = _Tally("value.gate", "value", "the exposed gate against sapo_ref.soft_gate", dtype, None, ctx.device)
    start = time.perf_counter()
    rng = np.random.default_rng(unit_seed(ctx.seed, f"gate[{dtype}]"))
    ratio = np.concatenate([[0.0, 0.5, 1.0, 1.5, 2.0, 10.0, 1e4, np.inf], np.exp(rng.normal(0, 0.5, 56))])
    adv = np.where(rng.random(ratio.size) < 0.5, 1.0, -1.0)
    adv[:3] = 0.0
    rec = tally.record("gate")
    for taus in ((1.0, 1.05), (0.5, 4.0)):
        try:
            g, r_used, a_used, g_dtype = get_driver(ctx.candidate.info.framework).gate(
                ctx.candidate, ratio, adv, taus[0], taus[1], dtype, ctx.device)
        except Exception as exc:
            tally.error("gate", exc, None)
            break
        comp = tol.compare_elementwise("gate", g, sapo_ref.soft_gate(r_used, a_used, *taus), g_dtype)
        rec.examples += 1
        rec.bound = comp.k
        rec.max_error = max(rec.max_error or 0.0, comp.error)
        if not comp.passed and rec.status == "pass":
            rec.status, rec.message = "fail", f"tau {taus}: {comp.detail}"
    return tally.finish(time.perf_counter() - start)


def _precision_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    """Low-precision inputs on long rows with cancelling advantages: only a
    kernel that computes the gate and accumulates in float32 passes."""
    tally = _Tally("precision.fp32-inside", "precision", "float32 gate and accumulation for low-precision inputs",
                   dtype, mode, ctx.device)
    start = time.perf_counter()
    rng = np.random.default_rng(unit_seed(ctx.seed, f"precision[{dtype},{mode}]"))
    B, T = 8, 2048
    olp = -rng.exponential(1.0, (B, T))
    batch = Batch(olp + rng.normal(0, 0.2, (B, T)), olp, np.where(np.arange(B) % 2 == 0, 1.0, -1.0),
                  np.ones((B, T), bool))
    _evaluate_into(tally, ctx.candidate, batch, dtype, ctx.device, CallOptions(loss_agg_mode=mode))
    return tally.finish(time.perf_counter() - start)


_GOLDEN_CACHE: dict = {}


def _golden_cases():
    from . import golden

    directory = golden.default_dir()
    key = str(directory)
    if key not in _GOLDEN_CACHE:
        _GOLDEN_CACHE[key] = golden.load(directory)[1]
    return _GOLDEN_CACHE[key]


def _golden_run(ctx: Context, dtype: str, mode: str | None) -> list[Record]:
    """The candidate over the golden fixtures of its dtype, mode and profile,
    against the stored outputs (no oracle call)."""
    from . import golden
    from .evaluate import compare

    tally = _Tally("golden.replay", "golden", "the golden fixtures (stored oracle outputs)", dtype, mode, ctx.device)
    start = time.perf_counter()
    try:
        cases = _golden_cases()
    except golden.GoldenError as exc:
        rec = tally.record("fixtures")
        rec.status, rec.message = "skip", str(exc)
        return tally.finish(time.perf_counter() - start)
    info = ctx.candidate.info
    driver = get_driver(info.framework)
    for case in cases:
        opts = case.options
        if (case.meta["dtype"] != dtype or opts.loss_agg_mode != mode
                or case.meta["options"]["profile"] != info.profile
                or (info.requires_tau_order and opts.tau_pos > opts.tau_neg)):
            continue
        example = Counterexample(case.batch if case.batch.logprob.size <= 4096 else None, opts, dtype, None,
                                 f"golden:{case.id}")
        try:
            out = driver.evaluate(ctx.candidate, case.batch, dtype, ctx.device, opts)
        except Exception as exc:
            tally.error("call", exc, example)
            break
        ev = Evaluation(out, golden.reference(case), compare(ctx.candidate, out, golden.reference(case)))
        tally.add(ev, example)
    if not tally.records:
        rec = tally.record("fixtures")
        rec.status, rec.message = "skip", f"no golden case for {dtype}, {mode}, profile {info.profile}"
    return tally.finish(time.perf_counter() - start)


CHECKS: tuple[CheckDef, ...] = (
    CheckDef("random", "random", "hypothesis-generated batches against the oracle", True, _always, _run_random),
    *(_edge_check(case) for case in CASES),
    _invariant("permutation", "permuting rows permutes the gradient and keeps the loss", _permute),
    _invariant("padding", "appending masked padding (NaN/inf) changes nothing", _pad),
    _invariant("scaling", "scaling the advantages by 2**k scales loss and gradient", _scale),
    CheckDef("invariant.shards", "invariant", "shards with global counts sum to the batch", True,
             lambda cand, dtype: cand.info.global_counts, _shard_run),
    CheckDef("invariant.layouts", "invariant", "every claimed advantage layout", True,
             lambda cand, dtype: len(cand.info.advantage_shapes) > 1, _layouts_run),
    CheckDef("invariant.determinism", "invariant", "bit-identical reruns", True,
             lambda cand, dtype: cand.info.deterministic, _determinism_run),
    CheckDef("gradient.finite-difference", "gradient", "gradient vs central differences (float64)", True,
             lambda cand, dtype: dtype == "float64" and cand.info.provides_grad, _finite_difference_run),
    CheckDef("value.gate", "value", "the exposed gate", False, lambda cand, dtype: cand.gate is not None, _gate_run),
    _distributed("data-parallel", "shards on torch.distributed ranks, gradients all-reduced", 1),
    _distributed("grad-accumulation", "shards on ranks, each in two accumulated micro-batches", 2),
    CheckDef("weights.random", "weights", "random batches with rollout importance weights", True,
             lambda cand, dtype: cand.info.rollout_is_weights,
             lambda ctx, dtype, mode: _run_random(ctx, dtype, mode, name="weights.random", group="weights",
                                                  title="random batches with rollout importance weights",
                                                  weights=True)),
    CheckDef("precision.fp32-inside", "precision", "float32 inside for low-precision inputs", True,
             lambda cand, dtype: dtype in ("float16", "bfloat16"), _precision_run),
    CheckDef("golden.replay", "golden", "the golden fixtures", True, _always, _golden_run),
)

CHECKS_BY_NAME = {c.name: c for c in CHECKS}
