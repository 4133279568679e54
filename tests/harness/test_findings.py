"""Findings, accept files and the exit rule, on hand-made records: each rule
of conformance.findings / conformance.accept / report.fails in isolation."""

from __future__ import annotations

import pytest

from conformance import accept as acc
from conformance import findings
from conformance.report import fails, format_verdict


def rec(check, *, status="fail", category="semantics", defects=(), dtype="float32", mode="token-mean",
        evidence=True, ratio=10.0, size=4):
    return {"id": f"{check}[{dtype},{mode}]", "check": check, "group": check.split(".")[0].split(":")[0],
            "params": {"dtype": dtype, "loss_agg_mode": mode, "device": "cpu"}, "status": status,
            "category": None if status in ("pass", "skip") else category, "defects": list(defects),
            "shape": "" if defects else "gradient: a constant factor 2",
            "evidence": {"quantity": "grad", "tokens": []} if evidence else None,
            "max_error": ratio, "bound": 1.0, "message": f"{check} failed",
            "counterexample": {"logprob": [[0.0] * size]}, "reproduce": None}


def entry(reason="why", **kw):
    return acc.Entry(reason, source="test", **kw)


def test_records_of_one_defect_and_category_make_one_finding():
    recs = [rec("random:grad", defects=["detached-gate"]), rec("random:loss", defects=["detached-gate"]),
            rec("edge.knee:grad", defects=["detached-gate"], mode="seq-mean-token-mean"),
            rec("edge.all-masked:loss", category="non-finite", defects=["all-masked-nan"]),
            rec("random:grad", category="precision", defects=["naive-one-minus-sigmoid"], dtype="bfloat16"),
            rec("random:loss", status="pass")]
    out = findings.build(recs)
    assert [f["category"] for f in out.findings] == ["semantics", "non-finite", "precision"]
    first = out.findings[0]
    assert first["defects"] == ["detached-gate"] and len(first["records"]) == 3
    assert first["runs"] == ["float32,seq-mean-token-mean", "float32,token-mean"]
    assert first["fix"] and first["title"] and first["id"] == "F1"
    assert out.categories == {"semantics": {"findings": 1, "accepted": 0}, "non-finite": {"findings": 1, "accepted": 0},
                              "precision": {"findings": 1, "accepted": 0}, "contract": {"findings": 0, "accepted": 0}}
    assert findings.status_line(out.categories) == "semantics ✗ 1 · non-finite ✗ 1 · precision ✗ 1 · contract ✓"


def test_undiagnosed_records_group_by_check_and_say_their_shape():
    out = findings.build([rec("random:grad"), rec("random:grad", mode="seq-mean-token-sum"), rec("edge.x:loss")])
    assert len(out.findings) == 2
    assert all(f["title"].startswith("not a known defect") and f["defects"] == [] for f in out.findings)
    assert out.findings[0]["shape"] == "gradient: a constant factor 2"


def test_a_record_without_evidence_takes_the_diagnosis_of_its_unit():
    recs = [rec("invariant.padding:loss", category="non-finite", defects=["nan-through-mask"]),
            rec("invariant.padding:consistency", category="non-finite", evidence=False),
            rec("invariant.padding:consistency", category="non-finite", evidence=False, dtype="bfloat16")]
    out = findings.build(recs)
    named = [f for f in out.findings if f["defects"] == ["nan-through-mask"]]
    assert len(named) == 1 and len(named[0]["records"]) == 2  # the bfloat16 unit has no diagnosed record
    assert len(out.findings) == 2


def test_an_error_is_a_contract_finding():
    out = findings.build([rec("random:call", status="error", category="contract")])
    assert out.findings[0]["category"] == "contract"
    assert out.findings[0]["worst_ratio"] == 10.0


def test_the_example_is_the_smallest_counterexample():
    out = findings.build([rec("random:grad", defects=["detached-gate"], size=40),
                          rec("edge.knee:grad", defects=["detached-gate"], size=3)])
    assert out.findings[0]["example"]["record"] == "edge.knee:grad[float32,token-mean]"


def test_accept_entries_accept_findings_and_report_stale_ones():
    recs = [rec("edge.all-masked:loss", category="non-finite", defects=["all-masked-nan"]),
            rec("random:grad", category="precision", defects=["naive-one-minus-sigmoid"])]
    entries = [entry("trainer never sends one", check="edge.all-masked:*"),
               entry("float32 sigmoid", defect="naive-one-minus-sigmoid"),
               entry("long fixed", defect="detached-gate")]
    out = findings.build(recs, entries)
    assert not out.unaccepted
    assert [f["accepted"] for f in out.findings] == ["trainer never sends one", "float32 sigmoid"]
    assert out.stale == [{"match": "defect detached-gate", "reason": "long fixed", "source": "test"}]
    assert findings.status_line(out.categories) == \
        "semantics ✓ · non-finite ✓ (+1 accepted) · precision ✓ (+1 accepted) · contract ✓"


def test_an_entry_restricted_to_a_category_accepts_only_that_category():
    recs = [rec("random:grad", category="precision", defects=["naive-one-minus-sigmoid"]),
            rec("random:grad", category="semantics", dtype="bfloat16", defects=["naive-one-minus-sigmoid"])]
    out = findings.build(recs, [entry(defect="naive-one-minus-sigmoid", category="precision")])
    assert [(f["category"], f["accepted"]) for f in out.findings] == [("semantics", None), ("precision", "why")]


def _doc(found, *, fail_on=None, strict=False, stale=(), passed=5):
    return {"verdict": "non-conformant", "run": {"fail_on": fail_on}, "findings": found,
            "summary": {"pass": passed}, "accept": {"strict": strict, "stale": list(stale)}}


def test_fail_on_chooses_the_categories_that_fail_the_run():
    found = [{"category": "precision", "accepted": None}]
    assert fails(_doc(found))
    assert not fails(_doc(found, fail_on=["semantics", "non-finite", "contract"]))
    assert not fails(_doc([{"category": "precision", "accepted": "ok"}]))
    assert fails(_doc([], passed=0))  # nothing passed: nothing was certified


def test_strict_accept_fails_on_a_stale_entry():
    stale = [{"match": "defect detached-gate", "reason": "x", "source": "f"}]
    assert not fails(_doc([], stale=stale))
    assert fails(_doc([], stale=stale, strict=True))


def test_the_verdict_counts_accepted_deviations():
    assert format_verdict("conformant", None, 3) == "conformant with 3 accepted deviations"
    assert format_verdict("conformant", None, 1) == "conformant with 1 accepted deviation"
    assert format_verdict("non-conformant", ["dtype float32"], 2) == "non-conformant (partial: dtype float32)"


# --- accept files -------------------------------------------------------------


@pytest.mark.parametrize("entries, message", [
    ([{"defect": "detached-gate"}], "'reason' is required"),
    ([{"defect": "detached-gate", "reason": " "}], "'reason' is required"),
    ([{"defect": "detached-gate", "check": "x", "reason": "r"}], "exactly one of 'defect'"),
    ([{"reason": "r"}], "exactly one of 'defect'"),
    ([{"defect": "detached-gates", "reason": "r"}], "did you mean detached-gate"),
    ([{"check": "random:*", "reason": "r", "categroy": "precision"}], "unknown key(s) categroy"),
    ([{"check": "random:*", "reason": "r", "category": "speed"}], "unknown category 'speed'"),
    (["random:*"], "must be a table"),
    ({"check": "x"}, "must be a list"),
])
def test_a_malformed_entry_is_named_with_its_problem(entries, message):
    with pytest.raises(acc.AcceptError, match="accept|must be a list") as info:
        acc.parse(entries, "deviations.toml")
    assert message in str(info.value) and str(info.value).startswith("deviations.toml")


def test_accept_files_in_both_forms_and_discovery(tmp_path):
    top = tmp_path / "deviations.toml"
    top.write_text('accept = [{ check = "edge.*", reason = "r" }]\n')
    assert acc.load(top)[0].check == "edge.*"
    project = tmp_path / "proj"
    (project / "src").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.sapo-conformance]\n'
                                            'accept = [{ defect = "all-masked-nan", reason = "r" }]\n')
    assert acc.discover(project / "src") == project / "pyproject.toml"
    assert acc.load(project / "pyproject.toml")[0].defect == "all-masked-nan"
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "pyproject.toml").write_text('[project]\nname = "y"\n')
    assert acc.discover(tmp_path / "other") is None


@pytest.mark.parametrize("text, message", [
    (None, "no such file"),
    ("accept = [", "not valid TOML"),
    ("[tool.sapo-conformance]\nfoo = 1\n", "has no 'accept' list"),
    ("x = 1\n", "neither"),
])
def test_a_bad_accept_file_is_one_clear_error(tmp_path, text, message):
    path = tmp_path / "a.toml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(acc.AcceptError, match=message):
        acc.load(path)


def test_diff_reports_new_resolved_and_newly_accepted_findings():
    from conformance.compare import findings_changes

    def f(cat, defect, accepted=None):
        return {"category": cat, "defects": [defect], "title": defect, "records": ["x"], "accepted": accepted}

    old = {"findings": [f("semantics", "detached-gate"), f("precision", "naive-one-minus-sigmoid")]}
    new = {"findings": [f("precision", "naive-one-minus-sigmoid", "ok"), f("non-finite", "all-masked-nan")]}
    d = findings_changes(old, new)
    assert d["findings_compared"]
    assert d["new_findings"] == ["non-finite: all-masked-nan (1 records)"]
    assert d["resolved_findings"] == ["semantics: detached-gate (1 records)"]
    assert d["newly_accepted"] == ["precision: naive-one-minus-sigmoid (1 records): ok"]
    assert not findings_changes({"verdict": "x"}, new)["findings_compared"]  # a version-1 report
