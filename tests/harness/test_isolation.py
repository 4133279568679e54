"""Isolation and robustness of `run`: crashing, hanging, memory-hungry and
garbage-returning candidates get error/fail records with the reason, the run
goes on and writes a complete report; user errors are one line; a report
directory never mixes two runs; nothing is half-written."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conformance import cli
from conformance.report import load_report

from .test_run import ROOT, run_cli

BR = "tests.harness.broken_candidates"
#: two check groups, one of them with float16 (where the broken ones break)
FEW = ["--profile", "quick", "--quiet", "--check", "edge.realistic", "--check", "random",
       "--dtype", "float32", "--dtype", "float16", "--mode", "token-mean"]


def certify(tmp_path, name, *extra):
    code, out, err = run_cli("run", f"{BR}:{name}", "--report-dir", str(tmp_path), *FEW, *extra)
    report = load_report(tmp_path / "report.json") if (tmp_path / "report.json").exists() else None
    return code, out, err, report


def by_dtype(report, dtype):
    return [r for r in report["checks"] if r["params"]["dtype"] == dtype]


def assert_contained(code, err, report, reason):
    """Non-conformant (not a harness error), complete report, float32 clean,
    every float16 unit an error naming ``reason``."""
    assert code == cli.EXIT_NONCONFORMANT, err
    assert report is not None and report["verdict"] == "non-conformant"
    assert by_dtype(report, "float32") and all(r["status"] == "pass" for r in by_dtype(report, "float32"))
    bad = by_dtype(report, "float16")
    assert bad and all(r["status"] == "error" for r in bad), [r["status"] for r in bad]
    assert all(reason in r["message"] for r in bad), {r["message"] for r in bad}
    assert "Traceback" not in err


def test_a_segfault_is_a_check_error_and_the_run_goes_on(tmp_path):
    code, out, err, report = certify(tmp_path, "segfaults")
    assert_contained(code, err, report, "SIGSEGV")
    assert (tmp_path / "report.html").exists() and (tmp_path / "report.md").exists()


def test_os_exit_and_system_exit_are_contained(tmp_path):
    code, out, err, report = certify(tmp_path / "a", "exits")
    assert_contained(code, err, report, "exited with status 7")
    code, out, err, report = certify(tmp_path / "b", "system_exit")
    assert_contained(code, err, report, "exited with status 5")


def test_an_exception_is_a_check_error_with_its_message(tmp_path):
    code, out, err, report = certify(tmp_path, "raises")
    assert_contained(code, err, report, "RuntimeError: the kernel gave up")


def test_a_hang_times_out_per_check_group(tmp_path):
    # One check group, float32 first: its worker starts before the group's
    # deadline does, and its float32 units take well under a second here, so
    # 15 s leaves room for a machine 10x slower.  Then float16 hangs.
    code, out, err = run_cli("run", f"{BR}:hangs", "--report-dir", str(tmp_path), "--profile", "quick", "--quiet",
                             "--check", "random", "--dtype", "float32", "--dtype", "float16", "--mode", "token-mean",
                             "--mode", "seq-mean-token-mean", "--timeout", "15")
    report = load_report(tmp_path / "report.json")
    assert_contained(code, err, report, "timed out")
    # the group waits its deadline once: the unit that hung is killed, and
    # the rest of the group is not run rather than waiting deadlines of its own
    first, rest = [r["message"] for r in by_dtype(report, "float16")]
    # the float32 units came back in well under a second, the float16 one ran ~14 s: hung, not slow
    assert first.startswith("timed out: check group 'random' did not finish within 15 s: 2 of 4 units finished"), first
    assert first.endswith("(the candidate hung?); its process was killed"), first
    assert rest == "not run, the group timed out: " + first.removeprefix("timed out: ").removesuffix("; its process was killed"), rest


def test_memory_exhaustion_is_a_memory_error_under_the_limit(tmp_path):
    code, out, err, report = certify(tmp_path, "memory_hog", "--memory-limit", "2G")
    assert_contained(code, err, report, "MemoryError")


@pytest.mark.parametrize("name,status,reason", [
    ("wrong-shape", "error", "gradient has shape"),
    ("returns-list", "error", "loss must be a scalar"),
    ("returns-none", "error", ""),
    ("nan-grad", "fail", ""),
    ("wrong-dtype", "fail", "gradient is float64"),
])
def test_garbage_results_are_failures_with_the_reason(tmp_path, name, status, reason):
    code, out, err, report = certify(tmp_path, name.replace("-", "_"), "--dtype", "float32",
                                     "--check", "edge.realistic")
    assert code == cli.EXIT_NONCONFORMANT, err
    bad = [r for r in report["checks"] if r["status"] in ("fail", "error")]
    assert bad and any(r["status"] == status and reason in r["message"] for r in bad), \
        [(r["id"], r["status"], r["message"]) for r in bad]


def test_a_crash_while_loading_is_one_line_and_exit_1(tmp_path):
    code, out, err = run_cli("run", f"{BR}:crash_on_load", "--report-dir", str(tmp_path), *FEW)
    assert code == cli.EXIT_NONCONFORMANT
    assert "SIGSEGV while loading" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "report.json").exists()


def test_no_isolate_runs_in_process(tmp_path):
    code, out, err = run_cli("run", f"{BR}:raises", "--no-isolate", "--report-dir", str(tmp_path), *FEW[:3])
    assert code == cli.EXIT_NONCONFORMANT
    assert "RuntimeError: the kernel gave up" in (tmp_path / "report.md").read_text()


def test_isolated_and_in_process_runs_agree(tmp_path):
    args = ["--profile", "quick", "--quiet", "--dtype", "float32", "--check", "edge.*", "--check", "invariant.*"]
    run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path / "iso"), *args)
    run_cli("run", "numpy-fp32", "--no-isolate", "--report-dir", str(tmp_path / "inproc"), *args)
    a, b = load_report(tmp_path / "iso" / "report.json"), load_report(tmp_path / "inproc" / "report.json")
    strip = lambda rep: [(r["id"], r["status"], r["max_error"], r["examples"]) for r in rep["checks"]]  # noqa: E731
    assert strip(a) == strip(b) and a["verdict"] == "conformant"


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds ``marker`` (a worker inherits
    its harness's environment, whatever its command line)."""
    found = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # gone, or not ours
            continue
        if marker.encode() in env and state != "Z":
            found.append(pid)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_no_worker_is_left_behind(tmp_path, monkeypatch):
    marker = f"SAPO_TEST_RUN={tmp_path.name}-{os.getpid()}"
    monkeypatch.setenv("SAPO_TEST_RUN", marker.split("=", 1)[1])
    certify(tmp_path, "hangs", "--timeout", "2")
    # the harness kills and reaps its workers before it exits; allow a busy
    # machine time to finish that, but not a worker its lifetime (an hour)
    deadline = time.monotonic() + 60
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(marker) == []


# --- user errors: one line, documented exit code, no traceback ---------------


@pytest.mark.parametrize("args,msg", [
    (("run", "no-such-candidate"), "no-such-candidate"),
    (("run", "no_such_module:attr"), "no_such_module"),
    (("run", "tests.harness.broken_candidates:nothing_here"), "nothing_here"),
    (("run", "numpy-fp32", "--profile", "fast"), "--profile"),
    (("run", "numpy-fp32", "--mode", "token-sum"), "--mode"),
    (("run", "numpy-fp32", "--dtype", "float8"), "float8"),
    (("run", "numpy-fp32", "--timeout", "-1"), "--timeout"),
    (("run", "numpy-fp32", "--memory-limit", "lots"), "--memory-limit"),
    (("run", "numpy-fp32", "--report-dir", "/proc/version/x"), "report directory"),
    (("diff", "/nonexistent/a.json", "/nonexistent/b.json"), "cannot read"),
    (("frobnicate",), "invalid choice"),
])
def test_user_errors_are_one_line(tmp_path, args, msg):
    code, out, err = run_cli(*args)
    assert code == cli.EXIT_USAGE, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and msg in lines[0] and "Traceback" not in err, err


def test_an_unwritable_report_directory_is_a_usage_error(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(ro), *FEW)
    assert code == cli.EXIT_USAGE and "not writable" in err


def test_malformed_json_given_to_diff_is_one_line(tmp_path):
    good = tmp_path / "good"
    run_cli("run", "numpy-fp32", "--report-dir", str(good), *FEW)
    for i, text in enumerate(["{", "[]", '{"schema": "x"}', "\xff\xfe", "NaN"]):
        bad = tmp_path / f"bad{i}.json"
        bad.write_text(text, encoding="latin-1")
        code, out, err = run_cli("diff", str(good / "report.json"), str(bad))
        assert code == cli.EXIT_USAGE and str(bad) in err and len(err.strip().splitlines()) == 1, err


# --- report directories ------------------------------------------------------


def test_a_previous_run_is_replaced_never_mixed(tmp_path):
    d = tmp_path / "out"
    (d / "old-candidate").mkdir(parents=True)
    for name in ("report.json", "report.md", "report.html"):
        (d / name).write_text("from an older run")
        (d / "old-candidate" / name).write_text("from an older run")
    (d / "matrix.json").write_text("from an older run")
    (d / "notes.txt").write_text("the user's own file")
    (d / "keep").mkdir()
    (d / "keep" / "report.json").write_text("x")
    (d / "keep" / "data.csv").write_text("not a report")
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(d), "--profile", "quick",
                             "--check", "edge.realistic")
    assert code == cli.EXIT_OK, err
    assert "replacing the previous run" in err
    assert sorted(p.name for p in d.iterdir()) == ["keep", "notes.txt", "report.html", "report.json", "report.md"]
    run_id = load_report(d / "report.json")["run_id"]
    assert run_id in (d / "report.md").read_text() and run_id in (d / "report.html").read_text()
    assert (d / "notes.txt").read_text() == "the user's own file" and (d / "keep" / "data.csv").exists()


def test_a_run_killed_midway_leaves_no_report_json(tmp_path, monkeypatch):
    from conformance import render

    d = tmp_path / "out"
    assert cli.main(["run", "numpy-fp32", "--no-isolate", "--report-dir", str(d), *FEW]) == cli.EXIT_OK
    old = load_report(d / "report.json")["run_id"]

    def killed(report):
        raise KeyboardInterrupt

    monkeypatch.setattr(render, "render_html", killed)
    assert cli.main(["run", "numpy-fp32", "--no-isolate", "--report-dir", str(d), *FEW]) == cli.EXIT_HARNESS
    assert not (d / "report.json").exists()  # neither the old one (it would lie) nor a half-written new one
    assert not [p for p in d.iterdir() if p.name.endswith(".tmp")]
    assert old not in (d / "report.md").read_text()


def test_a_killed_process_leaves_no_partial_file(tmp_path):
    """SIGKILL in the middle of writing a large report: every file present is
    complete (atomic rename), never truncated."""
    code = f"""
import sys, os, signal
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from conformance.report import atomic_write
big = "x" * (64 << 20)
atomic_write(Path({str(tmp_path)!r}) / "report.json", "{{}}")
import threading
threading.Timer(0.05, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
while True:
    atomic_write(Path({str(tmp_path)!r}) / "report.json", big)
"""
    subprocess.run([sys.executable, "-c", code], timeout=120)
    text = (tmp_path / "report.json").read_text()
    assert text in ("{}", "x" * (64 << 20))


# --- untrusted strings -------------------------------------------------------


def test_a_candidate_named_like_markup_cannot_inject(tmp_path):
    code, out, err, report = certify(tmp_path, "markup")
    assert report["candidate"]["name"] == "<script>alert(1)</script>"
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    json.loads((tmp_path / "report.json").read_text())  # plain JSON, no pickle


def test_a_group_out_of_time_says_whether_it_was_slow_or_hung():
    """The issue-17 case: 11 of 12 units done when the deadline passed, the
    last one cut off after running no longer than the others: slow.  A unit
    running far longer than its finished siblings, or a group where nothing
    finished: hung?  (The rule, not a timing: tested on numbers.)"""
    from conformance.isolate import HUNG_FACTOR, timeout_reason

    slow = timeout_reason("random", 900, [70.0] * 11, 12, running_s=60.0)
    assert "11 of 12 units finished" in slow and "slow, not hung" in slow and "--timeout" in slow
    assert "slow, not hung" in timeout_reason("random", 900, [70.0] * 11, 12)  # between units
    hung = timeout_reason("random", 15, [0.3, 0.2], 4, running_s=14.5)
    assert hung.endswith("this one ran 14.5 s (the candidate hung?)") and "2 of 4 units finished" in hung
    assert "hung?" in timeout_reason("edge", 15, [], 3, running_s=15.0)
    assert "slow" in timeout_reason("edge", 15, [1.0], 3, running_s=HUNG_FACTOR * 1.0)
