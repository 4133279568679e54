"""The built-in candidates, registered through the same entry-point group
(``sapo_conformance.candidates``) a third party uses (see pyproject.toml).

Each factory is cheap and imports no framework: kernels are imported on
first use, so ``sapo-conformance list`` works without torch or jax.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys

from ..candidate import DTYPES, Candidate, CandidateInfo
from ..types import package_version
from ._common import COMMON_CLAIMS


def select_triton_backend() -> None:
    """Without a GPU, Triton kernels can only run under the Triton
    interpreter, which must be chosen before anything imports triton
    (torch.compile does).  An explicit TRITON_INTERPRET is respected."""
    if "TRITON_INTERPRET" not in os.environ and not os.path.exists("/dev/nvidiactl"):
        os.environ["TRITON_INTERPRET"] = "1"


def _lazy(module: str, attr: str):
    """A callable that imports ``module.attr`` on first call."""
    target = {}

    def call(*args, **kwargs):
        if "fn" not in target:
            target["fn"] = getattr(importlib.import_module(f"{__name__}.{module}"), attr)
        return target["fn"](*args, **kwargs)

    call.__name__ = attr
    call.__qualname__ = f"{module}.{attr}"
    return call


def numpy_fp32() -> Candidate:
    from .numpy_impl import gate_numpy, sapo_numpy

    dtypes = ("float32", "float16") + (("bfloat16",) if importlib.util.find_spec("ml_dtypes") else ())
    info = CandidateInfo(
        name="numpy-fp32",
        framework="numpy",
        framework_version=package_version("numpy"),
        description="NumPy computing in float32 with a hand-written gradient",
        devices=("cpu",),
        dtypes=dtypes,
        deterministic=True,
        rollout_is_weights=True,
        **COMMON_CLAIMS,
    )
    return Candidate(info, sapo_numpy, grad_mode="explicit", gate=gate_numpy)


def _torch_info(name: str, description: str, **claims) -> CandidateInfo:
    return CandidateInfo(
        name=name,
        framework="torch",
        framework_version=package_version("torch"),
        description=description,
        devices=("cpu", "cuda"),
        dtypes=DTYPES,
        deterministic=True,
        rollout_is_weights=True,
        data_parallel=True,
        **{**COMMON_CLAIMS, **claims},
    )


def torch_eager() -> Candidate:
    info = _torch_info("torch-eager", "idiomatic, numerically stable PyTorch; gradient by autograd")
    return Candidate(info, _lazy("torch_impl", "sapo_torch"), gate=_lazy("torch_impl", "gate_torch"))


def _fused(name: str, inputs: str, description: str, kernel: str) -> Candidate:
    info = CandidateInfo(name=name, framework="torch", framework_version=package_version("torch"),
                         description=description, devices=("cpu", "cuda"), dtypes=DTYPES, deterministic=True,
                         inputs=inputs, **{**COMMON_CLAIMS, "global_counts": False})
    return Candidate(info, _lazy("torch_impl", kernel))


def torch_logits() -> Candidate:
    return _fused("torch-logits", "logits", "torch-eager from logits: log_softmax, gather, SAPO (a fused kernel's "
                  "interface)", "sapo_torch_logits")


def torch_linear() -> Candidate:
    return _fused("torch-linear", "hidden", "torch-eager from hidden states and an LM-head weight",
                  "sapo_torch_linear")


def torch_sequence() -> Candidate:
    info = _torch_info("torch-sequence", "torch-eager with the sequence-level (geometric-mean) ratio",
                       profile="canonical-sequence")
    return Candidate(info, _lazy("torch_impl", "sapo_torch_sequence"))


def _inductor_unavailable(device: str) -> str | None:
    """torch.compile's default backend builds C++ on the CPU."""
    if device == "cpu" and not any(shutil.which(cc) for cc in ("g++", "c++", "clang++")):
        return "torch.compile's CPU backend needs a C++ compiler, and none was found"
    return None


def torch_compile() -> Candidate:
    info = _torch_info("torch-compile", "the torch-eager function under torch.compile(dynamic=True)",
                       shape_buckets=True)
    return Candidate(info, _lazy("torch_impl", "sapo_torch_compiled"), gate=_lazy("torch_impl", "gate_torch"),
                     device_check=_inductor_unavailable, compile_count=_lazy("torch_impl", "compile_count"))


def jax_candidate() -> Candidate:
    info = CandidateInfo(
        name="jax",
        framework="jax",
        framework_version=package_version("jax"),
        description="jax.jit of jax.value_and_grad, float32 inside",
        devices=("cpu", "cuda"),
        dtypes=("float32", "float16", "bfloat16"),
        deterministic=True,
        shape_buckets=True,
        **COMMON_CLAIMS,
    )
    return Candidate(info, _lazy("jax_impl", "sapo_jax"), grad_mode="explicit", gate=_lazy("jax_impl", "gate_jax"),
                     compile_count=_lazy("jax_impl", "compile_count"))


def _cuda_available() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()


def _triton_check(device: str) -> str | None:
    """On the CPU the kernel needs the interpreter, which must be selected
    before anything imports triton.language (torch.compile does)."""
    if device == "cpu" and "triton.language" in sys.modules:
        from triton.runtime.interpreter import InterpretedFunction
        import triton.language as tl

        if not isinstance(tl.sum, InterpretedFunction):
            return ("triton was imported without TRITON_INTERPRET=1 (torch.compile imports it); "
                    "set TRITON_INTERPRET=1 before starting Python, or run this candidate in its own process")
    return None


def _triton_setup(device: str) -> None:
    """On the CPU, select the Triton interpreter before the kernel is defined."""
    if device == "cpu":
        os.environ["TRITON_INTERPRET"] = "1"


def triton_candidate() -> Candidate:
    cuda = _cuda_available()
    info = CandidateInfo(
        name="triton",
        framework="torch",
        framework_version=package_version("torch"),
        version=f"{COMMON_CLAIMS['version']} (triton {package_version('triton')})",
        description="one fused forward+backward Triton kernel (CPU: the Triton interpreter)",
        devices=("cuda", "cpu"),
        # the interpreter has no bfloat16; compiled CUDA kernels do
        dtypes=("float32", "float16") + (("bfloat16",) if cuda else ()),
        deterministic=True,
        **{k: v for k, v in COMMON_CLAIMS.items() if k != "version"},
    )
    return Candidate(info, _lazy("triton_impl", "sapo_triton"), requires=("torch", "triton"),
                     device_check=_triton_check, setup=_triton_setup)
