"""conformance.certify / certify_all, and the defects issue 13 listed, each
through the front end a user meets it in."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import conformance
from conformance import cli
from conformance.report import load_report
from conformance.suite import Record, RepeatedError, Unit
from conformance.suite.catalogue import CHECKS_BY_NAME

from tests.conftest import clean_environ

ROOT = Path(__file__).resolve().parents[2]
BC = "tests.harness.broken_candidates"
TIMEOUT_S = 900
#: one cheap check of numpy-fp32, in every aggregation mode
GATE = ["--check", "value.gate", "--quiet"]


def run_cli(*args, capsys):
    code = cli.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_readme_python_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text.split("### From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env=clean_environ(PYTHONPATH=str(ROOT)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = proc.stdout.splitlines()[0]
    assert first == "conformant (partial: checks edge.*; dtypes float32)", proc.stdout[-2000:]
    assert load_report(tmp_path / "sapo-report" / "report.json")["verdict"] == "conformant"


def test_certify_returns_a_report_that_writes_and_loads(tmp_path):
    report = conformance.certify("numpy-fp32", checks=["value.gate", "edge.realistic"], dtypes=["float32"],
                                 modes=["token-mean"], isolate=False)
    assert isinstance(report, conformance.Report) and report.conformant and report.failures == []
    assert {r.check.split(":")[0] for r in report.records} == {"value.gate", "edge.realistic"}
    assert report.partial == ["checks value.gate, edge.realistic", "dtypes float32", "modes token-mean"]
    path = report.write(tmp_path / "out")
    assert path == tmp_path / "out" / "report.json"
    assert conformance.Report.load(path).document == report.document


def test_certify_rejects_a_bad_request_before_running():
    with pytest.raises(conformance.RequestError, match="does not claim dtype"):
        conformance.certify("numpy-fp32", dtypes=["int8"], isolate=False)
    with pytest.raises(conformance.RequestError, match="no check matches nosuch"):
        conformance.certify("numpy-fp32", checks=["nosuch"], isolate=False)
    with pytest.raises(conformance.RequestError, match="profile 'fast'"):
        conformance.certify("numpy-fp32", profile="fast")
    with pytest.raises(conformance.RequestError, match="isolate=True needs"):
        conformance.certify(conformance.load_candidate("numpy-fp32"), isolate=True)


def test_a_usage_error_leaves_the_previous_report_alone(tmp_path, capsys):
    code, _, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), *GATE, capsys=capsys)
    assert code == cli.EXIT_OK, err
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(before) == {"report.json", "report.md", "report.html"}
    for args in (["numpy_fp32_typo:x"], ["numpy-fp32", "--check", "nosuch"], ["numpy-fp32", "--dtype", "int8"]):
        code, _, err = run_cli("run", *args, "--report-dir", str(tmp_path), "--quiet", capsys=capsys)
        assert code == cli.EXIT_USAGE and len(err.strip().splitlines()) == 1, (args, err)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, args


def test_a_partial_run_says_so_in_every_format(tmp_path, capsys):
    junit = tmp_path / "junit.xml"
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), "--junit", str(junit), *GATE,
                             capsys=capsys)
    assert code == cli.EXIT_OK, err
    words = "conformant (partial: checks value.gate)"
    assert words.upper() in out
    assert words in (tmp_path / "report.md").read_text()
    assert words in (tmp_path / "report.html").read_text()
    assert words in junit.read_text()
    assert load_report(tmp_path / "report.json")["run"]["partial"] == ["checks value.gate"]


def test_a_complete_run_is_not_partial():
    report = conformance.certify("numpy-fp32", profile="quick", isolate=False, throughput="none")
    assert report.partial == [] and report.verdict_text == "conformant"


def test_progress_counts_units_and_the_summary_counts_records(tmp_path, capsys):
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), "--check", "value.gate",
                             capsys=capsys)
    assert code == cli.EXIT_OK
    assert re.search(r"certifying numpy-fp32 \(3 check units,", err), err  # one per dtype
    assert "[   3/3 units]" in err
    assert re.search(r"of \d+ records \(one per compared quantity of each check unit\)", out), out


def test_a_ratio_above_one_always_fails():
    rec = Record("x:q", "g", "t", "float32", None, "cpu")
    rec.observe(1.533, 8.0, passed=True)  # a loss within its own bound
    rec.observe(0.1, 1.0, passed=True)  # a gradient within its own, smaller bound
    assert rec.status == "pass" and (rec.max_error, rec.bound) == (1.533, 8.0) and rec.ratio == 1.533 / 8
    rec.observe(1.2, 1.0, passed=True)  # the comparison said pass, the numbers say 1.2
    assert rec.status == "fail" and rec.ratio == 1.2 and (rec.max_error, rec.bound) == (1.2, 1.0)
    nan = Record("x:q", "g", "t", "float32", None, "cpu")
    nan.observe(float("nan"), 4.0)
    assert nan.status == "fail" and nan.ratio == float("inf")


def test_every_record_of_a_run_agrees_with_its_ratio():
    report = conformance.certify("numpy-fp32", profile="quick", isolate=False, throughput="none")
    for rec in report.records:
        if rec.status in ("pass", "fail") and rec.ratio is not None:
            assert (rec.status == "fail") == (rec.ratio > 1), rec


def test_repeated_error_stops_only_across_checks():
    stop = RepeatedError(units=5, checks=3)
    err = [Record("c:call", "g", "t", "float32", None, "cpu", status="error", message="ImportError: x")]
    edge = CHECKS_BY_NAME["edge.realistic"]
    # one check that always raises (a kernel rejecting one edge case) never stops the run
    assert not any(stop(Unit(edge, "float32", m), err) for m in ("a", "b", "c", "d", "e", "f", "g"))
    names = ["random", "edge.realistic", "edge.log-ratio-zero"]
    stop = RepeatedError(units=5, checks=3)
    results = [stop(Unit(CHECKS_BY_NAME[n], "float32", m), err) for n in names for m in ("a", "b")]
    assert results == [False] * 4 + [True, True]


def test_a_candidate_that_always_raises_is_reported_once(tmp_path, capsys):
    code, out, err = run_cli("run", f"{BC}:raises_always", "--report-dir", str(tmp_path), "--profile", "quick",
                             "--quiet", capsys=capsys)
    assert code == cli.EXIT_NONCONFORMANT
    report = load_report(tmp_path / "report.json")
    stopped = [r for r in report["checks"] if r["check"] == "run:stopped"]
    assert len(stopped) == 1 and "the candidate raised the same error" in stopped[0]["message"]
    assert "RuntimeError: the kernel gave up" in stopped[0]["message"]
    assert report["summary"]["total"] < 40 and len(out.splitlines()) < 15, out  # not one line per unit


def test_reproduce_shows_the_candidates_own_error(tmp_path, capsys):
    code, _, err = run_cli("run", f"{BC}:raises", "--report-dir", str(tmp_path), "--check", "edge.realistic",
                           "--dtype", "float16", "--mode", "token-mean", "--quiet", capsys=capsys)
    assert code == cli.EXIT_NONCONFORMANT, err
    code, out, err = run_cli("reproduce", str(tmp_path / "report.json"), "edge.realistic:call[float16,token-mean]",
                             capsys=capsys)
    assert code == cli.EXIT_NONCONFORMANT, (out, err)
    assert "harness error" not in err
    assert "the candidate raised RuntimeError: the kernel gave up" in out and "Traceback" in out


def test_a_plain_loss_function_is_told_to_use_an_adapter():
    def my_sapo_loss(logprob, old_logprob, advantages, mask, tau_pos=1.0, tau_neg=1.05):
        return 0.0

    with pytest.raises(conformance.CandidateError, match="this is a loss function taking logprob, old_logprob, "
                                                         "advantages, mask, not a Candidate.*from_torch_loss"):
        conformance.load_candidate(my_sapo_loss)


def test_run_all_loads_each_candidate_only_in_its_worker():
    entries = conformance.certify_all(["tests.harness.import_crash:candidate", "numpy-fp32"], profile="quick",
                                      checks=["value.gate"], throughput="none")
    crashed, fine = entries
    assert crashed.status == "error" and "exited with status 3 while loading" in crashed.reason, crashed
    assert fine.status == "ran" and fine.report.conformant
    assert "tests.harness.import_crash" not in sys.modules


def test_output_to_a_closed_pipe_ends_quietly(tmp_path):
    sh = f"{sys.executable} -m conformance.cli list --json | true; echo \"status=${{PIPESTATUS[0]}}\""
    proc = subprocess.run(["bash", "-c", sh], capture_output=True, text=True, timeout=TIMEOUT_S, cwd=ROOT,
                          env=clean_environ())
    status = int(proc.stdout.strip().rsplit("=", 1)[1])
    assert status in (cli.EXIT_OK, cli.EXIT_PIPE_CLOSED), proc.stdout + proc.stderr
    assert "harness error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]


def test_the_plugin_loads_like_the_cli_isolates_and_times_out(tmp_path):
    """From the repository root, ``-m sapo`` runs only the SAPO items; the
    candidate module resolves from the current directory (no PYTHONPATH);
    a hanging float16 call fails its item after --sapo-timeout (30 s: the
    other items, a worker start included, take well under a second)."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "sapo", "--sapo-profile", "quick",
            "--sapo-check", "edge.realistic", "--sapo-candidate", f"{BC}:hangs_once", "--sapo-timeout", "30"]
    env = clean_environ()
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT_S, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out[-3000:]
    failed = re.findall(r"FAILED (\S+)", out)
    assert len(failed) == 1 and "[float16,token-mean]" in failed[0], out[-3000:]
    assert "timed out" in out
    counts = re.search(r"(\d+) failed, (\d+) passed, (\d+) deselected", out)
    assert counts and int(counts.group(3)) > 500, out[-3000:]  # the project's own tests were not run


@pytest.mark.parametrize("check", ["edge.realistic", "random"])
def test_an_oracle_exception_is_a_harness_error_never_the_candidate_s(check, tmp_path, capsys, monkeypatch):
    """The oracle raising (here: injected) ends in verdict "harness-error",
    exit 3 and a one-line message that says whose bug it is; no finding is
    made against the candidate, and the record names the oracle's error."""
    from conformance import evaluate

    def broken(*args, **kwargs):
        raise OverflowError("intermediate overflow in fsum")

    monkeypatch.setattr(evaluate, "reference_for", broken)
    code, out, err = run_cli("run", "numpy-fp32", "--check", check, "--dtype", "float32", "--mode", "token-mean",
                             "--profile", "quick", "--no-isolate", "--quiet", "--throughput", "none",
                             "--report-dir", str(tmp_path), capsys=capsys)
    assert code == cli.EXIT_HARNESS, err
    line = err.strip().splitlines()
    assert len(line) == 1 and "harness error: 1 check run raised inside sapo-conformance, not the candidate" in line[0]
    assert "the oracle or the comparison raised OverflowError: intermediate overflow in fsum" in line[0], err
    doc = load_report(tmp_path / "report.json")
    assert doc["verdict"] == "harness-error" and doc["findings"] == [], doc["findings"]
    assert [r["check"] for r in doc["checks"]] == [f"{check}:harness"]
    assert "harness error" in (tmp_path / "report.md").read_text()
