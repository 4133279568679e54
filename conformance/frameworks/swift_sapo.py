"""ms-swift's SAPO loss, unmodified: ``GRPOTrainer._compute_loss_and_metrics``
(``swift/rlhf_trainers/grpo_trainer.py``) with ``loss_type="sapo"``, run on
the smallest real trainer object that executes it.

ms-swift has no standalone SAPO function: the gate
``sigmoid(tau * (ratio - 1)) * (4 / tau)`` (tau_pos where the advantage is
> 0, tau_neg elsewhere; the 4/tau factor is present in 4.6.0, lines
1039-1045) and its aggregation are inline in the trainer's loss method.  The
candidate builds ``object.__new__(GRPOTrainer)``, sets only the attributes
that method reads (the values ``--loss_type sapo`` gives, with ``beta=0``:
the KL-to-reference term is a separate regulariser, not SAPO), and replaces
on that instance ``_get_per_token_logps_and_entropies`` -- the model forward
-- by one returning the harness's ``logprob`` tensor.  Loss and gradient are
ms-swift's own code under autograd.

Its claims, as read from the installed 4.6.0 code: the ``trl`` profile
(lines 1082-1084: per-row mean of the masked per-token loss with the row's
token count clamped to >= 1, then ``.mean()`` over every row, empty rows
included -- the only aggregation for ``sapo``); no log-ratio clamp
(``torch.exp`` of the log-ratio, lines 1008 and 1025); float32 and bfloat16
(a bf16 model's logits stay bf16 through trl's ``selective_log_softmax``, and
the loss is then computed in bf16: no upcast); (B, T) advantages
(``GRPOBatch.advantages`` is per token); a boolean mask (``completion_mask``
is bool, combined with ``&`` and ``~``); none of the harness's metrics (for
``sapo`` it logs no clip or ratio statistics, line 1201).

Importing the trainer needs ``msgspec`` (``swift/rlhf_trainers/utils.py``
imports it; ms-swift 4.6.0 does not declare it).
"""

from __future__ import annotations

from ..adapters import from_torch_loss


def _trainer(tau_pos: float, tau_neg: float):
    """A real ``GRPOTrainer`` without ``__init__``: only the attributes
    ``_compute_loss_and_metrics`` reads on the ``sapo`` path."""
    import torch
    from swift.rlhf_trainers.grpo_trainer import GRPOTrainer

    t = object.__new__(GRPOTrainer)
    model = torch.nn.Module()
    model.train()
    t.model = model  # mode = 'train'
    t.loss_type = "sapo"
    t.tau_pos = tau_pos
    t.tau_neg = tau_neg
    t.importance_sampling_level = "token"  # the default
    t.compute_entropy = False  # log_entropy=False, top_entropy_quantile=1.0
    t.overlong_filter = False
    t.beta = 0.0
    t.kl_in_reward = False
    t.rollout_importance_sampling_mode = None
    t.log_rollout_offpolicy_metrics = False
    t.disable_rollout_importance_sampling = False
    t.off_policy_sequence_mask_delta = None
    t._has_teacher = False
    t.sdar_loss_coef = 0.0
    t.chord_sft_iterator = None
    return t


def _loss(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
    import torch
    from swift.rl_core.data import GRPOBatch

    trainer = _trainer(tau_pos, tau_neg)

    def per_token_logps(model, model_inputs, grpo_batch, compute_entropy=False, origin_data=None):
        return log_prob, None  # the model forward, replaced: the harness's log-probs are the policy's

    trainer._get_per_token_logps_and_entropies = per_token_logps
    mask = response_mask.bool()
    batch = GRPOBatch(completion_mask=mask,
                      truncated_mask=torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device),
                      seq_lengths=mask.sum(-1),
                      old_per_token_logps=old_log_prob,
                      advantages=advantages)
    loss, _metrics_data = trainer._compute_loss_and_metrics(None, {}, batch)
    return loss


def candidate():
    return from_torch_loss(_loss, name="ms-swift", profile="trl", loss_agg_modes=("seq-mean-token-mean",),
                           dtypes=("float32", "bfloat16"), advantage_shapes=("BT",), mask_kind="bool", metrics=(),
                           description="ms-swift GRPOTrainer loss_type='sapo' (real package)")
