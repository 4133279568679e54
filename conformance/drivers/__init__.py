"""Framework drivers: the only code that converts between NumPy and a framework.

One driver per framework (numpy, torch, jax).  A driver prepares a
candidate's inputs (dtype, device, layout), runs its kernel (forward and
backward, synchronised, the part timed by ``bench``), and converts the
results back to float64 NumPy.
"""

from __future__ import annotations

from ._base import Driver, Prepared, advantages_layout, layouts_for

_DRIVERS: dict[str, Driver] = {}


def get_driver(framework: str) -> Driver:
    """The driver of ``framework`` ("numpy", "torch" or "jax")."""
    if framework not in _DRIVERS:
        if framework == "numpy":
            from .numpy_driver import NumpyDriver as cls
        elif framework == "torch":
            from .torch_driver import TorchDriver as cls
        elif framework == "jax":
            from .jax_driver import JaxDriver as cls
        else:
            raise ValueError(f"unknown framework {framework!r}; valid: numpy, torch, jax")
        _DRIVERS[framework] = cls()
    return _DRIVERS[framework]


__all__ = ["Driver", "Prepared", "advantages_layout", "get_driver", "layouts_for"]
