"""Version numbers, kept in one place.

``__version__`` is the distribution's version.  ``ORACLE_VERSION`` names the
oracle's semantics and numerics: it changes whenever any output of the oracle
changes (a bug fix, a new default), so golden fixtures record it and a
mismatch is reported instead of silently compared.
"""

__version__ = "0.1.0"
ORACLE_VERSION = "1.3"
