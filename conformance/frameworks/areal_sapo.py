"""AReaL's SAPO loss, unmodified: ``areal.utils.functional.sapo_loss_fn``
(token level), called with the harness's per-token log-probs.  Its claims:
token-mean only (it divides by the number of unmasked tokens, at least 1),
float32 and bfloat16, (B, T) advantages, a boolean mask; its statistics are
per-token tensors, none of the harness's metrics.
"""

from __future__ import annotations

from ..adapters import from_torch_loss


def _loss(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
    from areal.utils.functional.functional import sapo_loss_fn

    loss, _stats = sapo_loss_fn(log_prob, old_log_prob, advantages, tau_pos, tau_neg, response_mask.bool())
    return loss


def candidate():
    return from_torch_loss(_loss, name="areal", loss_agg_modes=("token-mean",), dtypes=("float32", "bfloat16"),
                           metrics=(), mask_kind="bool", description="AReaL sapo_loss_fn (real package)")
