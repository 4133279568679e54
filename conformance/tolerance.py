"""The tolerance policy: how close a candidate must be to the oracle.

One module, one place for every number; README "Tolerance policy" gives the
reasons and the measurements behind them.  References are the float64 oracle
evaluated on the candidate's own rounded inputs, so input quantisation (bf16
log-probs move the ratio by up to 4.5 %) is never blamed on the kernel.

Elementwise outputs (gradient, gate), for each element i:

    |x_i - ref_i| <= k * (eps_out * (|ref_i| + max|ref|) + eps_c * cond_i * |ref_i|)

* eps_out: machine epsilon of the output's dtype (its rounding);
* max|ref|: makes the bound absolute at the array's scale, so elements many
  orders below the largest (the gate's far tails) are not held to a relative
  accuracy no float format has;
* eps_c * cond_i: what any correct kernel computing in precision eps_c (float32
  for every input dtype but float64) loses to the conditioning of SAPO itself.
  The log-ratio is formed and exponentiated in that precision, which perturbs
  it by about eps_c * (1 + |log-ratio|); the gradient's sensitivity to the
  log-ratio is |d log g / d log-ratio| = |1 + (1 - 2 sigmoid(z)) tau r|, which
  reaches 100s where the gate is steep.  Forming z = tau (r - 1) rounds z by
  about eps_c |z| more, which the gradient passes on as |1 - 2 sigmoid(z)| |z|
  (the gate as |1 - sigmoid(z)| |z|): the whole of it far below the knee,
  where tau r vanishes.  cond_i is the sum of the two.

Scalar reductions (loss, metrics), over n terms t_i:

    |L - ref| <= k_red * eps_acc * sum|t_i| + K_ELEMENTWISE * eps_acc * sum|t_i| cond_i + eps_out * |ref|

with k_red = K_RED_PER_BIT * ceil(log2(n + 1)) (pairwise or tree summation)
and eps_acc the accumulation precision (float32 for every input dtype but
float64).  The scale is sum|t_i|, not |L|: with group-normalised advantages
|L| is much smaller than the sum of the magnitudes of its terms.

Non-finite values: where the reference is NaN (undefined) the candidate must
be non-finite; where it is +-inf -- or beyond the largest finite value of the
output's dtype -- the candidate must be that same inf; elsewhere finite.  A
sum whose partial sums exceed the accumulation dtype's range may be inf.
Below the smallest normal number of the compute precision (or the subnormal
spacing of the output dtype, if larger) errors are absolute: subnormals lose
bits and GPUs flush them to zero.

Every comparison reports its measured error in units of its scale: pass
means error <= k.

Categories.  A failing comparison is graded into exactly one category
(SPEC.md §10), by rules that read only its numbers:

* ``non-finite``: the NaN/inf pattern differs from the reference's;
* ``precision``: finite, outside the strict bound above, but within the
  practical tolerance below -- a last-bits difference no training run sees;
* ``semantics``: finite and outside the practical tolerance: the kernel
  computes a different function;
* ``contract``: a yes/no requirement of the calling contract failed (inputs
  modified, gradient dtype, a non-zero gradient at a masked position,
  non-determinism where determinism is claimed, the candidate raised).

The practical tolerance is ``torch.testing.assert_close``'s per-dtype
(rtol, atol) (PRACTICAL below), with atol made scale-free: it multiplies
the scale of the batch, never 1.  For an element of an elementwise output

    |x_i - ref_i| <= max(strict bound_i, rtol * |ref_i| + atol * S_i)

with S_i the larger of max|ref| (the batch's largest value) and the
element's own ``practical_scale`` when the caller gives one.  For the
gradient that is |c_t A_t w_t| * max(1, r_t): the token's gradient with the
gate's slope factor f'(r) r replaced by its value at the knee (1) and kept
at r beyond it.  A kernel that rounds sigmoid(z) to float32 -- plain
autograd through torch.sigmoid -- has an absolute error of about eps32 in
sigmoid and so about 4 eps32 |c A w| r in the gradient; such errors sit far
inside atol * S, while a detached gate, a missing 4/tau or any other change
of formula is off by O(|c A w|) on every token near the knee.  For a scalar

    |L - ref| <= max(strict bound, rtol * |ref| + atol * sum_i |t_i|)

with sum_i |t_i| the same magnitude of the terms the strict bound uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

#: machine epsilon of each dtype
EPS = {"float64": 2.0**-52, "float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
#: largest finite value of each dtype
FMAX = {"float64": float(np.finfo(np.float64).max), "float32": float(np.finfo(np.float32).max),
        "float16": 65504.0, "bfloat16": 3.3895313892515355e38}
#: smallest positive normal number: below it, precision is not guaranteed
#: (subnormals lose bits, and GPUs often flush them to zero)
MIN_NORMAL = {"float64": 2.0**-1022, "float32": 2.0**-126, "float16": 2.0**-14, "bfloat16": 2.0**-126}
#: spacing of the subnormals: the rounding of a subnormal output
SUBNORMAL_SPACING = {"float64": 2.0**-1074, "float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}


def tiny_floor(out_dtype: str, compute_dtype: str) -> float:
    """The absolute error floor: an output's subnormal rounding, or the
    compute precision's smallest normal, whichever is larger."""
    return max(SUBNORMAL_SPACING.get(out_dtype, 0.0), MIN_NORMAL.get(compute_dtype, 0.0))
#: torch.testing.assert_close's default (rtol, atol) per dtype: the practical tolerance
PRACTICAL = {"float64": (1e-7, 1e-7), "float32": (1.3e-6, 1e-5), "float16": (1e-3, 1e-5),
             "bfloat16": (1.6e-2, 1e-5)}


def practical_tolerance(out_dtype: str, input_dtype: str | None = None) -> tuple[float, float]:
    """The practical (rtol, atol): the looser of the output's dtype and the
    inputs' -- a float32 loss computed from bfloat16 inputs is judged as
    torch.testing judges bfloat16 results, since the inputs already carry
    that precision (a kernel computing in bfloat16 is a precision finding,
    not a change of formula)."""
    a = PRACTICAL.get(out_dtype, PRACTICAL["float32"])
    b = PRACTICAL.get(input_dtype or out_dtype, a)
    return max(a[0], b[0]), max(a[1], b[1])


#: the categories of a failing comparison, in the order reports show them
CATEGORIES = ("semantics", "non-finite", "precision", "contract")
#: a record keeps the most severe category it saw: this order, most severe first
SEVERITY = ("semantics", "non-finite", "contract", "precision")
#: elementwise multiplier k by output dtype
K_ELEMENTWISE = {"float64": 8.0, "float32": 8.0, "float16": 4.0, "bfloat16": 4.0}
#: scalar reductions: k_red = K_RED_PER_BIT * ceil(log2(n + 1))
K_RED_PER_BIT = 8.0


def accumulation_dtype(input_dtype: str) -> str:
    """Low-precision candidates must compute and accumulate in float32."""
    return "float64" if input_dtype == "float64" else "float32"


def eps_of(dtype: str | None) -> float:
    return EPS.get(dtype or "float32", EPS["float32"])


def reduction_k(n_terms: int) -> float:
    return K_RED_PER_BIT * max(1, math.ceil(math.log2(n_terms + 1)))


def more_severe(a: str | None, b: str | None) -> str | None:
    """The more severe of two categories (None: no failure)."""
    if a is None or b is None:
        return a or b
    return a if SEVERITY.index(a) <= SEVERITY.index(b) else b


@dataclass(frozen=True)
class Comparison:
    """One comparison: passed, and the measured error in units of its scale.
    A failing one has a ``category``, and ``practical_error``: its error in
    units of the practical tolerance (<= 1: within it)."""

    quantity: str
    passed: bool
    error: float  # max error / scale (pass: error <= k)
    k: float
    detail: str = ""
    worst_index: tuple | None = None
    #: elementwise comparisons: each element's error in units (for plots)
    per_element: np.ndarray | None = field(default=None, compare=False, repr=False)
    category: str | None = None
    practical_error: float | None = None

    def halved(self) -> Comparison:
        """Two results that are each within the bound of the exact value may
        differ by twice the bound: the comparison of such a pair."""
        error = self.error / 2
        passed = error <= self.k
        if passed:
            return replace(self, error=error, passed=True, category=None, practical_error=None, detail="")
        practical = None if self.practical_error is None else self.practical_error / 2
        category = self.category
        if category in ("precision", "semantics") and practical is not None:
            category = _graded(practical)
        return replace(self, error=error, passed=False, practical_error=practical, category=category)

    def describe(self) -> str:
        state = "ok" if self.passed else "FAIL"
        return f"{self.quantity}: {state}, error {self.error:.3g} (bound {self.k:g}){' - ' + self.detail if self.detail else ''}"


def exact(quantity: str, ok: bool, detail: str, category: str = "contract") -> Comparison:
    """A yes/no comparison (bound 0: exact)."""
    if ok:
        return Comparison(quantity, True, 0.0, 0.0)
    return Comparison(quantity, False, math.inf, 0.0, detail, category=category, practical_error=math.inf)


def _graded(practical_error: float) -> str:
    return "precision" if practical_error <= 1.0 else "semantics"


def _expected(ref: np.ndarray, dtype: str) -> np.ndarray:
    """The reference as the dtype can hold it: beyond its range, inf."""
    fmax = FMAX.get(dtype, FMAX["float64"])
    with np.errstate(invalid="ignore"):
        return np.where(np.abs(ref) > fmax, np.copysign(np.inf, ref), ref)


def _nonfinite_mismatch(got: np.ndarray, ref: np.ndarray) -> np.ndarray:
    bad = np.isnan(ref) & np.isfinite(got)
    bad |= np.isinf(ref) & (got != ref)
    bad |= np.isfinite(ref) & ~np.isfinite(got)
    return bad


def compare_elementwise(quantity: str, got, ref, out_dtype: str, *, where=None, cond=None,
                        compute_dtype: str | None = None, practical_scale=None, abs_bound=None,
                        input_dtype: str | None = None) -> Comparison:
    """``practical_scale``: a per-element scale for the practical tolerance's
    atol, beyond the batch's largest |ref| (module docstring).  ``abs_bound``:
    a per-element error the caller derived for the candidate's own
    intermediate roundings (e.g. a softmax through a fused kernel's
    vocabulary, conformance.fused), added to the scale.  ``input_dtype``: the
    inputs' dtype, for the practical tolerance (:func:`practical_tolerance`)."""
    got = np.asarray(got, dtype=np.float64)
    ref = _expected(np.asarray(ref, dtype=np.float64), out_dtype)
    if got.shape != ref.shape:
        return Comparison(quantity, False, math.inf, 0.0, f"shape {got.shape}, expected {ref.shape}")
    sel = np.ones(ref.shape, dtype=bool) if where is None else np.asarray(where, dtype=bool)
    k = K_ELEMENTWISE.get(out_dtype, 8.0)
    bad = _nonfinite_mismatch(got, ref) & sel
    if bad.any():
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        return Comparison(quantity, False, math.inf, k,
                          f"at {idx}: got {float(got[idx])!r}, expected {float(ref[idx])!r} (non-finite pattern differs)",
                          idx, category="non-finite", practical_error=math.inf)
    fin = sel & np.isfinite(ref)
    if not fin.any():
        return Comparison(quantity, True, 0.0, k)
    compute_dtype = compute_dtype or accumulation_dtype(out_dtype)
    absref = np.where(fin, np.abs(ref), 0.0)
    scale = eps_of(out_dtype) * (absref + float(absref.max())) + tiny_floor(out_dtype, compute_dtype)
    if cond is not None:
        c = np.where(fin & np.isfinite(cond), cond, 0.0)
        scale = scale + eps_of(compute_dtype) * c * absref
    if abs_bound is not None:
        ab = np.asarray(abs_bound, dtype=np.float64)
        scale = scale + np.where(fin & np.isfinite(ab), ab, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(fin, np.abs(got - ref), 0.0)
        units = np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), np.where(err > 0, np.inf, 0.0))
    worst = float(np.max(units))
    idx = tuple(int(i) for i in np.unravel_index(int(np.argmax(units)), units.shape))
    passed = worst <= k
    if passed:
        return Comparison(quantity, True, worst, k, "", idx, per_element=units)
    rtol, atol = practical_tolerance(out_dtype, input_dtype)
    batch_scale = np.full(ref.shape, float(absref.max()))
    if practical_scale is not None:
        ps = np.asarray(practical_scale, dtype=np.float64)
        batch_scale = np.maximum(batch_scale, np.where(fin & np.isfinite(ps), ps, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        allowed = np.maximum(k * scale, rtol * absref + atol * batch_scale)
        practical = np.where(fin, np.where(allowed > 0, err / np.where(allowed > 0, allowed, 1.0),
                                           np.where(err > 0, np.inf, 0.0)), 0.0)
    p_worst = float(np.max(practical))
    detail = f"at {idx}: got {float(got[idx])!r}, expected {float(ref[idx])!r}"
    return Comparison(quantity, False, worst, k, detail, idx, per_element=units, category=_graded(p_worst),
                      practical_error=p_worst)


def compare_scalar(quantity: str, got: float, ref: float, *, terms_abs_sum: float, n_terms: int,
                   out_dtype: str, acc_dtype: str, cond_abs_sum: float = 0.0,
                   partial_sums_max: float = 0.0, input_dtype: str | None = None) -> Comparison:
    """``partial_sums_max``: the largest magnitude a partial sum can reach.
    An inf of the right sign passes where the value is beyond the largest
    finite value of the output or the accumulation dtype, or a partial sum
    beyond the accumulation dtype's; a finite result is compared with the exact
    reference whatever its size (a float64 metric may exceed float32's
    range, a float32 result modelled as float16 accumulation float16's)."""
    k = reduction_k(n_terms)
    got = float(got)
    ref = float(ref)
    acc_max = FMAX.get(acc_dtype, math.inf)
    overflows = abs(ref) > min(acc_max, FMAX.get(out_dtype, math.inf)) or partial_sums_max > acc_max
    if math.isinf(got) and math.isfinite(ref) and overflows and math.copysign(1.0, got) == math.copysign(1.0, ref):
        return Comparison(quantity, True, 0.0, k, "")
    if not (math.isfinite(ref) and math.isfinite(got)):
        if not bool(_nonfinite_mismatch(np.array(got), np.array(ref))):
            return Comparison(quantity, True, 0.0, k)
        return Comparison(quantity, False, math.inf, k, f"got {got!r}, expected {ref!r} (non-finite pattern differs)",
                          category="non-finite", practical_error=math.inf)
    eps_acc = eps_of(acc_dtype)
    k_cond = K_ELEMENTWISE.get(acc_dtype, 8.0)
    scale = (eps_acc * terms_abs_sum + eps_acc * cond_abs_sum * k_cond / k + eps_of(out_dtype) * abs(ref) / k
             + max(n_terms, 1) * tiny_floor(out_dtype, acc_dtype) / k)  # each term may flush (FTZ)
    err = abs(got - ref)
    units = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    if units <= k:
        return Comparison(quantity, True, units, k)
    rtol, atol = practical_tolerance(out_dtype, input_dtype)
    allowed = max(k * scale, rtol * abs(ref) + atol * terms_abs_sum)
    practical = err / allowed if allowed > 0 else math.inf
    return Comparison(quantity, False, units, k, f"got {got!r}, expected {ref!r}", category=_graded(practical),
                      practical_error=practical)
