"""conformance.compare: the ``--all`` matrix (its schema, validated like a
report's) and the diff of two reports (its warnings when they do not
compare like for like)."""

from __future__ import annotations

import copy
import json

import pytest

from conformance import cli, compare
from conformance.loading import registered_names
from conformance.report import ReportError, dumps, format_verdict, load_report, validate

#: a run of seconds: one check family, one dtype and mode, in this process
SMALL = ["--check", "edge.realistic", "--dtype", "float32", "--mode", "token-mean", "--no-isolate", "--profile",
         "quick", "--quiet"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A real, small report: numpy-fp32 on the edge.realistic checks, in
    this process."""
    d = tmp_path_factory.mktemp("numpy")
    assert cli.main(["run", "numpy-fp32", *SMALL, "--report-dir", str(d)]) == cli.EXIT_OK
    rep = load_report(d / "report.json")
    assert rep["verdict"] == "conformant" and len(rep["checks"]) >= 2
    return rep


@pytest.fixture
def failing(report):
    """The same report with its first check failing and another named
    candidate: a non-conformant second column of the matrix."""
    rep = copy.deepcopy(report)
    rep["checks"][0]["status"] = "fail"
    rep["summary"]["pass"] -= 1
    rep["summary"]["fail"] += 1
    rep["verdict"] = "non-conformant"
    rep["candidate"]["name"] = "other"
    assert validate(rep) is None
    return rep


@pytest.fixture
def matrix_doc(report, failing):
    return compare.matrix([
        {"name": "numpy-fp32", "status": "ran", "report": report},
        {"name": "other", "status": "ran", "report": failing},
        {"name": "gpu-only", "status": "unavailable", "reason": "cannot run on cpu"},
        {"name": "broken", "status": "error", "reason": "cannot import nowhere"},
    ])


# ---------------------------------------------------------------------------
# the matrix
# ---------------------------------------------------------------------------


def test_matrix_validates_and_holds_the_worst_status_per_check(matrix_doc, report, tmp_path):
    assert compare.validate_matrix(matrix_doc) is None
    assert matrix_doc["schema"] == "sapo-conformance.matrix" and matrix_doc["schema_version"] == 1
    first = report["checks"][0]["check"]
    assert matrix_doc["checks"][first] == {"numpy-fp32": "pass", "other": "fail"}
    assert [c["verdict"] for c in matrix_doc["candidates"]] == ["conformant", "non-conformant", None, None]
    path = tmp_path / "matrix.json"
    path.write_text(dumps(matrix_doc))
    assert compare.load_matrix(path) == matrix_doc
    md, page = compare.render_matrix_markdown(matrix_doc), compare.render_matrix_html(matrix_doc)
    assert "| broken | error: cannot import nowhere |" in md and f"| `{first}` | pass | fail | - | - |" in md
    assert page.startswith("<!DOCTYPE html>") and "unavailable: cannot run on cpu" in page


def test_an_entry_without_a_reason_still_gives_a_valid_matrix():
    m = compare.matrix([{"name": "broken", "status": "error", "reason": None}])
    assert compare.validate_matrix(m) is None and m["candidates"][0]["reason"] == ""


def _set(path, value):
    def mutate(doc):
        *parents, last = path
        node = doc
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return mutate


_DELETE = object()


@pytest.mark.parametrize("mutate, message", [
    (_set(["schema"], "sapo-conformance.report"), "not a sapo-conformance matrix (schema 'sapo-conformance.report')"),
    (_set(["schema_version"], 2), "unsupported matrix schema version 2"),
    (_set(["candidates"], {}), "malformed matrix: candidates must be a list"),
    (_set(["candidates", 0, "status"], "ok"), "malformed matrix: candidates[0].status must be one of ran, "),
    (_set(["candidates", 1, "reason"], _DELETE), "malformed matrix: candidates[1].reason is missing"),
    (_set(["candidates", 0, "verdict"], "fine"), "malformed matrix: candidates[0].verdict must be one of"),
    (_set(["candidates", 2, "verdict"], "conformant"), "malformed matrix: candidates[2].verdict must be null"),
    (_set(["candidates", 0, "verdict"], None), "malformed matrix: candidates[0].verdict must be a verdict"),
    (_set(["checks", "edge.realistic:loss", "other"], "passed"),
     "malformed matrix: checks.edge.realistic:loss.other must be one of pass, fail, error, skip"),
    (_set(["checks", "edge.realistic:loss", "nobody"], "pass"),
     "malformed matrix: checks.edge.realistic:loss names nobody, not among the candidates"),
])
def test_a_corrupted_matrix_is_rejected_naming_the_field(matrix_doc, tmp_path, mutate, message):
    assert "edge.realistic:loss" in matrix_doc["checks"]
    doc = copy.deepcopy(matrix_doc)
    mutate(doc)
    problem = compare.validate_matrix(doc)
    assert problem is not None and problem.startswith(message), problem
    path = tmp_path / "matrix.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ReportError) as exc:
        compare.load_matrix(path)
    assert str(exc.value).startswith(f"{path}: {message}")


def test_a_matrix_that_is_not_a_json_object_is_rejected(tmp_path):
    assert compare.validate_matrix([]) == "not a matrix (expected a JSON object)"
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(ReportError, match="m.json: not valid JSON"):
        compare.load_matrix(tmp_path / "m.json")
    (tmp_path / "r.json").write_text(json.dumps({"schema": "x"}))
    with pytest.raises(ReportError, match="not a sapo-conformance matrix"):
        compare.load_matrix(tmp_path / "r.json")


def test_run_all_writes_a_matrix_that_validates(tmp_path, capsys):
    """The CLI's matrix.json, every registered candidate in this process on
    one check family."""
    code = cli.main(["run", "--all", *SMALL, "--report-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert code in (cli.EXIT_OK, cli.EXIT_NONCONFORMANT), err
    m = compare.load_matrix(tmp_path / "matrix.json")
    assert [c["name"] for c in m["candidates"]] == registered_names()
    entry = next(c for c in m["candidates"] if c["name"] == "numpy-fp32")
    assert entry == {"name": "numpy-fp32", "status": "ran", "reason": "", "verdict": "conformant",
                     "partial": entry["partial"]} and entry["partial"]  # SMALL restricts the checks
    # a check only some candidates have (a fused kernel's grad-logits) has no cell for the others
    ran = [cells["numpy-fp32"] for cells in m["checks"].values() if "numpy-fp32" in cells]
    assert ran and all(cell == "pass" for cell in ran), ran
    words = format_verdict("conformant", entry["partial"])
    assert "(partial: " in words
    for name in ("matrix.md", "matrix.html"):  # the partial run says so in every format
        assert words in (tmp_path / name).read_text().replace("&#x27;", "'"), name


# ---------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------


def test_diff_of_one_candidates_runs_has_no_warning(report):
    d = compare.diff_reports(report, copy.deepcopy(report))
    assert d["warnings"] == [] and not d["regression"]
    assert compare.render_diff(d).splitlines()[0] == "verdict: conformant -> conformant"


def test_diff_of_different_candidates_warns_on_its_first_line(report, failing):
    d = compare.diff_reports(report, failing)
    assert d["warnings"] == ["the reports are for different candidates: numpy-fp32 (old) and other (new); "
                             "compare runs of one candidate"]
    lines = compare.render_diff(d).splitlines()
    assert lines[0] == f"WARNING: {d['warnings'][0]}" and lines[1] == "verdict: conformant -> non-conformant"
    assert d["regression"]  # the warning does not hide what changed


@pytest.mark.parametrize("key, value, expected", [
    ("profile", "full", "the reports ran different profiles: quick (old) and full (new)"),
    ("seed", 7, "the reports ran different seeds: 0 (old) and 7 (new)"),
])
def test_diff_warns_when_profile_or_seed_differ(report, key, value, expected):
    new = copy.deepcopy(report)
    new["run"][key] = value
    d = compare.diff_reports(report, new)
    assert len(d["warnings"]) == 1 and d["warnings"][0].startswith(expected + "; a check id then names different "
                                                                   "examples")
    assert compare.render_diff(d).splitlines()[0] == f"WARNING: {d['warnings'][0]}"


def test_diff_lists_every_warning_before_the_verdict(report, failing):
    failing["run"].update(profile="full", seed=3)
    lines = compare.render_diff(compare.diff_reports(report, failing)).splitlines()
    assert [line.split(":")[0] for line in lines[:4]] == ["WARNING"] * 3 + ["verdict"]
    assert "different candidates" in lines[0] and "profiles" in lines[1] and "seeds" in lines[2]


def test_cli_diff_prints_the_warning_first(report, failing, tmp_path, capsys):
    for name, doc in (("old", report), ("new", failing)):
        (tmp_path / f"{name}.json").write_text(dumps(doc))
    assert cli.main(["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == cli.EXIT_NONCONFORMANT
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("WARNING: the reports are for different candidates: numpy-fp32 (old)")
