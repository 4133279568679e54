"""SPEC.md stays honest: every test it names exists, and every edge-case test
is named in it."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPEC = (ROOT / "SPEC.md").read_text()
REF = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _module(path: str):
    return importlib.import_module(path[:-3].replace("/", "."))


def test_every_named_test_exists():
    refs = REF.findall(SPEC)
    assert len(refs) > 30
    missing = [f"{p}::{name}" for p, name in refs if not callable(getattr(_module(p), name, None))]
    assert not missing, f"SPEC.md names tests that do not exist: {missing}"


def test_every_edge_case_test_is_in_the_spec():
    named = {name for p, name in REF.findall(SPEC) if p == "tests/oracle/test_edge_cases.py"}
    module = _module("tests/oracle/test_edge_cases.py")
    defined = {n for n in dir(module) if n.startswith("test_")}
    assert defined - named == set(), f"edge-case tests missing from SPEC.md: {sorted(defined - named)}"


def test_spec_states_the_current_oracle_version():
    import sapo_ref

    stated = re.findall(r"Oracle version: \*\*([^*]+)\*\*", SPEC)
    assert stated == [sapo_ref.ORACLE_VERSION], f"SPEC.md states oracle version {stated}, the code {sapo_ref.ORACLE_VERSION}"
