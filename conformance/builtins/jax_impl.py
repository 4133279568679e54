"""``jax``: jax.jit of jax.value_and_grad, with the same stable formulation as
the torch built-ins (``where`` before arithmetic, the gate as
(4/tau) exp(log_sigmoid(z)), the exact saturation clamp).

jit compiles once per input shape and dtype; the candidate claims
``shape_buckets``, so the harness sends it a few padded shapes only.  The
aggregation mode, temperatures and counts are traced values, not static
arguments, so they need no compilation of their own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sapo_ref import LOSS_AGG_MODES

from ..buckets import MIN_COLS, bucket
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


def _row_weights(n, counts, mode):
    """Per-row weights for the mode ``LOSS_AGG_MODES[mode]`` (a traced
    index: all four are computed, O(B), and one is selected); counts =
    [global tokens or -1, global sequences or -1, 1/T]."""
    B = n.shape[0]
    N = jnp.where(counts[0] >= 0, counts[0], n.sum())
    S = jnp.where(counts[1] >= 0, counts[1], (n > 0).sum().astype(n.dtype))
    per_mode = {
        "token-mean": jnp.where(N > 0, 1.0 / jnp.maximum(N, 1), 0.0),
        "seq-mean-token-mean": jnp.where((n > 0) & (S > 0), 1.0 / (jnp.maximum(S, 1) * jnp.maximum(n, 1)), 0.0),
        "seq-mean-token-sum": jnp.where(S > 0, 1.0 / jnp.maximum(S, 1), 0.0),
        "seq-mean-token-sum-norm": counts[2],
    }
    return jnp.stack([jnp.broadcast_to(per_mode[m], (B,)) for m in LOSS_AGG_MODES])[mode]


def _loss(logprob, old_logprob, advantages, mask, taus, counts, mode):
    cdt = taus.dtype
    m = mask.astype(bool)
    raw = jnp.where(m, logprob.astype(cdt) - old_logprob.astype(cdt), 0.0)
    adv = advantages.astype(cdt)
    a = jnp.where(m, adv, 0.0)
    tau = jnp.where(a > 0, taus[0], taus[1])
    z = tau * _expm1(jnp.where(raw > LOG_RATIO_SATURATION, LOG_RATIO_SATURATION, raw))
    gate = _gate_from_z(z, tau)
    c = _row_weights(m.sum(axis=-1).astype(cdt), counts, mode)
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


@jax.jit
def _value_and_grad(logprob, old_logprob, advantages, mask, taus, counts, mode):
    (loss, metrics), grad = jax.value_and_grad(_loss, has_aux=True)(
        logprob, old_logprob, advantages, mask, taus, counts, mode
    )
    return loss, grad, metrics


def _pad_time(x, Tp: int, value=0):
    """``x`` (B, T) with masked columns up to ``Tp``, padded on the host: an
    eager jnp.pad would itself compile once per shape."""
    padded = np.pad(np.asarray(x), ((0, 0), (0, Tp - x.shape[1])), constant_values=value)
    return jax.device_put(padded, next(iter(x.devices())))


def sapo_jax(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
             global_token_count=None, global_seq_count=None):
    """The harness pads every batch to a shape bucket (``shape_buckets``),
    except along T in seq-mean-token-sum-norm, whose normaliser is T.  This
    kernel is given 1/T as an argument, so there it pads T to the bucket
    itself; and (B,) advantages are given as (B, 1): one program for both."""
    cdt = _compute_dtype(logprob)
    B, T = logprob.shape
    advantages = advantages.reshape(B, -1)
    taus = jnp.asarray([tau_pos, tau_neg], dtype=cdt)
    counts = jnp.asarray([-1.0 if global_token_count is None else float(global_token_count),
                          -1.0 if global_seq_count is None else float(global_seq_count),
                          1.0 / T if T else 0.0], dtype=cdt)
    mode = jnp.asarray(LOSS_AGG_MODES.index(loss_agg_mode), dtype=jnp.int32)
    Tp = bucket(T, MIN_COLS)
    if Tp != T:
        logprob, old_logprob, mask = _pad_time(logprob, Tp), _pad_time(old_logprob, Tp), _pad_time(mask, Tp, False)
        if advantages.shape[1] != 1:  # per token (a (B, 1) column broadcasts as it is)
            advantages = _pad_time(advantages, Tp)
    loss, grad, metrics = _value_and_grad(logprob, old_logprob, advantages, mask, taus, counts, mode)
    return KernelOutput(loss=loss, grad=grad if Tp == T else np.asarray(grad)[:, :T], metrics=metrics)


def compile_count() -> int:
    """The programs jit has compiled for the jax kernel in this process."""
    return _value_and_grad._cache_size()


@jax.jit
def _gate(ratio, advantages, taus):
    cdt = taus.dtype
    tau = jnp.where(advantages.astype(cdt) > 0, taus[0], taus[1])
    return _gate_from_z(tau * (ratio.astype(cdt) - 1.0), tau)


def gate_jax(ratio, advantages, tau_pos, tau_neg):
    return _gate(ratio, advantages, jnp.asarray([tau_pos, tau_neg], dtype=_compute_dtype(ratio)))
