"""TRL's SAPO loss, unmodified: ``GRPOTrainer._compute_loss`` with
``loss_type="sapo"`` (``trl/trainer/grpo_trainer.py``), run on a trainer
object that holds only what that method reads, built from a real
``GRPOConfig``; the method's log-prob computation
(``_get_per_token_logps_and_entropies``) returns the harness's log-probs.
Every step of the loss (ratio, gate, masking, aggregation) and its gradient
is TRL's own code.

TRL's claims, as read from TRL 1.16.0's installed code:

- aggregation: always seq-mean-token-mean, whatever mode is asked for:
  ``((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()``
  -- each row's token mean with its count clamped to 1, then the mean over
  every row, rows without tokens included (they count as 0): the ``trl``
  profile.  No log-ratio clamp: ``coef_1 = exp(log_ratio)``, gate
  ``sigmoid(tau * (coef_1 - 1)) * 4 / tau`` with ``tau = where(A > 0,
  sapo_temperature_pos, sapo_temperature_neg)`` (a float32 tensor from two
  Python floats);
- ``importance_sampling_level="sequence"`` is also supported for sapo: one
  ratio per row, exp of the row's masked mean log-ratio (count clamped to
  1), with each token's own advantage: the ``trl-sequence`` profile
  (:func:`candidate_sequence`);
- dtypes: float32.  Its trainer's log-probs are always float32 (the fused
  LM head, ``trl/kernels/chunked_logprob.py``, accumulates the log-sum-exp
  in float32 and returns float32 whatever the model's dtype), and 0 at
  padding.  Given bfloat16 log-probs the method runs, but forms the ratio
  ``exp(log_ratio)`` and ``coef_1 - 1`` in bfloat16 (only the gate, whose
  temperatures are float32 tensors, is float32), so bfloat16 is not
  claimed;
- advantages: (B,) as its trainer makes them, unsqueezed to (B, 1); the
  method also takes (B, 1) and (B, T) ("to support subclasses");
- the mask: ``completion_mask``, multiplied in (``per_token_loss * mask``);
  a float 0/1 mask here (TRL's own is an int tensor);
- metrics: it logs "entropy" (and "kl" with beta != 0) into
  ``self._metrics``, none of the harness's metrics.

The trainer runs in "train" mode with ``current_gradient_accumulation_steps
= 1`` (its loss is divided by that count), ``beta = 0`` (no reference model),
no vLLM, no entropy mask or bonus, no off-policy mask and no MoE aux loss:
``GRPOConfig``'s defaults, except ``beta``.
"""

from __future__ import annotations

from ..adapters import from_torch_loss


def make_trainer(tau_pos: float, tau_neg: float, importance_sampling_level: str = "token"):
    """A ``GRPOTrainer`` holding only what ``_compute_loss`` reads, each
    attribute set from a real ``GRPOConfig`` as ``GRPOTrainer.__init__``
    sets it (its ``__init__`` needs a model, a dataset and reward functions)."""
    import tempfile
    from collections import defaultdict
    from types import SimpleNamespace

    from accelerate import Accelerator
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=tempfile.gettempdir(), loss_type="sapo", beta=0.0,
                      sapo_temperature_pos=tau_pos, sapo_temperature_neg=tau_neg,
                      importance_sampling_level=importance_sampling_level, report_to="none", use_cpu=True)
    t = object.__new__(GRPOTrainer)
    t.args = args
    t.loss_type = args.loss_type
    t.beta = args.beta
    t.importance_sampling_level = args.importance_sampling_level
    t.off_policy_mask_threshold = args.off_policy_mask_threshold
    t.top_entropy_quantile = args.top_entropy_quantile
    t.use_vllm = args.use_vllm
    t.vllm_importance_sampling_correction = args.vllm_importance_sampling_correction
    t.epsilon_low = args.epsilon
    t.epsilon_high = args.epsilon_high if args.epsilon_high is not None else args.epsilon
    t.entropy_coef = args.entropy_coef
    t.use_adaptive_entropy = args.use_adaptive_entropy
    t._entropy_bonus_enabled = t.entropy_coef != 0.0 or t.use_adaptive_entropy
    t.aux_loss_enabled = False  # no Mixture-of-Experts model
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t.model = SimpleNamespace(training=True)  # only ``.training`` is read: "train" mode
    t.current_gradient_accumulation_steps = 1
    t.accelerator = Accelerator(cpu=True)  # its reduce() is used for the logged metrics
    return t


def _make_loss(importance_sampling_level: str):
    trainers: dict = {}

    def loss(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
        import torch

        key = (tau_pos, tau_neg)
        if key not in trainers:
            trainers[key] = make_trainer(tau_pos, tau_neg, importance_sampling_level)
        trainer = trainers[key]

        def per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, **kwargs):
            # the model's forward pass, replaced by the harness's log-probs
            return log_prob, torch.zeros_like(log_prob).detach(), None

        trainer._get_per_token_logps_and_entropies = per_token_logps_and_entropies
        trainer._metrics["train"].clear()  # it appends one "entropy" value per call
        b, t = log_prob.shape
        inputs = {
            "prompt_ids": torch.zeros((b, 0), dtype=torch.long),
            "prompt_mask": torch.zeros((b, 0), dtype=torch.long),
            "completion_ids": torch.zeros((b, t), dtype=torch.long),
            "completion_mask": response_mask,
            "advantages": advantages,
            "old_per_token_logps": old_log_prob,
        }
        return trainer._compute_loss(None, inputs)

    return loss


_CLAIMS = dict(loss_agg_modes=("seq-mean-token-mean",), dtypes=("float32",),
               advantage_shapes=("B", "B1", "BT"), mask_kind="float", metrics=())


def candidate():
    return from_torch_loss(_make_loss("token"), name="trl", profile="trl", **_CLAIMS,
                           description='TRL GRPOTrainer._compute_loss, loss_type="sapo" (real package)')


def candidate_sequence():
    return from_torch_loss(_make_loss("sequence"), name="trl-sequence", profile="trl-sequence", **_CLAIMS,
                           description='TRL GRPOTrainer._compute_loss, loss_type="sapo", '
                                       'importance_sampling_level="sequence" (real package)')
