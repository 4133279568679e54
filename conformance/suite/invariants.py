"""Self-consistency checks: a transformed batch against the oracle, and the
candidate agreeing with itself as the transformation says it must."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

import sapo_ref

from .. import tolerance as tol
from ..candidate import Batch, CallOptions
from ..cases import CASES_BY_ID
from ..drivers import layouts_for
from ..evaluate import conditioning
from .oracle_checks import evaluate_into, invariant_batches
from .records import Counterexample, Tally
from .registry import CheckDef, Context, unit_seed


def consistency(tally: Tally, a_loss, b_loss, a_grad, b_grad, ref, out) -> None:
    """Two results of the candidate that must agree: within twice the bound
    (each is within the bound of the exact value)."""
    dtype = tally.dtype
    mask = out.inputs.mask.astype(bool)
    cond = conditioning(ref, out.inputs)
    acc = tol.accumulation_dtype(dtype)
    with np.errstate(invalid="ignore", over="ignore"):
        weighted = np.abs(ref.agg_weight * ref.token_loss)
        terms, cterms = float(np.nansum(weighted)), float(np.nansum(weighted * cond.gate))
    loss = tol.compare_scalar("consistency-loss", b_loss, a_loss, terms_abs_sum=2 * terms, n_terms=int(mask.sum()),
                              out_dtype=out.loss_dtype or dtype, acc_dtype=acc, cond_abs_sum=2 * cterms)
    comps = [loss]
    if a_grad is not None and b_grad is not None:
        g = tol.compare_elementwise("consistency-grad", b_grad, a_grad, out.grad_dtype or dtype, where=mask,
                                    cond=cond.grad, compute_dtype=acc)
        comps.append(g.halved())
    rec = tally.record("consistency")
    for c in comps:
        rec.observe(c.error, c.k, passed=c.passed, message=f"{c.quantity}: {c.detail or c.error}", category=c.category,
                    practical_error=c.practical_error)


def transform_check(name: str, title: str, transform) -> CheckDef:
    """``transform(batch, rng, ev, opts) -> (batch2, opts2, relate)`` with
    ``relate(out1, out2) -> (a_loss, b_loss, a_grad, b_grad)``: evaluate both
    against the oracle and check that the candidate agrees with itself."""

    def body(ctx: Context, tally: Tally) -> None:
        rng = np.random.default_rng(unit_seed(ctx.seed, f"invariant.{name}[{tally.dtype},{tally.loss_agg_mode}]"))
        opts = CallOptions(loss_agg_mode=tally.loss_agg_mode)
        for batch in invariant_batches(ctx, tally, name):
            ev1 = evaluate_into(tally, ctx, batch, opts)
            if ev1 is None:
                break
            batch2, opts2, relate = transform(batch, rng, ev1, opts)
            ev2 = evaluate_into(tally, ctx, batch2, opts2)
            if ev2 is None:
                break
            consistency(tally, *relate(ev1.output, ev2.output), ev1.reference, ev1.output)

    return CheckDef(f"invariant.{name}", "invariant", title, True, body)


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
    # seq-mean-token-sum-norm divides by the padded length T by definition -- the
    # mode the candidate's profile computes, with the profile's normaliser
    padded_norm = (ev.reference.semantics.loss_agg_mode == "seq-mean-token-sum-norm"
                   and sapo_ref.get_profile(ev.profile).token_sum_norm is None)
    k = T / (T + pad) if padded_norm else 1.0
    return b2, opts, lambda o1, o2: (o1.loss * k, o2.loss, None if o1.grad is None else o1.grad * k,
                                     None if o2.grad is None else o2.grad[:, :T])


def _scale(batch, rng, ev, opts):
    k = float(2.0 ** int(rng.integers(-3, 4)))
    b2 = Batch(batch.logprob, batch.old_logprob, batch.advantages * k, batch.mask)
    return b2, opts, lambda o1, o2: (o1.loss * k, o2.loss, None if o1.grad is None else o1.grad * k, o2.grad)


def shards(ctx: Context, tally: Tally) -> None:
    """Row shards with the global counts of the whole batch: each shard
    against the oracle, and the shard losses summing to the batch's."""
    for batch in invariant_batches(ctx, tally, "shards"):
        opts = CallOptions(loss_agg_mode=tally.loss_agg_mode)
        full = evaluate_into(tally, ctx, batch, opts)
        if full is None:
            return
        den = full.reference.denominators
        gopts = replace(opts, global_token_count=den.tokens, global_seq_count=den.sequences)
        parts, grads = [], []
        for rows in np.array_split(np.arange(batch.shape[0]), min(3, batch.shape[0])):
            part = Batch(batch.logprob[rows], batch.old_logprob[rows], batch.advantages[rows], batch.mask[rows])
            ev = evaluate_into(tally, ctx, part, gopts)
            if ev is None:
                return
            parts.append(ev.output.loss)
            grads.append(ev.output.grad)
        total_grad = None if any(g is None for g in grads) else np.concatenate(grads)
        consistency(tally, full.output.loss, float(sum(parts)), full.output.grad, total_grad, full.reference,
                    full.output)


def layouts(ctx: Context, tally: Tally) -> None:
    """One batch in every advantage layout the candidate claims."""
    batch = CASES_BY_ID["square-batch"].make()
    B, T = batch.shape
    opts = CallOptions(loss_agg_mode=tally.loss_agg_mode)
    first = None
    for layout in layouts_for(batch.advantages, B, T):
        if layout not in ctx.candidate.info.advantage_shapes:
            continue
        ev = evaluate_into(tally, ctx, batch, opts, layout=layout)
        if ev is None:
            break
        if first is None:
            first = ev
        else:
            consistency(tally, first.output.loss, ev.output.loss, first.output.grad, ev.output.grad,
                        first.reference, first.output)


def determinism(ctx: Context, tally: Tally) -> None:
    """Three calls on each batch: bit-identical loss and gradient."""
    for batch in invariant_batches(ctx, tally, "determinism"):
        opts = CallOptions(loss_agg_mode=tally.loss_agg_mode)
        outs = []
        for _ in range(3):
            ev = evaluate_into(tally, ctx, batch, opts)
            if ev is None:
                return
            outs.append(ev.output)
        rec = tally.record("bitwise")
        for o in outs[1:]:
            same = np.array(o.loss).tobytes() == np.array(outs[0].loss).tobytes() and (
                o.grad is None or o.grad.tobytes() == outs[0].grad.tobytes())
            rec.observe(0.0 if same else math.inf, 0.0, category="contract", counterexample=Counterexample(batch, opts, tally.dtype, None),
                        message=f"reruns differ: loss {outs[0].loss!r} then {o.loss!r}")


CHECKS: tuple[CheckDef, ...] = (
    transform_check("permutation", "permuting rows permutes the gradient and keeps the loss", _permute),
    transform_check("padding", "appending masked padding (NaN/inf) changes nothing", _pad),
    transform_check("scaling", "scaling the advantages by 2**k scales loss and gradient", _scale),
    CheckDef("invariant.shards", "invariant", "shards with global counts sum to the batch", True, shards,
             lambda cand, dtype: cand.info.global_counts),
    CheckDef("invariant.layouts", "invariant", "every claimed advantage layout (B,), (B,1), (B,T)", True, layouts,
             lambda cand, dtype: len(cand.info.advantage_shapes) > 1),
    CheckDef("invariant.determinism", "invariant", "bit-identical reruns (claimed deterministic)", True, determinism,
             lambda cand, dtype: cand.info.deterministic),
)
