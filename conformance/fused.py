"""Fused kernels: SAPO losses that start from logits, or from hidden states
and an LM-head weight, instead of per-token log-probs (SPEC.md §11).

A fused candidate (``CandidateInfo.inputs`` "logits" or "hidden") runs the
same ``random`` and ``edge`` checks as any other, on the same batches: for
each batch the harness draws, here, a vocabulary, logits (or hidden states
and a weight), rounded to the candidate's dtype, and token ids; computes
the selected log-probs in float64 from exactly those rounded values; and
sets the old log-probs so that every token keeps the batch's log-ratio
(non-finite ones and masked positions included).  The oracle then runs on
those log-probs, and the candidate's loss and metrics are compared as for
any kernel, with the log-ratio's rounding widened by what forming a log-prob
through a log-softmax costs in the candidate's precision.  Its gradients are
compared with the oracle's gradient carried through the log-softmax
(d loss / d logit_v = g (1[v = token] - p_v)) and, for "hidden", the linear
layer (d/dh = dlogits W, d/dW = dlogits^T h), all in float64.

The draws depend only on the batch, so a counterexample replays exactly.
"""

from __future__ import annotations

import hashlib
import math
from types import SimpleNamespace

import numpy as np

from sapo_ref import METRIC_NAMES

from . import tolerance as tol
from .candidate import Batch, CallOptions, Candidate, CandidateError, Output
from .drivers import get_driver, layouts_for
from .evaluate import Evaluation, compare, conditioning, harness_side, reference_for
from .evaluate import evaluate as evaluate_logprob
from .drivers._base import reshape_advantages

#: the check groups a fused candidate runs: those whose every call goes
#: through ``conformance.evaluate.evaluate`` (SPEC.md §11 lists what the
#: others would need)
FUSED_GROUPS = ("random", "edge")
#: vocabulary and hidden sizes drawn per batch (inclusive); the vocabulary
#: shrinks on long batches so that a batch's logits stay under MAX_LOGITS
VOCAB = (2, 48)
HIDDEN = (1, 24)
MAX_LOGITS = 1 << 21
#: spread of the drawn logits: wide enough that a token's probability ranges
#: from near 1 to below 1e-6
LOGIT_SCALE = 3.0


def _draws(batch: Batch) -> np.random.Generator:
    h = hashlib.sha256()
    for a in (batch.logprob, batch.old_logprob, batch.mask):
        h.update(np.ascontiguousarray(a).tobytes())
    return np.random.default_rng(int.from_bytes(h.digest()[:8], "little"))


def _logsumexp(x: np.ndarray) -> np.ndarray:
    top = x.max(axis=-1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=-1, keepdims=True)))[..., 0]


def inputs_for(kind: str, batch: Batch, dtype: str) -> dict:
    """The fused inputs of ``kind`` ("logits" or "hidden") for ``batch`` (float64 NumPy, exactly representable
    in ``dtype``) and what the oracle needs: logits, token ids, the selected
    log-probs, the softmax, and per token how far a kernel computing in
    ``dtype``'s compute precision may be off on its log-prob (units of that
    precision)."""
    driver = get_driver("torch")
    B, T = batch.shape
    rng = _draws(batch)
    vocab = int(min(rng.integers(VOCAB[0], VOCAB[1] + 1), max(VOCAB[0], MAX_LOGITS // max(B * T, 1))))
    rounded = lambda a: driver.to_numpy(driver.to_framework(a, dtype, "cpu"))  # noqa: E731
    out: dict = {}
    if kind == "hidden":
        hidden_size = int(rng.integers(HIDDEN[0], HIDDEN[1] + 1))
        h = rounded(rng.normal(0.0, 1.0, (B, T, hidden_size)))
        w = rounded(rng.normal(0.0, LOGIT_SCALE / math.sqrt(hidden_size), (vocab, hidden_size)))
        logits = h @ w.T
        # the candidate forms each logit as a dot product in its precision
        logit_err = (np.abs(h) @ np.abs(w).T) * (2 + math.log2(hidden_size + 1))
        out.update(hidden=h, weight=w)
    else:
        logits = rounded(rng.normal(0.0, LOGIT_SCALE, (B, T, vocab)))
        logit_err = np.zeros_like(logits)
    ids = rng.integers(0, vocab, (B, T))
    lse = _logsumexp(logits)
    chosen = np.take_along_axis(logits, ids[..., None], axis=-1)[..., 0]
    lp = chosen - lse
    p = np.exp(logits - lse[..., None])
    chosen_err = np.take_along_axis(logit_err, ids[..., None], axis=-1)[..., 0]
    lp_error = np.abs(chosen) + np.abs(lse) + 2 + math.log2(vocab) + chosen_err + logit_err.max(axis=-1)
    out.update(logits=logits, token_ids=ids, logprob=lp, softmax=p, lse=lse, logit_err=logit_err,
               logprob_error=lp_error, vocab=vocab)
    return out


def evaluate(candidate: Candidate, batch: Batch, *, dtype: str, device: str = "cpu",
             options: CallOptions = CallOptions(), layout: str | None = None):
    """One call of a fused candidate on ``batch``'s log-ratios, compared with
    the oracle (``conformance.evaluate.evaluate`` for fused kernels)."""
    info = candidate.info
    if dtype not in info.dtypes:
        raise CandidateError(f"candidate {info.name!r} does not claim dtype {dtype}")
    if batch.weights is not None:
        raise CandidateError(f"candidate {info.name!r} does not claim rollout_is_weights")
    driver = get_driver("torch")
    why = driver.device_unavailable(device)
    if why:
        raise CandidateError(f"candidate {info.name!r} cannot run on {device}: {why}")
    candidate.ensure_setup(device)
    B, T = batch.shape
    with harness_side():
        fx = inputs_for(info.inputs, batch, dtype)
    mask = batch.mask.astype(bool)
    with np.errstate(invalid="ignore", over="ignore"):
        fx["log_ratio"] = batch.logprob - batch.old_logprob
        old = fx["logprob"] - fx["log_ratio"]  # every token keeps its log-ratio
    if layout is None:
        layout = next(x for x in layouts_for(batch.advantages, B, T) if x in info.advantage_shapes)
    adv = reshape_advantages(batch.advantages, B, T, layout)

    import torch

    tensors = {"old_logprob": driver.to_framework(old, dtype, device),
               "advantages": driver.to_framework(adv, dtype, device),
               "mask": driver.to_framework(mask, "bool" if info.mask_kind == "bool" else dtype, device)}
    if info.inputs == "hidden":
        leaves = {"hidden": driver.to_framework(fx["hidden"], dtype, device, requires_grad=True),
                  "weight": driver.to_framework(fx["weight"], dtype, device, requires_grad=True)}
    else:
        leaves = {"logits": driver.to_framework(fx["logits"], dtype, device, requires_grad=True)}
    ids = torch.as_tensor(fx["token_ids"], dtype=torch.int64, device=device)
    snaps = driver.snapshot({**leaves, **tensors, "token_ids": ids})
    raw = candidate.kernel(*leaves.values(), ids, tensors["old_logprob"], tensors["advantages"], tensors["mask"],
                           **options.kernel_kwargs())
    loss, grad, metrics = driver.split_output(SimpleNamespace(candidate=candidate), raw)
    if grad is not None:
        raise CandidateError(f"candidate {info.name!r}: a fused kernel's gradient comes from autograd; "
                             f"return the loss (and metrics), not a gradient")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise CandidateError(f"candidate {info.name!r}: loss must be a scalar tensor, got {type(loss).__name__}")
    grads = torch.autograd.grad(loss.reshape(()), list(leaves.values()), allow_unused=True)
    got = {k: (np.zeros(v.shape) if g is None else driver.to_numpy(g)) for (k, v), g in zip(leaves.items(), grads)}
    modified = tuple(k for k, snap in (snaps or {}).items()
                     if snap != driver.raw_bytes({**leaves, **tensors, "token_ids": ids}[k]))
    rounded = Batch(fx["logprob"], driver.to_numpy(tensors["old_logprob"]), driver.to_numpy(tensors["advantages"]),
                    mask)
    out = Output(loss=float(driver.to_numpy(loss).reshape(())), grad=None,
                 metrics={k: float(driver.to_numpy(v).reshape(())) for k, v in metrics.items() if k in METRIC_NAMES},
                 inputs=rounded, dtype=dtype, device=device, grad_dtype=None, loss_dtype=driver.dtype_name(loss),
                 modified_inputs=modified)
    with harness_side():
        ref = reference_for(candidate, rounded, options, dtype)
        cond = conditioning(ref, rounded, log_ratio_error=fx["logprob_error"])
        comps = list(compare(candidate, out, ref, cond=cond))
        comps[1:1] = _grad_comparisons(fx, got, ref.grad, cond, mask, dtype, {k: driver.dtype_name(v) for k, v in
                                                                              zip(leaves, grads) if v is not None})

    def carry(token_grad: np.ndarray) -> dict:
        """The candidate's gradients against ``token_grad`` (a defect's
        prediction, masked positions included) carried through: for diagnosis."""
        return {c.quantity: c for c in _grad_comparisons(fx, got, token_grad, cond, mask, dtype, {}, masked=True)
                if c.quantity in GRAD_QUANTITIES}

    return Evaluation(out, ref, tuple(comps), options, layout, info.profile, carry=carry)


def evaluate_any(candidate: Candidate, batch: Batch, **kwargs) -> Evaluation:
    """One call against the oracle for any candidate: through the fused path
    for a fused kernel, ``conformance.evaluate.evaluate`` otherwise (the
    checks of ``FUSED_GROUPS`` call this)."""
    if candidate.info.inputs != "logprob":
        return evaluate(candidate, batch, **kwargs)
    return evaluate_logprob(candidate, batch, **kwargs)


#: the fused gradients compared, by input kind
GRAD_QUANTITIES = ("grad-logits", "grad-hidden", "grad-weight")


def _grad_comparisons(fx: dict, got: dict, token_grad: np.ndarray, cond, mask: np.ndarray, dtype: str,
                      grad_dtypes: dict, masked: bool = False) -> list[tol.Comparison]:
    """The candidate's gradients against ``token_grad`` (d loss / d logprob)
    carried through the log-softmax (and the linear layer), each with the
    error a kernel computing the softmax (and the matmuls) in its precision
    may add.  ``masked``: keep ``token_grad`` at masked tokens (a defect's
    prediction says what they hold), but leave masked tokens with a
    non-finite log-ratio out of the per-token comparisons (what a kernel
    leaves there depends on how it masks)."""
    acc = tol.accumulation_dtype(dtype)
    eps = tol.eps_of(acc)
    p, logits, ids = fx["softmax"], fx["logits"], fx["token_ids"]
    onehot = np.zeros_like(p)
    np.put_along_axis(onehot, ids[..., None], 1.0, axis=-1)
    with np.errstate(invalid="ignore", over="ignore"):
        g = (token_grad if masked else np.where(mask, token_grad, 0.0))[..., None]
        junk = ~mask & ~np.isfinite(fx["log_ratio"]) if masked else np.zeros_like(mask)
        where = np.broadcast_to(~junk[..., None], p.shape)
        delta = onehot - p
        expected = g * delta
        # the token's own conditioning, carried to every logit, plus the softmax's rounding: p_v is off by
        # about eps |logit_v - lse| (its exponent's rounding) relative
        prob_err = p * (np.abs(logits - fx["lse"][..., None]) + fx["logit_err"] + 2 + math.log2(fx["vocab"]))
        bound = eps * np.abs(g) * (cond.grad[..., None] * np.abs(delta) + prob_err)
        scale = cond.grad_scale[..., None] * np.ones_like(p)
    comps = []
    if "logits" in got:
        comps.append(tol.compare_elementwise("grad-logits", got["logits"], expected, dtype, compute_dtype=acc,
                                             abs_bound=bound, practical_scale=scale, where=where))
        comps.append(_masked_zero(got["logits"], mask))
    else:
        h, w = fx["hidden"], fx["weight"]
        V, H = w.shape
        with np.errstate(invalid="ignore", over="ignore"):
            exp_h = expected @ w
            bound_h = bound @ np.abs(w) + eps * (2 + math.log2(V)) * (np.abs(expected) @ np.abs(w))
            exp_w = np.einsum("btv,bth->vh", expected, h)
            n = max(h.shape[0] * h.shape[1], 1)
            bound_w = np.einsum("btv,bth->vh", bound, np.abs(h)) \
                + eps * (2 + math.log2(n)) * np.einsum("btv,bth->vh", np.abs(expected), np.abs(h))
        comps.append(tol.compare_elementwise("grad-hidden", got["hidden"], exp_h, dtype, compute_dtype=acc,
                                             abs_bound=bound_h, where=np.broadcast_to(~junk[..., None], h.shape)))
        comps.append(_masked_zero(got["hidden"], mask))
        comps.append(tol.compare_elementwise("grad-weight", got["weight"], exp_w, dtype, compute_dtype=acc,
                                             abs_bound=bound_w))
    wrong = sorted(f"{k} {v}" for k, v in grad_dtypes.items() if v != dtype)
    comps.append(tol.exact("grad-dtype", not wrong, f"gradient dtype differs from the inputs' {dtype}: "
                                                    f"{', '.join(wrong)}"))
    return comps


def _masked_zero(grad: np.ndarray, mask: np.ndarray) -> tol.Comparison:
    masked = grad[~mask]
    nonzero = np.flatnonzero(masked != 0)
    return tol.exact("grad-masked-zero", not nonzero.size,
                     f"{nonzero.size} gradient values at masked tokens are non-zero "
                     f"(first {float(masked.ravel()[nonzero[0]])!r})" if nonzero.size else "")
