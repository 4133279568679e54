"""Ready-made candidates for the SAPO code of real, published frameworks.

Each wraps the framework's own code, imported from the installed package and
run unmodified through the adapters (``conformance.adapters``); nothing of it
is copied here.  ``FRAMEWORKS`` says, as data, which package and version
each was certified at and how to install it; ``scripts/frameworks.sh``
builds one environment per framework from it and writes the matrix in
``frameworks/README.md``.

A candidate is built without importing its framework, so ``list`` shows it
everywhere: where the package is missing it says which ``pip install`` it
needs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..candidate import Candidate


@dataclass(frozen=True)
class Framework:
    name: str  # the entry-point name
    package: str  # the distribution on the package index
    version: str  # the version certified in frameworks/README.md
    module: str  # the import that must succeed
    where: str  # where its SAPO code lives
    pip_args: tuple[str, ...] = ()  # extra pip arguments (e.g. --no-deps)
    #: what its SAPO module imports when installed with --no-deps
    needs: tuple[str, ...] = ()
    #: a candidate exists (an entry point of that name); False where the
    #: package cannot be installed here to write and test one
    registered: bool = True
    #: the environment it is certified in (default: its own, named after it);
    #: candidates of one package share one
    env: str = ""
    #: ``run --check`` patterns for the matrix run ("-GLOB" leaves a check out)
    checks: tuple[str, ...] = ()
    #: what the matrix says about how it was run (e.g. a check left out, and why)
    note: str = ""

    @property
    def env_name(self) -> str:
        return self.env or self.name

    @property
    def install(self) -> str:
        """The command that makes the candidate runnable (torch pinned first)."""
        extra = " ".join(self.pip_args)
        first = f"pip install {' '.join(self.needs)} && " if self.needs else ""
        return f"{first}pip install {extra + ' ' if extra else ''}{self.package}=={self.version}"


FRAMEWORKS: tuple[Framework, ...] = (
    Framework("verl", "verl", "0.9.1", "verl", "verl/trainer/ppo/core_algos.py::compute_policy_loss_sapo"),
    Framework("trinity-rft", "trinity-rft", "0.6.0", "trinity",
              "trinity/algorithm/policy_loss_fn/sapo_policy_loss.py::SAPOPolicyLossFn", ("--no-deps",),
              ("ray", "omegaconf", "safetensors")),  # its full dependency set is a training stack (vllm, ...)
    # areal pins torch<2.11; installed --no-deps next to torch 2.13.0 with what its functional module imports
    Framework("areal", "areal", "1.0.4", "areal", "areal/utils/functional/functional.py::sapo_loss_fn", ("--no-deps",),
              ("aiohttp", "httpx", "colorlog", "tenacity", "flask", "torchdata", "lark", "uvloop", "pyyaml",
               "hydra-core", "transformers", "ray", "numba", "pillow", "orjson", "einops", "aiofiles", "openai")),
    Framework("trl", "trl", "1.16.0", "trl",
              "trl/trainer/grpo_trainer.py::GRPOTrainer._compute_loss (loss_type='sapo')"),
    Framework("trl-sequence", "trl", "1.16.0", "trl",
              "trl/trainer/grpo_trainer.py::GRPOTrainer._compute_loss (loss_type='sapo', "
              "importance_sampling_level='sequence')", env="trl"),
    # liger's ops need packaging, which liger-kernel does not declare
    Framework("liger-chunked", "liger-kernel", "0.8.5", "liger_kernel",
              "liger_kernel/chunked_loss/grpo_loss.py::LigerFusedLinearGRPOLoss (loss_type='sapo')",
              needs=("packaging",), env="liger-kernel"),
    Framework("liger-triton", "liger-kernel", "0.8.5", "liger_kernel",
              "liger_kernel/ops/grpo_loss.py::GrpoLossFunction via transformers.grpo_loss.triton_grpo_loss "
              "(loss_type='sapo')", needs=("packaging",), env="liger-kernel", checks=("-edge.long-row",),
              note="CPU: the Triton interpreter, float32; edge.long-row (T = 32768) left out: 394 s of "
                   "interpreted programs (it runs on a GPU)"),
    # ms-swift's GRPO trainer imports msgspec, which ms-swift 4.6.0 does not declare
    Framework("ms-swift", "ms-swift", "4.6.0", "swift",
              "swift/rlhf_trainers/grpo_trainer.py::GRPOTrainer._compute_loss_and_metrics (loss_type='sapo')",
              needs=("msgspec",)),
    # skyrl 0.4.0 requires Python >= 3.12: the matrix says so where it cannot be installed
    Framework("skyrl", "skyrl", "0.4.0", "skyrl", "skyrl/backends/skyrl_train/utils/ppo_utils.py::sapo_policy_loss",
              registered=False),
)
FRAMEWORKS_BY_NAME = {f.name: f for f in FRAMEWORKS}


def _candidate(name: str, build) -> Candidate:
    """The candidate ``build()`` makes where the framework is installed, and
    a stand-in with the same claims that says how to install it elsewhere."""
    from dataclasses import replace

    from ..types import package_version

    fw = FRAMEWORKS_BY_NAME[name]
    cand = build()
    info = replace(cand.info, version=package_version(fw.package, "not installed"))
    return replace(cand, info=info, requires=(fw.module,), install=fw.install, _ready=set())


def verl() -> Candidate:
    """verl's ``compute_policy_loss_sapo`` with a real ``ActorConfig``."""
    from . import verl_sapo

    return _candidate("verl", verl_sapo.candidate)


def trinity_rft() -> Candidate:
    """Trinity-RFT's ``SAPOPolicyLossFn``."""
    from . import trinity_sapo

    return _candidate("trinity-rft", trinity_sapo.candidate)


def areal() -> Candidate:
    """AReaL's ``sapo_loss_fn``."""
    from . import areal_sapo

    return _candidate("areal", areal_sapo.candidate)


def trl() -> Candidate:
    """TRL's ``GRPOTrainer._compute_loss`` with ``loss_type="sapo"``."""
    from . import trl_sapo

    return _candidate("trl", trl_sapo.candidate)


def trl_sequence() -> Candidate:
    """TRL's SAPO with ``importance_sampling_level="sequence"``."""
    from . import trl_sapo

    return _candidate("trl-sequence", trl_sapo.candidate_sequence)


def liger_chunked() -> Candidate:
    """Liger-Kernel's fused linear + SAPO loss (hidden states and LM-head weight)."""
    from . import liger_sapo

    return _candidate("liger-chunked", liger_sapo.chunked)


def liger_triton() -> Candidate:
    """Liger-Kernel's Triton SAPO loss from logits."""
    from . import liger_sapo

    return _candidate("liger-triton", liger_sapo.triton)


def ms_swift() -> Candidate:
    """ms-swift's ``GRPOTrainer`` loss with ``loss_type="sapo"``."""
    from . import swift_sapo

    return _candidate("ms-swift", swift_sapo.candidate)
