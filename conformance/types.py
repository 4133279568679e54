"""The values that cross the candidate protocol: call options, inputs
(:class:`Batch`), a kernel's and a call's outputs, the claimable names, and
:class:`CandidateError`.  The drivers and the candidate module both build on
these; this module imports neither."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from sapo_ref import DEFAULT_TAU_NEG, DEFAULT_TAU_POS
from sapo_ref import DTYPES as _DTYPES  # the one list of dtype names


#: Dtype names a candidate may claim.
DTYPES = _DTYPES
#: The kernel's inputs, in the order it takes them.
INPUT_NAMES = ("logprob", "old_logprob", "advantages", "mask")
#: Devices a candidate may claim.
DEVICES = ("cpu", "cuda")
#: Advantage layouts: (B,), (B, 1), (B, T).
ADVANTAGE_SHAPES = ("B", "B1", "BT")
#: How a candidate wants its mask: boolean, or 0/1 in the inputs' dtype.
MASK_KINDS = ("bool", "float")
#: How the gradient is obtained: the framework's autograd on the returned
#: loss, or the kernel returns it (``KernelOutput.grad``).
GRAD_MODES = ("autograd", "explicit")
FRAMEWORKS = ("numpy", "torch", "jax")
#: What a kernel starts from: per-token log-probs (the default), or, for a
#: fused kernel, logits (B, T, V) or hidden states (B, T, H) and an LM-head
#: weight (V, H), with the token ids (``conformance.fused``).
INPUT_KINDS = ("logprob", "logits", "hidden")


def package_version(dist: str, default: str | None = "not installed") -> str | None:
    """The installed version of a distribution, or ``default``."""
    import importlib.metadata

    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return default


class CandidateError(Exception):
    """A candidate is malformed or cannot be loaded; the message is one line
    naming the candidate."""


class HarnessFault(Exception):
    """The oracle or the harness raised while checking a candidate, on
    inputs the candidate handled: a bug in sapo-conformance, reported as a
    harness error (exit 3), never as a mark against the candidate."""


@dataclass(frozen=True)
class CallOptions:
    """The per-call semantics the harness asks a candidate for."""

    tau_pos: float = DEFAULT_TAU_POS
    tau_neg: float = DEFAULT_TAU_NEG
    loss_agg_mode: str = "token-mean"
    global_token_count: int | None = None
    global_seq_count: int | None = None

    def kernel_kwargs(self) -> dict:
        """Keyword arguments for a kernel: the global counts only when set."""
        kw = {"tau_pos": self.tau_pos, "tau_neg": self.tau_neg, "loss_agg_mode": self.loss_agg_mode}
        if self.global_token_count is not None:
            kw["global_token_count"] = self.global_token_count
        if self.global_seq_count is not None:
            kw["global_seq_count"] = self.global_seq_count
        return kw

    def oracle_kwargs(self) -> dict:
        """Keyword arguments for ``sapo_ref.sapo_loss``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class KernelOutput:
    """What a kernel may return instead of a bare loss."""

    loss: Any
    grad: Any = None
    metrics: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Batch:
    """Inputs in float64 NumPy: logprob, old_logprob, advantages, mask, and
    optionally (B, T) rollout importance weights."""

    logprob: np.ndarray
    old_logprob: np.ndarray
    advantages: np.ndarray
    mask: np.ndarray
    weights: np.ndarray | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.logprob.shape  # type: ignore[return-value]


@dataclass(frozen=True)
class Output:
    """A candidate's results, converted to float64 NumPy by its driver.

    ``inputs`` holds the inputs exactly as the candidate saw them (after
    rounding to its dtype), for the oracle to evaluate on; with shape
    buckets, without the harness's padding.  ``padding_grad`` is the number
    of padded positions where the gradient was not exactly 0, and the first
    such value (``conformance.buckets``).
    """

    loss: float
    grad: np.ndarray | None
    metrics: Mapping[str, float]
    inputs: Batch
    dtype: str
    device: str
    grad_dtype: str | None = None
    loss_dtype: str | None = None
    modified_inputs: tuple[str, ...] = ()
    padding_grad: tuple[int, float] = (0, 0.0)
