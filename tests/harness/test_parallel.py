"""Parallel certification: `run --all --jobs N` and the pytest plugin under
pytest-xdist give the serial run's verdicts, check ids and measurements."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conformance import cli

from .test_run import ROOT, TIMEOUT_S, run_cli

#: small enough to run every registered candidate twice in a test
SUBSET = ["--profile", "quick", "--quiet", "--mode", "token-mean", "--dtype", "float32",
          "--check", "edge.realistic", "--check", "edge.exp-overflow", "--check", "random",
          "--check", "invariant.permutation"]


def _digest(report_dir):
    """What must not depend on parallelism: per candidate, every check id with
    its status, error and number of examples; and the matrix."""
    matrix = json.loads((report_dir / "matrix.json").read_text())
    reports = {}
    for c in matrix["candidates"]:
        path = report_dir / c["name"] / "report.json"
        if path.exists():
            rep = json.loads(path.read_text())
            reports[c["name"]] = [(r["id"], r["status"], r["max_error"], r["examples"]) for r in rep["checks"]]
    return matrix, reports


@pytest.mark.slow
def test_run_all_writes_a_matrix_and_jobs_give_the_same_one(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    code_s, out_s, err_s = run_cli("run", "--all", "--report-dir", str(serial), *SUBSET)
    code_p, out_p, err_p = run_cli("run", "--all", "--jobs", "2", "--report-dir", str(parallel), *SUBSET)
    assert code_s == code_p == cli.EXIT_OK, (err_s, err_p)
    matrix = json.loads((serial / "matrix.json").read_text())
    assert {"numpy-fp32", "torch-eager", "torch-compile", "jax", "triton"} <= {c["name"] for c in matrix["candidates"]}
    ran = [c for c in matrix["candidates"] if c["status"] == "ran"]
    assert ran and all(c["verdict"] == "conformant" for c in ran)
    # the real frameworks (conformance/frameworks) run where their packages are installed
    assert all(c["status"] == "unavailable" and "pip install" in c["reason"]
               for c in matrix["candidates"] if c["status"] != "ran")
    assert set(matrix["checks"]) >= {"edge.realistic:loss", "edge.exp-overflow:grad"}
    assert (serial / "torch-eager" / "report.json").exists()
    assert "| candidate | verdict |" in (serial / "matrix.md").read_text()
    m_s, r_s = _digest(serial)
    m_p, r_p = _digest(parallel)
    assert m_s == m_p
    assert r_s == r_p and len(r_s) >= 5
    assert out_s == out_p  # the printed matrix


def test_jobs_needs_isolation(tmp_path):
    code, out, err = run_cli("run", "--all", "--jobs", "2", "--no-isolate", "--report-dir", str(tmp_path))
    assert code == cli.EXIT_USAGE and "--jobs needs --isolate" in err
    code, out, err = run_cli("run", "--all", "--jobs", "0", "--report-dir", str(tmp_path))
    assert code == cli.EXIT_USAGE and "--jobs" in err


def _junit_outcomes(path):
    out = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        status = "failed" if case.find("failure") is not None else "skipped" if case.find("skipped") is not None \
            else "error" if case.find("error") is not None else "passed"
        out[f"{case.get('classname')}::{case.get('name')}"] = status
    return out


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["numpy-fp32", "tests.harness.example_candidates:trinity_published"])
def test_the_plugin_under_xdist_gives_the_serial_outcomes(tmp_path, spec):
    pytest.importorskip("xdist")
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            "--sapo-candidate", spec, "--sapo-profile", "quick", "--sapo-check", "edge.*",
            "--sapo-check", "random", "--sapo-check", "invariant.*"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    runs = {}
    for label, extra in (("serial", []), ("xdist", ["-n", "2"])):
        junit = tmp_path / f"{label}.xml"
        res = subprocess.run(args + extra + [f"--junitxml={junit}"], capture_output=True, text=True, cwd=tmp_path,
                             env=env, timeout=TIMEOUT_S)
        assert res.returncode in (0, 1), res.stdout + res.stderr
        runs[label] = (res.returncode, _junit_outcomes(junit))
    assert runs["serial"] == runs["xdist"]
    assert len(runs["serial"][1]) > 50
