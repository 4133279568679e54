"""verl's SAPO loss, unmodified: ``compute_policy_loss_sapo`` called with the
``ActorConfig`` its trainer would build (README, "Certifying a real
framework").  verl's claims: the ``verl`` profile (always
seq-mean-token-mean, log-ratio clamped to ±20, τ in the advantages' dtype),
float32 (its trainer computes log-probs in float32; given bfloat16 it computes in bfloat16), (B, T) advantages, a float mask, ``ppo_kl``.
"""

from __future__ import annotations

from ..adapters import from_verl_policy_loss


def make_config(tau_pos: float, tau_neg: float, global_batch_info: dict):
    """verl 0.9.1's ``ActorConfig`` is frozen, but the dict its
    ``global_batch_info`` field holds is not: fill it in place."""
    from verl.workers.config import ActorConfig

    cfg = ActorConfig(strategy="fsdp", tau_pos=tau_pos, tau_neg=tau_neg, rollout_n=1, ppo_mini_batch_size=1,
                      ppo_micro_batch_size_per_gpu=1)
    cfg.global_batch_info.update(global_batch_info)
    return cfg


def _loss(*args, **kwargs):
    from verl.trainer.ppo.core_algos import compute_policy_loss_sapo

    return compute_policy_loss_sapo(*args, **kwargs)


def candidate():
    return from_verl_policy_loss(_loss, name="verl", make_config=make_config, dtypes=("float32",),
                                 description="verl compute_policy_loss_sapo (real package)")
