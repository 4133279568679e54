"""Random numbers that are the same bits on every machine.

NumPy's ``Generator.normal``, ``exponential`` and ``standard_t`` call libm's
``exp``/``log`` in their samplers, and libm's last bit differs between CPUs
and operating systems.  Fixed batches that are frozen into files (the golden
fixtures, and the SPEC edge cases they are made from) must not depend on
that, so they draw from this class: uniform doubles and integers from
NumPy's PCG64 bit stream (pure integer arithmetic), shaped into the
distributions with IEEE basic operations only (+, -, *, /, sqrt), summed in
a fixed order.

The shapes approximate the usual distributions closely enough for test
data: ``normal`` is the Irwin-Hall sum of 12 uniforms (mean 0, variance 1,
bounded by +-6), ``exponential`` half the sum of two squared normals (a
chi-square with 2 degrees of freedom, mean ``scale``), ``standard_t`` a
normal over the root of an independent mean-one chi-square.
"""

from __future__ import annotations

import numpy as np


class PortableRandom:
    """A seeded source of test data, bit-identical on every machine."""

    def __init__(self, seed: int = 0):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None) -> np.ndarray:
        """Uniform on [0, 1) (53 random bits, scaled exactly)."""
        return self._rng.random(size)

    def integers(self, low, high=None, size=None) -> np.ndarray:
        return self._rng.integers(low, high, size)

    def normal(self, loc=0.0, scale=1.0, size=None) -> np.ndarray:
        acc = self.random(size)
        for _ in range(11):  # a fixed order of additions
            acc = acc + self.random(size)
        return loc + scale * (acc - 6.0)

    def exponential(self, scale=1.0, size=None) -> np.ndarray:
        a, b = self.normal(size=size), self.normal(size=size)
        return scale * (0.5 * (a * a + b * b))

    def standard_t(self, df: int, size=None) -> np.ndarray:
        if df != 2:
            raise ValueError(f"df={df!r}: only 2 degrees of freedom are provided")
        return self.normal(size=size) / np.sqrt(self.exponential(size=size))
