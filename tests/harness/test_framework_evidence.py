"""Every defect the framework matrix reports, confirmed by a second computation.

``frameworks/evidence.json`` (``python -m conformance.frameworks.evidence
frameworks``) holds one failing example per finding of each framework's
report: the batch, the options, the position, the framework's value ("got")
and the harness's ("expected").  Here the expected value is recomputed from
SPEC.md §2-§5 alone, in 50-digit mpmath, without any of sapo_ref's code (the
profile is read as data only), and each example must show

  (a) the harness was right: independent == harness expected (relative 1e-9,
      or both non-finite alike, or both 0, or an overflow of the dtype's range
      that the harness wrote as inf);
  (b) the framework is wrong: got differs from the independent value by more
      than the category allows (below, ``_differs``).

The inputs are rounded as the torch drivers send them: float64 -> float32,
and bfloat16 through float32 (torch converts a double to bfloat16 through
float; the harness's oracle sees those rounded values).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

mpmath = pytest.importorskip("mpmath")
from sapo_ref import PROFILES  # noqa: E402  (profiles as data: their fields only)

EVIDENCE = Path(__file__).resolve().parents[2] / "frameworks" / "evidence.json"
if not EVIDENCE.exists():
    pytest.skip(f"{EVIDENCE} is absent (python -m conformance.frameworks.evidence frameworks)",
                allow_module_level=True)

mpf, NAN, INF = mpmath.mpf, mpmath.mpf("nan"), mpmath.mpf("inf")
EPS = {"float64": 2.0 ** -52, "float32": 2.0 ** -23, "float16": 2.0 ** -10, "bfloat16": 2.0 ** -7}
FMAX = {"float64": 1.7976931348623157e308, "float32": 3.4028234663852886e38, "float16": 65504.0,
        "bfloat16": 3.3895313892515355e38}
TINY32 = 2.0 ** -126  # float32's smallest normal number
#: precision/semantics: got must be farther than this from the true value (module docstring, (b))
K_DIFFER = 8


def _f(x) -> float:
    return float(x)  # report.json writes NaN and +-inf as "nan", "inf", "-inf"; float() reads both


def _round(values, dtype: str) -> np.ndarray:
    x = np.vectorize(_f, otypes=[np.float64])(np.asarray(values, dtype=object)) if np.size(values) else \
        np.zeros(np.shape(values))
    if dtype == "float64":
        return x
    with np.errstate(over="ignore", invalid="ignore"):
        x32 = x.astype(np.float32)
        if dtype == "float32":
            return x32.astype(np.float64)
        if dtype == "float16":
            return x.astype(np.float16).astype(np.float64)
        import ml_dtypes  # bfloat16
        return x32.astype(ml_dtypes.bfloat16).astype(np.float64)


def _gate(d, tau):
    """(r, f(r), f'(r) r) at log-ratio d (SPEC §2), with the limits at +-inf."""
    if mpmath.isnan(d):
        return NAN, NAN, NAN
    if d > 800:  # r > e^800: sigma(z) = 1 to 50 digits, f'(r) r < e^-(10^340): 0 in any float
        return (INF if d == INF else mpmath.exp(d)), 4 / tau, mpf(0)
    if d < -10 ** 6:  # r < e^-(10^6): 0 in any float, even times |A| <= 1.8e308
        return mpf(0), 4 / tau * mpmath.mpf(1) / (1 + mpmath.exp(tau)), mpf(0)
    r = mpmath.exp(d)
    z = tau * (r - 1)
    s, s_neg = 1 / (1 + mpmath.exp(-z)), 1 / (1 + mpmath.exp(z))
    return r, 4 / tau * s, 4 * s * s_neg * r


def independent(ex: dict) -> dict:
    """{"loss", "grad" (B x T mpf), "metric:NAME"} from SPEC.md §2-§5."""
    prof, dtype, opts = PROFILES[ex["profile"]], ex["dtype"], ex["options"]
    b = ex["batch"]
    fused = ex.get("fused_inputs")  # a fused kernel: the old log-probs it was given and its drawn logits
    lp, olp = (_round(fused[k], "float64") if fused else _round(b[k], dtype) for k in ("logprob", "old_logprob"))
    if fused and "token_ids" in fused:  # its log-probs from its logits, here, at 50 digits
        lp = np.array([[mpf(0)] * lp.shape[1] for _ in range(lp.shape[0])], dtype=object)
        logits, _ = _logits_and_softmax(fused)
        for (i, t), row in np.ndenumerate(np.empty(lp.shape)) if lp.size else ():
            lp[i, t] = logits[i][t][fused["token_ids"][i][t]] - mpmath.log(mpmath.fsum(mpmath.exp(z) for z in logits[i][t]))
    B, T = lp.shape if lp.ndim == 2 else (len(b["mask"]), 0)
    adv = _round(b["advantages"], dtype).reshape(B, -1) if B else np.zeros((0, 1))
    adv = np.broadcast_to(adv, (B, T))
    mask = np.asarray(b["mask"], dtype=bool).reshape(B, T)
    tau_dtype = dtype if prof.tau_dtype == "advantages" else prof.tau_dtype
    taus = {k: mpf(float(_round([opts[k]], tau_dtype)[0]) if tau_dtype else opts[k]) for k in ("tau_pos", "tau_neg")}
    clamp = prof.log_ratio_clamp
    mode = prof.loss_agg_mode or opts["loss_agg_mode"]
    n = [int(mask[i].sum()) for i in range(B)]
    N = opts.get("global_token_count") or sum(n)
    S = opts.get("global_seq_count") or (sum(1 for k in n if k) if prof.empty_rows == "exclude" else B)
    teps, reps = mpf(prof.token_count_eps), mpf(prof.row_count_eps)

    def weight(i):  # c_i, SPEC §3
        if mode == "token-mean":
            return 1 / (N + teps) if N + teps else mpf(0)
        if mode == "seq-mean-token-mean":
            if n[i] == 0:
                return NAN if prof.empty_rows == "nan" else mpf(0)
            return 1 / (S * (n[i] + reps)) if S else mpf(0)
        if mode == "seq-mean-token-sum":
            return 1 / mpf(S) if S else mpf(0)
        return 1 / mpf(prof.token_sum_norm or T or 1)

    loss, grad = mpf(0), [[mpf(0)] * T for _ in range(B)]
    sums = {"ppo_kl": mpf(0), "avg_ratio": mpf(0), "avg_soft_gate": mpf(0), "pos_adv_frac": mpf(0)}
    sequence = prof.importance_sampling_level == "sequence"
    for i in range(B):
        c = weight(i)
        cols = [t for t in range(T) if mask[i, t]]
        if not cols:
            if mpmath.isnan(c) and mode == "seq-mean-token-mean":
                loss, grad[i] = NAN, [NAN] * T
            continue
        delta = {t: mpf(float(lp[i, t])) - mpf(float(olp[i, t])) for t in cols}
        A = {t: mpf(float(adv[i, t])) for t in cols}
        if sequence and prof.sequence_advantage == "mean":
            A = dict.fromkeys(cols, mpmath.fsum(A.values()) / len(cols))
        used = dict(delta)
        if sequence:
            used = dict.fromkeys(cols, mpmath.fsum(delta.values()) / len(cols))
        live = {t: not (clamp is not None and not mpmath.isnan(used[t]) and abs(used[t]) > clamp) for t in cols}
        if clamp is not None:
            used = {t: used[t] if live[t] else mpmath.sign(used[t]) * clamp for t in cols}
        row_grad = []
        for t in cols:
            tau = taus["tau_pos"] if A[t] > 0 else taus["tau_neg"]
            r, f, fr = _gate(used[t], tau)
            finite_a = mpmath.isfinite(A[t])
            ell = -A[t] * f if finite_a else NAN
            g = (-c * A[t] * fr if finite_a else NAN) if live[t] else (NAN if mpmath.isnan(A[t] * f) else mpf(0))
            loss += c * ell
            row_grad.append((t, g))
            sums["ppo_kl"] -= delta[t] if sequence else used[t]
            sums["avg_ratio"] += r
            sums["avg_soft_gate"] += f
            sums["pos_adv_frac"] += NAN if mpmath.isnan(A[t]) else int(A[t] > 0)
        for t, g in row_grad:  # sequence level: the row's total spread evenly (SPEC §2.2)
            grad[i][t] = mpmath.fsum(x for _, x in row_grad) / len(cols) if sequence else g
    M = sum(n) + teps
    out = {"loss": loss, "grad": grad}
    out.update({f"metric:{k}": (v / M if M else mpf(0)) for k, v in sums.items()})
    return out


def _logits_and_softmax(fused: dict):
    """A fused kernel's logits (formed as h W^T when it takes hidden states)
    and their softmax, as nested lists of mpf."""
    if "hidden" in fused:
        W = [[mpf(x) for x in row] for row in fused["weight"]]
        logits = [[[mpmath.fsum(mpf(a) * w for a, w in zip(h, wv)) for wv in W] for h in row] for row in fused["hidden"]]
    else:
        logits = [[[mpf(x) for x in z] for z in row] for row in fused["logits"]]
    probs = []
    for row in logits:
        probs.append([])
        for z in row:
            e = [mpmath.exp(x) for x in z]
            total = mpmath.fsum(e)
            probs[-1].append([x / total for x in e])
    return logits, probs


def carried(ex: dict, grad) -> dict:
    """A fused kernel's gradients from the token gradient, SPEC §11:
    d/dz_v = g (1[v = y] - p_v), d/dh = (d/dz) W, d/dW = sum_{b,t} (d/dz)^T h."""
    fused = ex["fused_inputs"]
    _, probs = _logits_and_softmax(fused)
    ids = fused["token_ids"]
    dz = [[[g * ((v == ids[i][t]) - p) for v, p in enumerate(probs[i][t])] for t, g in enumerate(row)]
          for i, row in enumerate(grad)]
    out = {"grad-logits": dz}
    if "hidden" in fused:
        W, H = fused["weight"], fused["hidden"]
        out["grad-hidden"] = [[[mpmath.fsum(d * mpf(W[v][k]) for v, d in enumerate(dz[i][t])) for k in range(len(W[0]))]
                               for t in range(len(dz[i]))] for i in range(len(dz))]
        out["grad-weight"] = [[mpmath.fsum(dz[i][t][v] * mpf(H[i][t][k]) for i in range(len(dz)) for t in range(len(dz[i])))
                               for k in range(len(W[0]))] for v in range(len(W))]
    return out


def _same(x: float, y: float) -> bool:
    """(a): the independent value x agrees with the harness's y."""
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    if x == y:
        return True
    if math.isinf(x) or math.isinf(y):
        return False
    return abs(x - y) <= 1e-9 * max(abs(x), abs(y))


def _differs(got: float, true: float, dtype: str) -> bool:
    """(b): non-finite on one side only (or NaN against inf, or infs of opposite
    sign); else |got - true| > 8 eps(float32) max(|true|, 2^-126), plus half
    the spacing of the (narrower) input dtype at |true| when got is a value of
    that dtype: a framework returning its result in that dtype must round the
    true value, and can do no better than to the nearest."""
    if not (math.isfinite(got) and math.isfinite(true)):
        return not (got == true or (math.isnan(got) and math.isnan(true)))
    in_dtype = float(_round([got], dtype)[0]) == got
    half_spacing = EPS[dtype] * math.ldexp(1.0, math.frexp(abs(true))[1] - 2) if true else 0.0
    tol = K_DIFFER * EPS["float32"] * max(abs(true), TINY32) + (half_spacing if in_dtype else 0.0)
    return abs(got - true) > tol


def _examples():
    data = json.loads(EVIDENCE.read_text(encoding="utf-8"))["frameworks"]
    params, seen = [], set()
    for fw, entry in sorted(data.items()):
        for ex in entry["examples"]:
            pid = f"{fw}:{'+'.join(ex['defects']) or 'no-defect-id'}"
            pid = f"{pid}@{ex['finding']}" if pid in seen or not ex["defects"] else pid
            seen.add(pid)
            params.append(pytest.param(ex, id=pid))
    return params


@pytest.mark.parametrize("ex", _examples())
def test_defect_is_confirmed_independently(ex):
    if ex["profile"] not in PROFILES:
        pytest.skip(f"profile {ex['profile']!r} is not one of sapo_ref.PROFILES")
    with mpmath.workdps(50):
        values = independent(ex)
        q = ex["quantity"]
        if q in ("grad-logits", "grad-hidden", "grad-weight") and ex.get("fused_inputs", {}).get("token_ids"):
            values.update(carried(ex, values["grad"]))
        key = "grad" if q in ("grad", "grad-masked-zero") else q
        if key not in values:
            pytest.skip(f"quantity {q!r} has no independent implementation here")
        value = values[key]
        if q == "grad-masked-zero" and ex["index"] is None:  # fused: no position, every masked token's
            mask = ex["batch"]["mask"]
            assert not all(map(all, mask)), f"{ex['framework']} {ex['record']}: no masked token"
            value = max((abs(g) for row, m in zip(value, mask) for g, k in zip(row, m) if not k), default=0)
        elif ex["index"] is not None:
            for i in ex["index"]:
                value = value[i]
        true = float(value)
    dtype = ex["dtype"]
    got, harness = _f(ex["got"]), _f(ex["expected"])
    where = f" at {tuple(ex['index'])}" if ex["index"] is not None else ""
    line = (f"{ex['framework']} {'+'.join(ex['defects']) or ex['finding']} ({ex['record']}{where}): "
            f"got {got!r}, independent expected {true!r}, harness expected {harness!r}")
    overflow = math.isfinite(true) and abs(true) > FMAX[dtype] and harness == math.copysign(math.inf, true)
    assert _same(true, harness) or overflow, f"(a) harness expected is wrong: {line}"
    if q == "grad-masked-zero":
        if ex["index"] is not None:
            i, t = ex["index"][:2]
            assert not ex["batch"]["mask"][i][t], f"(b) position is not masked: {line}"
        assert true == 0.0 and (got != 0.0 or math.isnan(got)), f"(b) not a masked-gradient leak: {line}"
    else:
        assert _differs(got, true, dtype), f"(b) framework's value is within tolerance: {line}"
