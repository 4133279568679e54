"""The real-framework candidates where their packages are not installed
(this suite's environment): listed, with the install command; and the matrix
writer on reports made here.  scripts/frameworks.sh runs them for real."""

from __future__ import annotations

import json

from conformance import certify, cli, load_candidate
from conformance.frameworks import FRAMEWORKS, FRAMEWORKS_BY_NAME, matrix

from tests.mutants import MUTANTS


def detached_gate_mutant():
    return next(m.candidate for m in MUTANTS if m.name == "detached-gate")


def test_every_framework_is_registered_and_says_how_to_install_it(capsys):
    assert cli.main(["list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    for fw in (f for f in FRAMEWORKS if f.registered):
        cand = load_candidate(fw.name)
        assert cand.info.profile and cand.info.dtypes
        if not cand.availability():
            assert fw.install in cand.availability().reason
            assert fw.install in rows[fw.name]["reason"]
            assert not rows[fw.name]["runs_here"]


def test_the_install_command_pins_the_certified_version():
    assert FRAMEWORKS_BY_NAME["verl"].install == "pip install verl==0.9.1"
    assert FRAMEWORKS_BY_NAME["trinity-rft"].install.endswith("pip install --no-deps trinity-rft==0.6.0")


def test_the_matrix_names_defects_per_category_and_says_why_a_framework_did_not_run(tmp_path):
    report = certify(detached_gate_mutant(), profile="quick", isolate=False, throughput="none", checks=["random"])
    verl_dir = tmp_path / "reports" / "verl"
    verl_dir.mkdir(parents=True)
    report.write(verl_dir)
    trinity_dir = tmp_path / "reports" / "trinity-rft"
    trinity_dir.mkdir(parents=True)
    (trinity_dir / "install-error.txt").write_text("cannot install trinity-rft==0.6.0 here:\nERROR: no network\n")
    matrix.write(tmp_path)
    md = (tmp_path / "README.md").read_text()
    verl_row = next(line for line in md.splitlines() if line.startswith("| verl |"))
    assert "✗ **detached-gate**" in verl_row and "| ✓ |" in verl_row  # semantics named, the others clean
    assert "sapo-conformance run verl --profile quick" in verl_row
    trinity_row = next(line for line in md.splitlines() if line.startswith("| trinity-rft |"))
    assert "not certified: ERROR: no network" in trinity_row
    html = (tmp_path / "matrix.html").read_text()
    assert "detached-gate" in html and "<script" not in html


def test_the_expected_results_fail_on_a_new_finding_and_on_a_fixed_one(tmp_path, capsys):
    from conformance.accept import AcceptError
    from conformance.frameworks import expected

    report = certify(detached_gate_mutant(), profile="quick", isolate=False, throughput="none", checks=["random"])
    report.write(tmp_path)
    data = json.loads((tmp_path / "report.json").read_text())
    failing = [r for r in data["checks"] if r["status"] == "fail"]
    assert failing and all("detached-gate" in r["defects"] for r in failing if r["category"] == "semantics")
    listed = tmp_path / "expected.toml"
    listed.write_text('accept = [\n'
                      '  { defect = "detached-gate", reason = "the gate is detached (confirmed upstream)" },\n'
                      '  { check = "random:*", reason = "everything else the detached gate breaks" },\n'
                      ']\n')
    assert expected.differences(data, expected.load(listed, "quick")) == []
    # a fixed finding: an entry that covers no failing check
    stale = tmp_path / "stale.toml"
    stale.write_text(listed.read_text().replace("]\n", '  { defect = "exp-overflow-nan", reason = "old" },\n]\n'))
    lines = expected.differences(data, expected.load(stale, "quick"))
    assert any(line.startswith("fixed: defect exp-overflow-nan") for line in lines)
    # ... unless the entry is expected only in another profile's runs
    other = tmp_path / "other.toml"
    other.write_text(listed.read_text().replace(
        "]\n", '  { defect = "exp-overflow-nan", reason = "old", profiles = ["default"] },\n]\n'))
    assert expected.differences(data, expected.load(other, "quick")) == []
    assert expected.differences(data, expected.load(other, "default")) == lines
    other.write_text('accept = [{ defect = "detached-gate", reason = "x", profiles = ["fast"] }]\n')
    with pytest.raises(AcceptError, match="'profiles' must be a list of quick, default, thorough"):
        expected.load(other, "quick")
    # a new finding: nothing expected
    empty = tmp_path / "empty.toml"
    empty.write_text("accept = []\n")
    assert expected.main([str(empty), str(tmp_path / "report.json")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("new: ") and "detached-gate" in out and "confirm it" in out
    assert expected.main([str(listed), str(tmp_path / "report.json")]) == 0


# -- README "Certifying a real framework": every block as printed ---------------------------------------------

import os  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from tests.conftest import clean_environ  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ENVS = Path(os.environ.get("SAPO_FRAMEWORKS_ENVS", ROOT / ".frameworks"))
_BLOCK = re.compile(r"<!-- framework(-python)?: ([\w-]+) -->\n```(?:bash|python)\n(.*?)```", re.S)


def _readme_blocks() -> list[tuple[str, str, str]]:
    return [(kind or "", name, body) for kind, name, body in _BLOCK.findall((ROOT / "README.md").read_text())]


def _env_of(name: str) -> Path:
    env = ENVS / FRAMEWORKS_BY_NAME[name].env_name
    if not (env / "bin" / "sapo-conformance").exists():
        pytest.skip(f"no environment for {name} at {env}: `bash scripts/frameworks.sh {name}` builds it "
                    f"(.ci/run does)")
    return env


def test_the_readme_has_a_block_per_framework_and_its_install_line_is_the_data():
    blocks = {name: body for kind, name, body in _readme_blocks() if not kind}
    assert set(blocks) == {f.name for f in FRAMEWORKS if f.registered}
    for name, body in blocks.items():
        fw = FRAMEWORKS_BY_NAME[name]
        install, run = body.strip().splitlines()
        assert install == "pip install torch==2.13.0 && " + fw.install.replace(
            "pip install ", "pip install -c <(echo torch==2.13.0) "), name
        assert run == f"sapo-conformance run {name} --profile quick" + "".join(f" --check={c}" for c in fw.checks)


@pytest.mark.parametrize("name", [n for kind, n, _ in _readme_blocks() if not kind])
def test_each_readme_framework_run_works_as_printed(name, tmp_path):
    env = _env_of(name)
    run = next(body for kind, n, body in _readme_blocks() if n == name and not kind).strip().splitlines()[1]
    environ = clean_environ(PATH=f"{env / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
    done = subprocess.run(["bash", "-c", run], cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), f"{name}: exit {done.returncode}: {(done.stderr or done.stdout)[-400:]}"
    report = json.loads((tmp_path / "sapo-report" / "report.json").read_text())
    assert report["candidate"]["name"] == name and report["candidate"]["version"] == FRAMEWORKS_BY_NAME[name].version
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"{name}: {report['verdict'].upper()}") and report["status_line"] in first, first


def test_the_readme_python_recipe_works_as_printed(tmp_path):
    (kind, name, body), = [b for b in _readme_blocks() if b[0]]
    env = _env_of(name)
    done = subprocess.run([str(env / "bin" / "python"), "-c", body], cwd=tmp_path, env=clean_environ(),
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-400:]}"
    assert done.stdout.strip().splitlines()[-1] == "non-conformant"
