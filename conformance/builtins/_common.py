"""What the built-in candidates share: their claims and numerical choices."""

from __future__ import annotations

from sapo_ref import METRIC_NAMES
from sapo_ref._version import __version__

#: Log-ratios above this are clamped before exp.  Exact, not an
#: approximation: for every accepted tau (>= 1e-6), tau * (exp(60) - 1) > 1e20,
#: where the gate is 4/tau to every precision and f'(r) r underflows to 0, so
#: the clamp changes neither value nor gradient -- it only keeps exp finite
#: and autograd away from 0 * inf.
LOG_RATIO_SATURATION = 60.0

COMMON_CLAIMS = dict(
    version=__version__,
    profile="canonical",
    metrics=METRIC_NAMES,
    global_counts=True,
)
