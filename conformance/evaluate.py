"""One candidate call, its oracle reference, and their comparison.

Data flows one way: inputs -> the candidate (through its driver) -> the
oracle on the candidate's rounded inputs -> comparisons under the tolerance
policy.  The candidate never sees the oracle.
"""

from __future__ import annotations

import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable

import numpy as np

import sapo_ref

from . import tolerance as tol
from .candidate import Batch, CallOptions, Candidate, Output
from .drivers import get_driver
from .types import HarnessFault


@dataclass(frozen=True)
class Evaluation:
    output: Output
    reference: sapo_ref.SAPOResult
    comparisons: tuple[tol.Comparison, ...]
    #: what the call was: for diagnosing a failure (conformance.diagnose)
    options: CallOptions = CallOptions()
    layout: str | None = None
    profile: str = "canonical"
    #: a sharded run: the rows of each separate call whose results were summed
    parts: tuple | None = None
    #: a fused kernel (conformance.fused): ``carry(token_grad)`` compares its
    #: logit (or hidden-state and weight) gradients with ``token_grad``
    #: carried through the log-softmax, by quantity
    carry: Callable[[np.ndarray], dict] | None = None

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    def failures(self) -> list[tol.Comparison]:
        return [c for c in self.comparisons if not c.passed]


def reference_for(candidate: Candidate, inputs: Batch, options: CallOptions, dtype: str) -> sapo_ref.SAPOResult:
    """The oracle under the candidate's claimed profile, on its rounded inputs."""
    profile = sapo_ref.get_profile(candidate.info.profile)
    extra = {}
    if profile.tau_dtype == "advantages":
        extra["tau_dtype"] = dtype  # the inputs are float64 here; the candidate's were ``dtype``
    if inputs.weights is not None:
        extra["rollout_is_weights"] = inputs.weights
    return sapo_ref.sapo_loss(inputs.logprob, inputs.old_logprob, inputs.advantages, inputs.mask,
                              profile=profile, **options.oracle_kwargs(), **extra)


@dataclass(frozen=True)
class Conditioning:
    """How sensitive each token's gradient and gate are to the rounding of
    its log-ratio in the candidate's compute precision (tolerance module)."""

    grad: np.ndarray
    gate: np.ndarray
    log_ratio: np.ndarray  # |log-ratio|, 0 at masked positions
    #: |c A w| max(1, r) per token: the practical tolerance's gradient scale
    grad_scale: np.ndarray
    #: what multiplies a product that underflows (or is flushed) on the way
    #: to a token's gradient: |c A w| 4/tau sigma'(z) can leave the normal
    #: range before tau r scales it back, so the gradient may be off by the
    #: compute precision's smallest normal times max(1, |c A w|) max(1, r)
    #: max(4, tau, 4/tau)
    underflow: np.ndarray | float = 0.0
    #: how far the candidate's own log-ratio may be off, in units of its
    #: compute precision, beyond rounding |log-ratio| (a fused kernel forms
    #: log-probs from logits: conformance.fused); 0 for log-prob kernels
    log_ratio_error: np.ndarray | float = 0.0


def conditioning(ref: sapo_ref.SAPOResult, inputs: Batch, log_ratio_error=None) -> Conditioning:
    """``log_ratio_error``: see :attr:`Conditioning.log_ratio_error`."""
    sem = ref.semantics
    m = inputs.mask.astype(bool)
    B, T = m.shape
    adv = np.broadcast_to(np.asarray(inputs.advantages, dtype=np.float64).reshape(B, -1), (B, T))
    with np.errstate(invalid="ignore", over="ignore"):
        tau = np.where(adv > 0, sem.tau_pos, sem.tau_neg)
        sig = ref.gate * tau / 4  # sigmoid(z)
        tr = tau * ref.ratio
        d = np.abs(inputs.logprob - inputs.old_logprob)
        if sem.log_ratio_clamp is not None:
            d = np.minimum(d, sem.log_ratio_clamp)
        d = np.where(m & np.isfinite(d), d, 0.0)
        e = 0.0 if log_ratio_error is None else np.where(m, log_ratio_error, 0.0)
        # forming z = tau (r - 1) rounds it by about eps |z| on its own: sigmoid(z)
        # inherits |1 - sigma| |z| of it, f'(r) r = 4 sigma (1 - sigma) r |1 - 2 sigma| |z|
        # (far below the knee, r << 1, this is all there is: tau r vanishes, |z| ~ tau)
        z = np.abs(tau * (ref.ratio - 1))
        grad = np.abs(1 + (1 - 2 * sig) * tr) * (1 + d + e) + np.abs(1 - 2 * sig) * z
        gate = np.abs((1 - sig) * tr) * (1 + d + e) + np.abs(1 - sig) * z

    def clean(x):
        return np.where(m & np.isfinite(x), x, 0.0)

    with np.errstate(invalid="ignore", over="ignore"):
        caw = np.abs(ref.agg_weight * adv) * (1.0 if inputs.weights is None else np.abs(inputs.weights))
        ratio = np.where(np.isfinite(ref.ratio), ref.ratio, 0.0)
        grad_scale = caw * np.maximum(1.0, ratio)
        underflow = np.maximum(1.0, caw) * np.maximum(1.0, ratio) * np.maximum(np.maximum(4.0, tau), 4.0 / tau)
    if sem.importance_sampling_level == "sequence":
        grad = _sequence_grad_conditioning(ref, m, grad)
    return Conditioning(clean(grad), clean(gate), d, clean(grad_scale), clean(underflow), e)


def _sequence_grad_conditioning(ref: sapo_ref.SAPOResult, m: np.ndarray, token_cond: np.ndarray) -> np.ndarray:
    """At the sequence level a token's gradient is its row's total of shares
    s_t = -c A w f'(r) r divided by n: a kernel computing in eps_c loses
    about eps_c * sum_t |s_t| (cond_t + log2 n) / n to it, which can be far
    more than eps_c * |gradient| when the shares cancel.  Returned as a
    conditioning factor relative to |gradient|, per token."""
    n = m.sum(axis=1)
    sem = ref.semantics
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        ratio = np.where(m, ref.ratio, 1.0)
        # token_loss = -A w f: its sign is -sign(A) (for w > 0), and |c A w| = |c token_loss| / f
        f_prime_r = sapo_ref.gate_weight(ratio, np.where(ref.token_loss < 0, 1.0, -1.0), sem.tau_pos,
                                         sem.tau_neg) * ratio
        caw = np.abs(ref.agg_weight * ref.token_loss) / np.where(ref.gate > 0, ref.gate, np.inf)
        s_abs = np.where(m, caw * f_prime_r * (token_cond + np.log2(n[:, None] + 1)), 0.0)
        per_token = np.nansum(np.where(np.isfinite(s_abs), s_abs, 0.0), axis=1) / np.maximum(n, 1)
        return per_token[:, None] / np.where(np.abs(ref.grad) > 0, np.abs(ref.grad), np.inf)


def _metric_terms(name: str, ref: sapo_ref.SAPOResult, inputs: Batch, cond: Conditioning):
    """The terms a metric averages and their conditioned magnitudes."""
    m = inputs.mask.astype(bool)
    e = np.broadcast_to(cond.log_ratio_error, m.shape)[m]
    if name == "ppo_kl":
        return cond.log_ratio[m], e
    if name == "avg_ratio":
        r = ref.ratio[m]
        with np.errstate(invalid="ignore", over="ignore"):
            return r, np.where(np.isfinite(r), r * (cond.log_ratio[m] + e), 0.0)
    if name == "avg_soft_gate":
        return ref.gate[m], ref.gate[m] * cond.gate[m]
    return np.ones(int(m.sum())), np.zeros(int(m.sum()))  # pos_adv_frac: a count


def compare(candidate: Candidate, out: Output, ref: sapo_ref.SAPOResult, *,
            acc_dtype: str | None = None, cond: Conditioning | None = None) -> tuple[tol.Comparison, ...]:
    """Loss, gradient (dtype, masked positions exactly 0), claimed metrics,
    inputs.  ``acc_dtype`` overrides the precision the bounds assume;
    ``cond``, the conditioning (default: ``conditioning(ref, out.inputs)``)."""
    info = candidate.info
    mask = out.inputs.mask.astype(bool)
    acc = acc_dtype or tol.accumulation_dtype(out.dtype)
    cond = conditioning(ref, out.inputs) if cond is None else cond
    n = int(mask.sum())
    with np.errstate(invalid="ignore", over="ignore"):
        weighted = np.abs(ref.agg_weight * ref.token_loss)
        loss_terms = float(np.nansum(weighted))
        loss_cond = float(np.nansum(weighted * cond.gate))
    comps = [tol.compare_scalar("loss", out.loss, ref.loss, terms_abs_sum=loss_terms, n_terms=n,
                                out_dtype=out.loss_dtype or out.dtype, acc_dtype=acc, cond_abs_sum=loss_cond,
                                input_dtype=out.dtype)]
    if info.provides_grad and out.grad is not None:
        comps.append(tol.compare_elementwise("grad", out.grad, ref.grad, out.grad_dtype or out.dtype, where=mask,
                                             cond=cond.grad, compute_dtype=acc, practical_scale=cond.grad_scale,
                                             abs_bound=tol.MIN_NORMAL.get(acc, 0.0) * cond.underflow,
                                             input_dtype=out.dtype))
        comps.append(tol.exact("grad-dtype", out.grad_dtype == out.dtype,
                               f"gradient is {out.grad_dtype}, logprob is {out.dtype}"))
        masked = out.grad[~mask]
        nonzero = np.flatnonzero(masked != 0)
        on_padding, first_on_padding = out.padding_grad  # shape buckets: the harness's masked padding
        problems = []
        if nonzero.size:
            first = float(masked[nonzero[0]])
            problems.append(f"{nonzero.size} masked positions have a non-zero gradient (first {first!r})")
        if on_padding:
            problems.append(f"{on_padding} positions of the masked padding added for shape buckets have a "
                            f"non-zero gradient (first {first_on_padding!r})")
        comps.append(tol.exact("grad-masked-zero", not problems, "; ".join(problems)))
    count = n + ref.semantics.token_count_eps
    for name in info.metrics:
        if name not in out.metrics:
            comps.append(tol.exact(f"metric:{name}", False, "claimed but not reported"))
            continue
        terms, conds = _metric_terms(name, ref, out.inputs, cond)
        with np.errstate(invalid="ignore", over="ignore"):
            total = float(np.sum(np.abs(terms)))
            scale = total / count if count else 0.0
            cscale = float(np.sum(np.abs(conds))) / count if count else 0.0
        comps.append(tol.compare_scalar(f"metric:{name}", out.metrics[name], ref.metrics[name],
                                        terms_abs_sum=scale, n_terms=max(n, 1), out_dtype="float32",
                                        acc_dtype=acc, cond_abs_sum=cscale, partial_sums_max=total,
                                        input_dtype=out.dtype))
    comps.append(tol.exact("inputs-unmodified", not out.modified_inputs,
                           f"modified: {', '.join(out.modified_inputs)}"))
    return tuple(comps)


@contextmanager
def harness_side():
    """Around the harness's own part of a check (the oracle, the
    comparison): whatever it raises is a :class:`HarnessFault`, so that no
    bug here is ever reported as the candidate's error."""
    try:
        yield
    except HarnessFault:
        raise
    except Exception as exc:
        where = traceback.extract_tb(exc.__traceback__)[-1]
        raise HarnessFault(f"the oracle or the comparison raised {type(exc).__name__}: {exc} "
                           f"(at {where.filename.rsplit('/', 1)[-1]}:{where.lineno}) on inputs the candidate "
                           f"handled") from exc


def evaluate(candidate: Candidate, batch: Batch, *, dtype: str, device: str = "cpu",
             options: CallOptions = CallOptions(), layout: str | None = None) -> Evaluation:
    """Run the candidate once and compare it with the oracle."""
    out = get_driver(candidate.info.framework).call(candidate, batch, dtype, device, options, layout)
    with harness_side():
        ref = reference_for(candidate, out.inputs, options, dtype)
        return Evaluation(out, ref, compare(candidate, out, ref), options, layout, candidate.info.profile)
