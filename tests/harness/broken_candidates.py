"""Deliberately broken candidates for the isolation tests: each fails in
one way a real kernel (or its framework) can, NumPy only so they load fast.

They wrap the ``numpy-fp32`` built-in, so everything they do not break is
correct, and break only float16 where that is enough to show the run goes
on around the damage.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from dataclasses import replace

import numpy as np

from conformance.builtins import numpy_fp32

_base = numpy_fp32()


def _wrap(name, kernel):
    return replace(_base, kernel=kernel, info=replace(_base.info, name=name), _ready=set())


def _segfault():
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def _on_fp16(action, mode=None):
    """A kernel that does ``action`` on float16 calls (in aggregation ``mode``
    only, if given) and is numpy-fp32 otherwise."""
    def kernel(logprob, *args, **kwargs):
        if logprob.dtype == np.float16 and mode in (None, kwargs.get("loss_agg_mode")):
            action()
        return _base.kernel(logprob, *args, **kwargs)

    return kernel


def _raise():
    raise RuntimeError("the kernel gave up")


def _hang():
    time.sleep(3600)


def _hog():
    np.ones(1 << 31)  # 16 GiB


#: segfaults on every float16 call
segfaults = _wrap("segfaults", _on_fp16(_segfault))
#: raises on every float16 call
raises = _wrap("raises", _on_fp16(_raise))
#: never returns from a float16 call
hangs = _wrap("hangs", _on_fp16(_hang))
#: never returns from a float16 token-mean call (one hung unit per check)
hangs_once = _wrap("hangs-once", _on_fp16(_hang, "token-mean"))
#: calls os._exit on float16 (what a C library's abort() or exit() looks like)
exits = _wrap("exits", _on_fp16(lambda: os._exit(7)))
#: raises SystemExit on float16: in-process, that would end the harness
system_exit = _wrap("system-exit", _on_fp16(lambda: sys.exit(5)))
#: allocates 16 GiB on float16
memory_hog = _wrap("memory-hog", _on_fp16(_hog))


def _garbage(transform):
    def kernel(*args, **kwargs):
        out = _base.kernel(*args, **kwargs)
        return transform(out)

    return kernel


#: the gradient has the wrong shape
wrong_shape = _wrap("wrong-shape", _garbage(lambda o: replace(o, grad=o.grad[:, :-1])))
#: the gradient comes back in float64 for float32 inputs
wrong_dtype = _wrap("wrong-dtype", _garbage(lambda o: replace(o, grad=o.grad.astype(np.float64))))
#: returns a list instead of a loss
returns_list = _wrap("returns-list", _garbage(lambda o: [1.0, 2.0]))
#: returns None
returns_none = _wrap("returns-none", _garbage(lambda o: None))
#: NaN gradient where the oracle's is finite
nan_grad = _wrap("nan-grad", _garbage(lambda o: replace(o, grad=np.full_like(o.grad, np.nan))))


def crash_on_load():
    """A factory that segfaults: loading the candidate kills its process."""
    _segfault()


#: a candidate whose name is markup
markup = _wrap("<script>alert(1)</script>", _base.kernel)
#: raises on every call, whatever the dtype (a missing dependency looks like this)
raises_always = _wrap("raises-always", lambda *args, **kwargs: _raise())
