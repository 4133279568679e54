"""Small SAPO implementations written in each framework's own style, wrapped
by the adapters, for the adapter and loading tests.  Each is written here
from the formulas of SPEC.md, independently of the built-ins."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import torch

from conformance import Candidate
from conformance.adapters import from_jax_loss, from_torch_loss, from_trinity_policy_loss, from_verl_policy_loss


def _masked_mean(x, mask, dim=None, eps=0.0):
    return (x * mask).sum(dim=dim) / (mask.sum(dim=dim) + eps)


# --- a plain torch function in the from_torch_loss convention ---------------


def torch_sapo(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
    m = response_mask.bool()
    d = torch.where(m, log_prob - old_log_prob, 0.0)
    a = torch.where(m, advantages, 0.0)
    tau = torch.where(a > 0, torch.tensor(tau_pos), torch.tensor(tau_neg))
    gate = 4.0 / tau * torch.sigmoid(tau * torch.expm1(d))
    token = torch.where(m, -a * gate, 0.0)
    n = m.sum(-1)
    if loss_agg_mode == "token-mean":
        loss = token.sum() / n.sum().clamp(min=1)
    elif loss_agg_mode == "seq-mean-token-mean":
        rows = n > 0
        loss = (token.sum(-1)[rows] / n[rows]).sum() / rows.sum().clamp(min=1)
    elif loss_agg_mode == "seq-mean-token-sum":
        loss = token.sum() / (n > 0).sum().clamp(min=1)
    else:
        loss = token.sum() / token.shape[-1]
    return loss, {"ppo_kl": _masked_mean(-d, m.float())}


torch_candidate = from_torch_loss(torch_sapo, name="example-torch", metrics=("ppo_kl",))


def torch_sapo_weighted(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode,
                        rollout_is_weights):
    """The same loss with importance weights folded into the advantages
    (tau chosen from the advantages first)."""
    m = response_mask.bool()
    d = torch.where(m, log_prob - old_log_prob, 0.0)
    tau = torch.where(advantages > 0, torch.tensor(tau_pos), torch.tensor(tau_neg))
    a = torch.where(m, advantages * rollout_is_weights, 0.0)
    # exp saturates the gate long before float32's exp overflows (tau >= 1e-6: z > 1e28 at d = 80);
    # without the clamp, d > 88.7 makes expm1 inf and its backward 0 * inf = NaN
    token = torch.where(m, -a * 4.0 / tau * torch.sigmoid(tau * torch.expm1(d.clamp(max=80.0))), 0.0)
    n = m.sum(-1)
    if loss_agg_mode == "token-mean":
        return token.sum() / n.sum().clamp(min=1)
    if loss_agg_mode == "seq-mean-token-mean":
        rows = n > 0
        return (token.sum(-1)[rows] / n[rows]).sum() / rows.sum().clamp(min=1)
    if loss_agg_mode == "seq-mean-token-sum":
        return token.sum() / (n > 0).sum().clamp(min=1)
    return token.sum() / token.shape[-1]


torch_weighted = from_torch_loss(torch_sapo_weighted, name="example-torch-weighted", rollout_is_weights=True)


# --- a verl-style compute_policy_loss ---------------------------------------


def compute_policy_loss_sapo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode="seq-mean-token-mean",
                             config=None, rollout_is_weights=None):
    """verl's conventions: seq-mean-token-mean whatever loss_agg_mode says,
    log-ratio clamped to [-20, 20], tau rounded to the advantages' dtype, global
    batch info from the config; arithmetic in float32."""
    tau_pos = torch.as_tensor(config.tau_pos, dtype=advantages.dtype).float()
    tau_neg = torch.as_tensor(config.tau_neg, dtype=advantages.dtype).float()
    log_prob, old_log_prob, advantages = log_prob.float(), old_log_prob.float(), advantages.float()
    log_ratio = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    taus = torch.where(advantages > 0, tau_pos, tau_neg)
    gates = torch.sigmoid(taus * (ratio - 1.0)) * (4.0 / taus)
    pg = torch.where(response_mask > 0, -gates * advantages, 0.0)
    if rollout_is_weights is not None:  # verl multiplies the per-token loss by the IS weights
        pg = pg * torch.where(response_mask > 0, rollout_is_weights.float(), 0.0)
    counts = response_mask.sum(dim=-1)
    seq = pg.sum(dim=-1) / (counts + 1e-8)
    info = config.global_batch_info
    n_seqs = info.get("global_batch_size", (counts > 0).sum().clamp(min=1))  # verl 0.9.1 divides 0 by 0 here
    loss = seq.sum() / n_seqs * info.get("dp_size", 1)
    ppo_kl = (torch.where(response_mask > 0, -log_ratio, 0.0)).sum() / (response_mask.sum() + 1e-8)
    return loss, {"actor/ppo_kl": ppo_kl.item()}


def old_style_policy_loss(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config, rollout_is_weights):
    loss, metrics = compute_policy_loss_sapo(old_log_prob, log_prob, advantages, response_mask, loss_agg_mode, config,
                                             rollout_is_weights)
    return loss, torch.tensor(0.0), torch.tensor(metrics["actor/ppo_kl"]), torch.tensor(0.0)


verl_candidate = from_verl_policy_loss(compute_policy_loss_sapo, name="example-verl", rollout_is_weights=True)
verl_old_style = from_verl_policy_loss(old_style_policy_loss, name="example-verl-old")


# --- Trinity-style PolicyLossFn classes -------------------------------------


class TrinityStyleSAPO:
    """The Trinity-RFT API with the SAPO objective itself as the loss."""

    def __init__(self, backend="verl", tau_pos=1.0, tau_neg=1.05, loss_agg_mode="token-mean"):
        assert tau_neg >= tau_pos
        self.tau_pos, self.tau_neg, self.loss_agg_mode = tau_pos, tau_neg, loss_agg_mode

    def soft_gate_function(self, ratio, advantages):
        tau = torch.where(advantages > 0, torch.tensor(self.tau_pos), torch.tensor(self.tau_neg))
        return torch.sigmoid(tau * (ratio - 1)) * (4.0 / tau)

    def surrogate(self, logprob, ratio, gate, advantages):
        return -advantages * gate

    def __call__(self, logprob, old_logprob, action_mask, advantages, **kwargs):
        d = torch.where(action_mask > 0, logprob - old_logprob, 0.0)
        ratio = torch.exp(d)
        gate = self.soft_gate_function(ratio, advantages)
        values = torch.where(action_mask > 0, self.surrogate(logprob, ratio, gate, advantages), 0.0)
        mask = action_mask
        if self.loss_agg_mode == "token-mean":
            loss = _masked_mean(values, mask, eps=1e-8)
        elif self.loss_agg_mode == "seq-mean-token-mean":
            loss = _masked_mean(values, mask, dim=-1, eps=1e-8).mean()
        elif self.loss_agg_mode == "seq-mean-token-sum":
            loss = (values * mask).sum(-1).mean()
        else:
            loss = (values * mask).sum() / mask.shape[-1]
        metrics = {
            "ppo_kl": _masked_mean(-d, mask, eps=1e-8).item(),
            "avg_soft_gate": _masked_mean(gate, mask, eps=1e-8).item(),
            "avg_ratio": _masked_mean(ratio, mask, eps=1e-8).item(),
            "pos_adv_frac": _masked_mean((advantages > 0).float(), mask, eps=1e-8).item(),
        }
        return loss, metrics


class TrinityPublishedSAPO(TrinityStyleSAPO):
    """Trinity-RFT <= 0.6.0's published surrogate: -A * detach(f) * logprob.
    Right gate, wrong loss value, and a gradient of -A f instead of -A f'(r) r."""

    def surrogate(self, logprob, ratio, gate, advantages):
        return -advantages * gate.detach() * logprob


trinity_candidate = from_trinity_policy_loss(TrinityStyleSAPO, name="example-trinity")
trinity_published = from_trinity_policy_loss(TrinityPublishedSAPO, name="trinity-published")


# --- JAX ---------------------------------------------------------------------


def jax_sapo(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
    m = response_mask > 0
    d = jnp.where(m, log_prob - old_log_prob, 0.0)
    a = jnp.where(m, advantages, 0.0)
    tau = jnp.where(a > 0, tau_pos, tau_neg)
    token = jnp.where(m, -a * 4.0 / tau * jax.nn.sigmoid(tau * jnp.expm1(d)), 0.0)
    n = m.sum(-1)
    if loss_agg_mode == "token-mean":
        return token.sum() / jnp.maximum(n.sum(), 1)
    if loss_agg_mode == "seq-mean-token-mean":
        per_row = jnp.where(n > 0, token.sum(-1) / jnp.maximum(n, 1), 0.0)
        return per_row.sum() / jnp.maximum((n > 0).sum(), 1)
    if loss_agg_mode == "seq-mean-token-sum":
        return token.sum() / jnp.maximum((n > 0).sum(), 1)
    return token.sum() / token.shape[-1]


jax_candidate = from_jax_loss(jax_sapo, name="example-jax")


def make_torch_candidate() -> Candidate:
    """A factory, loadable as tests.harness.example_candidates:make_torch_candidate."""
    return torch_candidate.with_info(name="example-torch-factory")


def broken_factory():
    raise RuntimeError("cannot build this candidate\nsecond line")


def not_a_candidate_factory():
    return 42


NOT_A_CANDIDATE = 42
