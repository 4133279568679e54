"""Transformed oracles: what a kernel with one known defect computes.

``predict(defect, situation)`` evaluates the variant a :class:`Defect` names
(``conformance.defects``) on the inputs a candidate saw, and returns the
outputs a kernel with exactly that defect, and nothing else wrong, computes:
the loss, the gradient at every position (NaN where the defect gives NaN),
and the metrics the defect changes.  ``None`` means the defect cannot show on
this situation (not applicable, or its outputs would be the canonical ones).

Everything is float64 NumPy, built from the canonical pieces of
``sapo_ref.sapo_loss``; the situation's arrays are never modified.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Callable, Mapping

import numpy as np

import sapo_ref

from .tolerance import SUBNORMAL_SPACING, accumulation_dtype
from .types import Batch, CallOptions


@dataclass(frozen=True, eq=False)
class Situation:
    """A candidate's call: its inputs (float64, as it saw them), options,
    claimed profile and dtype, the canonical reference and its outputs."""

    inputs: Batch
    options: CallOptions
    profile: sapo_ref.Profile
    dtype: str
    layout: str | None
    reference: sapo_ref.SAPOResult
    got_loss: float
    got_grad: np.ndarray | None
    got_metrics: Mapping[str, float]
    #: a sharded run: the rows of each separate call whose results were summed
    parts: tuple | None = None


@dataclass(frozen=True, eq=False)
class Prediction:
    loss: float | None = None  # None: not predicted
    grad: np.ndarray | None = None  # (B, T) at every position; None: not predicted
    metrics: Mapping[str, float] = field(default_factory=dict)  # only those predicted
    tolerance_dtype: str | None = None  # "low_precision": compare with the strict bound in this precision
    note: str = ""  # estimated parameters


# ---------------------------------------------------------------------------
# canonical pieces
# ---------------------------------------------------------------------------

_KEEP = object()


def _oracle(s: Situation, *, logprob=None, old_logprob=None, advantages=None, weights=_KEEP, profile=None,
            **overrides) -> sapo_ref.SAPOResult:
    """``sapo_loss`` as ``conformance.evaluate.reference_for`` calls it, with
    inputs, profile or options replaced."""
    inp = s.inputs
    prof = s.profile if profile is None else profile
    kw = s.options.oracle_kwargs()
    if prof.tau_dtype == "advantages":
        kw["tau_dtype"] = s.dtype
    kw.update(overrides)
    w = inp.weights if weights is _KEEP else weights
    if w is not None:
        kw["rollout_is_weights"] = w
    return sapo_ref.sapo_loss(inp.logprob if logprob is None else logprob,
                              inp.old_logprob if old_logprob is None else old_logprob,
                              inp.advantages if advantages is None else advantages,
                              inp.mask, profile=prof, **kw)


def _mask(s: Situation) -> np.ndarray:
    return np.asarray(s.inputs.mask).astype(bool)


def _sequence(s: Situation) -> bool:
    return s.reference.semantics.importance_sampling_level == "sequence"


def _per_token(x, shape) -> np.ndarray:
    B, T = shape
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        return np.zeros((B, T))
    return np.broadcast_to(x.reshape(B, -1), (B, T))


def _row_mean(x: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The masked mean of each row, broadcast over the row (0 for empty rows)."""
    n = np.maximum(m.sum(axis=1), 1)
    return np.broadcast_to((np.where(m, x, 0.0).sum(axis=1) / n)[:, None], m.shape)


def _advantages(s: Situation) -> np.ndarray:
    """The advantage each token's loss uses, (B, T)."""
    m = _mask(s)
    a = _per_token(s.inputs.advantages, m.shape)
    if _sequence(s) and s.reference.semantics.sequence_advantage == "mean":
        a = _row_mean(a, m)
    return a


def _weights(s: Situation) -> np.ndarray:
    m = _mask(s)
    return np.ones(m.shape) if s.inputs.weights is None else _per_token(s.inputs.weights, m.shape)


def _log_ratio(s: Situation) -> np.ndarray:
    """The log-ratio the gate is evaluated at (the row mean at the sequence
    level), before any clamp; 0 at masked positions."""
    m = _mask(s)
    d = np.where(m, s.inputs.logprob - s.inputs.old_logprob, 0.0)
    if _sequence(s):
        d = np.where(m, _row_mean(d, m), 0.0)
    return d


def _no_grad(s: Situation, d: np.ndarray) -> np.ndarray:
    """Where the profile's clamp stops the gradient."""
    c = s.reference.semantics.log_ratio_clamp
    return np.zeros(d.shape, dtype=bool) if c is None else _mask(s) & (np.abs(d) > c)


def _tau(s: Situation, a: np.ndarray) -> np.ndarray:
    sem = s.reference.semantics
    return np.where(a > 0, sem.tau_pos, sem.tau_neg)


def _gate_derivative(s: Situation, r: np.ndarray, a: np.ndarray) -> np.ndarray:
    """f'(r), NaN where r or A is NaN."""
    sem = s.reference.semantics
    r = np.where(np.isnan(r), 1.0, r)
    out = sapo_ref.gate_weight(r, np.where(np.isnan(a), 0.0, a), sem.tau_pos, sem.tau_neg)
    return out


def _share(s: Situation) -> np.ndarray:
    """The canonical d(token loss)/d(log-ratio) = -A w f'(r) r (limit 0 at r = inf)."""
    ref = s.reference
    a, w, r = _advantages(s), _weights(s), ref.ratio
    fr = np.where(np.isinf(r), 0.0, _gate_derivative(s, r, a) * r)
    return -a * w * fr


def _terms_sum(s: Situation, x: np.ndarray) -> float:
    """sum of c * x over the unmasked tokens (and NaN weights of empty rows)."""
    c = s.reference.agg_weight
    sel = _mask(s) | np.isnan(c)
    return float(np.sum(np.where(sel, c * x, 0.0)))


def _assemble(s: Situation, token_loss: np.ndarray, share: np.ndarray) -> tuple[float, np.ndarray]:
    """Loss and gradient from per-token losses and d(token loss)/d(log-ratio):
    aggregated with the canonical weights, spread over the row at the
    sequence level, zeroed where the profile's clamp is active."""
    m = _mask(s)
    c = s.reference.agg_weight
    sel = m | np.isnan(c)
    g = np.where(sel, c * share, 0.0)
    if _sequence(s):
        total = np.where(m, g, 0.0).sum(axis=1) / np.maximum(m.sum(axis=1), 1)
        g = np.where(m, total[:, None], g)
    g = np.where(_no_grad(s, _log_ratio(s)), 0.0, g) + 0.0
    g = np.where(m & np.isnan(s.reference.grad), np.nan, g)  # NaN in, NaN out: the input's, not the defect's
    return _terms_sum(s, token_loss), g


def _metric_mean(s: Situation, x: np.ndarray) -> float:
    """A metric's masked mean (SPEC.md section 5)."""
    m = _mask(s)
    count = float(m.sum()) + s.reference.semantics.token_count_eps
    return float(np.sum(np.where(m, x, 0.0)) / count) if count else 0.0


def _pick(res: sapo_ref.SAPOResult, *names: str) -> dict:
    return {k: float(res.metrics[k]) for k in names}


# ---------------------------------------------------------------------------
# the variants: one per defect signature
# ---------------------------------------------------------------------------


def detached_gate(s: Situation) -> Prediction:
    ref = s.reference
    m = _mask(s)
    surrogate = ref.token_loss * np.where(m, s.inputs.logprob, 0.0)  # -A w detach(f) logprob
    c = ref.agg_weight
    grad = np.where(m | np.isnan(c), c * ref.token_loss, 0.0) + 0.0
    loss = _terms_sum(s, surrogate)
    if not np.all(np.isfinite(s.inputs.logprob[~m])):
        loss = None  # the surrogate multiplies logprob itself: NaN padding leaks or not, as it masks
    return Prediction(loss, grad)


def no_four_over_tau(s: Situation) -> Prediction:
    q = _tau(s, _advantages(s)) / 4
    loss, grad = _assemble(s, s.reference.token_loss * q, _share(s) * q)
    return Prediction(loss, grad, {"avg_soft_gate": _metric_mean(s, s.reference.gate * q)})


def grad_missing_r(s: Situation) -> Prediction:
    ref = s.reference
    a = _advantages(s)
    _, grad = _assemble(s, ref.token_loss, -a * _weights(s) * _gate_derivative(s, ref.ratio, a))
    return Prediction(ref.loss, grad)


def gate_times_r(s: Situation) -> Prediction:
    ref = s.reference
    a, r = _advantages(s), ref.ratio
    fr = np.where(np.isinf(r), 0.0, _gate_derivative(s, r, a) * r)
    share = -a * _weights(s) * r * (fr + ref.gate)  # d(f(r) r)/d log r = r (f'(r) r + f(r))
    loss, grad = _assemble(s, ref.token_loss * r, share)
    return Prediction(loss, grad)


def inverted_ratio(s: Situation) -> Prediction:
    res = _oracle(s, logprob=s.inputs.old_logprob, old_logprob=s.inputs.logprob)
    return Prediction(res.loss, -res.grad + 0.0, _pick(res, "ppo_kl", "avg_ratio", "avg_soft_gate"))


def swapped_tau(s: Situation) -> Prediction:
    res = _oracle(s, tau_pos=s.options.tau_neg, tau_neg=s.options.tau_pos)
    return Prediction(res.loss, np.array(res.grad), _pick(res, "avg_soft_gate"))


def tau_pos_for_zero(s: Situation) -> Prediction | None:
    ref = s.reference
    sem = ref.semantics
    zero = _mask(s) & (_advantages(s) == 0)
    if not zero.any() or sem.tau_pos == sem.tau_neg:
        return None
    r = np.where(zero, ref.ratio, 1.0)
    f_pos = sapo_ref.soft_gate(r, np.ones(r.shape), sem.tau_pos, sem.tau_neg)
    gate = np.where(zero, f_pos, ref.gate)
    return Prediction(ref.loss, np.array(ref.grad), {"avg_soft_gate": _metric_mean(s, gate)})


def weights_choose_tau(s: Situation) -> Prediction | None:
    if s.inputs.weights is None:
        return None
    aw = _per_token(s.inputs.advantages, _mask(s).shape) * _weights(s)
    res = _oracle(s, advantages=aw, weights=None)  # tau by the sign of A w, token loss -A w f
    return Prediction(res.loss, np.array(res.grad), _pick(res, "avg_soft_gate"))


def weights_ignored(s: Situation) -> Prediction | None:
    if s.inputs.weights is None:
        return None
    res = _oracle(s, weights=None)
    return Prediction(res.loss, np.array(res.grad))


def weights_in_denominator(s: Situation) -> Prediction | None:
    ref = s.reference
    if s.inputs.weights is None or ref.semantics.loss_agg_mode != "token-mean":
        return None
    m = _mask(s)
    total = float(np.sum(np.where(m, _weights(s), 0.0)))
    if not (math.isfinite(total) and total > 0):
        return None
    k = float(m.sum()) / total  # sum(w l) / sum(w) where sum(w l) / n was meant
    return Prediction(ref.loss * k, ref.grad * k, note=f"sum of weights = {total:.6g}")


def broadcast_trap(s: Situation) -> Prediction | None:
    adv = np.asarray(s.inputs.advantages)
    B, T = _mask(s).shape
    if adv.shape != (B,) or B != T or B == 0 or s.layout not in (None, "B"):
        return None
    res = _oracle(s, advantages=np.broadcast_to(adv[None, :], (B, T)))
    return Prediction(res.loss, np.array(res.grad), _pick(res, "avg_soft_gate", "pos_adv_frac"))


def _token_level_at(s: Situation, row_log_ratio: np.ndarray) -> sapo_ref.SAPOResult:
    """The token-level oracle with every unmasked token at its row's given
    log-ratio: its gradient is each token's own share of d loss / d(row log-ratio)."""
    m = _mask(s)
    return _oracle(s, logprob=np.where(m, row_log_ratio, 0.0), old_logprob=np.zeros(m.shape),
                   advantages=_advantages(s), profile=replace(s.profile, importance_sampling_level="token"),
                   importance_sampling_level="token")


def seq_arithmetic_mean(s: Situation) -> Prediction | None:
    if not _sequence(s):
        return None
    m = _mask(s)
    d = np.where(m, s.inputs.logprob - s.inputs.old_logprob, -np.inf)
    top = np.max(d, axis=1, initial=-np.inf)
    top = np.where(np.isfinite(top), top, 0.0)[:, None]
    e = np.where(m, np.exp(d - top), 0.0)
    total = e.sum(axis=1, keepdims=True)
    n = np.maximum(m.sum(axis=1, keepdims=True), 1)
    log_mean = top + np.log(total / n)  # log of the row's mean ratio
    res = _token_level_at(s, np.broadcast_to(log_mean, m.shape))
    shares = np.where(m, res.grad, 0.0).sum(axis=1, keepdims=True)
    grad = np.where(m, shares * e / total, 0.0) + 0.0  # d log-mean-exp / d log-ratio: softmax
    # the ratio and the gate the metrics average are the row's too (ppo_kl stays the tokens'); where a
    # row's mean is not finite the metrics depend on how the kernel saturates: not predicted
    finite = bool(np.isfinite(np.where(m, log_mean, 0.0)).all())
    metrics = {k: res.metrics[k] for k in ("avg_ratio", "avg_soft_gate")} if finite else {}
    return Prediction(res.loss, grad, metrics)


def seq_unspread_grad(s: Situation) -> Prediction | None:
    if not _sequence(s):
        return None
    res = _token_level_at(s, _log_ratio(s))
    return Prediction(s.reference.loss, np.array(res.grad))


def _round_candidates(lo: float, hi: float) -> list[float]:
    """Numbers c with lo <= c < hi, c > 0, roundest first."""
    out: list[float] = []
    for step in (100.0, 50.0, 20.0, 10.0, 5.0, 2.0, 1.0, 0.5, 0.25, 0.1):
        first = max(math.ceil(lo / step), 1)
        last = math.ceil(hi / step) - 1
        if last - first > 40:
            continue
        out += [k * step for k in range(first, last + 1) if k * step not in out]
    if lo > 0 and lo not in out:
        out.append(lo)
    return out[:24]


#: a clamp on the log-ratio below this (a ratio within e^+-1) is no clamp a
#: framework uses: a zero gradient that close to r = 1 is saturation, not a clamp
MIN_CLAMP = 1.0


def log_ratio_clamp(s: Situation) -> Prediction | None:
    """Estimates c from where the candidate's gradient is exactly 0 while the
    canonical one is not (|log-ratio| > c) and where it is non-zero
    (|log-ratio| <= c); prefers round numbers, then the one whose loss fits."""
    got, ref = s.got_grad, s.reference
    if got is None:
        return None
    m = _mask(s)
    d = np.abs(_log_ratio(s))
    scale = float(np.max(np.abs(np.where(m & np.isfinite(ref.grad), ref.grad, 0.0)), initial=0.0))
    floor = max(1e-6 * scale, 1e4 * SUBNORMAL_SPACING.get(s.dtype, 0.0))
    ok = m & np.isfinite(d) & np.isfinite(ref.grad)
    zeroed = ok & (got == 0) & (np.abs(ref.grad) > floor)
    if not zeroed.any():
        return None
    hi = float(np.min(d[zeroed]))
    passed = ok & (got != 0)
    lo = float(np.max(d[passed], initial=0.0))
    if lo >= hi or hi <= MIN_CLAMP:
        return None
    loss_scale = float(np.nansum(np.abs(ref.agg_weight * ref.token_loss))) + abs(ref.loss)
    fits = []  # (loss error, c, result), roundest c first
    for c in _round_candidates(lo, hi):
        res = _oracle(s, log_ratio_clamp=c)
        err = abs(res.loss - s.got_loss) if math.isfinite(s.got_loss) else math.inf
        fits.append((err, c, res))
        if err <= 1e-6 * loss_scale:  # the roundest c whose loss fits
            break
    if not fits:
        return None
    _, c, res = fits[-1] if fits[-1][0] <= 1e-6 * loss_scale else min(fits, key=lambda f: f[0])
    return Prediction(res.loss, np.array(res.grad),
                      note=f"c = {c:g} (gradient 0 from |log-ratio| {hi:.6g}, non-zero up to {lo:.6g})")


def counts_empty_rows(s: Situation) -> Prediction | None:
    m = _mask(s)
    if s.options.global_seq_count is not None or m.any(axis=1).all():  # no empty row, or S given
        return None
    res = _oracle(s, empty_rows="count")
    return Prediction(res.loss, np.array(res.grad))


def row_mean_padded_length(s: Situation) -> Prediction | None:
    T = _mask(s).shape[1]
    if s.reference.semantics.loss_agg_mode != "seq-mean-token-mean" or T == 0:
        return None
    res = _oracle(s, profile=replace(s.profile, loss_agg_mode="seq-mean-token-sum"),
                  loss_agg_mode="seq-mean-token-sum")
    return Prediction(res.loss / T, res.grad / T)


def local_counts(s: Situation) -> Prediction | None:
    if s.options.global_token_count is None and s.options.global_seq_count is None:
        return None
    if not s.parts:
        res = _oracle(s, global_token_count=None, global_seq_count=None)
        return Prediction(res.loss, np.array(res.grad))
    inp = s.inputs
    loss, grad = 0.0, np.zeros(inp.mask.shape)
    for rows in s.parts:  # each call normalised by its own counts, the results summed
        part = Batch(inp.logprob[rows], inp.old_logprob[rows], inp.advantages[rows], inp.mask[rows],
                     None if inp.weights is None else inp.weights[rows])
        res = _oracle(replace(s, inputs=part), global_token_count=None, global_seq_count=None)
        loss += res.loss
        grad[rows] += res.grad
    return Prediction(loss, grad)


def aggregation_mode(s: Situation, mode: str) -> Prediction | None:
    if s.reference.semantics.loss_agg_mode == mode:
        return None
    res = _oracle(s, profile=replace(s.profile, loss_agg_mode=mode), loss_agg_mode=mode)
    return Prediction(res.loss, np.array(res.grad))


def ppo_kl_sign(s: Situation) -> Prediction | None:
    ref = s.reference
    kl = float(ref.metrics["ppo_kl"])
    if kl == 0 or not math.isfinite(kl):
        return None
    return Prediction(ref.loss, np.array(ref.grad), {"ppo_kl": -kl})


def nan_through_mask(s: Situation) -> Prediction | None:
    m = _mask(s)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(s.inputs.logprob - s.inputs.old_logprob)
        bad |= ~np.isfinite(_per_token(s.inputs.advantages, m.shape))
    bad &= ~m
    if not bad.any():
        return None
    # the gradient at the padding depends on the backward (x * mask gives
    # NaN * 0 = NaN there; a clamp before it gives 0): not predicted
    return Prediction(math.nan, None)


def nan_grad_zeroed(s: Situation) -> Prediction | None:
    m = _mask(s)
    with np.errstate(invalid="ignore"):
        hidden = m & np.isnan(s.reference.grad) & ~np.isfinite(s.inputs.logprob - s.inputs.old_logprob)
    if not hidden.any():
        return None
    return Prediction(s.reference.loss, np.where(hidden, 0.0, s.reference.grad))


def all_masked_nan(s: Situation) -> Prediction | None:
    m = _mask(s)
    if m.size == 0 or m.any():
        return None
    return Prediction(math.nan, None)


def exp_overflow_nan(s: Situation) -> Prediction | None:
    cp = np.dtype(accumulation_dtype(s.dtype))
    m = _mask(s)
    d = _log_ratio(s)
    c = s.reference.semantics.log_ratio_clamp
    if c is not None:
        d = np.clip(d, -c, c)
    over = m & np.isinf(np.exp(d.astype(cp)))  # +inf also for d = +inf
    if not over.any():
        return None
    if _sequence(s):
        over = m & over.any(axis=1, keepdims=True)
    grad = np.array(s.reference.grad)
    grad[over] = np.nan  # d sigmoid(z)/dz * dr/dd = 0 * inf
    return Prediction(s.reference.loss, grad)


def _naive_h(s: Situation, dtype: str) -> np.ndarray:
    """f'(r) r = 4 s (1 - s) r with every step rounded to ``dtype``, as
    autograd through a plain sigmoid computes it in that precision."""
    ref = s.reference
    m = _mask(s)
    a = _advantages(s)
    d = _log_ratio(s)
    c = ref.semantics.log_ratio_clamp
    if c is not None:
        d = np.clip(d, -c, c)
    if dtype == "bfloat16":  # NumPy has no bfloat16: float32 steps, each rounded
        cp = np.float32
        q = functools.partial(_round32, dtype=dtype)
    else:  # NumPy computes in this precision itself
        cp = np.dtype(dtype).type
        q = np.asarray
    dc = q(np.where(m & np.isfinite(d), d, 0.0).astype(cp))
    tau = q(np.where(a > 0, cp(ref.semantics.tau_pos), cp(ref.semantics.tau_neg)).astype(cp))
    r = q(np.exp(dc))
    z = q(tau * q(np.expm1(dc)))
    sig = q(cp(1) / (cp(1) + np.exp(-z)))
    rest = q(cp(1) - sig)
    h = np.where(rest == 0, 0.0, q(q(q(cp(4) * sig) * rest) * r).astype(np.float64))
    return np.where(np.isfinite(d), h, np.nan)


def _round32(x, dtype: str) -> np.ndarray:
    from sapo_ref._dtypes import round_to

    return round_to(x, dtype).astype(np.float32)


def naive_one_minus_sigmoid(s: Situation) -> Prediction | None:
    """f'(r) r = 4 s (1 - s) r with s = sigmoid(z) rounded first, in the
    compute precision (float32) or, for a low-precision kernel whose
    gradient it matches better, in the input's own."""
    ref = s.reference
    m = _mask(s)
    a = _advantages(s)
    d = _log_ratio(s)
    exact = np.where(np.isinf(ref.ratio), 0.0, _gate_derivative(s, ref.ratio, a) * ref.ratio)
    live = m & np.isfinite(d) & (a * _weights(s) != 0) & np.isfinite(exact) & (exact > 0)
    best, note = None, ""
    for dtype in dict.fromkeys((accumulation_dtype(s.dtype), s.dtype)):
        h = _naive_h(s, dtype)
        if not np.any(np.abs(h - exact)[live] > 1e-6 * exact[live]):
            continue  # nothing beyond ordinary rounding
        h = np.where(np.isfinite(d), h, exact)
        _, grad = _assemble(s, ref.token_loss, -a * _weights(s) * h)
        if best is None or (s.got_grad is not None and _distance(grad, s.got_grad, m) < _distance(best, s.got_grad, m)):
            best, note = grad, f"in {dtype}"
    return None if best is None else Prediction(ref.loss, best, note=note)


def _distance(pred: np.ndarray, got: np.ndarray, m: np.ndarray) -> float:
    with np.errstate(invalid="ignore"):
        diff = np.abs(np.where(m, pred, 0.0) - np.where(m, got, 0.0))
    return float(np.nansum(diff))


def low_precision(s: Situation) -> Prediction | None:
    if s.dtype not in ("float16", "bfloat16"):
        return None
    ref = s.reference
    return Prediction(ref.loss, np.array(ref.grad), tolerance_dtype=s.dtype)


def gradient_scaled(s: Situation) -> Prediction | None:
    got, ref = s.got_grad, s.reference
    if got is None:
        return None
    sel = _mask(s) & np.isfinite(got) & np.isfinite(ref.grad) & (ref.grad != 0)
    den = float(np.sum(ref.grad[sel] ** 2))
    if den == 0:
        return None
    k = float(np.sum(got[sel] * ref.grad[sel])) / den
    if not math.isfinite(k) or abs(k - 1) <= 1e-4 or k <= 0:  # 0 or a sign flip is no scaling
        return None
    return Prediction(ref.loss, ref.grad * k, note=f"k = {k:.4f}")


VARIANTS: Mapping[str, Callable[..., Prediction | None]] = MappingProxyType({f.__name__: f for f in (
    detached_gate, no_four_over_tau, grad_missing_r, gate_times_r, inverted_ratio, swapped_tau, tau_pos_for_zero,
    weights_choose_tau, weights_ignored, weights_in_denominator, broadcast_trap, seq_arithmetic_mean,
    seq_unspread_grad, log_ratio_clamp, counts_empty_rows, row_mean_padded_length, local_counts, aggregation_mode,
    ppo_kl_sign, nan_through_mask, nan_grad_zeroed, all_masked_nan, exp_overflow_nan, naive_one_minus_sigmoid, low_precision,
    gradient_scaled,
)})


# ---------------------------------------------------------------------------


def _same(a: float, b: float, scale: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or abs(a - b) <= 1e-12 * scale


def _same_as_reference(p: Prediction, ref: sapo_ref.SAPOResult) -> bool:
    """Whether every predicted quantity is the canonical one (to 1e-12 of its scale)."""
    if p.loss is not None:
        scale = float(np.nansum(np.abs(ref.agg_weight * ref.token_loss))) + abs(ref.loss if math.isfinite(ref.loss)
                                                                                else 0.0)
        if not _same(float(p.loss), float(ref.loss), scale):
            return False
    if p.grad is not None:
        g, r = np.asarray(p.grad, dtype=np.float64), ref.grad
        if g.shape != r.shape or not np.array_equal(np.isnan(g), np.isnan(r)):
            return False
        fin = np.isfinite(r) & np.isfinite(g)
        if not np.array_equal(np.where(fin, 0.0, g), np.where(fin, 0.0, r), equal_nan=True):
            return False
        scale = float(np.max(np.abs(r[fin]), initial=0.0))
        if np.any(np.abs(g[fin] - r[fin]) > 1e-12 * scale):
            return False
    for k, v in p.metrics.items():
        if not _same(float(v), float(ref.metrics[k]), abs(float(ref.metrics[k])) + abs(float(v))):
            return False
    return True


def predict(defect, situation: Situation) -> Prediction | None:
    """The outputs a kernel with this defect computes on this situation;
    None when the defect cannot show on it (not applicable, a ``check:``
    defect, or outputs identical to the canonical oracle's)."""
    if defect.variant.startswith("check:"):
        return None
    fn = VARIANTS[defect.variant]
    with np.errstate(all="ignore"):
        p = fn(situation, **dict(defect.params))
        if p is None:
            return None
        if p.tolerance_dtype is None and _same_as_reference(p, situation.reference):
            return None
    return p
