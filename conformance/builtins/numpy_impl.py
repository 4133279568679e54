"""``numpy-fp32``: NumPy in float32 with a hand-written gradient."""

from __future__ import annotations

import numpy as np

from ..candidate import KernelOutput
from ._common import LOG_RATIO_SATURATION

F32 = np.float32
ZERO = F32(0)


def _row_weights(n, T, loss_agg_mode, global_token_count, global_seq_count):
    """Per-row weights c of the canonical aggregation (float32, shape (B,))."""
    if loss_agg_mode == "token-mean":
        N = int(n.sum()) if global_token_count is None else global_token_count
        return np.full(n.shape, 1.0 / N if N else 0.0, dtype=F32)
    if loss_agg_mode == "seq-mean-token-sum-norm":
        return np.full(n.shape, 1.0 / T if T else 0.0, dtype=F32)
    S = int(np.count_nonzero(n)) if global_seq_count is None else global_seq_count
    if not S:
        return np.zeros(n.shape, dtype=F32)
    if loss_agg_mode == "seq-mean-token-sum":
        return np.full(n.shape, 1.0 / S, dtype=F32)
    return np.where(n > 0, 1.0 / (S * np.maximum(n, 1)), 0.0).astype(F32)  # seq-mean-token-mean


def _sigmoids(z):
    """sigmoid(|z|) and sigmoid(-|z|), the small one never as 1 - the big one."""
    e = np.exp(-np.abs(z))
    big = F32(1) / (F32(1) + e)
    return big, e * big


def sapo_numpy(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
               global_token_count=None, global_seq_count=None, rollout_is_weights=None):
    B, T = logprob.shape
    m = np.asarray(mask, dtype=bool)
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.where(m, logprob.astype(F32) - old_logprob.astype(F32), ZERO)
        adv = advantages.astype(F32).reshape(B, -1)
        a = np.where(m, adv, ZERO)
        tau = np.where(a > 0, F32(tau_pos), F32(tau_neg))
        if rollout_is_weights is not None:  # scales the token loss; tau follows A alone
            a = a * np.where(m, rollout_is_weights.astype(F32), ZERO)
        dc = np.minimum(d, F32(LOG_RATIO_SATURATION))
        r = np.exp(dc)
        z = tau * np.expm1(dc)
        big, small = _sigmoids(z)
        gate = (F32(4) / tau) * np.where(z >= 0, big, small)
        h = F32(4) * big * small * r  # f'(r) r
        n = np.count_nonzero(m, axis=1)
        c = _row_weights(n, T, loss_agg_mode, global_token_count, global_seq_count)[:, None]
        token = -a * gate
        loss = np.sum(token * c, dtype=F32)
        grad = (-c * a * h).astype(logprob.dtype)
        count = F32(n.sum())
        metrics = {
            "ppo_kl": -np.sum(d, dtype=F32),
            "avg_ratio": np.sum(np.where(m, np.exp(d), ZERO), dtype=F32),
            "avg_soft_gate": np.sum(np.where(m, gate, ZERO), dtype=F32),
            "pos_adv_frac": F32(np.count_nonzero((adv > 0) & m)),
        }
        metrics = {k: (v / count if count else ZERO) for k, v in metrics.items()}
    return KernelOutput(loss=loss, grad=grad, metrics=metrics)


def gate_numpy(ratio, advantages, tau_pos, tau_neg):
    r = ratio.astype(F32)
    tau = np.where(advantages.astype(F32) > 0, F32(tau_pos), F32(tau_neg))
    with np.errstate(over="ignore", invalid="ignore"):
        z = tau * (r - F32(1))
    big, small = _sigmoids(z)
    return (F32(4) / tau) * np.where(z >= 0, big, small)
