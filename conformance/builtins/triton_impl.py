"""``triton``: one fused forward+backward Triton kernel.

Each program handles one block of one row: it loads logprob, old_logprob,
advantage and mask once, computes the token's loss contribution and its
gradient in the same pass (the gradient is analytic: -c A f'(r) r, with
f'(r) r = 4 sigmoid(z) sigmoid(-z) r formed from exp(-|z|), never from
1 - sigmoid), stores the gradient, and writes per-block partial sums of the
loss and the metrics.  The per-row weights c come from the same helper as the
torch built-ins; the partials are summed by torch (deterministic: no atomics).

On CUDA it is compiled; on CPU it runs under the Triton interpreter
(TRITON_INTERPRET=1, set by the candidate's setup before this module is
imported), which supports float32 and float16 but not bfloat16.
"""

from __future__ import annotations

import numpy as np
import torch
import triton
import triton.language as tl

from ._common import LOG_RATIO_SATURATION
from .torch_impl import _row_weights, _tensor_args

N_PARTIALS = 5  # loss, sum log-ratio, sum ratio, sum gate, count of A > 0


@triton.jit
def _sapo_fused(
    lp_ptr, olp_ptr, adv_ptr, mask_ptr, c_ptr, grad_ptr, part_ptr,
    T, n_blocks,
    s_lp, s_olp, s_adv_b, s_adv_t, s_mask, s_grad,
    tau_pos, tau_neg,
    BLOCK: tl.constexpr, SAT: tl.constexpr,
):
    row = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    inb = offs < T
    m = tl.load(mask_ptr + row * s_mask + offs, mask=inb, other=0) != 0
    lp = tl.load(lp_ptr + row * s_lp + offs, mask=inb, other=0.0).to(tl.float32)
    olp = tl.load(olp_ptr + row * s_olp + offs, mask=inb, other=0.0).to(tl.float32)
    a = tl.load(adv_ptr + row * s_adv_b + offs * s_adv_t, mask=inb, other=0.0).to(tl.float32)
    c = tl.load(c_ptr + row)
    raw = tl.where(m, lp - olp, 0.0)
    a = tl.where(m, a, 0.0)
    tau = tl.where(a > 0, tau_pos, tau_neg)
    d = tl.where(raw > SAT, SAT, raw)  # NaN stays NaN
    r = tl.exp(d)
    # expm1(d) by Kahan's trick, (u - 1) d / log(u) with u = exp(d), accurate
    # to a few ulp; every branch is kept finite (the interpreter warns on 0/0).
    dk = tl.where(d < -30.0, -30.0, d)  # where, not maximum: NaN must stay NaN
    u = tl.exp(dk)
    lg = tl.log(u)
    em = tl.where(u == 1.0, dk, (u - 1.0) * dk / tl.where(u == 1.0, 1.0, lg))
    em = tl.where(d < -20.0, r - 1.0, em)
    z = tau * em
    e = tl.exp(-tl.abs(z))
    big = 1.0 / (1.0 + e)
    small = e * big
    gate = 4.0 / tau * tl.where(z >= 0, big, small)
    h = 4.0 * big * small * r
    grad = -c * a * h
    tl.store(grad_ptr + row * s_grad + offs, grad.to(grad_ptr.dtype.element_ty), mask=inb)
    base = part_ptr + (row * n_blocks + blk) * 5
    tl.store(base + 0, c * tl.sum(tl.where(m, -a * gate, 0.0), axis=0))
    tl.store(base + 1, tl.sum(raw, axis=0))
    tl.store(base + 2, tl.sum(tl.where(m, tl.exp(raw), 0.0), axis=0))
    tl.store(base + 3, tl.sum(tl.where(m, gate, 0.0), axis=0))
    tl.store(base + 4, tl.sum(tl.where(m & (a > 0), 1.0, 0.0), axis=0))


def _block_size(T: int, device) -> int:
    limit = 4096 if device.type == "cuda" else 1024
    return max(16, min(limit, triton.next_power_of_2(max(T, 1))))


def launch(logprob, old_logprob, advantages, mask, c, tau_pos, tau_neg):
    """Run the kernel; returns (grad, partial sums of shape (B, blocks, 5))."""
    B, T = logprob.shape
    adv = advantages.reshape(B, -1)
    m = mask if mask.dtype == torch.bool else mask != 0
    m = m.contiguous().view(torch.uint8)
    grad = torch.empty_like(logprob)
    BLOCK = _block_size(T, logprob.device)
    n_blocks = triton.cdiv(T, BLOCK) if T else 0
    parts = torch.zeros((B, max(n_blocks, 1), N_PARTIALS), dtype=torch.float32, device=logprob.device)
    if B and n_blocks:
        # The interpreter emulates the kernel with NumPy, which warns where a
        # GPU silently produces inf (exp of a large log-ratio, for a metric).
        with np.errstate(all="ignore"):
            _sapo_fused[(B, n_blocks)](
                logprob, old_logprob, adv, m, c, grad, parts,
                T, n_blocks,
                logprob.stride(0), old_logprob.stride(0), adv.stride(0), adv.stride(1) if adv.shape[1] > 1 else 0,
                m.stride(0), grad.stride(0),
                float(tau_pos), float(tau_neg),
                BLOCK=BLOCK, SAT=LOG_RATIO_SATURATION,
            )
    return grad, parts


class _FusedSAPO(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logprob, old_logprob, advantages, mask, c, tau_pos, tau_neg):
        grad, parts = launch(logprob, old_logprob, advantages, mask, c, tau_pos, tau_neg)
        ctx.save_for_backward(grad)
        totals = parts.sum(dim=(0, 1))
        ctx.mark_non_differentiable(totals)
        return totals[0].to(logprob.dtype if logprob.dtype == torch.float64 else torch.float32), totals

    @staticmethod
    def backward(ctx, grad_loss, _grad_totals):
        (grad,) = ctx.saved_tensors
        return grad * grad_loss.to(grad.dtype), None, None, None, None, None, None


def sapo_triton(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
                global_token_count=None, global_seq_count=None):
    _, counts = _tensor_args(logprob, tau_pos, tau_neg, global_token_count, global_seq_count)
    m = mask if mask.dtype == torch.bool else mask != 0
    c = _row_weights(m.sum(dim=-1, dtype=torch.float64), counts, loss_agg_mode)
    loss, totals = _FusedSAPO.apply(logprob.contiguous(), old_logprob.contiguous(), advantages, m,
                                    c.to(torch.float32).contiguous(), tau_pos, tau_neg)
    count = m.sum().clamp(min=1).to(torch.float32)
    metrics = {
        "ppo_kl": -totals[1] / count,
        "avg_ratio": totals[2] / count,
        "avg_soft_gate": totals[3] / count,
        "pos_adv_frac": totals[4] / count,
    }
    return loss, metrics
