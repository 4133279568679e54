"""How the oracle runs an evaluation, apart from what it computes.

The loss, gradient, aggregation and metrics are defined in ``_loss``; this
module holds the machinery they run on: row ranges of about
:data:`CHUNK_TOKENS` tokens, split across a thread pool for large batches
(SPEC.md, section 10, "Speed"), per-thread scratch buffers, read-only output
arrays and metrics computed on first access.  It imports nothing of the
oracle, so it cannot take part in an import cycle.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


_WORK = threading.local()


def workspace(B: int, T: int):
    """Two (B, T) float64 scratch arrays, reused by later calls of the same
    thread: fresh multi-megabyte arrays cost page faults that would dominate
    the evaluation.  Nothing returned to the caller lives in them."""
    cached = getattr(_WORK, "buf", None)
    n = B * T
    if cached is None or cached.size < 2 * n:
        cached = np.empty(2 * n)
        if 2 * n * 8 <= _WORKSPACE_KEEP_BYTES:
            _WORK.buf = cached
    return (cached[i * n:(i + 1) * n].reshape(B, T) for i in range(2))


#: the largest scratch block kept between calls (per thread)
_WORKSPACE_KEEP_BYTES = 256 * 2**20


class LazyMetrics(Mapping):
    """The metrics, computed on first access (loss and gradient do not pay
    for them); read-only.  ``compute()`` returns a dict keyed by ``names``."""

    def __init__(self, compute, names: tuple[str, ...]):
        self._compute = compute
        self._names = names
        self._values = None

    def _get(self) -> dict:
        if self._values is None:
            with np.errstate(all="ignore"):
                self._values = self._compute()
            self._compute = None  # release the arrays it kept
        return self._values

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._names)

    def __len__(self):
        return len(self._names)

    def __repr__(self):
        return repr(self._get())


def _threads() -> int:
    env = os.environ.get("SAPO_REF_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(f"SAPO_REF_THREADS must be an integer, got {env!r}") from None
    return max(1, min(4, os.cpu_count() or 1))


_EXECUTOR: dict = {}
if hasattr(os, "register_at_fork"):  # a forked child has the executor but not its threads
    os.register_at_fork(after_in_child=_EXECUTOR.clear)
#: batches of at least this many tokens are split by rows across threads
PARALLEL_MIN_TOKENS = 2**17


#: rows are processed in ranges of about this many tokens, so that the
#: dozen arrays a range touches stay in cache between passes
CHUNK_TOKENS = int(os.environ.get("SAPO_REF_CHUNK", 2**16))


def map_rows(block, B: int, T: int) -> list:
    """block(rows) for contiguous row ranges of about CHUNK_TOKENS tokens, in
    threads for large batches.  Every step is elementwise, so the results are
    bit-identical however the rows are split."""
    per = max(1, CHUNK_TOKENS // max(T, 1))
    ranges = [slice(a, min(a + per, B)) for a in range(0, B, per)] or [slice(0, B)]
    n = min(_threads(), len(ranges))
    if n <= 1 or B * T < PARALLEL_MIN_TOKENS:
        return [block(r) for r in ranges]
    if n not in _EXECUTOR:
        _EXECUTOR[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="sapo_ref")
    return list(_EXECUTOR[n].map(block, ranges))
