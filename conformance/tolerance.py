"""The tolerance policy: how close a candidate must be to the oracle.

One module, one place for every number (SPEC.md/README "Tolerance policy"
gives the reasons).  References are the float64 oracle evaluated on the
candidate's own rounded inputs, so input quantisation (bf16 log-probs move
the ratio by up to 4.5 %) is never blamed on the kernel.

* Elementwise outputs (gradient, gate):
      |x - ref| <= k * eps_out * (|ref| + max|ref|)
  eps_out is the machine epsilon of the output's dtype; the max|ref| term
  makes the bound absolute at the array's scale, so elements many orders
  smaller than the largest (far tails of the gate) are not held to a
  relative accuracy no float format has.
* Scalar reductions (loss, metrics):
      |L - ref| <= k_red * eps_acc * sum|terms| + eps_out * |ref|
  with k_red = K_RED_PER_BIT * ceil(log2(n + 1)), eps_acc the epsilon of the
  accumulation precision (float32 for every input dtype but float64), and
  sum|terms| the sum of the magnitudes of the weighted token losses: with
  group-normalised advantages |L| is much smaller than that sum, so |L| is
  the wrong scale.
* Non-finite values: where the reference is NaN (undefined) the candidate
  must be non-finite; where it is +-inf the candidate must be the same inf;
  where it is finite the candidate must be finite.

Every comparison reports its measured error in units of the bound's scale
(eps_out * (|ref| + max|ref|), or eps_acc * sum|terms| + ...), pass or fail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: machine epsilon of each dtype
EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
#: elementwise multiplier k by output dtype
K_ELEMENTWISE = {"float64": 8.0, "float32": 8.0, "float16": 4.0, "bfloat16": 4.0}
#: scalar reductions: k_red = K_RED_PER_BIT * ceil(log2(n + 1))
K_RED_PER_BIT = 8.0


def accumulation_dtype(input_dtype: str) -> str:
    """Low-precision candidates must accumulate in float32; float64 in float64."""
    return "float64" if input_dtype == "float64" else "float32"


def eps_of(dtype: str | None) -> float:
    return EPS.get(dtype or "float32", EPS["float32"])


@dataclass(frozen=True)
class Comparison:
    """One comparison: passed, and the measured error in units of its scale."""

    quantity: str
    passed: bool
    error: float  # max error / scale (the bound is error <= k)
    k: float
    detail: str = ""
    worst_index: tuple | None = None

    def describe(self) -> str:
        state = "ok" if self.passed else "FAIL"
        return f"{self.quantity}: {state}, error {self.error:.3g} (bound {self.k:g}){' - ' + self.detail if self.detail else ''}"


def _nonfinite_mismatch(got: np.ndarray, ref: np.ndarray):
    """Positions where the non-finite pattern differs, per the policy."""
    ref_nan = np.isnan(ref)
    ref_inf = np.isinf(ref)
    bad = np.zeros(ref.shape, dtype=bool)
    bad |= ref_nan & np.isfinite(got)
    bad |= ref_inf & (got != ref)
    bad |= np.isfinite(ref) & ~np.isfinite(got)
    return bad


def compare_elementwise(quantity: str, got, ref, out_dtype: str, *, where=None) -> Comparison:
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return Comparison(quantity, False, math.inf, 0.0, f"shape {got.shape}, expected {ref.shape}")
    sel = np.ones(ref.shape, dtype=bool) if where is None else np.asarray(where, dtype=bool)
    k = K_ELEMENTWISE.get(out_dtype, 8.0)
    eps = eps_of(out_dtype)
    bad = _nonfinite_mismatch(got, ref) & sel
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return Comparison(quantity, False, math.inf, k,
                          f"at {idx}: got {got[idx]!r}, expected {ref[idx]!r} (non-finite pattern differs)", idx)
    fin = sel & np.isfinite(ref)
    if not fin.any():
        return Comparison(quantity, True, 0.0, k)
    scale_max = float(np.max(np.abs(ref[fin])))
    scale = eps * (np.abs(ref) + scale_max)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(fin, np.abs(got - ref), 0.0)
        units = np.where(fin & (scale > 0), err / np.where(scale > 0, scale, 1.0), np.where(err > 0, np.inf, 0.0))
    worst = float(np.max(units))
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(units)), units.shape)) if units.size else None
    passed = worst <= k
    detail = "" if passed else f"at {idx}: got {got[idx]!r}, expected {ref[idx]!r}"
    return Comparison(quantity, passed, worst, k, detail, idx)


def compare_scalar(quantity: str, got: float, ref: float, *, terms_abs_sum: float, n_terms: int,
                   out_dtype: str, acc_dtype: str) -> Comparison:
    k = K_RED_PER_BIT * max(1, math.ceil(math.log2(n_terms + 1)))
    got = float(got)
    ref = float(ref)
    if not (math.isfinite(ref) and math.isfinite(got)):
        ok = not bool(_nonfinite_mismatch(np.array(got), np.array(ref)))
        return Comparison(quantity, ok, 0.0 if ok else math.inf, k,
                          "" if ok else f"got {got!r}, expected {ref!r} (non-finite pattern differs)")
    scale = eps_of(acc_dtype) * terms_abs_sum + eps_of(out_dtype) * abs(ref) / k
    err = abs(got - ref)
    units = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    passed = units <= k
    return Comparison(quantity, passed, units, k, "" if passed else f"got {got!r}, expected {ref!r}")
