"""``sapo_loss``: the SAPO policy loss, its gradient and its metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

import numpy as np

from . import _dd, _kernels
from . import _validate as V
from ._aggregate import Denominators, row_weights
from .profiles import EMPTY_ROW_POLICIES, LOSS_AGG_MODES, TAU_DTYPES, Profile, get_profile

#: Names of the metrics every result carries (SPEC.md, "Metrics").
METRIC_NAMES = ("ppo_kl", "avg_ratio", "avg_soft_gate", "pos_adv_frac")

# Advantages larger than this (in magnitude) take the precise path, which
# cannot overflow in intermediate products.
_ADV_FAST_MAX = 1e300


@dataclass(frozen=True)
class Semantics:
    """The fully resolved choices one evaluation used (SPEC.md, "Options")."""

    profile: str
    loss_agg_mode: str
    empty_rows: str
    token_count_eps: float
    row_count_eps: float
    token_sum_norm: float
    log_ratio_clamp: float | None
    tau_dtype: str | None
    tau_pos: float  # after rounding to tau_dtype
    tau_neg: float

    @property
    def mode(self) -> str:
        return self.loss_agg_mode


@dataclass(frozen=True)
class SAPOResult:
    """What :func:`sapo_loss` returns.  Arrays are float64, read-only, of the
    shape of ``logprob``, and exactly 0 at masked positions (see SPEC.md for
    the one exception, ``empty_rows="nan"``)."""

    loss: float
    grad: np.ndarray  # d loss / d logprob
    token_loss: np.ndarray  # -f(r) * A
    gate: np.ndarray  # f(r)
    ratio: np.ndarray  # r = exp(logprob - old_logprob), after any clamp
    agg_weight: np.ndarray  # c: loss = sum(agg_weight * token_loss)
    metrics: Mapping[str, float]
    semantics: Semantics
    denominators: Denominators = field(repr=False)


# ---------------------------------------------------------------------------
# semantics
# ---------------------------------------------------------------------------


def _round_tau(value: float, dtype: str | None, name: str) -> float:
    if dtype is None or dtype == "float64":
        return value
    if dtype == "bfloat16":
        bits = int(np.float32(value).view(np.uint32))
        bits += 0x7FFF + ((bits >> 16) & 1)  # round to nearest even on the top 16 bits
        out = float(np.uint32((bits >> 16) << 16).view(np.float32))
    else:
        with np.errstate(over="ignore"):
            out = float(np.dtype(dtype).type(value))
    if not math.isfinite(out) or out <= 0:
        raise ValueError(f"{name}={value!r} is not representable as a positive {dtype}")
    return out


def resolve_semantics(
    profile,
    loss_agg_mode,
    tau_pos,
    tau_neg,
    *,
    empty_rows=None,
    token_count_eps=None,
    row_count_eps=None,
    token_sum_norm=None,
    log_ratio_clamp=None,
    tau_dtype=None,
    advantages_dtype: str = "float64",
    n_tokens_axis: int = 1,
) -> Semantics:
    """Combine a profile with explicit options (explicit, non-None, wins)."""
    prof: Profile = get_profile(profile)
    V.choice(loss_agg_mode, "loss_agg_mode", LOSS_AGG_MODES)
    mode = prof.effective_mode(loss_agg_mode)
    tp = V.temperature(tau_pos, "tau_pos")
    tn = V.temperature(tau_neg, "tau_neg")

    empty = prof.empty_rows if empty_rows is None else V.choice(empty_rows, "empty_rows", EMPTY_ROW_POLICIES)
    tok_eps = prof.token_count_eps if token_count_eps is None else V.nonneg_float(token_count_eps, "token_count_eps")
    row_eps = prof.row_count_eps if row_count_eps is None else V.nonneg_float(row_count_eps, "row_count_eps")
    if token_sum_norm is None:
        norm = prof.token_sum_norm if prof.token_sum_norm is not None else float(max(n_tokens_axis, 1))
    else:
        norm = V.positive_float(token_sum_norm, "token_sum_norm")
    if log_ratio_clamp is None:
        clamp = prof.log_ratio_clamp
    else:
        clamp = V.positive_float(log_ratio_clamp, "log_ratio_clamp", allow_inf=True)
        clamp = None if math.isinf(clamp) else clamp
    tdt = prof.tau_dtype if tau_dtype is None else V.choice(tau_dtype, "tau_dtype", TAU_DTYPES)
    if tdt == "advantages":
        tdt = advantages_dtype
        if tdt not in TAU_DTYPES:
            raise ValueError(f"profile {prof.name!r} rounds tau to the advantages' dtype, which is {tdt}")
    return Semantics(
        profile=prof.name,
        loss_agg_mode=mode,
        empty_rows=empty,
        token_count_eps=tok_eps,
        row_count_eps=row_eps,
        token_sum_norm=norm,
        log_ratio_clamp=clamp,
        tau_dtype=tdt,
        tau_pos=_round_tau(tp, tdt, "tau_pos"),
        tau_neg=_round_tau(tn, tdt, "tau_neg"),
    )


# ---------------------------------------------------------------------------
# the loss
# ---------------------------------------------------------------------------


def sapo_loss(
    logprob,
    old_logprob,
    advantages,
    mask,
    *,
    tau_pos=1.0,
    tau_neg=1.05,
    loss_agg_mode="token-mean",
    profile=None,
    empty_rows=None,
    token_count_eps=None,
    row_count_eps=None,
    token_sum_norm=None,
    log_ratio_clamp=None,
    tau_dtype=None,
    global_token_count=None,
    global_seq_count=None,
) -> SAPOResult:
    """The SAPO loss, its exact gradient with respect to ``logprob``, and metrics.

    Args:
        logprob: (B, T) log-probabilities under the current policy.
        old_logprob: (B, T) log-probabilities under the behaviour policy.
        advantages: (B,), (B, 1) or (B, T).
        mask: (B, T) boolean or 0/1; masked positions never influence anything.
        tau_pos, tau_neg: gate temperatures for A > 0 and A <= 0.
        loss_agg_mode: one of :data:`LOSS_AGG_MODES`.  A profile that fixes
            the mode (``paper``, ``verl``, ``trl``) ignores it, as the
            implementation it models does.
        profile: a name in :data:`PROFILES` or a :class:`Profile`; supplies
            the defaults of the options below (default ``"canonical"``).
        empty_rows, token_count_eps, row_count_eps, token_sum_norm,
        log_ratio_clamp, tau_dtype: override the profile (see SPEC.md);
            ``log_ratio_clamp=math.inf`` and ``tau_dtype="float64"`` switch a
            profile's clamp or rounding off.
        global_token_count: the token count of the whole batch when this call
            sees one shard of it (token-mean).
        global_seq_count: likewise, the number of counted sequences (seq-mean
            modes).  With both, the losses and gradients of the shards sum to
            those of the full batch.

    The inputs are never modified.  Errors: TypeError/ValueError naming the
    argument (SPEC.md, "Validation").
    """
    lp = V.matrix(logprob, "logprob")
    olp = V.float_array(old_logprob, "old_logprob")
    V.same_shape(olp, "old_logprob", lp.shape, "logprob")
    adv = V.advantages_for(advantages, lp.shape, "logprob")
    m = V.mask_array(mask, lp.shape)
    B, T = lp.shape
    sem = resolve_semantics(
        profile,
        loss_agg_mode,
        tau_pos,
        tau_neg,
        empty_rows=empty_rows,
        token_count_eps=token_count_eps,
        row_count_eps=row_count_eps,
        token_sum_norm=token_sum_norm,
        log_ratio_clamp=log_ratio_clamp,
        tau_dtype=tau_dtype,
        advantages_dtype=V.dtype_name(advantages),
        n_tokens_axis=T,
    )
    n_rows = np.count_nonzero(m, axis=1)
    n_tok = int(n_rows.sum())
    if global_token_count is not None:
        global_token_count = V.count(global_token_count, "global_token_count", n_tok)
    if global_seq_count is not None:
        local_seqs = int(np.count_nonzero(n_rows)) if sem.empty_rows == "exclude" else B
        global_seq_count = V.count(global_seq_count, "global_seq_count", local_seqs)
    c_hi, c_lo, denom, denoms = row_weights(n_rows, sem, global_token_count, global_seq_count)
    with np.errstate(all="ignore"):
        return _evaluate(lp, olp, adv, m, n_rows, c_hi, c_lo, denom, sem, denoms)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _evaluate(lp, olp, adv, m, n_rows, c_hi, c_lo, denom, sem: Semantics, denoms) -> SAPOResult:
    B, T = lp.shape
    mf = m.astype(np.float64)
    per_row = adv.shape == (B, 1)

    # log-ratio as an exact double-double (TwoSum), then the optional clamp
    d = lp - olp
    bv = d - lp
    d_lo = (lp - (d - bv)) - (olp + bv)
    no_grad = None
    if sem.log_ratio_clamp is not None:
        c = sem.log_ratio_clamp
        above = (d > c) | ((d == c) & (d_lo > 0))
        below = (d < -c) | ((d == -c) & (d_lo < 0))
        no_grad = above | below
        d = np.where(above, c, np.where(below, -c, d))
        d_lo = np.where(no_grad, 0.0, d_lo)

    # advantages: finite, not huge, for the fast path; others are patched
    adv_ok = np.isfinite(adv) & (np.abs(adv) <= _ADV_FAST_MAX)
    adv_s = np.where(adv_ok, adv, 0.0)
    tau = _kernels.select_tau(adv_s, sem.tau_pos, sem.tau_neg)
    c_col = c_hi[:, None]
    # -A * c, by the same elementwise formula for every advantage shape:
    # correctly rounded -A / D where the denominators are exact.
    k = adv_s / -denom[:, None] if denom is not None else adv_s * -c_col

    # fast path on whole arrays, with non-finite or large log-ratios clipped
    ds = np.fmin(np.fmax(d, -2.0), 2.0)
    dls = np.fmin(np.fmax(d_lo, -1.0), 1.0)
    ratio, gate, h, z = _kernels.fast_from_logratio(ds, dls, tau)
    ok = _kernels.fast_ok_logratio(ds, z)
    ok &= adv_ok
    token_loss = gate * -adv_s
    grad = h * k
    ratio *= mf
    gate *= mf
    token_loss *= mf
    grad *= mf
    if no_grad is not None:
        grad[no_grad] = 0.0
    weighted = token_loss / denom[:, None] if denom is not None else token_loss * c_col
    delta = ds * mf
    delta_lo = dls * mf

    # every other unmasked token: precise path, or NaN where undefined
    idx = np.flatnonzero(m & ~ok)
    if idx.size:
        rows = idx // T if T else idx
        dh = d.ravel()[idx]
        dl = d_lo.ravel()[idx]
        a = (adv[:, 0][rows] if per_row else adv.ravel()[idx])
        undefined = np.isnan(dh) | ~np.isfinite(a)
        t = _kernels.select_tau(a, sem.tau_pos, sem.tau_neg)  # +-inf keep their sign's tau
        a_s = np.where(undefined, 1.0, a)
        dh_s = np.where(np.isnan(dh), 0.0, dh)
        dl_s = np.where(np.isfinite(dl), dl, 0.0)
        out = _kernels.precise_from_logratio(dh_s, dl_s, t, a_s, c_hi[rows], c_lo[rows])
        r_p, g_p, l_p, gr_p, w_p = out
        nan_d = np.isnan(dh)
        nan_a = np.isnan(a)
        r_p = np.where(nan_d, np.nan, r_p)
        g_p = np.where(nan_d | nan_a, np.nan, g_p)
        l_p = np.where(undefined, np.nan, l_p)
        gr_p = np.where(undefined, np.nan, gr_p)
        w_p = np.where(undefined, np.nan, w_p)
        if no_grad is not None:
            gr_p = np.where(no_grad.ravel()[idx], 0.0, gr_p)
        for arr, vals in ((ratio, r_p), (gate, g_p), (token_loss, l_p), (grad, gr_p), (weighted, w_p)):
            arr.ravel()[idx] = vals
        delta.ravel()[idx] = dh
        delta_lo.ravel()[idx] = np.where(np.isfinite(dh), dl_s, 0.0)

    agg_weight = c_col * mf
    if sem.empty_rows == "nan" and sem.mode == "seq-mean-token-mean":
        empty = n_rows == 0
        grad[empty] = np.nan
        agg_weight[empty] = np.nan
        weighted[empty] = np.nan

    loss = _dd.fsum(weighted)
    metrics = _metrics(delta, delta_lo, ratio, gate, adv, m, n_rows, per_row, sem)
    for arr in (grad, token_loss, gate, ratio, agg_weight):
        arr += 0.0  # -0.0 -> +0.0 at masked positions
    return SAPOResult(
        loss=loss,
        grad=_readonly(grad),
        token_loss=_readonly(token_loss),
        gate=_readonly(gate),
        ratio=_readonly(ratio),
        agg_weight=_readonly(agg_weight),
        metrics=MappingProxyType(metrics),
        semantics=sem,
        denominators=denoms,
    )


def _metrics(delta, delta_lo, ratio, gate, adv, m, n_rows, per_row, sem) -> dict:
    """Masked means over unmasked tokens (0 when there are none)."""
    count = float(n_rows.sum()) + sem.token_count_eps
    if count == 0:
        return {name: 0.0 for name in METRIC_NAMES}
    if per_row:
        a = adv[:, 0]
        pos = float(np.dot(n_rows, a > 0))
        nan_adv = bool(np.any(np.isnan(a) & (n_rows > 0)))
    else:
        pos = float(np.count_nonzero((adv > 0) & m))
        nan_adv = bool(np.any(np.isnan(adv) & m))
    kl_sum = -(_dd.fsum(delta) + _dd.fsum(delta_lo))
    return {
        "ppo_kl": kl_sum / count,
        "avg_ratio": _dd.fsum(ratio) / count,
        "avg_soft_gate": _dd.fsum(gate) / count,
        "pos_adv_frac": math.nan if nan_adv else pos / count,
    }
