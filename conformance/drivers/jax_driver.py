"""JAX driver: jax.value_and_grad on the kernel, or an explicit gradient."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from ..types import CandidateError
from ._base import Driver


def _jax():
    import jax

    return jax


#: the options passed to a jitted kernel as traced values: a new temperature or global count reuses the compilation
_TRACED = ("tau_pos", "tau_neg", "global_token_count", "global_seq_count")


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

    def __init__(self):
        #: (id(candidate), options without temperatures) -> (candidate, jitted value-and-grad)
        self._jitted: dict = {}
        #: the keys whose kernel could not be traced: value-and-grad eagerly, as written
        self._eager: set = set()

    def _value_and_grad(self, prepared, options):
        """d loss / d logprob by ``jax.value_and_grad``, under ``jax.jit``:
        one compilation per shape serves every later call (eager JAX
        compiles each primitive per new shape, ~0.5 s a batch).  The
        temperatures are traced arguments (weakly typed, as the Python floats
        a kernel is documented to receive), so random temperatures do not
        recompile, nor do new global counts; the mode is static.  A kernel that
        cannot be traced -- Python control flow on a temperature or an
        input value -- runs eagerly, exactly as before."""
        jax = _jax()
        cand, t = prepared.candidate, prepared.tensors

        def f(lp, tensors, opts):
            loss, _, metrics = self.split_output(prepared, self.call_kernel(prepared, opts, {**tensors, "logprob": lp}))
            return loss, metrics

        # the key: what stays static (the mode; whether global counts are given, not their values)
        values = {k: getattr(options, k) for k in _TRACED if getattr(options, k) is not None}
        static = replace(options, **{k: 1 for k in values})
        key = (id(cand), static)
        if key not in self._eager:
            entry = self._jitted.get(key)
            if entry is None or entry[0] is not cand:
                def traced(lp, tensors, values):
                    return jax.value_and_grad(f, has_aux=True)(lp, tensors, replace(static, **values))

                entry = self._jitted[key] = (cand, jax.jit(traced))
            try:
                return entry[1](t["logprob"], t, values)
            except Exception:  # not traceable (or it raises anyway: eagerly, it raises as itself)
                self._eager.add(key)
        return jax.value_and_grad(f, has_aux=True)(t["logprob"], t, options)

    def run(self, prepared, options):
        jax = _jax()
        cand = prepared.candidate
        if cand.info.provides_grad and cand.grad_mode == "autograd":
            (loss, metrics), grad = self._value_and_grad(prepared, options)
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
