"""NumPy driver: kernels return their gradient explicitly (no autograd)."""

from __future__ import annotations

import time

import numpy as np

from ..types import CandidateError
from ._base import Driver


def _np_dtype(dtype: str):
    if dtype == "bool":
        return np.bool_
    if dtype == "bfloat16":
        try:
            import ml_dtypes
        except ImportError:  # pragma: no cover - depends on the environment
            raise CandidateError("bfloat16 in NumPy needs the ml_dtypes package") from None
        return ml_dtypes.bfloat16
    return np.dtype(dtype)


class NumpyDriver(Driver):
    framework = "numpy"

    def device_unavailable(self, device):
        return None if device == "cpu" else "NumPy runs on the CPU only"

    def to_framework(self, array, dtype, device, *, requires_grad=False):
        return np.ascontiguousarray(np.asarray(array).astype(_np_dtype(dtype)))

    def to_numpy(self, value):
        return np.asarray(value).astype(np.float64)

    def dtype_name(self, value):
        return np.asarray(value).dtype.name

    def run(self, prepared, options):
        return self.split_output(prepared, self.call_kernel(prepared, options))

    def unpack(self, prepared, raw):
        return raw

    def make_copy(self, nbytes, device, sets):
        n = max(nbytes // 4, 1)
        src = [np.full(n, k + 1.0, dtype=np.float32) for k in range(sets)]
        dst = [np.zeros(n, dtype=np.float32) for _ in range(sets)]

        def copy(i):
            k = i % sets
            start = time.perf_counter()
            np.copyto(dst[k], src[k])
            return time.perf_counter() - start

        return copy
