"""``torch-eager`` and ``torch-compile``: idiomatic PyTorch with autograd.

Numerically stable by construction rather than by special cases: inputs are
promoted to float32 (float64 stays float64); masked positions are selected
away with ``where`` before any arithmetic (NaN * 0 is NaN); sigmoid and its
derivative both come from exp(-|z|), never from 1 - sigmoid(z); the gate's
derivative with respect to the log-ratio is written out (:class:`_SoftGate`)
instead of composed by autograd through expm1; and log-ratios are clamped at
a saturation point where the clamp is exact (``_common``).

Both candidates run the same function, :func:`_sapo_core`; torch-compile
wraps it in ``torch.compile(dynamic=True, fullgraph=True)``.  Temperatures,
global counts, 1/T and (compiled) the aggregation mode reach it as tensors,
so new values do not trigger recompilation.
"""

from __future__ import annotations

import torch

from sapo_ref import LOSS_AGG_MODES

from ._common import LOG_RATIO_SATURATION


def _compute_dtype(t):
    return torch.float64 if t.dtype == torch.float64 else torch.float32


def _sigmoid_parts(z):
    """sigmoid(z) and sigmoid(z) * sigmoid(-z), both from one exp(-|z|):
    never forms 1 - sigmoid(z), which cancels to 0 in float32 long before
    the true value underflows."""
    e = torch.exp(-z.abs())
    inv = 1.0 / (1.0 + e)
    return torch.where(z >= 0, inv, e * inv), e * inv * inv


class _SoftGate(torch.autograd.Function):
    """The gate (4/tau) sigmoid(tau (exp(d) - 1)) of a log-ratio d (and the
    ratio exp(d), not differentiable).

    Its derivative is written out, d gate / d d = 4 sigmoid(z) sigmoid(-z) r,
    rather than left to autograd, for accuracy and speed: torch's expm1
    backward forms exp(d) as expm1(d) + 1, which cancels for d << 0 (at
    d = -11 the float32 gradient was off by 0.2 %), and the composed
    softplus/exp formulation costs three transcendentals forward and more
    backward where this costs three forward and none backward.  The rest of
    the loss (masking, aggregation) is differentiated by autograd.
    """

    @staticmethod
    def forward(ctx, d, tau):
        ratio = torch.exp(d)  # the metrics' ratio: inf beyond float32's range, as it should be
        # where, not clamp: a NaN log-ratio must stay NaN
        saturated = d > LOG_RATIO_SATURATION
        sig, sig_sig = _sigmoid_parts(tau * torch.expm1(torch.where(saturated, LOG_RATIO_SATURATION, d)))
        ctx.save_for_backward(torch.where(saturated, 0.0, 4.0 * sig_sig * ratio))
        ctx.mark_non_differentiable(ratio)
        return (4.0 / tau) * sig, ratio

    @staticmethod
    def backward(ctx, grad_gate, _grad_ratio):
        (dgate,) = ctx.saved_tensors
        return grad_gate * dgate, None


def _token_mean(n, counts):
    N = torch.where(counts[0] >= 0, counts[0], n.sum())
    return torch.where(N > 0, 1.0 / N.clamp(min=1), 0.0).expand(n.shape[0])


def _sequences(n, counts):
    return torch.where(counts[1] >= 0, counts[1], (n > 0).sum().to(n.dtype))


def _seq_mean_token_mean(n, counts):
    S = _sequences(n, counts)
    return torch.where((n > 0) & (S > 0), 1.0 / (S.clamp(min=1) * n.clamp(min=1)), 0.0)


def _seq_mean_token_sum(n, counts):
    S = _sequences(n, counts)
    return torch.where(S > 0, 1.0 / S.clamp(min=1), 0.0).expand(n.shape[0])


def _seq_mean_token_sum_norm(n, counts):
    return counts[2].expand(n.shape[0])


_MODE_WEIGHTS = {"token-mean": _token_mean, "seq-mean-token-mean": _seq_mean_token_mean,
                 "seq-mean-token-sum": _seq_mean_token_sum, "seq-mean-token-sum-norm": _seq_mean_token_sum_norm}
assert tuple(_MODE_WEIGHTS) == LOSS_AGG_MODES


def _row_weights(n, counts, loss_agg_mode):
    """Per-row weights c (float64, shape (B,)) from n, the rows' token counts,
    and counts = [global tokens or -1 (local), global sequences or -1, 1/T].

    ``loss_agg_mode`` is a mode's name, or a 0-d tensor indexing
    ``LOSS_AGG_MODES``: then every mode's weights are computed (O(B) work)
    and one is selected, so that one compiled graph serves all four modes."""
    if isinstance(loss_agg_mode, str):
        return _MODE_WEIGHTS[loss_agg_mode](n, counts)
    every = torch.stack([f(n, counts) for f in _MODE_WEIGHTS.values()])
    return every.index_select(0, loss_agg_mode.reshape(1))[0]  # not every[mode]: data-dependent for dynamo


def _total(x):
    """The sum of a tensor, in its dtype.  Under torch.compile accumulated in
    float64: inductor's CPU code guards on whether a float32 reduction has
    more than 4096 elements (beyond, it accumulates in chunks), so a float32
    sum makes large batches a graph of their own.  (No measurable cost on this
    project's CPU: 64 x 4096 float32, 3.1-3.5 ms forward and backward either
    way.)"""
    if torch.compiler.is_compiling():
        return x.sum(dtype=torch.float64).to(x.dtype)
    return x.sum()


def _sapo_core(logprob, old_logprob, advantages, mask, taus, counts, loss_agg_mode, weights=None,
               level: str = "token"):
    cdt = taus.dtype
    m = mask if mask.dtype == torch.bool else mask != 0
    B, T = m.shape
    raw = torch.where(m, logprob.to(cdt) - old_logprob.to(cdt), 0.0)
    adv = advantages.to(cdt).reshape(B, -1)
    a = torch.where(m, adv, 0.0)
    tau = torch.where(a > 0, taus[0], taus[1])
    if level == "sequence":  # each row's mean log-ratio; autograd spreads its gradient as 1/n
        n = m.sum(dim=-1, keepdim=True).clamp(min=1).to(cdt)
        d = torch.where(m, (raw.sum(dim=-1, keepdim=True) / n).expand(B, T), 0.0)
    else:
        d = raw
    gate, ratio = _SoftGate.apply(d, tau)
    if weights is not None:  # importance weights scale the token loss; tau already follows A alone
        a = a * torch.where(m, weights.to(cdt), 0.0)
    c = _row_weights(m.sum(dim=-1, dtype=torch.float64), counts, loss_agg_mode)
    loss = _total(-a * gate * c.to(cdt)[:, None])
    count = m.sum().clamp(min=1).to(cdt)
    raw_d = raw.detach()
    metrics = {
        "ppo_kl": -_total(raw_d) / count,
        "avg_ratio": _total(torch.where(m, ratio, 0.0)) / count,
        "avg_soft_gate": _total(torch.where(m, gate.detach(), 0.0)) / count,
        "pos_adv_frac": ((adv > 0) & m).sum().to(cdt) / count,
    }
    return loss, metrics


def _tensor_args(logprob, tau_pos, tau_neg, global_token_count, global_seq_count):
    cdt = _compute_dtype(logprob)
    dev = logprob.device
    T = logprob.shape[-1]
    taus = torch.tensor([tau_pos, tau_neg], dtype=cdt, device=dev)
    counts = torch.tensor(
        [-1.0 if global_token_count is None else float(global_token_count),
         -1.0 if global_seq_count is None else float(global_seq_count),
         1.0 / T if T else 0.0],
        dtype=torch.float64, device=dev,
    )
    return taus, counts


def sapo_torch(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
               global_token_count=None, global_seq_count=None, rollout_is_weights=None):
    taus, counts = _tensor_args(logprob, tau_pos, tau_neg, global_token_count, global_seq_count)
    return _sapo_core(logprob, old_logprob, advantages, mask, taus, counts, loss_agg_mode, rollout_is_weights)


def sapo_torch_sequence(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
                        global_token_count=None, global_seq_count=None, rollout_is_weights=None):
    """The sequence-level ratio (SPEC.md 2.2), eager."""
    taus, counts = _tensor_args(logprob, tau_pos, tau_neg, global_token_count, global_seq_count)
    return _sapo_core(logprob, old_logprob, advantages, mask, taus, counts, loss_agg_mode, rollout_is_weights,
                      "sequence")


#: dynamo compiles a graph per input dtype, per layout of every input, per
#: None-or-tensor argument, per dimension of size 0 or 1 and per global state
#: (the intra-op thread count among it), and inductor's CPU code guards on the
#: size of float32 reductions.  The compiled wrapper and :func:`_total` keep
#: that to one graph per dtype and thread count (5 in a ``default`` run), but
#: a caller may still need more than dynamo's default limit of 8, after which
#: it silently runs the function eagerly -- and the harness would certify
#: eager code under the torch-compile name.  Raise the limits for this call
#: only, and fail rather than fall back.
_RECOMPILATION = {"recompile_limit": 1024, "accumulated_recompile_limit": 4096,
                  "fail_on_recompile_limit_hit": True}

_compiled = None


def sapo_torch_compiled(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
                        global_token_count=None, global_seq_count=None, rollout_is_weights=None):
    """:func:`_sapo_core` under ``torch.compile``, given one form of input
    whatever the call, so that one graph serves them all (per dtype):

    * the mode as a tensor index (a string is a guard: a graph per mode);
    * (B, T) advantages: per-row ones expanded (a B x T copy).  Besides,
      torch 2.13's inductor (dynamic=True) miscompiles
      ((adv.reshape(B, -1) > 0) & mask).sum() when a graph compiled for 2-D
      advantages is reused for 1-D ones (found by this harness: pos_adv_frac
      came out wrong, tests/harness/test_builtins.py);
    * importance weights always, ones when there are none (one more read of
      B x T: no measurable cost on this project's CPU, 64 x 4096 float32);
    * both dimensions at least 2, with masked padding: dynamo specialises
      sizes 0 and 1.  Exact, since 1/T is an argument (the caller's T) and
      empty rows are not counted (canonical profile).  The harness's shape
      buckets do this anyway, except for T in seq-mean-token-sum-norm.
    """
    global _compiled
    if _compiled is None:
        # fullgraph: a graph break would run part of the loss eagerly
        _compiled = torch.compile(_sapo_core, dynamic=True, fullgraph=True)
    taus, counts = _tensor_args(logprob, tau_pos, tau_neg, global_token_count, global_seq_count)
    mode = torch.tensor(LOSS_AGG_MODES.index(loss_agg_mode), device=logprob.device)
    B, T = logprob.shape
    advantages = advantages.reshape(B, -1).expand(B, T).contiguous()
    weights = torch.ones_like(logprob, requires_grad=False) if rollout_is_weights is None else rollout_is_weights
    inputs = [logprob, old_logprob, advantages, mask, weights]
    if B < 2 or T < 2:
        widths = (0, max(2 - T, 0), 0, max(2 - B, 0))
        inputs = [torch.nn.functional.pad(x, widths, value=False if x.dtype == torch.bool else 0.0) for x in inputs]
    with torch._dynamo.config.patch(**_RECOMPILATION):
        return _compiled(*inputs[:4], taus, counts, mode, inputs[4])


def compile_count() -> int:
    """The graphs dynamo has compiled for torch-compile in this process (each
    with its forward and backward; fullgraph, so one per cache entry)."""
    from torch._dynamo.eval_frame import _debug_get_cache_entry_list

    return len(_debug_get_cache_entry_list(_sapo_core.__code__))


def gate_torch(ratio, advantages, tau_pos, tau_neg):
    cdt = _compute_dtype(ratio)
    r = ratio.to(cdt)
    tau = torch.where(advantages.to(cdt) > 0, torch.tensor(tau_pos, dtype=cdt, device=r.device),
                      torch.tensor(tau_neg, dtype=cdt, device=r.device))
    return (4.0 / tau) * _sigmoid_parts(tau * (r - 1.0))[0]


def _selected_logprob(logits, token_ids):
    """log_softmax(logits)[token], in the float32 (or float64) compute precision."""
    lsm = torch.log_softmax(logits.to(_compute_dtype(logits)), dim=-1)
    return lsm.gather(-1, token_ids.unsqueeze(-1)).squeeze(-1)


def sapo_torch_logits(logits, token_ids, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode):
    """A fused-style kernel from logits (SPEC.md §11): torch-eager on the
    selected log-probs; the gradient flows back through log_softmax."""
    return sapo_torch(_selected_logprob(logits, token_ids), old_logprob, advantages, mask, tau_pos=tau_pos,
                      tau_neg=tau_neg, loss_agg_mode=loss_agg_mode)


def sapo_torch_linear(hidden, weight, token_ids, old_logprob, advantages, mask, *, tau_pos, tau_neg,
                      loss_agg_mode):
    """From hidden states and an LM-head weight: logits = hidden @ weight^T."""
    c = _compute_dtype(hidden)
    logits = hidden.to(c) @ weight.to(c).T
    return sapo_torch_logits(logits, token_ids, old_logprob, advantages, mask, tau_pos=tau_pos, tau_neg=tau_neg,
                             loss_agg_mode=loss_agg_mode)
