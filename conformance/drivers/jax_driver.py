"""JAX driver: jax.value_and_grad on the kernel, or an explicit gradient."""

from __future__ import annotations

import time

import numpy as np

from ..types import CandidateError
from ._base import Driver


def _jax():
    import jax

    return jax


class JaxDriver(Driver):
    framework = "jax"

    def device_unavailable(self, device):
        jax = _jax()
        platform = {"cpu": "cpu", "cuda": "gpu"}.get(device)
        if platform is None:
            return f"unknown device {device!r}"
        try:
            jax.devices(platform)
        except RuntimeError:
            return "no CUDA device" if device == "cuda" else "no CPU backend"
        return None

    def _device(self, device):
        jax = _jax()
        return jax.devices({"cpu": "cpu", "cuda": "gpu"}[device])[0]

    def to_framework(self, array, dtype, device, *, requires_grad=False):
        jax = _jax()
        import jax.numpy as jnp

        if dtype == "bool":
            host = np.asarray(array, dtype=bool)
        elif dtype == "bfloat16":
            host = np.asarray(array).astype(jnp.bfloat16)
        elif dtype == "float64":
            raise CandidateError("float64 in JAX needs jax_enable_x64; the JAX driver does not switch it on")
        else:
            host = np.asarray(array).astype(dtype)
        return jax.device_put(host, self._device(device))

    def to_numpy(self, value):
        return np.asarray(value).astype(np.float64)

    def dtype_name(self, value):
        return np.asarray(value).dtype.name

    def snapshot(self, tensors):
        return None  # JAX arrays are immutable

    def run(self, prepared, options):
        jax = _jax()
        cand = prepared.candidate
        t = prepared.tensors
        if cand.info.provides_grad and cand.grad_mode == "autograd":
            def f(lp):
                loss, _, metrics = self.split_output(prepared, self.call_kernel(prepared, options, {**t, "logprob": lp}))
                return loss, metrics

            (loss, metrics), grad = jax.value_and_grad(f, has_aux=True)(t["logprob"])
        else:
            loss, grad, metrics = self.split_output(prepared, self.call_kernel(prepared, options))
        jax.block_until_ready((loss, grad))
        return loss, grad, metrics

    def unpack(self, prepared, raw):
        return raw

    def make_copy(self, nbytes, device, sets):
        jax = _jax()
        import jax.numpy as jnp

        n = max(nbytes // 4, 1)
        dev = self._device(device)
        src = [jax.device_put(np.full(n, k + 1.0, dtype=np.float32), dev) for k in range(sets)]
        # jnp.copy under jit: XLA must materialise a new buffer (the input is
        # not donated), so this is one read and one write of every byte
        fn = jax.jit(jnp.copy)
        jax.block_until_ready(fn(src[0]))

        def copy(i):
            start = time.perf_counter()
            jax.block_until_ready(fn(src[i % sets]))
            return time.perf_counter() - start

        return copy
