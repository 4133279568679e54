"""Candidates for the throughput tests: NumPy only, so they import fast.

Each wraps the ``numpy-fp32`` built-in and keeps its name, so that a
pytest-benchmark baseline saved for the built-in compares against them.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from conformance.builtins import numpy_fp32

_base = numpy_fp32()


def _twice(*args, **kwargs):
    _base.kernel(*args, **kwargs)
    return _base.kernel(*args, **kwargs)


#: the built-in, doing all of its work twice: an injected 2x slowdown
numpy_twice = replace(_base, kernel=_twice, _ready=set())

_cache = {}


def _caching(*args, **kwargs):
    if "out" not in _cache:
        _cache["out"] = _base.kernel(*args, **kwargs)
    return _cache["out"]


#: returns its first result for every later call, whatever the inputs
numpy_caching = replace(_base, kernel=_caching, _ready=set())


def _mutating(logprob, old_logprob, advantages, mask, **kwargs):
    out = _base.kernel(logprob, old_logprob, advantages, mask, **kwargs)
    old_logprob[..., :1] += np.float32(1e-3)  # e.g. an in-place op on a view of the input
    return out


#: right values, but it writes into its inputs
numpy_mutating = replace(_base, kernel=_mutating, _ready=set())
