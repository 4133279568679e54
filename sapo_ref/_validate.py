"""Input validation: every error names the argument and the problem.

Nothing here modifies what the caller passed: arrays are only read, and
converted to float64 by ``astype`` (a copy unless they already are float64).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: The temperature range the oracle accepts (SPEC.md, "Validation").  Outside
#: it the gate is numerically degenerate (tau < 1e-6: f = 4/tau overflows the
#: scales of real losses; tau > 1e6: a step function), and the oracle's
#: accuracy guarantee is stated for this range.
TAU_RANGE = (1e-6, 1e6)


def _dtype_ok(dtype: np.dtype) -> bool:
    if dtype.kind == "f":
        return dtype.itemsize <= 8
    # ml_dtypes' bfloat16 (used by JAX) has kind "V"; it converts exactly.
    return dtype.name == "bfloat16"


def float_array(value, name: str) -> np.ndarray:
    """``value`` as a float64 ndarray; TypeError/ValueError naming ``name``."""
    try:
        arr = np.asarray(value)
    except Exception as exc:  # e.g. a tensor that requires grad
        raise TypeError(f"{name} could not be converted to a NumPy array: {exc}") from None
    if not _dtype_ok(arr.dtype):
        if arr.dtype.kind == "f":
            raise TypeError(
                f"{name} has dtype {arr.dtype}; the oracle computes in float64 and would round it "
                "(pass float16, bfloat16, float32 or float64)"
            )
        raise TypeError(f"{name} must be a floating-point array, got dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must be an array, got a 0-d value")
    # C order: the evaluators index arrays through flat views.
    return np.ascontiguousarray(arr, dtype=np.float64)


def dtype_name(value) -> str:
    """The dtype name of an array-like (for 'the advantages' dtype')."""
    return np.asarray(value).dtype.name


def matrix(value, name: str) -> np.ndarray:
    arr = float_array(value, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (batch, tokens), got shape {arr.shape}")
    return arr


def same_shape(arr: np.ndarray, name: str, shape: tuple, ref: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape} but {ref} has shape {shape}; they must match")


def advantages_for(value, shape: tuple, ref: str, name: str = "advantages") -> np.ndarray:
    """Advantages as an array that broadcasts against ``shape`` along rows.

    Accepted: the full shape, or, when ``shape`` is 2-D (B, T), (B,) or (B, 1)
    -- one advantage per sequence.  (B,) is reshaped to (B, 1) explicitly:
    NumPy's own broadcasting would align it with the token axis.
    """
    arr = float_array(value, name)
    if arr.shape == shape:
        return arr
    if len(shape) == 2 and arr.shape in ((shape[0],), (shape[0], 1)):
        return arr.reshape(shape[0], 1)
    valid = [shape] + ([(shape[0],), (shape[0], 1)] if len(shape) == 2 else [])
    raise ValueError(
        f"{name} has shape {arr.shape}; with {ref} of shape {shape} it must have shape "
        + " or ".join(str(s) for s in valid)
    )


def mask_array(value, shape: tuple, name: str = "mask") -> np.ndarray:
    """A boolean copy/view of a 0/1 mask of the given shape."""
    try:
        arr = np.asarray(value)
    except Exception as exc:
        raise TypeError(f"{name} could not be converted to a NumPy array: {exc}") from None
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape} but logprob has shape {shape}; they must match")
    if arr.dtype == bool:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind not in "iuf" and arr.dtype.name != "bfloat16":
        raise TypeError(f"{name} must be boolean or numeric 0/1, got dtype {arr.dtype}")
    ok = (arr == 0) | (arr == 1)
    if not ok.all():
        bad = arr[~ok].ravel()[0]
        raise ValueError(f"{name} must contain only 0 and 1 (or be boolean); found {bad!r}")
    return np.ascontiguousarray(arr != 0)


def temperature(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    lo, hi = TAU_RANGE
    if not lo <= v <= hi:
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {value!r}")
    return v


def nonneg_float(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return v


def positive_float(value, name: str, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if math.isnan(v) or v <= 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be {'> 0' if allow_inf else 'finite and > 0'}, got {value!r}")
    return v


def count(value, name: str, minimum: int) -> int:
    """A non-negative integer count that must be at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if v < minimum:
        raise ValueError(
            f"{name}={v} is smaller than this batch's own count ({minimum}); "
            "a global count covers the whole batch, so it cannot be smaller than any shard's"
        )
    return v


def choice(value, name: str, options) -> str:
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"unknown {name} {value!r}; valid values: {', '.join(options)}")
    return value
