"""``soft_gate`` and ``gate_weight``: the gate and its derivative, elementwise."""

from __future__ import annotations

import numpy as np

from . import _kernels
from . import _validate as V
from .profiles import DEFAULT_TAU_NEG, DEFAULT_TAU_POS


def _gate_and_weight(ratio, advantages, tau_pos, tau_neg):
    r = V.float_array(ratio, "ratio")
    adv = V.advantages_for(advantages, r.shape, "ratio")
    tp = V.temperature(tau_pos, "tau_pos")
    tn = V.temperature(tau_neg, "tau_neg")
    if np.any(r < 0):
        raise ValueError("ratio must be >= 0 (a ratio of probabilities); found a negative value")
    with np.errstate(all="ignore"):
        tau = np.broadcast_to(_kernels.select_tau(adv, tp, tn), r.shape)
        gate, weight, z = _kernels.fast_from_ratio(r, tau)
        idx = np.flatnonzero(~_kernels.fast_ok_ratio(r, z))
        if idx.size:
            rv = r.ravel()[idx]
            tv = tau.ravel()[idx]
            nan = np.isnan(rv)
            g, w = _kernels.precise_gate_from_ratio(np.where(nan, 1.0, rv), tv)
            gate.ravel()[idx] = np.where(nan, np.nan, g)
            weight.ravel()[idx] = np.where(nan, np.nan, w)
        undefined = np.broadcast_to(np.isnan(adv), r.shape)
        if undefined.any():
            gate[undefined] = np.nan
            weight[undefined] = np.nan
    return gate, weight


def soft_gate(ratio, advantages, tau_pos=DEFAULT_TAU_POS, tau_neg=DEFAULT_TAU_NEG) -> np.ndarray:
    """The SAPO gate f(r) = sigmoid(tau * (r - 1)) * 4 / tau, elementwise.

    tau is ``tau_pos`` where the advantage is > 0 and ``tau_neg`` elsewhere
    (an advantage of exactly 0 takes ``tau_neg``; NaN gives NaN).
    ``advantages`` has the shape of ``ratio`` or, for a 2-D ``ratio`` of
    shape (B, T), (B,) or (B, 1).  ``ratio`` must be >= 0; ``inf`` gives the
    limit 4 / tau.  Returns a new float64 array.
    """
    return _gate_and_weight(ratio, advantages, tau_pos, tau_neg)[0]


def gate_weight(ratio, advantages, tau_pos=DEFAULT_TAU_POS, tau_neg=DEFAULT_TAU_NEG) -> np.ndarray:
    """The gate's derivative f'(r) = 4 sigmoid(z) sigmoid(-z), z = tau * (r - 1).

    Equal to 1 at r = 1 for every tau, and tending to 0 as r -> 0 (for large
    tau) or r -> inf.  Arguments as for :func:`soft_gate`.
    """
    return _gate_and_weight(ratio, advantages, tau_pos, tau_neg)[1]
