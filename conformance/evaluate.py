"""One candidate call, its oracle reference, and their comparison.

Data flows one way: inputs -> the candidate (through its driver) -> the
oracle on the candidate's rounded inputs -> comparisons under the tolerance
policy.  The candidate never sees the oracle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import sapo_ref

from . import tolerance as tol
from .candidate import Batch, CallOptions, Candidate, Output
from .drivers import get_driver


@dataclass(frozen=True)
class Evaluation:
    output: Output
    reference: sapo_ref.SAPOResult
    comparisons: tuple[tol.Comparison, ...]

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
    return sapo_ref.sapo_loss(inputs.logprob, inputs.old_logprob, inputs.advantages, inputs.mask,
                              profile=profile, **options.oracle_kwargs(), **extra)


def _metric_terms(name: str, ref: sapo_ref.SAPOResult, inputs: Batch) -> np.ndarray:
    """The terms a metric averages (their magnitudes set its tolerance)."""
    m = inputs.mask.astype(bool)
    if name == "ppo_kl":
        with np.errstate(invalid="ignore"):
            d = (inputs.logprob - inputs.old_logprob)[m]
        c = ref.semantics.log_ratio_clamp
        return np.clip(d, -c, c) if c is not None else d
    if name == "avg_ratio":
        return ref.ratio[m]
    if name == "avg_soft_gate":
        return ref.gate[m]
    return np.ones(int(m.sum()))  # pos_adv_frac: a count


def compare(candidate: Candidate, out: Output, ref: sapo_ref.SAPOResult) -> tuple[tol.Comparison, ...]:
    """Loss, gradient (masked positions exactly 0), claimed metrics, inputs."""
    info = candidate.info
    mask = out.inputs.mask.astype(bool)
    acc = tol.accumulation_dtype(out.dtype)
    n = int(mask.sum())
    with np.errstate(invalid="ignore", over="ignore"):
        loss_terms = float(np.nansum(np.abs(ref.agg_weight * ref.token_loss)))
    comps = [tol.compare_scalar("loss", out.loss, ref.loss, terms_abs_sum=loss_terms, n_terms=n,
                                out_dtype=out.loss_dtype or out.dtype, acc_dtype=acc)]
    if info.provides_grad and out.grad is not None:
        comps.append(tol.compare_elementwise("grad", out.grad, ref.grad, out.grad_dtype or out.dtype, where=mask))
        masked = out.grad[~mask]
        nonzero = np.flatnonzero(masked != 0)
        comps.append(tol.Comparison(
            "grad_masked_zero", nonzero.size == 0, 0.0 if nonzero.size == 0 else np.inf, 0.0,
            "" if nonzero.size == 0 else f"{nonzero.size} masked positions have a non-zero gradient "
            f"(first {masked[nonzero[0]]!r})"))
    count = n + ref.semantics.token_count_eps
    for name in info.metrics:
        if name not in out.metrics:
            comps.append(tol.Comparison(f"metric:{name}", False, np.inf, 0.0, "claimed but not reported"))
            continue
        terms = _metric_terms(name, ref, out.inputs)
        with np.errstate(invalid="ignore", over="ignore"):
            scale = float(np.sum(np.abs(terms))) / count if count else 0.0
        comps.append(tol.compare_scalar(f"metric:{name}", out.metrics[name], ref.metrics[name],
                                        terms_abs_sum=scale, n_terms=max(n, 1), out_dtype="float32", acc_dtype=acc))
    comps.append(tol.Comparison(
        "inputs_unmodified", not out.modified_inputs, 0.0 if not out.modified_inputs else np.inf, 0.0,
        "" if not out.modified_inputs else f"modified: {', '.join(out.modified_inputs)}"))
    return tuple(comps)


def evaluate(candidate: Candidate, batch: Batch, *, dtype: str, device: str = "cpu",
             options: CallOptions = CallOptions(), layout: str | None = None) -> Evaluation:
    """Run the candidate once and compare it with the oracle."""
    out = get_driver(candidate.info.framework).evaluate(candidate, batch, dtype, device, options, layout)
    ref = reference_for(candidate, out.inputs, options, dtype)
    return Evaluation(out, ref, compare(candidate, out, ref))
