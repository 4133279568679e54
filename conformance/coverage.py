"""What a run exercised: for every input dimension, the range its checks
actually sent the candidate, next to the range SPEC.md accepts.

A verdict covers these inputs and no others: a report that says
"conformant" for temperatures 0.05-50 says nothing about tau = 1e-5.  Every
evaluation a check records (``Tally.add``) widens its record's ranges; the
report merges them (``report.coverage``) and every format shows them.

The dimensions are data (``DIMENSIONS``): a name, a label, how to measure
it on one call, and the accepted range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .types import Batch, CallOptions

#: the largest finite float64 (the accepted |A| and |log-ratio| reach it)
FMAX64 = float(np.finfo(np.float64).max)


def _finite_abs(x, where) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        v = np.abs(np.asarray(x, dtype=np.float64))
    return v[np.broadcast_to(where, v.shape) & np.isfinite(v)]


def _log_ratio(b: Batch, o: CallOptions) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):  # 1e308 - (-1e308) is inf: left out as not finite
        return _finite_abs(b.logprob - b.old_logprob, b.mask.astype(bool))


def _advantage(b: Batch, o: CallOptions) -> np.ndarray:
    m = b.mask.astype(bool)
    adv = np.asarray(b.advantages, dtype=np.float64)
    adv = np.broadcast_to(adv.reshape(adv.shape[0], -1), m.shape) if adv.size else adv
    v = _finite_abs(adv, m) if adv.size else adv
    return v[v > 0]


def _weights(b: Batch, o: CallOptions) -> np.ndarray:
    if b.weights is None:
        return np.empty(0)
    return _finite_abs(b.weights, b.mask.astype(bool))


def _masked_fraction(b: Batch, o: CallOptions) -> np.ndarray:
    m = b.mask.astype(bool)
    return np.array([1.0 - m.mean()]) if m.size else np.empty(0)


@dataclass(frozen=True)
class Dimension:
    name: str
    label: str
    measure: Callable[[Batch, CallOptions], np.ndarray]  # the values one call exercised
    accepted: tuple[float, float]  # SPEC.md's accepted range (inclusive)


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("tau_pos", "τ_pos", lambda b, o: np.array([o.tau_pos]), (1e-6, 1e6)),
    Dimension("tau_neg", "τ_neg", lambda b, o: np.array([o.tau_neg]), (1e-6, 1e6)),
    Dimension("log_ratio", "|log-ratio| (unmasked, finite)", _log_ratio, (0.0, FMAX64)),
    Dimension("advantage", "|A| (unmasked, non-zero)", _advantage, (5e-324, FMAX64)),
    Dimension("rows", "B (rows)", lambda b, o: np.array([b.shape[0]], dtype=float), (0.0, math.inf)),
    Dimension("cols", "T (tokens per row)", lambda b, o: np.array([b.shape[1]], dtype=float), (0.0, math.inf)),
    Dimension("masked_fraction", "masked fraction of a batch", _masked_fraction, (0.0, 1.0)),
    Dimension("empty_rows", "fully masked rows in a batch",
              lambda b, o: np.array([float((~b.mask.astype(bool)).all(axis=1).sum())]) if b.shape[0] else np.empty(0),
              (0.0, math.inf)),
    Dimension("weights", "importance weights (unmasked, finite)", _weights, (0.0, FMAX64)),
)
NAMES = tuple(d.name for d in DIMENSIONS)


def observe(ranges: dict, batch: Batch, options: CallOptions) -> None:
    """Widen ``ranges`` ({name: [min, max]}) by one call's inputs."""
    for dim in DIMENSIONS:
        v = dim.measure(batch, options)
        if v.size:
            lo, hi = float(v.min()), float(v.max())
            if dim.name in ranges:
                lo, hi = min(lo, ranges[dim.name][0]), max(hi, ranges[dim.name][1])
            ranges[dim.name] = [lo, hi]


def merge(all_ranges) -> dict:
    """One ``{name: [min, max]}`` from many."""
    out: dict = {}
    for ranges in all_ranges:
        for name, (lo, hi) in (ranges or {}).items():
            if name in out:
                lo, hi = min(lo, out[name][0]), max(hi, out[name][1])
            out[name] = [lo, hi]
    return out


def section(ranges: dict) -> list[dict]:
    """The report's coverage section: every dimension, exercised or not, in
    ``DIMENSIONS`` order, with the accepted range."""
    return [{"dimension": d.name, "label": d.label,
             "min": ranges[d.name][0] if d.name in ranges else None,
             "max": ranges[d.name][1] if d.name in ranges else None,
             "accepted": list(d.accepted)} for d in DIMENSIONS]
