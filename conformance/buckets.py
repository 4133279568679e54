"""Shape buckets: masked padding for candidates that compile per shape.

A compiled kernel (``jax.jit``, ``torch.compile``) builds a new program for
every input shape it has not seen, or at least for every size 0 and 1,
which ``torch.compile(dynamic=True)`` specialises.  The suites send hundreds
of different shapes, so such a candidate spends its run compiling.  A
candidate that claims ``shape_buckets`` (``CandidateInfo``) is instead sent
each batch padded to a *bucket*: rows and columns rounded up to the next
power of two, at least ``MIN_ROWS`` x ``MIN_COLS``.

The padding is masked (mask False) and holds 0 in every other input, so it
must not matter (SPEC.md 7: masked positions have no influence at all).  The
driver (``Driver.evaluate``) pads, calls the candidate, requires its gradient
to be exactly 0 on every padded position (reported under
``grad-masked-zero``), and crops the gradient and the inputs back, so every
check compares exactly what it would without buckets against the oracle on
the unpadded batch.

The rule (:func:`padded_dims`).  Masked padding is semantics-preserving
except where the padded size itself enters the loss:

* columns (T) are not padded in ``seq-mean-token-sum-norm``, whose
  normaliser is the padded length T (SPEC.md 3);
* rows (B) are not padded when the profile counts empty rows in the number
  of sequences S (``empty_rows`` "count" or "nan") and either the mode
  divides by S (the seq-mean modes; under "nan" an empty row even makes
  the loss NaN) or the call passes ``global_seq_count``, which a kernel may
  check against its own S (the oracle does: SPEC.md 3, sharding).

Both the requested mode and the one the profile imposes are considered.
The harness does not instead pass global counts that would cancel the
padding: that would change the call a candidate is certified on (its local
count path would go untested) and, for counted empty rows, ask for an S
smaller than the padded batch's own, which SPEC.md 3 rejects.

Only the single-call path pads: ``bench`` times the shapes it names.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import sapo_ref

from .types import Batch

#: the smallest bucket: no dimension of size 0 or 1 ever reaches the kernel
MIN_ROWS = 8
MIN_COLS = 64
_SEQ_MEAN_MODES = ("seq-mean-token-mean", "seq-mean-token-sum")


def bucket(n: int, least: int) -> int:
    """The smallest power of two that is >= ``n`` and >= ``least``."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    if least < 1:
        raise ValueError(f"least must be >= 1, got {least!r}")
    return max(int(least), 1 << max(int(n) - 1, 0).bit_length())


def padded_dims(profile: str, loss_agg_mode: str, *, global_seq_count: int | None = None) -> tuple[bool, bool]:
    """(rows, columns): whether masked padding may be added along B and T
    without changing the loss under ``profile`` and ``loss_agg_mode``."""
    p = sapo_ref.get_profile(profile)
    if loss_agg_mode not in sapo_ref.LOSS_AGG_MODES:
        raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}; valid: {', '.join(sapo_ref.LOSS_AGG_MODES)}")
    modes = {loss_agg_mode, p.effective_mode(loss_agg_mode)}
    counts_empty_rows = p.empty_rows in ("count", "nan")
    rows = not (counts_empty_rows and (modes & set(_SEQ_MEAN_MODES) or global_seq_count is not None))
    cols = "seq-mean-token-sum-norm" not in modes
    return rows, cols


def bucket_shape(shape: tuple[int, int], profile: str, loss_agg_mode: str, *,
                 global_seq_count: int | None = None) -> tuple[int, int]:
    """The bucket a (B, T) batch is padded to (a dimension that may not be
    padded keeps its size)."""
    B, T = shape
    rows, cols = padded_dims(profile, loss_agg_mode, global_seq_count=global_seq_count)
    return (bucket(B, MIN_ROWS) if rows else B, bucket(T, MIN_COLS) if cols else T)


def _pad(x: np.ndarray, rows: int, cols: int | None, value) -> np.ndarray:
    widths = [(0, rows - x.shape[0])] + ([(0, cols - x.shape[1])] if cols is not None else [(0, 0)] * (x.ndim - 1))
    return np.pad(x, widths, constant_values=value)


def pad(batch: Batch, shape: tuple[int, int], layout: str) -> Batch:
    """``batch`` (advantages already in ``layout``: "B", "B1" or "BT") with
    masked padding up to ``shape``: mask False, 0 everywhere else."""
    B, T = batch.shape
    Bp, Tp = shape
    if Bp < B or Tp < T:
        raise ValueError(f"shape {shape} is smaller than the batch's {(B, T)}")
    return Batch(_pad(batch.logprob, Bp, Tp, 0.0), _pad(batch.old_logprob, Bp, Tp, 0.0),
                 _pad(batch.advantages, Bp, Tp if layout == "BT" else None, 0.0),
                 _pad(np.asarray(batch.mask, bool), Bp, Tp, False),
                 None if batch.weights is None else _pad(batch.weights, Bp, Tp, 0.0))


def crop(batch: Batch, shape: tuple[int, int], layout: str) -> Batch:
    """The inverse of :func:`pad`: the first ``shape`` rows and columns."""
    B, T = shape
    adv = batch.advantages[:B, :T] if layout == "BT" else batch.advantages[:B]
    return replace(batch, logprob=batch.logprob[:B, :T], old_logprob=batch.old_logprob[:B, :T], advantages=adv,
                   mask=batch.mask[:B, :T], weights=None if batch.weights is None else batch.weights[:B, :T])
