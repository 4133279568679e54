"""Adapters: certify real frameworks' SAPO code unmodified.

Each adapter wraps a function or class written in a framework's own calling
convention and returns an ordinary :class:`~conformance.candidate.Candidate`,
usable in-process, by ``module:attr`` or through an entry point.  The claims
(profile, dtypes, devices, ...) are keyword arguments with the defaults that
fit the framework; pass the ones your implementation documents.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable, Mapping

from sapo_ref import METRIC_NAMES

from .candidate import Candidate, CandidateError, CandidateInfo, KernelOutput
from .types import package_version

__all__ = ["from_fused_loss", "from_jax_loss", "from_torch_loss", "from_trinity_policy_loss", "from_verl_policy_loss"]

# metric names real frameworks use for ours (after any "actor/" prefix)
_METRIC_ALIASES = {"ratio_mean": "avg_ratio", "is_ratio_mean": "avg_ratio", "soft_gate": "avg_soft_gate"}


def normalise_metrics(metrics: Mapping[str, Any] | None) -> dict:
    """Keep the metrics the harness checks, under their canonical names:
    "actor/ppo_kl" and "ppo_kl" are the same metric."""
    out = {}
    for key, value in (metrics or {}).items():
        name = str(key).rsplit("/", 1)[-1]
        name = _METRIC_ALIASES.get(name, name)
        if name in METRIC_NAMES:
            out[name] = value
    return out


def _info(name, framework, claims: dict, defaults: dict) -> CandidateInfo:
    merged = {**defaults, **claims}
    merged.setdefault("framework_version", package_version(framework))
    try:
        return CandidateInfo(name=name, framework=framework, **merged)
    except TypeError as exc:
        raise CandidateError(f"candidate {name!r}: {exc}") from None


def _reject_uncarried(name, claims: dict, uncarried: Mapping[str, str], convention: str) -> None:
    """A claim the adapter's calling convention has no way to pass on is an
    error when the candidate is built, not a TypeError in every check."""
    bad = [f"{claim}=True ({why})" for claim, why in uncarried.items() if claims.get(claim)]
    if bad:
        raise CandidateError(f"candidate {name!r}: {convention} cannot honour {'; '.join(bad)}: "
                             f"drop the claim, or wrap the code with from_torch_loss")


#: what a Trinity-RFT PolicyLossFn call cannot receive
_TRINITY_UNCARRIED = {
    "global_counts": "its __call__ takes no global_token_count / global_seq_count",
    "data_parallel": "a shard's loss needs the global counts, which its __call__ cannot take",
    "rollout_is_weights": "its __call__ takes no rollout_is_weights",
}


def _split_result(result, name: str):
    """loss | (loss, metrics) -> (loss, normalised metrics)."""
    if isinstance(result, tuple):
        if len(result) == 2 and isinstance(result[1], Mapping):
            return result[0], normalise_metrics(result[1])
        raise CandidateError(f"candidate {name!r}: expected a loss or (loss, metrics), got a tuple of {len(result)}")
    return result, {}


def _function_adapter(fn, name, framework, claims, defaults) -> Candidate:
    if not callable(fn):
        raise CandidateError(f"candidate {name!r}: expected a function, got {type(fn).__name__}")

    def kernel(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode, **extra):
        # extra: rollout_is_weights, passed only to a function that claims it
        loss, metrics = _split_result(
            fn(old_logprob, logprob, advantages, mask, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=loss_agg_mode,
               **extra),
            name,
        )
        return loss, metrics

    return Candidate(_info(name, framework, claims, defaults), kernel)


_FUNCTION_DEFAULTS = dict(
    dtypes=("float32",),
    devices=("cpu",),
    advantage_shapes=("BT",),
    mask_kind="float",
    metrics=(),
)


def from_torch_loss(fn: Callable, *, name: str, **claims) -> Candidate:
    """A PyTorch loss ``fn(old_log_prob, log_prob, advantages, response_mask,
    *, tau_pos, tau_neg, loss_agg_mode)`` returning a loss tensor or
    ``(loss, metrics)``; its gradient comes from autograd.

    Claims default to float32 on the CPU, (B, T) advantages, a float mask,
    the canonical profile and no metrics checked; override any
    :class:`CandidateInfo` field, e.g. ``dtypes=("float32", "bfloat16")``,
    ``profile="trl"``, ``metrics=("ppo_kl",)``.  With
    ``rollout_is_weights=True`` the function is also called with
    ``rollout_is_weights=`` a (B, T) tensor of importance weights.
    """
    return _function_adapter(fn, name, "torch", claims, _FUNCTION_DEFAULTS)


def from_fused_loss(fn: Callable, *, name: str, inputs: str = "logits", **claims) -> Candidate:
    """A fused PyTorch loss that starts from logits or from hidden states and
    an LM-head weight (SPEC.md §11):

        fn(logits, token_ids, old_log_prob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode)
        fn(hidden, weight, token_ids, old_log_prob, advantages, mask, *, ...)   # inputs="hidden"

    with logits (B, T, V), hidden (B, T, H), weight (V, H), token ids (B, T)
    int64 (the token whose log-prob each position uses), and the rest as for
    :func:`from_torch_loss`; it returns the loss or ``(loss, metrics)``, and
    its gradients come from autograd.  Claims default as for
    :func:`from_torch_loss`.
    """
    if not callable(fn):
        raise CandidateError(f"candidate {name!r}: expected a function, got {type(fn).__name__}")

    def kernel(*tensors, tau_pos, tau_neg, loss_agg_mode):
        loss, metrics = _split_result(fn(*tensors, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=loss_agg_mode),
                                      name)
        return loss, metrics

    return Candidate(_info(name, "torch", {**claims, "inputs": inputs}, _FUNCTION_DEFAULTS), kernel)


def from_jax_loss(fn: Callable, *, name: str, **claims) -> Candidate:
    """The JAX equivalent of :func:`from_torch_loss`: the gradient by
    ``jax.value_and_grad``, which the driver compiles with ``jax.jit`` once
    per shape (the temperatures are traced, weakly typed scalars, so new
    temperatures do not recompile; a function that cannot be traced runs
    eagerly instead).  It claims ``shape_buckets`` unless told otherwise:
    JAX compiles per shape, and batches padded with masked rows and columns
    to a few bucket shapes cut a default run from 52 s to 21 s for a plain
    JAX SAPO kernel (tests/harness/example_candidates.py; the same kernel in
    torch: 9 s); the invariant checks verify that
    the padding never matters (pass ``shape_buckets=False`` to opt out)."""
    return _function_adapter(fn, name, "jax", {"shape_buckets": True, **claims}, _FUNCTION_DEFAULTS)


def from_trinity_policy_loss(cls, *, name: str | None = None, init_kwargs: Mapping | None = None,
                             **claims) -> Candidate:
    """A Trinity-RFT-style ``PolicyLossFn`` class.

    The class is constructed as ``cls(tau_pos=..., tau_neg=...,
    loss_agg_mode=..., **init_kwargs)`` (one instance per option set) and
    called as ``obj(logprob=..., old_logprob=..., action_mask=...,
    advantages=...)``, returning ``(loss, metrics)``.  Defaults: the
    ``trinity`` profile, float32 on the CPU, (B, T) advantages, every metric
    checked, and ``requires_tau_order`` (Trinity-RFT asserts tau_neg >= tau_pos).
    """
    if not isinstance(cls, type):
        raise CandidateError(f"candidate {name or cls!r}: expected a class, got {type(cls).__name__}")
    name = name or cls.__name__
    _reject_uncarried(name, claims, _TRINITY_UNCARRIED, "a Trinity-RFT PolicyLossFn")
    extra = dict(init_kwargs or {})
    instances: dict = {}

    def kernel(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode):
        key = (tau_pos, tau_neg, loss_agg_mode)
        if key not in instances:
            instances[key] = cls(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=loss_agg_mode, **extra)
        result = instances[key](logprob=logprob, old_logprob=old_logprob, action_mask=mask, advantages=advantages)
        return _split_result(result, name)

    defaults = dict(_FUNCTION_DEFAULTS, profile="trinity", metrics=METRIC_NAMES, requires_tau_order=True)
    return Candidate(_info(name, "torch", claims, defaults), kernel)


def _duck_config(tau_pos: float, tau_neg: float, global_batch_info: dict):
    """A stand-in for verl's ActorConfig: attribute access and ``.get``."""
    cfg = SimpleNamespace(tau_pos=tau_pos, tau_neg=tau_neg, global_batch_info=global_batch_info)
    cfg.get = lambda key, default=None: getattr(cfg, key, default)
    return cfg


def from_verl_policy_loss(fn: Callable, *, name: str | None = None,
                          make_config: Callable[..., Any] | None = None, dp_size: int = 1,
                          **claims) -> Candidate:
    """A verl-style ``compute_policy_loss_*(old_log_prob, log_prob,
    advantages, response_mask, loss_agg_mode, config, rollout_is_weights)``.

    It may return ``(loss, metrics)`` (verl >= 0.6) or the older
    ``(pg_loss, pg_clipfrac, ppo_kl, pg_clipfrac_lower)``.  ``config`` is
    built by ``make_config(tau_pos=..., tau_neg=..., global_batch_info=...)``;
    the default is a duck-typed object, enough for functions that only read
    ``config.tau_pos``, ``config.tau_neg`` and ``config.global_batch_info``.
    Real verl asserts ``isinstance(config, ActorConfig)``: pass a factory
    that builds one (README, "Certifying verl").  Global counts reach the
    function as verl's ``global_batch_info`` (``batch_num_tokens``,
    ``global_batch_size``, ``dp_size``).  Defaults: the ``verl`` profile,
    float32 on the CPU, (B, T) advantages, a float mask, ``ppo_kl`` checked.
    Claim ``rollout_is_weights=True`` to have the weights checks pass verl's
    ``rollout_is_weights`` argument (otherwise it is None).
    """
    if not callable(fn):
        raise CandidateError(f"candidate {name or fn!r}: expected a function, got {type(fn).__name__}")
    name = name or getattr(fn, "__name__", "verl-policy-loss")
    build = make_config or _duck_config

    def kernel(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
               global_token_count=None, global_seq_count=None, rollout_is_weights=None):
        info = {"dp_size": dp_size}
        if global_token_count is not None:
            info["batch_num_tokens"] = global_token_count
        if global_seq_count is not None:
            info["global_batch_size"] = global_seq_count
        config = build(tau_pos=tau_pos, tau_neg=tau_neg, global_batch_info=info)
        result = fn(old_logprob, logprob, advantages, mask, loss_agg_mode, config, rollout_is_weights)
        if isinstance(result, tuple) and len(result) == 4:
            return KernelOutput(loss=result[0], metrics={"ppo_kl": result[2]})
        loss, metrics = _split_result(result, name)
        return KernelOutput(loss=loss, metrics=metrics)

    defaults = dict(_FUNCTION_DEFAULTS, profile="verl", metrics=("ppo_kl",), global_counts=True)
    return Candidate(_info(name, "torch", claims, defaults), kernel)
