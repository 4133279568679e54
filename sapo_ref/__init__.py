"""sapo_ref: the float64 reference oracle for the SAPO policy loss.

The oracle *defines* what a correct SAPO kernel computes: the gate, its
derivative, the loss, its gradient, the aggregation modes and every edge
case, each written down in SPEC.md.  It needs NumPy only.

    >>> import numpy as np, sapo_ref
    >>> res = sapo_ref.sapo_loss(np.log([[0.3, 0.5]]), np.log([[0.3, 0.4]]),
    ...                          np.array([1.0]), np.array([[1, 1]]))
    >>> round(res.loss, 6), res.grad.round(6).tolist()
    (-2.124353, [[-0.5, -0.615335]])
"""

from ._gate import gate_weight, soft_gate
from ._loss import METRIC_NAMES, SAPOResult, Semantics, sapo_loss
from ._trinity import SAPOPolicyLoss
from ._validate import TAU_RANGE
from ._version import ORACLE_VERSION, __version__
from ._dtypes import DTYPES
from .profiles import DEFAULT_TAU_NEG, DEFAULT_TAU_POS, EMPTY_ROW_POLICIES, LOSS_AGG_MODES, PROFILES, Profile, get_profile

__all__ = [
    "DEFAULT_TAU_NEG",
    "DEFAULT_TAU_POS",
    "DTYPES",
    "EMPTY_ROW_POLICIES",
    "LOSS_AGG_MODES",
    "METRIC_NAMES",
    "ORACLE_VERSION",
    "PROFILES",
    "Profile",
    "SAPOPolicyLoss",
    "SAPOResult",
    "Semantics",
    "TAU_RANGE",
    "__version__",
    "gate_weight",
    "get_profile",
    "sapo_loss",
    "soft_gate",
]
