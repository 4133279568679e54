"""Liger-Kernel's two SAPO kernels, unmodified, as fused candidates (SPEC.md
§11): they start from hidden states and an LM-head weight, or from logits,
not from log-probs.

* ``liger-chunked``: ``liger_kernel.chunked_loss.LigerFusedLinearGRPOLoss``
  with ``loss_type="sapo"`` -- the LM head, log-softmax and loss fused and
  chunked over rows, gradients for the hidden states and the weight.  Run
  with ``compiled=False``: its default ``compiled=True`` puts the loss under
  torch.compile, which on the CPU needs a C++ toolchain and compiles per
  shape; the math is the same function.
* ``liger-triton``: ``liger_kernel.transformers.grpo_loss.triton_grpo_loss``
  with ``loss_type="sapo"`` -- one Triton kernel over logits with a
  hand-written backward.  Its logits are (B, T + 1, V), the last position
  predicting nothing: the harness's (B, T, V) logits get a row of zeros
  appended (its gradient is discarded).  On the CPU it runs under the Triton
  interpreter (float32; the interpreter has no bfloat16).

Both document: per-row mean over the completion mask with the count clamped
to 1, mean over all rows (the ``trl`` profile), (B,) advantages, β = 0
(no KL term), sampling temperature 1.  No metric of theirs is one of the
harness's (they report the KL mean and the clip ratio).
"""

from __future__ import annotations

from ..adapters import from_fused_loss

_CLAIMS = dict(profile="trl", loss_agg_modes=("seq-mean-token-mean",), advantage_shapes=("B",),
               mask_kind="bool", metrics=(), deterministic=True)


def _chunked(hidden, weight, token_ids, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode):
    from liger_kernel.chunked_loss import LigerFusedLinearGRPOLoss

    loss_fn = LigerFusedLinearGRPOLoss(beta=0.0, compiled=False, use_ref_model=False, loss_type="sapo",
                                       sapo_temperature_pos=tau_pos, sapo_temperature_neg=tau_neg, temperature=1.0)
    loss, _metrics = loss_fn(hidden, weight, token_ids, mask, advantages, old_per_token_logps=old_logprob)
    return loss


def _triton(logits, token_ids, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode):
    import torch
    from liger_kernel.transformers.grpo_loss import triton_grpo_loss

    B, _, V = logits.shape
    shifted = torch.cat([logits, logits.new_zeros(B, 1, V)], dim=1).contiguous()
    loss, _metrics = triton_grpo_loss(shifted, old_logprob.contiguous(), None, token_ids.contiguous(), advantages,
                                      mask.contiguous(), temperature=1.0, beta=0.0, loss_type="sapo", reduce=True,
                                      sapo_temperature_pos=tau_pos, sapo_temperature_neg=tau_neg)
    return loss


def chunked():
    return from_fused_loss(_chunked, name="liger-chunked", inputs="hidden", dtypes=("float32", "bfloat16"),
                           description="Liger-Kernel LigerFusedLinearGRPOLoss, loss_type='sapo' (real package)",
                           **_CLAIMS)


def triton():
    from ..builtins import _cuda_available, _triton_check, _triton_setup

    cand = from_fused_loss(_triton, name="liger-triton", inputs="logits",
                           dtypes=("float32",) + (("bfloat16",) if _cuda_available() else ()),
                           devices=("cpu", "cuda"),
                           description="Liger-Kernel triton_grpo_loss, loss_type='sapo' (real package; CPU: the "
                                       "Triton interpreter)", **_CLAIMS)
    cand.device_check, cand.setup = _triton_check, _triton_setup
    return cand
