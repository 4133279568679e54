"""What every driver does the same way."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from sapo_ref import METRIC_NAMES

from .. import buckets
from ..types import INPUT_NAMES, Batch, CallOptions, CandidateError, KernelOutput, Output, package_version

if TYPE_CHECKING:  # pragma: no cover
    from ..candidate import Candidate



def advantages_layout(adv: np.ndarray, B: int, T: int) -> str:
    """The layout of an advantages array: "B", "B1" or "BT"."""
    if adv.shape == (B,):
        return "B"
    if adv.shape == (B, 1):
        return "B1"
    if adv.shape == (B, T):
        return "BT"
    raise ValueError(f"advantages of shape {adv.shape} do not fit a ({B}, {T}) batch")


def layouts_for(adv: np.ndarray, B: int, T: int) -> tuple[str, ...]:
    """Layouts the advantages can be given in: per-row values fit all three."""
    own = advantages_layout(adv, B, T)
    if own == "BT":
        per_row = T > 0 and np.array_equal(adv, np.broadcast_to(adv[:, :1], adv.shape), equal_nan=True)
        return ("BT", "B1", "B") if per_row else ("BT",)
    return (own,) + tuple(x for x in ("B", "B1", "BT") if x != own)


def reshape_advantages(adv: np.ndarray, B: int, T: int, layout: str) -> np.ndarray:
    if layout not in layouts_for(adv, B, T):
        raise ValueError(f"advantages of shape {adv.shape} cannot be given as {layout}")
    col = adv.reshape(B, -1)[:, :1] if adv.size else np.zeros((B, 1))
    if layout == "B":
        return np.ascontiguousarray(col[:, 0])
    if layout == "B1":
        return np.ascontiguousarray(col)
    return np.ascontiguousarray(np.broadcast_to(adv.reshape(B, -1), (B, T)))


@dataclass
class Prepared:
    """A candidate's inputs in its framework, plus what the harness needs."""

    candidate: Candidate
    tensors: dict  # name -> framework array, in INPUT_NAMES order
    rounded: Batch  # the same values in float64 NumPy, without any bucket padding
    dtype: str
    device: str
    snapshots: dict | None = None  # name -> copy, to detect modified inputs
    unpadded: tuple[int, int] | None = None  # the batch's own (B, T) when the tensors carry bucket padding


class Driver(ABC):
    """Converts, calls, differentiates, synchronises."""

    framework: str = ""

    def version(self) -> str:
        return package_version(self.framework)

    @abstractmethod
    def device_unavailable(self, device: str) -> str | None:
        """None if ``device`` can be used, else why not."""

    @abstractmethod
    def to_framework(self, array: np.ndarray, dtype: str, device: str, *, requires_grad: bool = False) -> Any:
        ...

    @abstractmethod
    def to_numpy(self, value: Any) -> np.ndarray:
        """A framework array (or scalar) as float64 NumPy (exact)."""

    @abstractmethod
    def dtype_name(self, value: Any) -> str:
        ...

    @abstractmethod
    def run(self, prepared: Prepared, options: CallOptions) -> Any:
        """Forward and backward, finished (synchronised); returns raw results."""

    @abstractmethod
    def unpack(self, prepared: Prepared, raw: Any) -> tuple[Any, Any, Mapping]:
        """Raw results -> (loss, grad, metrics) in framework terms."""

    # -- timing (conformance.bench) ---------------------------------------

    def timer_name(self, device: str) -> str:
        return "perf_counter around a synchronised call"

    def timed_run(self, prepared: Prepared, options: CallOptions) -> tuple[Any, float]:
        """``run`` and the seconds it took (``run`` returns only when finished)."""
        start = time.perf_counter()
        raw = self.run(prepared, options)
        return raw, time.perf_counter() - start

    @abstractmethod
    def make_copy(self, nbytes: int, device: str, sets: int):
        """The copy roofline: a function ``copy(i) -> seconds`` that copies
        the i-th (mod ``sets``) source buffer of ``nbytes`` bytes into its
        destination with the framework's plain copy, finished."""

    def snapshot(self, tensors: dict) -> dict | None:
        """The inputs' bytes, to detect modification (None if immutable)."""
        return {k: self.raw_bytes(v) for k, v in tensors.items()}

    def raw_bytes(self, value: Any) -> bytes:
        """The exact bit pattern of an array (NaN payloads and -0.0 included)."""
        return np.ascontiguousarray(value).tobytes()

    # ------------------------------------------------------------------

    def prepare(self, candidate: Candidate, batch: Batch, dtype: str, device: str,
                layout: str | None = None, *, check_inputs: bool = True,
                bucket: tuple[int, int] | None = None) -> Prepared:
        """The candidate's inputs in its framework; with ``bucket``, padded
        to that (B, T) shape with masked padding (``conformance.buckets``)."""
        info = candidate.info
        if dtype not in info.dtypes:
            raise CandidateError(f"candidate {info.name!r} does not claim dtype {dtype}")
        why = self.device_unavailable(device)
        if why:
            raise CandidateError(f"candidate {info.name!r} cannot run on {device}: {why}")
        candidate.ensure_setup(device)
        B, T = batch.shape
        if layout is None:
            layout = next(x for x in layouts_for(batch.advantages, B, T) if x in info.advantage_shapes)
        if batch.weights is not None and not info.rollout_is_weights:
            raise CandidateError(f"candidate {info.name!r} does not claim rollout_is_weights")
        sent = Batch(batch.logprob, batch.old_logprob, reshape_advantages(batch.advantages, B, T, layout),
                     batch.mask.astype(bool), batch.weights)
        padded = bucket is not None and tuple(bucket) != (B, T)
        if padded:
            sent = buckets.pad(sent, bucket, layout)
        tensors = {
            "logprob": self.to_framework(sent.logprob, dtype, device,
                                         requires_grad=candidate.grad_mode == "autograd" and info.provides_grad),
            "old_logprob": self.to_framework(sent.old_logprob, dtype, device),
            "advantages": self.to_framework(sent.advantages, dtype, device),
            "mask": self.to_framework(sent.mask, "bool" if info.mask_kind == "bool" else dtype, device),
        }
        weights = None
        if sent.weights is not None:
            tensors["rollout_is_weights"] = self.to_framework(sent.weights, dtype, device)
            weights = self.to_numpy(tensors["rollout_is_weights"])
        rounded = Batch(*(self.to_numpy(tensors[k]) for k in INPUT_NAMES[:3]), sent.mask, weights)
        if padded:
            rounded = buckets.crop(rounded, (B, T), layout)
        snaps = self.snapshot(tensors) if check_inputs else None
        return Prepared(candidate, tensors, rounded, dtype, device, snaps, (B, T) if padded else None)

    def call_kernel(self, prepared: Prepared, options: CallOptions, tensors: dict | None = None) -> Any:
        info = prepared.candidate.info
        kwargs = options.kernel_kwargs()
        if not info.global_counts:
            kwargs.pop("global_token_count", None)
            kwargs.pop("global_seq_count", None)
        t = tensors or prepared.tensors
        if "rollout_is_weights" in t:
            kwargs["rollout_is_weights"] = t["rollout_is_weights"]
        return prepared.candidate.kernel(t["logprob"], t["old_logprob"], t["advantages"], t["mask"], **kwargs)

    def split_output(self, prepared: Prepared, out: Any) -> tuple[Any, Any, Mapping]:
        """A kernel's return value -> (loss, explicit grad or None, metrics)."""
        name = prepared.candidate.name
        if isinstance(out, KernelOutput):
            return out.loss, out.grad, dict(out.metrics or {})
        if isinstance(out, tuple):
            if len(out) != 2 or not isinstance(out[1], Mapping):
                raise CandidateError(
                    f"candidate {name!r}: kernel returned a tuple of {len(out)}; expected (loss, metrics dict)"
                )
            return out[0], None, dict(out[1])
        return out, None, {}

    def collect(self, prepared: Prepared, raw: Any) -> Output:
        cand = prepared.candidate
        name = cand.name
        loss, grad, metrics = self.unpack(prepared, raw)
        loss_np = self.to_numpy(loss)
        if loss_np.shape not in ((), (1,)):
            raise CandidateError(f"candidate {name!r}: loss must be a scalar, got shape {loss_np.shape}")
        grad_np = None
        grad_dtype = None
        padding_grad = (0, 0.0)
        if cand.info.provides_grad:
            if grad is None:
                raise CandidateError(f"candidate {name!r}: claims a gradient but produced none")
            grad_np = self.to_numpy(grad)
            grad_dtype = self.dtype_name(grad)
            sent_shape = tuple(prepared.tensors["logprob"].shape)
            if grad_np.shape != sent_shape:
                raise CandidateError(f"candidate {name!r}: gradient has shape {grad_np.shape}, logprob {sent_shape}")
            if prepared.unpadded is not None:
                B, T = prepared.unpadded
                on_padding = np.concatenate([grad_np[B:].ravel(), grad_np[:B, T:].ravel()])
                nonzero = np.flatnonzero(on_padding != 0)
                padding_grad = (int(nonzero.size), float(on_padding[nonzero[0]]) if nonzero.size else 0.0)
                grad_np = grad_np[:B, :T]
        out_metrics = {}
        for k, v in metrics.items():
            if k in METRIC_NAMES:
                out_metrics[k] = float(self.to_numpy(v).reshape(()))
        modified = ()
        if prepared.snapshots is not None:
            modified = tuple(
                k for k, snap in prepared.snapshots.items() if snap != self.raw_bytes(prepared.tensors[k])
            )
        return Output(
            loss=float(loss_np.reshape(())),
            grad=grad_np,
            metrics=out_metrics,
            inputs=prepared.rounded,
            dtype=prepared.dtype,
            device=prepared.device,
            grad_dtype=grad_dtype,
            loss_dtype=self.dtype_name(loss),
            modified_inputs=modified,
            padding_grad=padding_grad,
        )

    def call(self, candidate: Candidate, batch: Batch, dtype: str, device: str = "cpu",
             options: CallOptions = CallOptions(), layout: str | None = None) -> Output:
        """prepare + run + collect: one call of the candidate, as NumPy.

        Every check's call of a kernel comes through here.  A candidate that
        claims ``shape_buckets`` is sent the batch padded to its bucket
        (``conformance.buckets``); the output is cropped back to the batch."""
        bucket = None
        if candidate.info.shape_buckets:
            bucket = buckets.bucket_shape(batch.shape, candidate.info.profile, options.loss_agg_mode,
                                          global_seq_count=options.global_seq_count)
        prepared = self.prepare(candidate, batch, dtype, device, layout, bucket=bucket)
        return self.collect(prepared, self.run(prepared, options))

    def gate(self, candidate: Candidate, ratio: np.ndarray, advantages: np.ndarray, tau_pos: float,
             tau_neg: float, dtype: str, device: str = "cpu"):
        """The candidate's gate on (ratio, advantages) rounded to ``dtype``:
        returns (gate, rounded ratio, rounded advantages) as float64, and the
        gate's own dtype."""
        if candidate.gate is None:
            raise CandidateError(f"candidate {candidate.name!r} does not expose a gate")
        candidate.ensure_setup(device)
        r = self.to_framework(ratio, dtype, device)
        a = self.to_framework(advantages, dtype, device)
        g = candidate.gate(r, a, tau_pos, tau_neg)
        return self.to_numpy(g), self.to_numpy(r), self.to_numpy(a), self.dtype_name(g)
