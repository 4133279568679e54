"""The candidate protocol: what an implementation declares and how it is called.

A *candidate* is a SAPO loss implementation in some framework.  It declares
what it claims (:class:`CandidateInfo`) and provides a *kernel*: a function in
its own framework's terms,

    kernel(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg,
           loss_agg_mode[, global_token_count, global_seq_count])
        -> loss | (loss, metrics) | KernelOutput

taking framework tensors (already of the requested dtype, on the requested
device) and returning the scalar loss, optionally with metrics and, for
kernels that compute it themselves, the gradient with respect to
``logprob``.  Everything else -- NumPy <-> framework conversion, autograd,
device synchronisation -- is the job of the framework's *driver*
(:mod:`conformance.drivers`), so a kernel never converts anything.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable

import numpy as np

from sapo_ref import LOSS_AGG_MODES, METRIC_NAMES, PROFILES

from .types import (
    ADVANTAGE_SHAPES,
    DEVICES,
    DTYPES,
    FRAMEWORKS,
    GRAD_MODES,
    INPUT_KINDS,
    INPUT_NAMES,
    MASK_KINDS,
    Batch,
    CallOptions,
    CandidateError,
    KernelOutput,
    Output,
)

__all__ = ["ADVANTAGE_SHAPES", "DEVICES", "DTYPES", "FRAMEWORKS", "GRAD_MODES", "INPUT_KINDS", "INPUT_NAMES", "MASK_KINDS", "Availability", "Batch",
           "CallOptions", "Candidate", "CandidateError", "CandidateInfo", "KernelOutput", "Output"]


@dataclass(frozen=True)
class CandidateInfo:
    """What a candidate declares about itself.

    Attributes:
        name: unique name (the entry-point name for registered candidates).
        framework: "numpy", "torch" or "jax" (Triton kernels run under torch).
        framework_version: version of the framework, for reports.
        version: the implementation's own version, if any.
        description: one line.
        devices: devices it supports ("cpu", "cuda").
        dtypes: input dtypes it supports.
        loss_agg_modes: aggregation modes it claims to implement.
        profile: the named semantics it claims (``sapo_ref.PROFILES``).
        deterministic: bit-identical results on identical inputs.
        provides_grad: it provides d loss / d logprob (by autograd or explicitly).
        metrics: which of ``sapo_ref.METRIC_NAMES`` it reports.
        advantage_shapes: advantage layouts it accepts ("B", "B1", "BT").
        mask_kind: "bool" or "float".
        global_counts: accepts ``global_token_count`` / ``global_seq_count``.
        requires_tau_order: only defined for tau_neg >= tau_pos (Trinity-RFT
            asserts it); the suites then never ask for tau_pos > tau_neg.
        rollout_is_weights: accepts ``rollout_is_weights`` (a (B, T) tensor of
            importance weights multiplying each token's loss, SPEC.md 2.1);
            the ``weights.*`` checks then exercise it.
        data_parallel: computes the loss of one data-parallel shard when
            given the global counts, so that gradients all-reduced across
            ranks equal the full batch's (the ``distributed.*`` checks run it
            under torch.distributed).
        shape_buckets: send it only a few shapes.  The harness then pads
            every batch it checks with masked rows and columns up to the
            next power of two (at least 8 x 64) wherever that cannot change
            the loss, requires the gradient to be exactly 0 on the padding,
            and compares the rest with the oracle on the unpadded batch
            (:mod:`conformance.buckets`).  For kernels that compile per
            shape (jax.jit, torch.compile): fewer compilations, the same
            checks.
    """

    name: str
    framework: str
    framework_version: str = ""
    version: str = ""
    description: str = ""
    devices: tuple[str, ...] = ("cpu",)
    dtypes: tuple[str, ...] = ("float32",)
    loss_agg_modes: tuple[str, ...] = LOSS_AGG_MODES
    profile: str = "canonical"
    deterministic: bool = False
    provides_grad: bool = True
    metrics: tuple[str, ...] = ()
    advantage_shapes: tuple[str, ...] = ADVANTAGE_SHAPES
    mask_kind: str = "bool"
    global_counts: bool = False
    requires_tau_order: bool = False
    rollout_is_weights: bool = False
    data_parallel: bool = False
    shape_buckets: bool = False
    inputs: str = "logprob"

    def __post_init__(self):
        def bad(field_name, value, valid):
            raise CandidateError(
                f"candidate {self.name!r}: invalid {field_name} {value!r} (valid: {', '.join(valid)})"
            )

        if not isinstance(self.name, str) or not self.name:
            raise CandidateError(f"candidate name must be a non-empty string, got {self.name!r}")
        if self.framework not in FRAMEWORKS:
            bad("framework", self.framework, FRAMEWORKS)
        for field_name, valid in (
            ("devices", DEVICES),
            ("dtypes", DTYPES),
            ("loss_agg_modes", LOSS_AGG_MODES),
            ("metrics", METRIC_NAMES),
            ("advantage_shapes", ADVANTAGE_SHAPES),
        ):
            values = getattr(self, field_name)
            if isinstance(values, str) or not isinstance(values, (tuple, list)):
                bad(field_name, values, valid)
            for v in values:
                if v not in valid:
                    bad(field_name, v, valid)
            object.__setattr__(self, field_name, tuple(values))
        for field_name in ("devices", "dtypes", "loss_agg_modes", "advantage_shapes"):
            if not getattr(self, field_name):
                raise CandidateError(f"candidate {self.name!r}: {field_name} must not be empty")
        if self.profile not in PROFILES:
            bad("profile", self.profile, tuple(PROFILES))
        if self.mask_kind not in MASK_KINDS:
            bad("mask_kind", self.mask_kind, MASK_KINDS)
        if self.inputs not in INPUT_KINDS:
            bad("inputs", self.inputs, INPUT_KINDS)
        if self.inputs != "logprob":
            # a fused kernel is called by conformance.fused: torch autograd, no per-token extras
            unsupported = [f for f in ("rollout_is_weights", "global_counts", "data_parallel", "shape_buckets")
                           if getattr(self, f)]
            if self.framework != "torch" or unsupported or not self.provides_grad:
                why = (f"framework {self.framework!r} (only 'torch')" if self.framework != "torch" else
                       "provides_grad=False" if not self.provides_grad else f"claims {', '.join(unsupported)}")
                raise CandidateError(f"candidate {self.name!r}: a fused kernel (inputs={self.inputs!r}) cannot be "
                                     f"certified with {why}; fused kernels are torch, autograd, without "
                                     f"rollout_is_weights, global counts, data_parallel or shape_buckets")
        if not isinstance(self.shape_buckets, bool):
            raise CandidateError(f"candidate {self.name!r}: shape_buckets must be True or False, "
                                 f"got {self.shape_buckets!r}")

    def as_dict(self) -> dict:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass
class Candidate:
    """A SAPO implementation the harness can certify.

    Args:
        info: its claims.
        kernel: the loss function in its framework's terms (module docstring).
        grad_mode: "autograd" or "explicit" (see ``GRAD_MODES``).
        gate: optional ``gate(ratio, advantages, tau_pos, tau_neg)`` in the
            framework's terms, checked against ``sapo_ref.soft_gate``.
        requires: import names that must be importable for it to run.
        device_check: optional ``device_check(device) -> str | None``: why it cannot
            run on ``device`` (e.g. a missing compiler), or None.
        setup: optional ``setup(device)`` run once before the first call on a
            device (e.g. selecting the Triton interpreter).
        compile_count: optional ``compile_count() -> int``, how many programs
            the kernel has compiled so far in this process (e.g. dynamo's
            graphs, a jitted function's cache size); the report shows it.
        install: what makes a missing requirement importable, e.g.
            "pip install verl==0.9.1"; availability says it.
    """

    info: CandidateInfo
    kernel: Callable[..., Any]
    grad_mode: str = "autograd"
    gate: Callable[..., Any] | None = None
    requires: tuple[str, ...] = ()
    device_check: Callable[[str], str | None] | None = None
    setup: Callable[[str], None] | None = None
    compile_count: Callable[[], int] | None = None
    install: str = ""
    _ready: set = field(default_factory=set, repr=False)

    def __post_init__(self):
        if not isinstance(self.info, CandidateInfo):
            raise CandidateError(f"candidate info must be a CandidateInfo, got {type(self.info).__name__}")
        if not callable(self.kernel):
            raise CandidateError(f"candidate {self.info.name!r}: kernel is not callable")
        if self.grad_mode not in GRAD_MODES:
            raise CandidateError(
                f"candidate {self.info.name!r}: invalid grad_mode {self.grad_mode!r} (valid: {', '.join(GRAD_MODES)})"
            )
        if self.grad_mode == "autograd" and self.info.framework == "numpy" and self.info.provides_grad:
            raise CandidateError(f"candidate {self.info.name!r}: numpy has no autograd; use grad_mode='explicit'")
        self.requires = tuple(self.requires) or (self.info.framework,)
        if self.compile_count is not None and not callable(self.compile_count):
            raise CandidateError(f"candidate {self.info.name!r}: compile_count is not callable")

    @property
    def name(self) -> str:
        return self.info.name

    def availability(self, device: str | None = None) -> Availability:
        """Whether it can run here (on ``device``, default: any it claims)."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                return Availability(False, f"{module} not installed" + (f": {self.install}" if self.install else ""))
        from .drivers import get_driver

        driver = get_driver(self.info.framework)
        devices = (device,) if device else self.info.devices
        reasons = []
        for dev in devices:
            if dev not in self.info.devices:
                reasons.append(f"{dev} not claimed")
                continue
            why = driver.device_unavailable(dev)
            if why is None and self.device_check is not None:
                why = self.device_check(dev)
            if why is None:
                return Availability(True)
            reasons.append(why)
        return Availability(False, "; ".join(reasons))

    def runnable_devices(self) -> tuple[str, ...]:
        return tuple(d for d in self.info.devices if self.availability(d))

    def ensure_setup(self, device: str) -> None:
        if self.setup is not None and device not in self._ready:
            self.setup(device)
            self._ready.add(device)

    def compilations(self) -> int | None:
        """What ``compile_count`` says now; None without one, or if it fails
        or answers anything but an integer >= 0 (the count is for reports)."""
        if self.compile_count is None:
            return None
        try:
            n = self.compile_count()
        except Exception:
            return None
        return int(n) if isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 0 else None

    def with_info(self, **changes) -> "Candidate":
        """A copy with some claims changed (e.g. a different name or profile)."""
        return replace(self, info=replace(self.info, **changes), _ready=set())


