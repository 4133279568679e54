"""Checks that compare the candidate with the oracle on given inputs:
hypothesis-generated batches, the edge-case table, low-precision inputs,
the exposed gate, and the float64 gradient against finite differences."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from hypothesis import HealthCheck, Phase, given, settings, target
from hypothesis import seed as hypothesis_seed

from .. import tolerance as tol
from ..candidate import Batch, CallOptions
from ..cases import CASES
from ..drivers import get_driver, layouts_for
from ..evaluate import Evaluation
from ..fused import evaluate_any
from ..strategies import random_inputs
from ..types import HarnessFault
from .records import Counterexample, Tally
from .registry import CheckDef, Context, unit_seed

#: the largest batch (tokens) embedded in a record as its counterexample
EMBED_TOKENS = 4096


@contextmanager
def _no_local_constants():
    """Hypothesis mixes literal constants from the *local* modules imported
    so far (any .py outside site-packages and test folders) into its draws,
    so the same seed would give different batches depending on what the
    process happened to import (the command line, the pytest plugin, a
    user's own modules).  A seed must name one set of examples: while our
    properties run, that pool is empty.  Hypothesis's fixed global
    constants stay; the constants' cache is ours for the duration (the
    caller's is restored untouched).  A no-op if a hypothesis release moves
    these internals."""
    try:
        from hypothesis.internal.conjecture import providers
        empty = providers.Constants(integers=providers.SortedSet(),
                                    floats=providers.SortedSet(key=providers.float_to_int),
                                    bytes=providers.SortedSet(), strings=providers.SortedSet())
        saved = providers._get_local_constants, providers.CONSTANTS_CACHE
        ours = type(providers.CONSTANTS_CACHE)(1024)
    except (ImportError, AttributeError, TypeError):
        yield
        return
    providers._get_local_constants, providers.CONSTANTS_CACHE = (lambda: empty), ours
    try:
        yield
    finally:
        providers._get_local_constants, providers.CONSTANTS_CACHE = saved


class _Found(Exception):
    """Raised inside a hypothesis property to stop at a failing example."""

    def __init__(self, ev: Evaluation | None, example: Counterexample, exc: BaseException | None = None):
        super().__init__("counterexample")
        self.ev, self.example, self.exc = ev, example, exc


def random_batches(ctx: Context, tally: Tally, *, weights: bool = False) -> None:
    """Hypothesis-generated batches against the oracle.  After a failure the
    search continues for the quantities that have not failed yet, so each
    gets its own minimal counterexample."""
    info = ctx.candidate.info
    prof = ctx.profile
    dtype, mode = tally.dtype, tally.loss_agg_mode
    failed: set[str] = set()
    strategy = random_inputs(max_rows=prof.max_rows, max_cols=prof.max_cols, dtype=dtype,
                             advantage_shapes=info.advantage_shapes, weights=weights,
                             requires_tau_order=info.requires_tau_order, global_counts=info.global_counts)
    base_seed = unit_seed(ctx.seed, f"{tally.check}[{dtype},{mode}]")
    for attempt in range(4):

        @hypothesis_seed(base_seed + attempt)
        @settings(max_examples=prof.max_examples, database=None, deadline=None, derandomize=False,
                  suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                  phases=(Phase.explicit, Phase.generate, Phase.target, Phase.shrink))
        @given(strategy)
        def prop(args):
            taus, batch, layout, counts = args
            B, T = batch.shape
            if layout not in layouts_for(batch.advantages, B, T):
                layout = None
            opts = CallOptions(tau_pos=taus[0], tau_neg=taus[1], loss_agg_mode=mode, **counts)
            example = Counterexample(batch, opts, dtype, layout)
            try:
                ev = evaluate_any(ctx.candidate, batch, dtype=dtype, device=ctx.device, options=opts, layout=layout)
            except HarnessFault:  # ours, not the candidate's: a harness error for the whole unit
                raise
            except Exception as exc:  # the candidate crashed: shrink that too
                raise _Found(None, example, exc) from exc
            live = [c for c in ev.comparisons if c.quantity not in failed]
            if prof.targeted and live:
                target(max(min(c.error / c.k, 1e6) if c.k else 0.0 for c in live), label="error / bound")
            if any(not c.passed for c in live):
                raise _Found(ev, example)
            tally.add(ev, example)

        try:
            with _no_local_constants():
                prop()
            break
        except _Found as found:
            if found.exc is not None:
                tally.raised("call", found.exc, found.example)
                break
            tally.add(found.ev, found.example)
            failed |= {c.quantity for c in found.ev.comparisons if not c.passed}


def evaluate_into(tally: Tally, ctx: Context, batch: Batch, opts: CallOptions, layout: str | None = None,
                  case_id: str | None = None) -> Evaluation | None:
    """One call against the oracle into the tally; None if the candidate raised."""
    embed = batch.logprob.size <= EMBED_TOKENS
    example = Counterexample(batch if embed else None, opts, tally.dtype, layout, case_id)
    try:
        ev = evaluate_any(ctx.candidate, batch, dtype=tally.dtype, device=ctx.device, options=opts, layout=layout)
    except HarnessFault:
        raise
    except Exception as exc:
        tally.raised("call", exc, example)
        return None
    tally.add(ev, example)
    return ev


def invariant_batches(ctx: Context, tally: Tally, label: str):
    """The profile's small random batches for one unit (seeded by ``label``)."""
    rng = np.random.default_rng(unit_seed(ctx.seed, f"{label}[{tally.dtype},{tally.loss_agg_mode}]"))
    for k in range(ctx.profile.invariant_batches):
        B, T = int(rng.integers(3, 7)), int(rng.integers(4, 40))
        olp = -rng.exponential(1.5, (B, T))
        lp = olp + rng.normal(0, 0.3, (B, T))
        lengths = rng.integers(0 if k else 1, T + 1, B)
        mask = np.arange(T)[None, :] < lengths[:, None]
        yield Batch(lp, olp, rng.normal(0, 1, B), mask)


def edge_check(case) -> CheckDef:
    def body(ctx: Context, tally: Tally) -> None:
        opts = CallOptions(tau_pos=case.tau_pos, tau_neg=case.tau_neg, loss_agg_mode=tally.loss_agg_mode)
        evaluate_into(tally, ctx, case.make(), opts, case_id=case.id)

    def applies(candidate, dtype: str) -> bool:
        if candidate.info.requires_tau_order and case.tau_neg < case.tau_pos:
            return False
        batch = case.make()  # a case whose advantages' layout the candidate does not take is not for it
        return any(x in candidate.info.advantage_shapes for x in layouts_for(batch.advantages, *batch.shape))

    return CheckDef(f"edge.{case.id}", "edge", case.title, True, body, applies)


def low_precision(ctx: Context, tally: Tally) -> None:
    """Low-precision inputs on long rows with cancelling advantages: only a
    kernel that computes the gate and accumulates in float32 passes."""
    rng = np.random.default_rng(unit_seed(ctx.seed, f"precision[{tally.dtype},{tally.loss_agg_mode}]"))
    B, T = 8, 2048
    olp = -rng.exponential(1.0, (B, T))
    batch = Batch(olp + rng.normal(0, 0.2, (B, T)), olp, np.where(np.arange(B) % 2 == 0, 1.0, -1.0),
                  np.ones((B, T), bool))
    evaluate_into(tally, ctx, batch, CallOptions(loss_agg_mode=tally.loss_agg_mode))


def exposed_gate(ctx: Context, tally: Tally) -> None:
    """The candidate's own gate function against sapo_ref.soft_gate."""
    import sapo_ref

    rng = np.random.default_rng(unit_seed(ctx.seed, f"gate[{tally.dtype}]"))
    ratio = np.concatenate([[0.0, 0.5, 1.0, 1.5, 2.0, 10.0, 1e4, np.inf], np.exp(rng.normal(0, 0.5, 56))])
    adv = np.where(rng.random(ratio.size) < 0.5, 1.0, -1.0)
    adv[:3] = 0.0
    rec = tally.record("gate")
    for taus in ((1.0, 1.05), (0.5, 4.0)):
        try:
            g, r_used, a_used, g_dtype = get_driver(ctx.candidate.info.framework).gate(
                ctx.candidate, ratio, adv, taus[0], taus[1], tally.dtype, ctx.device)
        except Exception as exc:
            rec.raised(exc)
            break
        comp = tol.compare_elementwise("gate", g, sapo_ref.soft_gate(r_used, a_used, *taus), g_dtype)
        rec.observe(comp.error, comp.k, passed=comp.passed, message=f"tau {taus}: {comp.detail}", category=comp.category,
                    practical_error=comp.practical_error)


def finite_differences(ctx: Context, tally: Tally) -> None:
    """float64: the candidate's gradient against central differences of its
    own loss along random directions (Richardson-extrapolated)."""
    mode = tally.loss_agg_mode
    driver = get_driver(ctx.candidate.info.framework)
    rng = np.random.default_rng(unit_seed(ctx.seed, f"fd[{mode}]"))
    rec = tally.record("directional")
    for batch in invariant_batches(ctx, tally, "finite-difference"):
        opts = CallOptions(loss_agg_mode=mode)
        example = Counterexample(batch, opts, tally.dtype, None)
        try:
            base = driver.call(ctx.candidate, batch, tally.dtype, ctx.device, opts)
            v = rng.normal(size=batch.shape) * batch.mask
            h = 1e-6

            def loss_at(x):
                b = Batch(batch.logprob + x * v, batch.old_logprob, batch.advantages, batch.mask)
                return driver.call(ctx.candidate, b, tally.dtype, ctx.device, opts).loss

            d1 = (loss_at(h) - loss_at(-h)) / (2 * h)
            d2 = (loss_at(2 * h) - loss_at(-2 * h)) / (4 * h)
        except Exception as exc:
            rec.raised(exc, example)
            break
        fd = (4 * d1 - d2) / 3
        directional = float(np.sum(base.grad * v))
        scale = float(np.sum(np.abs(base.grad * v))) + 1e-300
        loss_scale = abs(base.loss) + scale
        allowed = 1e-6 * scale + 64 * 2.0**-52 * loss_scale / h
        rec.observe(abs(fd - directional) / allowed, 1.0, counterexample=example, category="semantics",
                    message=f"directional derivative {directional!r}, central differences {fd!r}")


CHECKS: tuple[CheckDef, ...] = (
    CheckDef("random", "random", "random batches against the oracle", True, random_batches),
    *(edge_check(case) for case in CASES),
)
LATE_CHECKS: tuple[CheckDef, ...] = (
    CheckDef("gradient.finite-difference", "gradient", "gradient vs central differences (float64)", True,
             finite_differences, lambda cand, dtype: dtype == "float64" and cand.info.provides_grad),
    CheckDef("value.gate", "value", "the exposed gate against sapo_ref.soft_gate", False, exposed_gate,
             lambda cand, dtype: cand.gate is not None),
)
WEIGHTS_CHECKS: tuple[CheckDef, ...] = (
    CheckDef("weights.random", "weights", "random batches with rollout importance weights", True,
             lambda ctx, tally: random_batches(ctx, tally, weights=True),
             lambda cand, dtype: cand.info.rollout_is_weights),
    CheckDef("precision.fp32-inside", "precision", "float32 gate and accumulation for low-precision inputs", True,
             low_precision, lambda cand, dtype: dtype in ("float16", "bfloat16")),
)
