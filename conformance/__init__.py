"""sapo-conformance: certify SAPO loss implementations against the oracle.

Public API:
    Candidate, CandidateInfo, CallOptions, KernelOutput  -- the candidate protocol
    Batch, Output                                        -- what goes in and comes out
    load_candidate, registered_candidates                -- loading
    get_driver                                           -- NumPy <-> framework conversion
    adapters                                             -- real frameworks' code as candidates
    certify, certify_all, Report                         -- the whole certification, as a library
"""

from sapo_ref._version import __version__

from . import adapters
from .candidate import (
    Availability,
    Batch,
    CallOptions,
    Candidate,
    CandidateError,
    CandidateInfo,
    KernelOutput,
    Output,
)
from .drivers import get_driver
from .loading import ENTRY_POINT_GROUP, ENV_VAR, load_candidate, registered_candidates
from .pipeline import CandidateUnavailable, Report, RequestError, certify, certify_all

__all__ = [
    "Availability",
    "Batch",
    "CallOptions",
    "Candidate",
    "CandidateError",
    "CandidateInfo",
    "CandidateUnavailable",
    "ENTRY_POINT_GROUP",
    "ENV_VAR",
    "KernelOutput",
    "Output",
    "Report",
    "RequestError",
    "__version__",
    "adapters",
    "certify",
    "certify_all",
    "get_driver",
    "load_candidate",
    "registered_candidates",
]
