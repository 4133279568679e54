"""The floating dtypes the project knows, and rounding to them."""

from __future__ import annotations

import numpy as np

#: every floating dtype a candidate may compute in (and the oracle may round tau to)
DTYPES = ("float64", "float32", "float16", "bfloat16")


def round_to(x, dtype: str) -> np.ndarray:
    """Values of ``dtype`` nearest to ``x``, as float64: through float32
    (as every framework casts), bfloat16 by round-to-nearest-even on the
    float32 bits, so no extra package is needed.  Overflow gives +-inf."""
    x = np.asarray(x, dtype=np.float64)
    if dtype == "float64":
        return x.copy()
    with np.errstate(over="ignore", invalid="ignore"):
        if dtype in ("float32", "float16"):
            return x.astype(dtype).astype(np.float64)
        f = x.astype(np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    finite = np.isfinite(f)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    out = np.where(finite, rounded, bits).astype(np.uint32).view(np.float32).astype(np.float64)
    return np.where(np.isnan(f), np.nan, out)
