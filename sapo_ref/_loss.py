"""``sapo_loss``: the SAPO policy loss, its gradient and its metrics.

This module holds the definitions (SPEC.md, sections 2 to 6); the row ranges,
threads and scratch buffers they run on are in ``_execution``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from collections.abc import Mapping

import numpy as np

from . import _dd, _kernels
from . import _validate as V
from ._aggregate import Denominators, row_weights
from ._dtypes import round_to
from ._execution import LazyMetrics, map_rows, readonly, workspace
from .profiles import (
    DEFAULT_TAU_NEG,
    DEFAULT_TAU_POS,
    EMPTY_ROW_POLICIES,
    IMPORTANCE_SAMPLING_LEVELS,
    LOSS_AGG_MODES,
    SEQUENCE_ADVANTAGES,
    TAU_DTYPES,
    Profile,
    get_profile,
)

#: Names of the metrics every result carries (SPEC.md, "Metrics").
METRIC_NAMES = ("ppo_kl", "avg_ratio", "avg_soft_gate", "pos_adv_frac")

# Advantages larger than this (in magnitude) take the precise path, which
# cannot overflow in intermediate products.
_ADV_FAST_MAX = 1e300
# ... and nonzero ones smaller than this, whose products with the gate and
# the aggregation weight could fall below the normal range.
_ADV_FAST_MIN = 2.0**-900


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
    importance_sampling_level: str = "token"
    sequence_advantage: str = "token"


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
    out = float(round_to(value, dtype))
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
    importance_sampling_level=None,
    sequence_advantage=None,
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
    level = prof.importance_sampling_level if importance_sampling_level is None else V.choice(
        importance_sampling_level, "importance_sampling_level", IMPORTANCE_SAMPLING_LEVELS)
    seq_adv = prof.sequence_advantage if sequence_advantage is None else V.choice(
        sequence_advantage, "sequence_advantage", SEQUENCE_ADVANTAGES)
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
        importance_sampling_level=level,
        sequence_advantage=seq_adv,
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
    tau_pos=DEFAULT_TAU_POS,
    tau_neg=DEFAULT_TAU_NEG,
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
    rollout_is_weights=None,
    importance_sampling_level=None,
    sequence_advantage=None,
    reproducible=False,
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
        rollout_is_weights: optional (B, T), (B,) or (B, 1) importance
            weights w (constants: no gradient flows to them) multiplying each
            token's loss before aggregation: token loss -f(r) A w (verl's
            ``rollout_is_weights``, TRL's vLLM importance ratio, SkyRL's
            truncated IS).  The temperature still follows the sign of A.
        importance_sampling_level: ``"token"`` or ``"sequence"`` (every token
            of a row takes the row's ratio exp(mean log-ratio); the gradient
            of the row's loss is spread evenly over its tokens).
        sequence_advantage: with the sequence level, ``"token"`` or ``"mean"``
            (each token takes its row's masked mean advantage, AReaL's form).
        reproducible: evaluate every token on the precise path, which uses
            IEEE-754 basic operations only, and every sum exactly: the
            result is then bit-identical on every CPU, OS and NumPy version
            (the default fast path calls NumPy's exp/expm1/tanh, whose last
            bit depends on the machine).  Slower; same accuracy or better
            (SPEC.md, "Accuracy").

    The inputs are never modified.  Errors: TypeError/ValueError naming the
    argument (SPEC.md, "Validation").
    """
    lp = V.matrix(logprob, "logprob")
    olp = V.float_array(old_logprob, "old_logprob")
    V.same_shape(olp, "old_logprob", lp.shape, "logprob")
    adv = V.advantages_for(advantages, lp.shape, "logprob")
    m = V.mask_array(mask, lp.shape)
    weights = None
    if rollout_is_weights is not None:
        weights = V.advantages_for(rollout_is_weights, lp.shape, "logprob", name="rollout_is_weights")
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
        importance_sampling_level=importance_sampling_level,
        sequence_advantage=sequence_advantage,
        advantages_dtype=V.dtype_name(advantages),
        n_tokens_axis=T,
    )
    if not isinstance(reproducible, bool):
        raise TypeError(f"reproducible must be True or False, got {type(reproducible).__name__}")
    n_rows = np.count_nonzero(m, axis=1)
    n_tok = int(n_rows.sum())
    if global_token_count is not None:
        global_token_count = V.count(global_token_count, "global_token_count", n_tok)
    if global_seq_count is not None:
        local_seqs = int(np.count_nonzero(n_rows)) if sem.empty_rows == "exclude" else B
        global_seq_count = V.count(global_seq_count, "global_seq_count", local_seqs)
    c_hi, c_lo, denom, denoms = row_weights(n_rows, sem, global_token_count, global_seq_count)
    with np.errstate(all="ignore"):
        if sem.importance_sampling_level == "sequence":
            return _sequence_level(lp, olp, adv, m, weights, n_rows, c_hi, c_lo, denom, sem, denoms, reproducible)
        return _evaluate(lp, olp, adv, m, weights, n_rows, c_hi, c_lo, denom, sem, denoms, reproducible)


def _evaluate(lp, olp, adv, m, weights, n_rows, c_hi, c_lo, denom, sem: Semantics, denoms,
              reproducible: bool = False) -> SAPOResult:
    """The fast path on whole arrays, in preallocated blocks (fresh 2 MB
    arrays cost page faults that would dominate) and row ranges, then the
    precise path on every other unmasked token (on every unmasked token when
    ``reproducible``, with exact sums)."""
    B, T = lp.shape
    per_row = adv.shape == (B, 1)
    outs = np.empty((5, B, T))
    grad, token_loss, gate, ratio, agg_weight = outs
    kept = np.empty((3, B, T))  # the log-ratio (both parts) and the float mask, kept for the metrics
    d, d_lo, mf = kept
    weighted, scratch = workspace(B, T)
    clamp = sem.log_ratio_clamp
    no_grad = np.zeros((B, T), dtype=bool) if clamp is not None else None
    c_col = c_hi[:, None]
    # -A * c, by one elementwise formula for every advantage shape: correctly
    # rounded -A / D where the denominators are exact
    neg_den = None if denom is None else -denom[:, None]

    def block(rows):
        lp_, olp_, m_ = lp[rows], olp[rows], m[rows]
        d_, dl_, em = d[rows], d_lo[rows], mf[rows]  # em: scratch, then the float mask
        g_, h_, r_, l_ = gate[rows], grad[rows], ratio[rows], token_loss[rows]
        # the log-ratio as an exact double-double (TwoSum), then the clamp
        np.subtract(lp_, olp_, out=d_)
        np.subtract(d_, lp_, out=em)
        np.subtract(d_, em, out=dl_)
        np.subtract(lp_, dl_, out=dl_)
        np.add(olp_, em, out=em)
        np.subtract(dl_, em, out=dl_)
        if clamp is not None:
            above = (d_ > clamp) | ((d_ == clamp) & (dl_ > 0))
            below = (d_ < -clamp) | ((d_ == -clamp) & (dl_ < 0))
            ng = no_grad[rows]
            np.logical_or(above, below, out=ng)
            d_[above] = clamp
            d_[below] = -clamp
            dl_[ng] = 0.0
        # advantages: finite and not huge for the fast path; others are patched
        a = adv[rows]
        a_ok = np.isfinite(a) & (np.abs(a) <= _ADV_FAST_MAX)
        a_s = np.where(a_ok, a, 0.0)
        tau = _kernels.select_tau(a_s, sem.tau_pos, sem.tau_neg)
        inside = d_ >= _kernels.D_FAST[0]
        inside &= d_ <= _kernels.D_FAST[1]  # NaN fails both
        inside &= a_ok
        if weights is not None:  # from here on, a_s is the weighted advantage A w
            w_ = weights[rows]
            w_ok = np.isfinite(w_) & (np.abs(w_) <= _ADV_FAST_MAX)
            a_s = a_s * np.where(w_ok, w_, 0.0)
            inside &= w_ok & (np.abs(a_s) <= _ADV_FAST_MAX)
        # products near the subnormal range lose digits in the fast path
        inside &= (a_s == 0) | (np.abs(a_s) >= _ADV_FAST_MIN)
        if reproducible:  # no token on the (libm) fast path
            inside[...] = False
        # outside the fast interval: remember the raw log-ratio, put 0 there meanwhile
        local = np.flatnonzero(~inside)
        dflat, dlflat = d_.reshape(-1), dl_.reshape(-1)
        raw_d, raw_lo = dflat[local], dlflat[local]
        dflat[local] = 0.0
        dlflat[local] = 0.0

        if reproducible:  # every unmasked value comes from the precise path below
            for out in (g_, h_, r_):
                out.fill(0.0)
            steep = np.empty(0, dtype=local.dtype)
        else:
            z = _kernels.fast_from_logratio(d_, dl_, tau, em=em, r=r_, h=h_, gate=g_)
            # inside the interval but with |z| > Z_FAST: precise path too (d, dl intact there)
            steep = np.flatnonzero(z)
        local = np.concatenate([local, steep])
        raw_d = np.concatenate([raw_d, dflat[steep]])
        raw_lo = np.concatenate([raw_lo, dlflat[steep]])
        keep = m_.reshape(-1)[local]
        np.copyto(em, m_)
        g_ *= em
        np.multiply(g_, -a_s, out=l_)
        h_ *= em
        h_ *= np.divide(a_s, neg_den[rows]) if neg_den is not None else np.multiply(a_s, -c_col[rows])
        r_ *= em
        np.multiply(em, c_col[rows], out=agg_weight[rows])
        if neg_den is not None:
            np.divide(l_, -neg_den[rows], out=weighted[rows])
        else:
            np.multiply(l_, c_col[rows], out=weighted[rows])
        if clamp is not None:
            h_[no_grad[rows]] = 0.0
        h_ += 0.0  # -0.0 -> +0.0 at masked positions
        l_ += 0.0
        return rows.start * T + local[keep], raw_d[keep], raw_lo[keep]

    parts = map_rows(block, B, T)
    idx = np.concatenate([p[0] for p in parts])
    raw_d = np.concatenate([p[1] for p in parts])
    raw_lo = np.concatenate([p[2] for p in parts])
    dflat = d.reshape(-1)

    if idx.size:
        rows = idx // T
        a = adv[:, 0][rows] if per_row else adv.reshape(-1)[idx]
        wv = None
        if weights is not None:
            wv = weights.reshape(-1)[idx] if weights.shape == (B, T) else weights[:, 0][rows]
        undefined = np.isnan(raw_d) | ~np.isfinite(a)
        if wv is not None:
            undefined |= ~np.isfinite(wv)
        t = _kernels.select_tau(a, sem.tau_pos, sem.tau_neg)  # +-inf keep their sign's tau
        a_s = np.where(undefined, 1.0, a)
        w_s = None if wv is None else np.where(undefined, 1.0, wv)
        dh_s = np.where(np.isnan(raw_d), 0.0, raw_d)
        dl_s = np.where(np.isfinite(raw_lo), raw_lo, 0.0)
        r_p, g_p, l_p, gr_p, w_p = _kernels.precise_from_logratio(dh_s, dl_s, t, a_s, c_hi[rows], c_lo[rows],
                                                                  weight=w_s)
        nan_d, nan_a = np.isnan(raw_d), np.isnan(a)
        ratio.reshape(-1)[idx] = np.where(nan_d, np.nan, r_p)
        gate.reshape(-1)[idx] = np.where(nan_d | nan_a, np.nan, g_p)
        token_loss.reshape(-1)[idx] = np.where(undefined, np.nan, l_p)
        if no_grad is not None:
            gr_p = np.where(no_grad.reshape(-1)[idx], 0.0, gr_p)
        grad.reshape(-1)[idx] = np.where(undefined, np.nan, gr_p)
        weighted.reshape(-1)[idx] = np.where(undefined, np.nan, w_p)
        dflat[idx] = raw_d  # for the metrics
        d_lo.reshape(-1)[idx] = dl_s

    if sem.empty_rows == "nan" and sem.loss_agg_mode == "seq-mean-token-mean":
        empty = n_rows == 0
        grad[empty] = np.nan
        agg_weight[empty] = np.nan
        weighted[empty] = np.nan
    # |c A f| <= c |A| 4/tau: a bound on the terms saves fsum two passes
    bound = None
    if per_row and B * T and not (idx.size and not np.all(np.isfinite(weighted.reshape(-1)[idx]))):
        with np.errstate(invalid="ignore"):
            bound = float(np.max(np.abs(c_hi * adv[:, 0]))) * 4.0 / min(sem.tau_pos, sem.tau_neg)
            if weights is not None:
                bound *= float(np.max(np.abs(np.where(m, weights, 0.0)), initial=0.0))
        if not math.isfinite(bound) or bound > 1e300:
            bound = None
    if reproducible:
        loss = _dd.exact_sum(weighted)
    else:
        loss = _dd.fsum(weighted, scratch=scratch, overwrite=True, bound=bound)
    # what the metrics need from the caller's arrays, taken now (they may
    # change theirs later); the rest from arrays this call owns
    if per_row:
        a = adv[:, 0]
        positive = int(np.dot(n_rows, a > 0))
        nan_adv = bool(np.any(np.isnan(a) & (n_rows > 0)))
    else:
        positive = int(np.count_nonzero((adv > 0) & m))
        nan_adv = bool(np.any(np.isnan(adv) & m))

    def metrics():
        return _metrics(d, d_lo, mf, ratio, gate, positive, nan_adv, n_rows, sem,
                        _dd.exact_sum if reproducible else _dd.fsum)

    return SAPOResult(
        loss=loss,
        grad=readonly(grad),
        token_loss=readonly(token_loss),
        gate=readonly(gate),
        ratio=readonly(ratio),
        agg_weight=readonly(agg_weight),
        metrics=LazyMetrics(metrics, METRIC_NAMES),
        semantics=sem,
        denominators=denoms,
    )


def _row_sums_dd(x: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the sum of x over the mask as a double-double (hi, lo): hi is
    the correctly rounded sum, lo the correctly rounded remainder."""
    B = x.shape[0]
    hi, lo = np.zeros(B), np.zeros(B)
    for i in range(B):
        terms = x[i][m[i]].tolist()
        if not terms:
            continue
        try:
            hi[i] = math.fsum(terms)
            lo[i] = math.fsum(terms + [-hi[i]]) if math.isfinite(hi[i]) else 0.0
        except (OverflowError, ValueError):  # inf - inf inside, or an intermediate overflow
            hi[i] = _dd.exact_sum(np.array(terms))
            lo[i] = 0.0
    return hi, lo


def _sequence_level(lp, olp, adv, m, weights, n_rows, c_hi, c_lo, denom, sem: Semantics, denoms,
                    reproducible: bool = False) -> SAPOResult:
    """Every token of row i takes the row's log-ratio s_i = (sum of its
    log-ratios) / n_i.  The token-level evaluation at s_i gives each token's
    value and its share -c A w f'(r_i) r_i of d loss / d s_i; since
    d s_i / d logprob_it = 1/n_i for each unmasked token, the gradient of a
    token is the sum of its row's shares divided by n_i."""
    B, T = lp.shape
    # the exact log-ratios as double-doubles, their row sums, and s_i = S_i / n_i
    d = lp - olp
    e = d - lp
    d_lo = (lp - (d - e)) - (olp + e)  # TwoSum: d + d_lo = lp - olp exactly
    d_lo = np.where(np.isfinite(d_lo), d_lo, 0.0)  # an infinite d has no low part (TwoSum gives NaN)
    both = np.concatenate([d, d_lo], axis=1)
    s_hi, s_lo = _row_sums_dd(both, np.concatenate([m, m], axis=1))
    n = np.maximum(n_rows, 1).astype(np.float64)
    q = s_hi / n
    p_hi, p_lo = _dd.two_prod(q, n)
    q_lo = ((s_hi - p_hi) - p_lo + s_lo) / n  # (S - q n) / n: the quotient's next digits
    q_lo = np.where(np.isfinite(q_lo), q_lo, 0.0)  # none for an infinite (or NaN) mean
    row_lp = np.broadcast_to(q[:, None], (B, T)).copy()
    row_olp = np.broadcast_to(-q_lo[:, None], (B, T)).copy()
    row_lp[~m] = 0.0
    row_olp[~m] = 0.0
    if sem.sequence_advantage == "mean":  # the row's mean advantage, correctly rounded but for ~2**-100
        a_hi, a_lo = _row_sums_dd(np.broadcast_to(adv, (B, T)), m)
        mean = a_hi / n
        p_hi, p_lo = _dd.two_prod(mean, n)
        adv = (mean + ((a_hi - p_hi) - p_lo + a_lo) / n)[:, None]
    res = _evaluate(row_lp, row_olp, adv, m, weights, n_rows, c_hi, c_lo, denom, sem, denoms, reproducible)
    share_hi, _ = _row_sums_dd(res.grad, m)
    grad = np.where(m, (share_hi / n)[:, None], 0.0) + 0.0
    if sem.empty_rows == "nan" and sem.loss_agg_mode == "seq-mean-token-mean":
        grad[n_rows == 0] = np.nan
    token_kl = -(_dd.exact_sum(s_hi) + _dd.exact_sum(s_lo))
    count = float(n_rows.sum()) + sem.token_count_eps

    def metrics():
        out = dict(res.metrics)
        out["ppo_kl"] = token_kl / count if count else 0.0
        return out

    return SAPOResult(
        loss=res.loss,
        grad=readonly(grad),
        token_loss=res.token_loss,
        gate=res.gate,
        ratio=res.ratio,
        agg_weight=res.agg_weight,
        metrics=LazyMetrics(metrics, METRIC_NAMES),
        semantics=sem,
        denominators=denoms,
    )


#: the binary scale a mean's terms are summed at when their plain sum overflows
_MEAN_SCALE = 64


def _metrics(d, d_lo, mf, ratio, gate, positive, nan_adv, n_rows, sem, total) -> dict:
    """Masked means over unmasked tokens (0 when there are none); ``total``
    sums an array."""
    count = float(n_rows.sum()) + sem.token_count_eps
    if count == 0:
        return {name: 0.0 for name in METRIC_NAMES}
    unmasked = mf > 0

    def mean(x, lo=None) -> float:
        """(total(x) + total(lo)) / count, also where finite terms sum past
        the float64 maximum but their mean does not (two ratios of e^709.7):
        then the terms are summed scaled by 2^-SCALE (exact: they are that
        large)."""
        s = total(x) + (0.0 if lo is None else total(lo))
        if math.isinf(s) and np.all(np.isfinite(x)):
            scaled = total(np.ldexp(x, -_MEAN_SCALE)) + (0.0 if lo is None else total(np.ldexp(lo, -_MEAN_SCALE)))
            return math.ldexp(scaled / count, _MEAN_SCALE)
        return s / count

    return {
        "ppo_kl": -mean(np.where(unmasked, d, 0.0), np.where(unmasked, d_lo, 0.0)),
        "avg_ratio": mean(ratio),
        "avg_soft_gate": mean(gate),
        "pos_adv_frac": math.nan if nan_adv else positive / count,
    }
