"""Candidates for the shape-bucket tests (test_buckets.py), NumPy only so
that they load fast.  Each wraps the ``numpy-fp32`` built-in, so everything
they do not break is correct.

``jit_like`` claims ``shape_buckets`` and behaves like a jitted kernel: it
"compiles" once per (shape, dtype) it has not seen before (it records the
calls and counts the distinct keys) and reports the count through
``compile_count``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from conformance.builtins import numpy_fp32

_base = numpy_fp32()

#: every call of a recording kernel: (logprob shape, advantages shape, mask shape, dtype, loss_agg_mode)
CALLS: list[tuple] = []


def _record(logprob, old_logprob, advantages, mask, **kwargs):
    CALLS.append((logprob.shape, advantages.shape, mask.shape, logprob.dtype.name, kwargs["loss_agg_mode"]))
    return _base.kernel(logprob, old_logprob, advantages, mask, **kwargs)


def _programs() -> int:
    return len({(lp, adv, dtype) for lp, adv, _, dtype, _ in CALLS})


def make(name: str, kernel=_record, **claims):
    return replace(_base, kernel=kernel, info=replace(_base.info, name=name, **claims), compile_count=_programs,
                   _ready=set())


jit_like = make("jit-like", shape_buckets=True)
jit_like_unbucketed = make("jit-like-unbucketed", shape_buckets=False)


def _grad_on_masked(logprob, old_logprob, advantages, mask, **kwargs):
    """Correct where the mask is True; a gradient of 1 wherever it is False."""
    out = _base.kernel(logprob, old_logprob, advantages, mask, **kwargs)
    grad = np.where(np.asarray(mask, bool), out.grad, np.ones_like(out.grad))
    return replace(out, grad=grad)


grad_on_padding = make("grad-on-padding", _grad_on_masked, shape_buckets=True)
