"""sapo-conformance: certify SAPO loss implementations against the oracle."""

from sapo_ref._version import __version__

__all__ = ["__version__"]
