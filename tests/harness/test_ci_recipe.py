"""The CI recipe in examples/ci and the pre-commit hook, exercised for real.

The workflow's ``run:`` steps, all but the installs, run with bash in a
temporary directory the way a runner runs them, with the fast ``numpy-fp32``
built-in as the candidate; the pre-commit hook's entry runs the same way.
Nothing here touches the network or writes into the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import yaml

from conformance.report import load_report
from tests.conftest import clean_environ

from .test_run import EX, ROOT, TIMEOUT_S

CI = ROOT / "examples" / "ci"
WORKFLOW = CI / "sapo-conformance.yml"
HOOKS = ROOT / ".pre-commit-hooks.yaml"
PRECOMMIT_EXAMPLE = CI / "pre-commit-config.yaml"


def load_yaml(text: str):
    """YAML with every key a string: YAML 1.1 (PyYAML) reads the workflow's
    ``on:`` key as the boolean True."""
    def keys_to_str(node):
        if isinstance(node, dict):
            return {("on" if k is True else str(k)): keys_to_str(v) for k, v in node.items()}
        if isinstance(node, list):
            return [keys_to_str(v) for v in node]
        return node

    return keys_to_str(yaml.safe_load(text))


def _workflow():
    wf = load_yaml(WORKFLOW.read_text())
    (job,) = wf["jobs"].values()
    return wf, job


def _is_install(step) -> bool:
    return step.get("name", "").startswith("Install")


def _step(job, name):
    (step,) = [s for s in job["steps"] if s.get("name") == name]
    return step


def _env(tmp_path, *scopes, **extra):
    """The environment a step sees: the workflow's, job's and step's env
    (``scopes``), then this machine's stand-ins for what the runner and the
    install steps provide, then ``extra``."""
    env = clean_environ()
    for scope in scopes:
        env.update(scope.get("env") or {})
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update(
        PATH=f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}",  # the installed harness
        PYTHONPATH=str(ROOT),  # the test candidates
        TMPDIR=str(tmp_path / "tmp"),  # mktemp stays in tmp_path
        GITHUB_STEP_SUMMARY=str(tmp_path / "step-summary.md"),
        SAPO_CANDIDATE="numpy-fp32",
        SAPO_BENCH_SHAPE="16x1024",
        # The workflow's own gate, on a stand-in clock that makes every timed
        # call last the same, so that how busy this machine is cannot trip it
        # (tests/harness/test_bench.py checks that the gate catches a slowdown).
        PYTEST_ADDOPTS="--benchmark-timer=tests.harness.bench_candidates.clock",
    )
    env.update(extra)
    return env


def _bash(script, cwd, env):
    """A run: step as GitHub runs it with shell: bash."""
    return subprocess.run(["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def _ok(res, what, code=0):
    assert res.returncode == code, (f"{what}: exit {res.returncode}, expected {code}\n"
                                    f"--- stdout ---\n{res.stdout}\n--- stderr ---\n{res.stderr}")


_UNPINNED_TORCH = re.compile(r"(?<![\w\[,/.-])torch(?!==)(?![\w-])")


def _unpinned_torch(line: str) -> bool:
    """A pip install line asking for torch without pinning it with ==."""
    return "pip install" in line and bool(_UNPINNED_TORCH.search(line))


def test_unpinned_torch_detection():
    assert _unpinned_torch("pip install torch") and _unpinned_torch("python -m pip install torch>=2.1 numpy")
    assert not _unpinned_torch("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert not _unpinned_torch('pip install "sapo-conformance[torch,test] @ git+https://x/y"')


def test_the_workflow_is_what_the_readme_says():
    wf, job = _workflow()
    assert set(wf["on"]) == {"push", "pull_request", "schedule", "workflow_dispatch"}
    (cron,) = wf["on"]["schedule"]
    assert len(cron["cron"].split()) == 5
    assert job["defaults"]["run"]["shell"] == "bash"  # bash -eo pipefail, as _bash runs the steps
    assert wf["env"]["SAPO_CANDIDATE"] and wf["env"]["SAPO_BENCH_SHAPE"] == "64x4096"
    assert wf["env"]["SAPO_BENCH_GATE"] == "min:10%"

    runs = [s for s in job["steps"] if "run" in s]
    installs = [s for s in runs if _is_install(s)]
    assert [s["name"] for s in installs] == ["Install torch (pinned, CPU build)", "Install the conformance harness",
                                             "Install this package"]
    assert all("pip install" in s["run"] for s in installs)
    assert not any("pip install" in s["run"] for s in runs if not _is_install(s)), "an install step not named Install"
    # the steps this test runs must be plain bash that runs whenever the job has not failed
    for s in runs:
        assert "${{" not in s["run"], f"{s['name']}: an expression in a run: script"
        assert s.get("if") in (None, "always()"), f"{s['name']}: a condition this test does not evaluate"

    # torch pinned, and installed before the harness
    assert "torch==2.13.0" in installs[0]["run"] and "sapo-conformance" in installs[1]["run"]
    for path in (WORKFLOW, CI / "README.md"):
        bad = [line for line in path.read_text().splitlines() if _unpinned_torch(line)]
        assert not bad, f"unpinned torch in {path.name}: {bad}"

    upload = _step(job, "Upload the reports")
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["if"] == "always()"
    assert upload["with"]["path"].rstrip("/") == "sapo-report"
    summary = _step(job, "Job summary")
    assert summary["if"] == "always()" and "$GITHUB_STEP_SUMMARY" in summary["run"]

    cache = _step(job, "Restore the throughput baseline")
    assert cache["uses"] == "actions/cache@v4" and cache["with"]["path"] == ".benchmarks"
    assert "runner.os" in cache["with"]["key"] and "github.ref_name" in cache["with"]["key"]
    names = [s.get("name") for s in job["steps"]]
    assert names.index("Restore the throughput baseline") < names.index("Throughput regression gate")
    assert "--benchmark-compare-fail=$SAPO_BENCH_GATE" in _step(job, "Throughput regression gate")["run"]


@pytest.mark.parametrize("event, profile", [("push", "quick"), ("pull_request", "quick"),
                                            ("schedule", "default"), ("workflow_dispatch", "default")])
def test_the_event_picks_the_profile(tmp_path, event, profile):
    # a stand-in sapo-conformance that records its command line
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "sapo-conformance").write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "$STUB_ARGS"\n')
    (stub / "sapo-conformance").chmod(0o755)
    wf, job = _workflow()
    step = _step(job, "SAPO conformance")
    env = _env(tmp_path, wf, job, step, GITHUB_EVENT_NAME=event, STUB_ARGS=str(tmp_path / "args"))
    env["PATH"] = f"{stub}{os.pathsep}{env['PATH']}"
    _ok(_bash(step["run"], tmp_path, env), step["name"])
    args = (tmp_path / "args").read_text().split()
    assert args == ["run", "--profile", profile, "--report-dir", "sapo-report", "--junit", "sapo-report/junit.xml"]


@pytest.mark.slow
def test_the_workflow_steps_run_green_on_a_push(tmp_path):
    wf, job = _workflow()
    work = tmp_path / "checkout"
    work.mkdir()
    steps = [s for s in job["steps"] if "run" in s and not _is_install(s)]
    assert [s["name"] for s in steps] == ["SAPO conformance", "Job summary", "Throughput regression gate"]
    out = {}
    for step in steps:
        res = _bash(step["run"], work, _env(tmp_path, wf, job, step, GITHUB_EVENT_NAME="push"))
        _ok(res, step["name"])
        out[step["name"]] = res.stdout + res.stderr

    reports = work / "sapo-report"
    report = load_report(reports / "report.json")
    assert report["verdict"] == "conformant" and report["run"]["profile"] == "quick"
    assert (reports / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert ET.parse(reports / "junit.xml").getroot().tag == "testsuite"
    assert (tmp_path / "step-summary.md").read_text() == (reports / "report.md").read_text()

    # first gate run: no baseline yet, so it records one without comparing
    assert "no throughput baseline yet" in out["Throughput regression gate"]
    assert "(NOW)" not in out["Throughput regression gate"]
    assert len(list((work / ".benchmarks").glob("*/*.json"))) == 1
    # second run, as after restoring that baseline from the cache: it compares
    gate = _step(job, "Throughput regression gate")
    res = _bash(gate["run"], work, _env(tmp_path, wf, job, gate, GITHUB_EVENT_NAME="push"))
    _ok(res, "the gate with a baseline")
    assert "no throughput baseline yet" not in res.stdout and "(NOW)" in res.stdout
    assert len(list((work / ".benchmarks").glob("*/*.json"))) == 2


def _hook():
    (hook,) = load_yaml(HOOKS.read_text())
    return hook


def _run_hook(tmp_path, candidate):
    cmd = shlex.split(_hook()["entry"])
    env = _env(tmp_path, SAPO_CANDIDATE=candidate)
    cmd[0] = shutil.which(cmd[0], path=env["PATH"])
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def test_the_pre_commit_hook_and_its_example_config():
    hook = _hook()
    assert hook["id"] == "sapo-conformance-quick" and hook["name"] == "SAPO conformance (quick)"
    assert hook["entry"] == "sapo-conformance run --profile quick --quiet --report-dir .sapo-report"
    assert hook["language"] == "python" and hook["pass_filenames"] is False and hook["always_run"] is False
    for name in ("kernels/sapo.py", "csrc/sapo.cu", "csrc/sapo.cuh", "csrc/bind.cpp", "kernels/sapo.triton"):
        assert re.search(hook["files"], name), name
    for name in ("README.md", "setup.cfg", "sapo.pyc"):
        assert not re.search(hook["files"], name), name

    remote, local = load_yaml(PRECOMMIT_EXAMPLE.read_text())["repos"]
    assert [h["id"] for h in remote["hooks"]] == [hook["id"]] and "rev" in remote
    deps = remote["hooks"][0]["additional_dependencies"]
    assert [d for d in deps if d.startswith("torch")] == ["torch==2.13.0"]
    (lhook,) = local["hooks"]
    assert local["repo"] == "local" and lhook["language"] == "system" and "env" not in lhook
    assert {k: lhook[k] for k in ("entry", "pass_filenames", "files")} == \
        {k: hook[k] for k in ("entry", "pass_filenames", "files")}


def test_the_pre_commit_hook_passes_a_conformant_candidate(tmp_path):
    _ok(_run_hook(tmp_path, "numpy-fp32"), "the hook on numpy-fp32")
    assert load_report(tmp_path / ".sapo-report" / "report.json")["verdict"] == "conformant"


def test_the_pre_commit_hook_fails_a_nonconformant_candidate(tmp_path):
    _ok(_run_hook(tmp_path, f"{EX}:trinity_published"), "the hook on trinity_published", code=1)
    assert load_report(tmp_path / ".sapo-report" / "report.json")["verdict"] == "non-conformant"
