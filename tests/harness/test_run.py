"""sapo-conformance run / reproduce / diff / --all / --junit, the reports
they write, and the pytest plugin, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance import cli
from conformance.report import load_report, validate

ROOT = Path(__file__).resolve().parents[2]
EX = "tests.harness.example_candidates"
QUICK = ["--profile", "quick", "--quiet"]
#: how long a test waits for a subprocess before calling it hung: a safety net,
#: not a deadline (the longest subprocess of the suite, `run --all` in
#: test_parallel, takes under two minutes here; a machine 10x slower passes)
TIMEOUT_S = 3600


def run_cli(*args, cwd=ROOT):
    """The real console script, in a subprocess: exit code, stdout, stderr."""
    exe = Path(sys.executable).with_name("sapo-conformance")
    env = dict(os.environ)
    out = subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=TIMEOUT_S)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture(scope="module")
def eager_report(tmp_path_factory):
    d = tmp_path_factory.mktemp("eager")
    code, out, err = run_cli("run", "torch-eager", "--report-dir", str(d), "--junit", str(d / "junit.xml"), *QUICK)
    return code, out, err, d


def test_run_writes_a_complete_conformant_report(eager_report):
    code, out, err, d = eager_report
    assert code == cli.EXIT_OK, err
    assert "torch-eager: CONFORMANT" in out
    report = load_report(d / "report.json")
    assert report["verdict"] == "conformant" and report["summary"]["fail"] == 0
    assert report["candidate"]["name"] == "torch-eager" and report["run"]["profile"] == "quick"
    assert {"numpy", "torch"} <= set(report["environment"]["packages"])
    groups = {r["group"] for r in report["checks"]}
    assert {"random", "edge", "invariant", "gradient", "value", "precision"} <= groups
    assert all(r["max_error"] is not None for r in report["checks"] if r["status"] == "pass")
    assert "Verdict: conformant" in (d / "report.md").read_text()
    html = (d / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html and "<script" not in html
    suite = ET.parse(d / "junit.xml").getroot()
    assert suite.tag == "testsuite" and int(suite.get("tests")) == report["summary"]["total"]
    assert int(suite.get("failures")) == 0


def test_trinity_published_loss_is_non_conformant_with_counterexample_and_reproduction(tmp_path):
    code, out, err = run_cli("run", f"{EX}:trinity_published", "--report-dir", str(tmp_path), *QUICK)
    assert code == cli.EXIT_NONCONFORMANT, err
    report = load_report(tmp_path / "report.json")
    grad = [r for r in report["checks"] if r["check"] == "random:grad" and r["status"] == "fail"]
    assert grad, "the detached-gate gradient was not reported"
    rec = grad[0]
    assert rec["counterexample"]["logprob"] and rec["reproduce"].startswith("sapo-conformance reproduce ")
    assert "random:grad" in (tmp_path / "report.md").read_text()
    code, out, err = run_cli("reproduce", str(tmp_path / "report.json"), rec["id"])
    assert code == cli.EXIT_NONCONFORMANT, err
    assert "grad: FAIL" in out


def test_unknown_candidate_is_a_one_line_usage_error(tmp_path):
    code, out, err = run_cli("run", "no-such-kernel", "--report-dir", str(tmp_path))
    assert code == cli.EXIT_USAGE
    assert err.strip().count("\n") == 0 and "unknown candidate 'no-such-kernel'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args, message", [
    (["run", "torch-eager", "--dtype", "float8"], "does not claim dtype float8"),
    (["run", "triton", "--dtype", "float64"], "does not claim dtype float64"),
    (["run", "torch-eager", "--check", "nothing-like-this"], "no check matches"),
    (["run"], "no candidate given"),
    (["run", "numpy-fp32", "--all"], "either a candidate or --all"),
])
def test_usage_errors(tmp_path, args, message, monkeypatch, capsys):
    monkeypatch.delenv("SAPO_CANDIDATE", raising=False)
    assert cli.main(args + ["--report-dir", str(tmp_path)]) == cli.EXIT_USAGE
    assert message in capsys.readouterr().err


def test_unavailable_candidate_exits_4(tmp_path, capsys):
    assert cli.main(["run", f"{EX}:torch_candidate", "--device", "cuda", "--report-dir", str(tmp_path)]) in (
        cli.EXIT_UNAVAILABLE, cli.EXIT_OK, cli.EXIT_NONCONFORMANT)
    import torch

    if not torch.cuda.is_available():
        assert "cannot run on cuda" in capsys.readouterr().err


def test_diff_reports_regressions(eager_report, tmp_path, capsys):
    _, _, _, d = eager_report
    old = json.loads((d / "report.json").read_text())
    assert cli.main(["diff", str(d / "report.json"), str(d / "report.json")]) == cli.EXIT_OK
    new = json.loads(json.dumps(old))
    new["checks"][0]["status"] = "fail"
    new["checks"][1]["max_error"] = 0.9 * new["checks"][1]["bound"]
    new["verdict"] = "non-conformant"
    (tmp_path / "new.json").write_text(json.dumps(new))
    capsys.readouterr()
    assert cli.main(["diff", str(d / "report.json"), str(tmp_path / "new.json")]) == cli.EXIT_NONCONFORMANT
    out = capsys.readouterr().out
    assert "new failures (1)" in out and old["checks"][0]["id"] in out and "REGRESSION" in out
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main(["diff", str(d / "report.json"), str(tmp_path / "bad.json")]) == cli.EXIT_USAGE
    assert "not valid JSON" in capsys.readouterr().err


def test_html_escapes_what_a_candidate_provides(tmp_path):
    from conformance import load_candidate
    from conformance.render import render_html, render_markdown
    from conformance.report import build_report
    from conformance.suite import plan, run_units

    evil = load_candidate("numpy-fp32").with_info(name="<script>alert(1)</script>",
                                                  description='"><img src=x onerror=alert(2)>')
    recs = run_units(evil, plan(evil, checks=["edge.realistic"], dtypes=["float32"]), profile="quick")
    recs[0].status, recs[0].message = "fail", "<b>bold</b> & <script>x()</script>"
    report = build_report(evil, "evil", recs, profile="quick", seed=0, device="cpu", dtypes=["float32"],
                          modes=["token-mean"], checks=None, duration_s=0.1, command="x")
    assert validate(report) is None
    page = render_html(report)
    assert "<script" not in page and "<img" not in page and "&lt;script&gt;" in page
    assert "onerror=alert" not in page.replace("&quot;&gt;&lt;img src=x onerror=alert(2)&gt;", "")
    assert "<script>" in render_markdown(report)  # Markdown is text; HTML is what a browser runs


def test_pytest_plugin_runs_the_suites(tmp_path):
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--sapo-profile", "quick",
            "--sapo-check", "edge.realistic", "--sapo-check", "random"]
    ok = subprocess.run(args + ["--sapo-candidate", "numpy-fp32"], capture_output=True, text=True, cwd=tmp_path,
                        timeout=TIMEOUT_S)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "passed" in ok.stdout
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    bad = subprocess.run(args + ["--sapo-candidate", f"{EX}:trinity_published"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=TIMEOUT_S, env=env)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "random:grad" in bad.stdout and "counterexample" in bad.stdout
