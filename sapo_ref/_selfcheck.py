"""A quick self-check of the oracle, runnable anywhere numpy is installed.

``python -m sapo_ref`` (or ``sapo-conformance selfcheck``) runs it.  The full
verification against mpmath lives in the test suite; this is the sanity check
a user can run on their own machine in a second: closed forms, limits,
invariants, and agreement with a naive evaluation where that is accurate.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ._loss import sapo_loss


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def _naive_token(lp, olp, a, tau_pos, tau_neg):
    """Straightforward float64 formulas; accurate for |z| < 5."""
    r = math.exp(lp - olp)
    tau = tau_pos if a > 0 else tau_neg
    s = 1 / (1 + math.exp(-tau * (r - 1)))
    return -a * 4 / tau * s, -a * 4 * s * (1 - s) * r


def _closed_forms():
    worst = 0.0
    for tau in (0.05, 0.5, 1.0, 1.05, 4.0, 50.0):
        res = sapo_loss([[-1.2, -1.2]], [[-1.2, -1.2]], [1.0], [[1, 1]], tau_pos=tau, tau_neg=tau)
        if not (np.all(res.gate == 2 / tau) and np.all(res.grad == -0.5)):
            return False, f"f(1) != 2/tau or gradient != -c*A at tau={tau}"
        worst = max(worst, abs(res.loss + 2 / tau))
    return worst == 0.0, "f(1) = 2/tau and grad = -c*A at r = 1, 6 temperatures"


def _design_table():
    olp = math.log(0.3)
    table = [(0.0, 1.0, 1.00, -1.000000), (0.0, -1.0, 1.05, 1.000000), (0.5, 1.0, 1.00, -1.486739),
             (1.0, 1.0, 1.00, -1.402203), (2.0, 1.0, 1.00, -0.049483), (-3.0, -1.0, 1.05, 0.039196)]
    for d, a, tau, expected in table:
        g = sapo_loss([[olp + d]], [[olp]], [a], [[1]], tau_pos=tau, tau_neg=tau).grad[0, 0]
        if abs(g - expected) > 5e-7:
            return False, f"gradient at log-ratio {d}: {g:.6f}, expected {expected:.6f}"
    return True, "6 worked gradients -A f'(r) r (SPEC.md section 2) to 6 decimals"


def _naive_agreement():
    rng = np.random.default_rng(20251120)
    n = 2000
    olp = -rng.exponential(2.0, n)
    lp = olp + rng.normal(0, 0.6, n)
    adv = rng.normal(0, 1, n)
    res = sapo_loss(lp[:, None], olp[:, None], adv, np.ones((n, 1)), tau_pos=1.0, tau_neg=1.05,
                    loss_agg_mode="seq-mean-token-sum")
    worst = 0.0
    for i in range(n):
        loss_i, grad_i = _naive_token(lp[i], olp[i], adv[i], 1.0, 1.05)
        worst = max(worst, abs(res.token_loss[i, 0] - loss_i) / abs(loss_i),
                    abs(res.grad[i, 0] * n - grad_i) / max(abs(grad_i), 1e-300))
    return worst < 1e-12, f"{n} random tokens agree with naive float64 to {worst:.1e} relative"


def _limits():
    lp = np.array([[np.inf, 1000.0, -1000.0, -np.inf]])
    olp = np.zeros_like(lp)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = sapo_loss(lp, olp, [1.0], np.ones_like(lp), tau_pos=2.0, tau_neg=2.0,
                        loss_agg_mode="seq-mean-token-sum")
    ok = (res.gate[0, 0] == res.gate[0, 1] == 2.0 and res.grad[0, 0] == res.grad[0, 1] == res.grad[0, 3] == 0
          and abs(res.gate[0, 3] - 2.0 / (1 + math.exp(2.0))) < 1e-15 and np.isfinite(res.loss))
    return ok, "log-ratio +-inf and +-1000: exact limits, no NaN, no warning"


def _all_masked():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        results = [sapo_loss([[np.nan, 1.0]], [[0.0, np.inf]], [1.0], [[0, 0]], loss_agg_mode=m)
                   for m in ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")]
    ok = all(r.loss == 0.0 and not r.grad.any() for r in results)
    return ok, "all-masked batch (NaN/inf padding): loss 0, gradient 0 in every mode"


def _shards():
    rng = np.random.default_rng(7)
    lp, olp = rng.normal(0, 0.3, (2, 8, 16))
    mask = rng.random((8, 16)) < 0.7
    mask[3] = False
    adv = rng.normal(size=8)
    full = sapo_loss(lp, olp, adv, mask, loss_agg_mode="seq-mean-token-mean")
    parts = [sapo_loss(lp[s], olp[s], adv[s], mask[s], loss_agg_mode="seq-mean-token-mean",
                       global_seq_count=full.denominators.sequences) for s in (slice(0, 3), slice(3, 8))]
    grads_equal = np.array_equal(np.concatenate([p.grad for p in parts]), full.grad)
    err = abs(sum(p.loss for p in parts) - full.loss)
    return grads_equal and err <= 1e-15, "two shards with a global sequence count sum to the full batch"


_CHECKS = (
    ("closed forms at r = 1", _closed_forms),
    ("worked values", _design_table),
    ("naive agreement", _naive_agreement),
    ("limits", _limits),
    ("all-masked batch", _all_masked),
    ("shard invariance", _shards),
)


def run_selfcheck() -> list[Check]:
    out = []
    for name, fn in _CHECKS:
        try:
            passed, detail = fn()
        except Exception as exc:  # a self-check reports, it does not crash
            passed, detail = False, f"raised {type(exc).__name__}: {exc}"
        out.append(Check(name, bool(passed), detail))
    return out


def main() -> int:
    from ._version import ORACLE_VERSION, __version__

    start = time.perf_counter()
    checks = run_selfcheck()
    width = max(len(c.name) for c in checks)
    print(f"sapo_ref {__version__} (oracle {ORACLE_VERSION}) self-check")
    for c in checks:
        print(f"  {'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}")
    failed = sum(not c.passed for c in checks)
    print(f"{len(checks) - failed}/{len(checks)} checks passed in {time.perf_counter() - start:.2f} s")
    return 1 if failed else 0
