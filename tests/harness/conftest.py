"""Fixtures for the harness tests."""

from __future__ import annotations

import os

import pytest

from conformance import load_candidate

BUILTINS = ("numpy-fp32", "torch-eager", "torch-compile", "torch-sequence", "jax", "triton")
#: scripts/test.sh installs every framework, so there a missing one is a failure, not a skip
REQUIRE_ALL = os.environ.get("SAPO_REQUIRE_ALL_CANDIDATES") == "1"


def available_or_skip(candidate, device="cpu"):
    avail = candidate.availability(device)
    if not avail:
        if REQUIRE_ALL:
            pytest.fail(f"{candidate.name} cannot run here: {avail.reason}")
        pytest.skip(f"{candidate.name}: {avail.reason}")
    return candidate


@pytest.fixture(scope="session")
def builtin():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_candidate(name)
        return available_or_skip(cache[name])

    return get
