"""PyTorch driver: autograd (loss.backward()) or an explicit gradient; CPU and CUDA."""

from __future__ import annotations

import time

import numpy as np

from ..types import CandidateError
from ._base import Driver


def _torch():
    import torch

    return torch


class TorchDriver(Driver):
    framework = "torch"

    def device_unavailable(self, device):
        torch = _torch()
        if device == "cpu":
            return None
        if device == "cuda":
            return None if torch.cuda.is_available() else "no CUDA device"
        return f"unknown device {device!r}"

    def _dtype(self, dtype):
        torch = _torch()
        return torch.bool if dtype == "bool" else getattr(torch, dtype)

    def to_framework(self, array, dtype, device, *, requires_grad=False):
        torch = _torch()
        t = torch.tensor(np.asarray(array)).to(device=device, dtype=self._dtype(dtype)).contiguous()
        if requires_grad:
            t.requires_grad_(True)
        return t

    def to_numpy(self, value):
        torch = _torch()
        if isinstance(value, torch.Tensor):
            return value.detach().to("cpu", torch.float64).numpy()
        return np.asarray(value, dtype=np.float64)

    def dtype_name(self, value):
        torch = _torch()
        if isinstance(value, torch.Tensor):
            return str(value.dtype).replace("torch.", "")
        return np.asarray(value).dtype.name

    def raw_bytes(self, value):
        t = value.detach().to("cpu")
        if t.dtype == _torch().bfloat16:  # NumPy has no bfloat16: same-size integer view
            t = t.view(_torch().int16)
        return t.numpy().tobytes()

    def _sync(self, device):
        if device == "cuda":
            _torch().cuda.synchronize()

    def run(self, prepared, options):
        raw = self._launch(prepared, options)
        self._sync(prepared.device)
        return raw

    def _launch(self, prepared, options):
        """Forward and backward, possibly still running on the GPU."""
        torch = _torch()
        cand = prepared.candidate
        lp = prepared.tensors["logprob"]
        if lp.grad is not None:
            lp.grad = None
        loss, grad, metrics = self.split_output(prepared, self.call_kernel(prepared, options))
        if cand.info.provides_grad and cand.grad_mode == "autograd":
            if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
                raise CandidateError(f"candidate {cand.name!r}: the loss is not differentiable (no grad_fn)")
            loss.backward()
            grad = lp.grad
            if grad is None:
                grad = torch.zeros_like(lp)  # the loss does not depend on logprob
        return loss, grad, metrics

    def unpack(self, prepared, raw):
        return raw

    def timer_name(self, device):
        return "CUDA events" if device == "cuda" else super().timer_name(device)

    def _cuda_timed(self, fn):
        torch = _torch()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = fn()
        end.record()
        end.synchronize()
        return out, start.elapsed_time(end) / 1e3

    def timed_run(self, prepared, options):
        if prepared.device != "cuda":
            return super().timed_run(prepared, options)
        self._sync("cuda")
        return self._cuda_timed(lambda: self._launch(prepared, options))

    def make_copy(self, nbytes, device, sets):
        torch = _torch()
        n = max(nbytes // 4, 1)
        src = [torch.full((n,), k + 1.0, dtype=torch.float32, device=device) for k in range(sets)]
        dst = [torch.zeros(n, dtype=torch.float32, device=device) for _ in range(sets)]

        def copy(i):
            k = i % sets
            if device == "cuda":
                return self._cuda_timed(lambda: dst[k].copy_(src[k]))[1]
            start = time.perf_counter()
            dst[k].copy_(src[k])
            return time.perf_counter() - start

        return copy
