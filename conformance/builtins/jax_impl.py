"""``jax``: jax.jit of jax.value_and_grad, with the same stable formulation as
the torch built-ins (``where`` before arithmetic, the gate as
(4/tau) exp(log_sigmoid(z)), the exact saturation clamp)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..candidate import KernelOutput
from ._common import LOG_RATIO_SATURATION


def _compute_dtype(x):
    return jnp.float64 if x.dtype == jnp.float64 else jnp.float32


@jax.custom_jvp
def _expm1(x):
    """expm1 whose derivative is exp(x) itself (JAX's own JVP forms
    expm1(x) + 1, which cancels catastrophically for x << 0)."""
    return jnp.expm1(x)


@_expm1.defjvp
def _expm1_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.expm1(x), t * jnp.exp(x)


def _gate_from_z(z, tau):
    return (4.0 / tau) * jnp.exp(jax.nn.log_sigmoid(z))


def _row_weights(n, counts, loss_agg_mode):
    """counts = [global tokens or -1, global sequences or -1, 1/T]."""
    B = n.shape[0]
    if loss_agg_mode == "token-mean":
        N = jnp.where(counts[0] >= 0, counts[0], n.sum())
        return jnp.broadcast_to(jnp.where(N > 0, 1.0 / jnp.maximum(N, 1), 0.0), (B,))
    if loss_agg_mode == "seq-mean-token-sum-norm":
        return jnp.broadcast_to(counts[2], (B,))
    S = jnp.where(counts[1] >= 0, counts[1], (n > 0).sum().astype(n.dtype))
    if loss_agg_mode == "seq-mean-token-sum":
        return jnp.broadcast_to(jnp.where(S > 0, 1.0 / jnp.maximum(S, 1), 0.0), (B,))
    return jnp.where((n > 0) & (S > 0), 1.0 / (jnp.maximum(S, 1) * jnp.maximum(n, 1)), 0.0)


def _loss(logprob, old_logprob, advantages, mask, taus, counts, loss_agg_mode):
    cdt = taus.dtype
    m = mask.astype(bool)
    raw = jnp.where(m, logprob.astype(cdt) - old_logprob.astype(cdt), 0.0)
    adv = advantages.astype(cdt)
    a = jnp.where(m, adv, 0.0)
    tau = jnp.where(a > 0, taus[0], taus[1])
    z = tau * _expm1(jnp.where(raw > LOG_RATIO_SATURATION, LOG_RATIO_SATURATION, raw))
    gate = _gate_from_z(z, tau)
    c = _row_weights(m.sum(axis=-1).astype(cdt), counts, loss_agg_mode)
    loss = jnp.sum(-a * gate * c[:, None])
    count = jnp.maximum(m.sum(), 1).astype(cdt)
    raw_d = jax.lax.stop_gradient(raw)
    metrics = {
        "ppo_kl": -raw_d.sum() / count,
        "avg_ratio": jnp.where(m, jnp.exp(raw_d), 0.0).sum() / count,
        "avg_soft_gate": jnp.where(m, jax.lax.stop_gradient(gate), 0.0).sum() / count,
        "pos_adv_frac": ((adv > 0) & m).sum().astype(cdt) / count,
    }
    return loss, metrics


@partial(jax.jit, static_argnames=("loss_agg_mode",))
def _value_and_grad(logprob, old_logprob, advantages, mask, taus, counts, loss_agg_mode):
    (loss, metrics), grad = jax.value_and_grad(_loss, has_aux=True)(
        logprob, old_logprob, advantages, mask, taus, counts, loss_agg_mode
    )
    return loss, grad, metrics


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << max(n - 1, 0).bit_length())


def sapo_jax(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
             global_token_count=None, global_seq_count=None):
    """Pads the batch to power-of-two buckets (masked rows and columns, which
    change nothing) so that jit compiles once per bucket, not once per shape.
    The padding is done in NumPy: an eager jnp.pad would itself compile once
    per shape."""
    cdt = _compute_dtype(logprob)
    B, T = logprob.shape
    Bp, Tp = _bucket(B, 8), _bucket(T, 64)
    device = next(iter(logprob.devices()))

    def pad(x, value=0):
        host = np.broadcast_to(np.asarray(x).reshape(B, -1), (B, T))
        return jax.device_put(np.pad(host, ((0, Bp - B), (0, Tp - T)), constant_values=value), device)

    taus = jnp.asarray([tau_pos, tau_neg], dtype=cdt)
    counts = jnp.asarray([-1.0 if global_token_count is None else float(global_token_count),
                          -1.0 if global_seq_count is None else float(global_seq_count),
                          1.0 / T if T else 0.0], dtype=cdt)
    loss, grad, metrics = _value_and_grad(pad(logprob), pad(old_logprob), pad(advantages), pad(mask, False), taus,
                                          counts, loss_agg_mode)
    return KernelOutput(loss=loss, grad=np.asarray(grad)[:B, :T], metrics=metrics)


@jax.jit
def _gate(ratio, advantages, taus):
    cdt = taus.dtype
    tau = jnp.where(advantages.astype(cdt) > 0, taus[0], taus[1])
    return _gate_from_z(tau * (ratio.astype(cdt) - 1.0), tau)


def gate_jax(ratio, advantages, tau_pos, tau_neg):
    return _gate(ratio, advantages, jnp.asarray([tau_pos, tau_neg], dtype=_compute_dtype(ratio)))
