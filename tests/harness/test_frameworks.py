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
