"""Why a comparison failed: the known defects that reproduce it, or the
quantitative shape of the error, and the offending tokens as evidence.

A record is diagnosed once per new worst failure, while the candidate's
outputs are at hand (``suite.records.Tally.add``).  Each defect of the
catalogue (``conformance.defects``) predicts what a kernel with that defect
computes on the failing batch (``conformance._variants``); it *reproduces*
the failure when

* every quantity it predicts (loss, gradient at every position, metrics)
  agrees with the candidate's within the practical tolerance (tolerance
  module), with the same NaN/inf pattern;
* it predicts at least one quantity that failed against the oracle; and
* for a ``precision`` failure, it is also at least twice as close to the
  candidate as the oracle is, in units of the strict bound (within the
  practical tolerance the oracle itself "reproduces" the candidate).

A ``precision`` failure is explained only by a defect of that category, a
``contract`` one only by a contract or non-finite defect.
A defect with a ``check_glob`` (a contract such as ``*:inputs-unmodified``)
is named by the failing check itself, in ``conformance.findings``.
SPEC.md §10.2 states these rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from types import SimpleNamespace

import numpy as np

import sapo_ref

from . import tolerance as tol
from .evaluate import Evaluation, compare, conditioning
from .fused import GRAD_QUANTITIES
from .types import Output

#: offending tokens kept as evidence per record
EVIDENCE_TOKENS = 8


#: the defect categories that may explain a failure of a category (others: any).
#: A changed formula is off by more than the practical tolerance somewhere, not
#: just in the last bits; a broken contract at masked positions is about masking.
_EXPLAINS = {"precision": ("precision",), "contract": ("contract", "non-finite")}


@dataclass(frozen=True)
class Diagnosis:
    defects: tuple[str, ...]
    shape: str
    evidence: dict | None


def diagnose(ev: Evaluation, comp: tol.Comparison, *, check: str, memo: dict | None = None) -> Diagnosis:
    """The defects reproducing ``comp``'s failure on ``ev`` (those of its own
    category first, then catalogue order), the error's shape when none
    does, and the evidence.  ``memo``: a dict kept across the comparisons
    of one evaluation, so each defect's prediction is made once for all."""
    from .defects import DEFECTS

    memo = {} if memo is None else memo

    evidence = _evidence(ev, comp)
    names: list[str] = []
    problems: list[str] = []
    situation = None
    for defect in DEFECTS:
        if defect.check_glob is not None:  # named by the check (conformance.findings)
            continue
        if defect.category not in _EXPLAINS.get(comp.category, (defect.category,)):
            continue
        try:
            if situation is None:
                situation = memo.get("situation") or memo.setdefault("situation", _situation(ev))
            if _reproduces(defect, situation, ev, comp, memo):
                names.append(defect.id)
        except Exception as exc:  # a variant's own bug must not hide the failure it diagnoses
            problems.append(f"{defect.id}: {type(exc).__name__}: {exc}")
    category = {d.id: d.category for d in DEFECTS}
    names.sort(key=lambda n: category[n] != comp.category)  # stable: catalogue order within each
    shape = "" if names else error_shape(ev, comp)
    if problems:
        shape = (shape + "; " if shape else "") + "diagnosis incomplete (" + "; ".join(problems[:2]) + ")"
    return Diagnosis(tuple(names), shape, evidence)


def _situation(ev: Evaluation):
    from ._variants import Situation

    out = ev.output
    return Situation(inputs=out.inputs, options=ev.options, profile=sapo_ref.get_profile(ev.profile),
                     dtype=out.dtype, layout=ev.layout, reference=ev.reference, got_loss=float(out.loss),
                     got_grad=out.grad, got_metrics=dict(out.metrics), parts=ev.parts)


#: the output a contract comparison is about, for matching a prediction
_UNDERLYING = {"grad-masked-zero": "grad"}



def _reproduces(defect, situation, ev: Evaluation, comp: tol.Comparison, memo: dict) -> bool:
    from ._variants import predict

    if defect.id not in memo:
        memo[defect.id] = predict(defect, situation)
    pred = memo[defect.id]
    if pred is None:
        return False
    failed = {_underlying(ev, c.quantity) for c in ev.comparisons if not c.passed}
    if pred.tolerance_dtype is not None:
        return _within_low_precision(ev, comp, pred.tolerance_dtype)
    predicted = _predicted(pred, ev)
    if not (set(predicted) & failed):
        return False
    key = ("against", defect.id)
    if key not in memo:
        memo[key] = _compare_all(ev, pred, memo)
    against = memo[key]
    for quantity in predicted:
        c = against.get(quantity)
        if c is None:
            continue
        if not c.passed and c.category != "precision":
            return False
    if comp.category == "precision":
        c = against.get(_underlying(ev, comp.quantity))
        if c is None:
            return False
        return c.passed or (c.error / c.k if c.k else math.inf) <= max(1.0, comp.error / comp.k / 2)
    return True


def _underlying(ev: Evaluation, quantity: str) -> str:
    """The output a comparison is about: a fused kernel's masked-zero check is
    about its first carried gradient."""
    if ev.carry is not None and quantity == "grad-masked-zero":
        return next(c.quantity for c in ev.comparisons if c.quantity.startswith("grad-") and c.quantity != quantity)
    return _UNDERLYING.get(quantity, quantity)


def _predicted(pred, ev: Evaluation) -> list[str]:
    out = []
    if pred.loss is not None:
        out.append("loss")
    if pred.grad is not None:
        out += [c.quantity for c in ev.comparisons if c.quantity in GRAD_QUANTITIES] if ev.carry else ["grad"]
    out += [f"metric:{k}" for k in pred.metrics]
    return out


def _compare_all(ev: Evaluation, pred, memo: dict) -> dict[str, tol.Comparison]:
    """The candidate against a prediction, under the tolerance policy: loss
    and metrics as against the oracle, the gradient at every position (a
    prediction says what masked positions hold)."""
    out, ref = ev.output, ev.reference
    predicted = replace(ref, loss=ref.loss if pred.loss is None else pred.loss,
                        metrics={**ref.metrics, **pred.metrics})
    res = {c.quantity: c for c in compare(_Claims(out), out, predicted) if c.quantity == "loss"
           or c.quantity[len("metric:"):] in pred.metrics}
    if ev.carry is not None and pred.grad is not None:
        res.update(ev.carry(pred.grad))
    if out.grad is not None and pred.grad is not None:
        mask = out.inputs.mask.astype(bool)
        cond = memo.get("cond") or memo.setdefault("cond", conditioning(ref, out.inputs))
        with np.errstate(invalid="ignore"):
            junk = ~mask & ~np.isfinite(out.inputs.logprob - out.inputs.old_logprob)
        # what a kernel leaves at masked non-finite padding depends on how it
        # masks, not on the defect: a contract check of its own judges it
        res["grad"] = tol.compare_elementwise("grad", out.grad, pred.grad, out.grad_dtype or out.dtype, where=~junk,
                                              cond=np.where(mask, cond.grad, 0.0),
                                              compute_dtype=tol.accumulation_dtype(out.dtype),
                                              practical_scale=cond.grad_scale,
                                              abs_bound=tol.MIN_NORMAL.get(tol.accumulation_dtype(out.dtype), 0.0)
                                              * np.where(mask, cond.underflow, 0.0))
    return res


#: a low-precision computation loses about eps_in / eps_32 (>= 2**13) more
#: than the strict bound allows, in every output; a float32 kernel whose
#: gradient alone misses by less than this is not computing in low precision
LOW_PRECISION_EXCESS = 32.0


def _within_low_precision(ev: Evaluation, comp: tol.Comparison, dtype: str) -> bool:
    """Every failure of the evaluation is what computing in ``dtype`` (the
    input's own precision) gives: a gradient non-finite only where
    exp(log-ratio) overflows in ``dtype``, or an error that fits the strict
    bound of a kernel computing and accumulating in ``dtype`` -- and the
    failures are not just a gradient a little off (a float32 kernel's
    precision, module constant LOW_PRECISION_EXCESS)."""
    out = ev.output
    if out.dtype not in ("float16", "bfloat16"):
        return False
    failing = [c for c in ev.comparisons if not c.passed]
    finite = [c for c in failing if c.category != "non-finite"]
    if comp.category != "non-finite" and all(c.quantity == "grad" for c in finite) and \
            (not comp.k or comp.error / comp.k < LOW_PRECISION_EXCESS):
        return False
    if _leaves_range(ev, dtype):
        return True
    again = {c.quantity: c for c in compare(_Claims(out), out, ev.reference, acc_dtype=dtype)}
    for c in failing:
        if c.category == "non-finite":
            if not _overflows_in(ev, c, dtype):
                return False
        elif c.quantity not in again or not again[c.quantity].passed:
            return False
    return True


def _leaves_range(ev: Evaluation, dtype: str) -> bool:
    """float16 only (bfloat16 has float32's range): some value a kernel
    computing in float16 must form at an unmasked token -- 4/tau, |A| 4/tau,
    the ratio, |z| = tau |r - 1|, the aggregation weight, the weighted token
    loss, the gradient -- is beyond float16's largest value or a non-zero
    below its smallest normal one (flushed, or subnormal with few bits).
    Then any error is what computing in float16 gives: the first-order
    bound of the float16 model does not hold there."""
    if dtype != "float16":
        return False
    ref = ev.reference
    m = ev.output.inputs.mask.astype(bool)
    B, T = m.shape
    with np.errstate(all="ignore"):
        adv = np.broadcast_to(np.asarray(ev.output.inputs.advantages, dtype=np.float64).reshape(B, -1), (B, T))
        tau = np.where(adv > 0, ref.semantics.tau_pos, ref.semantics.tau_neg)
        values = np.abs(np.stack(np.broadcast_arrays(
            4 / tau, adv * 4 / tau, ref.ratio, tau * (ref.ratio - 1), ref.agg_weight,
            ref.agg_weight * ref.token_loss, ref.grad)))[:, m]
    values = values[np.isfinite(values) & (values > 0)]
    return bool(values.size) and bool((values > tol.FMAX[dtype]).any() or (values < tol.MIN_NORMAL[dtype]).any())


def _overflows_in(ev: Evaluation, comp: tol.Comparison, dtype: str) -> bool:
    """The gradient differs from the oracle's in finiteness only where
    exp(log-ratio) overflows in ``dtype``."""
    out = ev.output
    if comp.quantity != "grad" or out.grad is None:
        return False
    mask = out.inputs.mask.astype(bool)
    with np.errstate(invalid="ignore"):
        d = out.inputs.logprob - out.inputs.old_logprob
        overflows = mask & np.isfinite(d) & (d > math.log(tol.FMAX[dtype]))
        differs = mask & (np.isfinite(out.grad) != np.isfinite(ev.reference.grad))
    return bool(differs.any()) and not bool((differs & ~overflows).any())


class _Claims:
    """What compare() reads of a candidate's claims, from its output."""

    def __init__(self, out: Output):
        self.info = SimpleNamespace(provides_grad=out.grad is not None, metrics=tuple(out.metrics))


# ---------------------------------------------------------------------------
# evidence: the offending tokens
# ---------------------------------------------------------------------------


def _token_table(ev: Evaluation, positions, got=None, expected=None) -> list[dict]:
    inp = ev.output.inputs
    B, T = inp.mask.shape
    adv = np.broadcast_to(np.asarray(inp.advantages, dtype=np.float64).reshape(B, -1), (B, T))
    sem = ev.reference.semantics
    rows = []
    for b, t in positions[:EVIDENCE_TOKENS]:
        b, t = int(b), int(t)
        with np.errstate(invalid="ignore"):
            d = float(inp.logprob[b, t] - inp.old_logprob[b, t])
        a = float(adv[b, t])
        row = {"row": b, "col": t, "log_ratio": d, "advantage": a,
               "tau": float(sem.tau_pos if a > 0 else sem.tau_neg), "mask": bool(inp.mask[b, t])}
        if got is not None:
            row["got"] = float(got[b, t])
            row["expected"] = float(expected[b, t])
        rows.append(row)
    return rows


def _evidence(ev: Evaluation, comp: tol.Comparison) -> dict | None:
    out, ref = ev.output, ev.reference
    q = comp.quantity
    mask = out.inputs.mask.astype(bool)
    if q in ("grad", "grad-masked-zero") and out.grad is not None:
        got, exp = out.grad, np.where(mask, ref.grad, 0.0)
        with np.errstate(invalid="ignore"):
            if q == "grad-masked-zero":
                bad = ~mask & (got != 0)
                order = np.argwhere(bad)
            else:
                units = comp.per_element if comp.per_element is not None else np.zeros(got.shape)
                nonfinite = mask & (np.isfinite(got) != np.isfinite(exp))
                score = np.where(nonfinite, np.inf, np.where(mask, np.nan_to_num(units, nan=np.inf), -1.0))
                flat = np.argsort(-score, axis=None, kind="stable")
                flat = flat[score.ravel()[flat] > (comp.k if comp.k else 0.0)]
                order = np.column_stack(np.unravel_index(flat, got.shape)) if flat.size else np.empty((0, 2), int)
        return {"quantity": q, "tokens": _token_table(ev, order, got, exp)}
    if q == "loss" or q.startswith("metric:"):
        got = out.loss if q == "loss" else out.metrics.get(q[len("metric:"):], math.nan)
        expected = ref.loss if q == "loss" else ref.metrics.get(q[len("metric:"):], math.nan)
        with np.errstate(invalid="ignore"):
            weight = np.where(mask, np.abs(np.nan_to_num(ref.agg_weight * ref.token_loss, nan=np.inf)), -1.0)
            raw = np.where(~mask, ~np.isfinite(out.inputs.logprob - out.inputs.old_logprob), False)
        weight = np.where(raw, np.inf, weight)  # non-finite padding first: it is what breaks a loss
        flat = np.argsort(-weight, axis=None, kind="stable")
        flat = flat[weight.ravel()[flat] >= 0]
        order = np.column_stack(np.unravel_index(flat, mask.shape)) if flat.size else np.empty((0, 2), int)
        return {"quantity": q, "got": float(got), "expected": float(expected), "tokens": _token_table(ev, order)}
    return None


# ---------------------------------------------------------------------------
# the shape of an error no known defect explains
# ---------------------------------------------------------------------------


def error_shape(ev: Evaluation, comp: tol.Comparison) -> str:
    """A few words on the error's form: where and how the candidate differs."""
    out, ref = ev.output, ev.reference
    q = comp.quantity
    mask = out.inputs.mask.astype(bool)
    if q in ("loss",) or q.startswith("metric:"):
        got = out.loss if q == "loss" else out.metrics.get(q[len("metric:"):], math.nan)
        exp = ref.loss if q == "loss" else ref.metrics.get(q[len("metric:"):], math.nan)
        return _scalar_shape(q, float(got), float(exp), int(mask.sum()))
    if q == "grad" and out.grad is not None:
        return _grad_shape(ev, comp)
    if q == "grad-masked-zero":
        return "non-zero gradient only at masked positions"
    return comp.detail.split(";")[0][:120] if comp.detail else ""


def _scalar_shape(q: str, got: float, exp: float, n: int) -> str:
    if n == 0:
        return f"{q} on a batch with no unmasked token: got {got!r}, expected {exp!r}"
    if not math.isfinite(got) and math.isfinite(exp):
        return f"{q} is {got!r} where the oracle's is finite"
    if math.isfinite(got) and exp != 0 and math.isfinite(exp):
        k = got / exp
        if abs(k + 1) < 1e-3:
            return f"{q}: sign flipped"
        if abs(k - 1) < 1e-3:
            return f"{q}: relative error {abs(k - 1):.2g}"
        return f"{q}: got/expected = {k:.4g}"
    return f"{q}: got {got!r}, expected {exp!r}"


def _grad_shape(ev: Evaluation, comp: tol.Comparison) -> str:
    out, ref = ev.output, ev.reference
    mask = out.inputs.mask.astype(bool)
    got, exp = out.grad, ref.grad
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d = np.abs(out.inputs.logprob - out.inputs.old_logprob)
        nf = mask & (np.isfinite(got) != np.isfinite(exp))
        if nf.any():
            where = d[nf]
            finite = where[np.isfinite(where)]
            bad_in = int(where.size - finite.size)
            told = [f"{bad_in} with a non-finite log-ratio"] if bad_in else []
            if finite.size:
                told.append(f"{finite.size} with |log-ratio| >= {float(finite.min()):.4g}")
            return (f"gradient non-finite where the oracle's is finite (or the reverse) at {int(nf.sum())} "
                    f"tokens: {', '.join(told)}")
        fin = mask & np.isfinite(got) & np.isfinite(exp)
        if not fin.any():
            return ""
        g, e = got[fin], exp[fin]
        denom = float(np.dot(e, e))
        parts = []
        if denom > 0:
            k = float(np.dot(g, e)) / denom
            resid = float(np.max(np.abs(g - k * e))) / max(float(np.max(np.abs(e))), 1e-300)
            if resid < 1e-3 and abs(k - 1) > 1e-4:
                return "gradient: sign flipped" if abs(k + 1) < 1e-3 else f"gradient: a constant factor {k:.4g}"
        err = np.abs(g - e)
        units = comp.per_element[fin] if comp.per_element is not None else err
        bad = units > (comp.k or 0.0)
        near, far = d[fin] <= 1.0, d[fin] > 1.0
        if bad.any():
            share_far = float(bad[far].sum()) / float(bad.sum())
            if near.any() and far.any() and share_far > 0.9:
                parts.append("error only where |log-ratio| > 1 (grows with |log-ratio|)")
            elif near.any() and far.any() and share_far < 0.1:
                parts.append("error only near the knee (|log-ratio| <= 1)")
            adv = np.broadcast_to(np.asarray(out.inputs.advantages, dtype=np.float64).reshape(mask.shape[0], -1),
                                  mask.shape)[fin]
            for name, sel in (("A > 0", adv > 0), ("A < 0", adv < 0), ("A = 0", adv == 0)):
                if sel.any() and bool(bad[sel].all()) and not bool(bad[~sel].any()):
                    parts.append(f"only where {name}")
            rel = float(np.median(err[bad] / np.maximum(np.abs(e[bad]), 1e-300)))
            parts.append(f"median relative error {rel:.3g} on {int(bad.sum())} of {int(fin.sum())} tokens")
        return "gradient: " + "; ".join(parts) if parts else ""
