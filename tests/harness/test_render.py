"""The rendered report (schema version 2): the verdict and status line first
in every format, then one section per finding -- its diagnosis, fix, the
checks and runs it covers, the offending tokens -- and a Markdown that stays
small however much fails.  A version-1 report (no findings) still renders.

The version-2 keys are synthetic here (added to a real report of a mutant),
so these tests pin the rendering, not the classification."""

from __future__ import annotations

import copy
import json
import re

import pytest

from conformance import render

CATS = ("semantics", "non-finite", "precision", "contract")
V2_REPORT_KEYS = ("findings", "categories", "accept", "verdict_text", "status_line")
V2_RECORD_KEYS = ("category", "practical_error", "defects", "shape", "evidence")
FIX = "multiply the gate by 4/tau, as SPEC.md section 2 writes it"


@pytest.fixture(scope="module")
def base() -> dict:
    """A real report of a mutant that fails ~300 records (float32, quick)."""
    from conformance import certify
    from tests.mutants import MUTANTS

    report = certify(MUTANTS[0].candidate, profile="quick", isolate=False, dtypes=["float32"])
    return json.loads(json.dumps(report.document))


def as_v1(report: dict) -> dict:
    """The report without any version-2 key."""
    doc = copy.deepcopy(report)
    for k in V2_REPORT_KEYS:
        doc.pop(k, None)
    doc["run"].pop("fail_on", None)
    doc["schema_version"] = 1
    for rec in doc["checks"]:
        for k in V2_RECORD_KEYS:
            rec.pop(k, None)
    return doc


def _evidence(ce: dict | None) -> dict | None:
    """Evidence as the schema describes it, made up from a counterexample's
    first tokens (got = 4 x expected: the mutant drops 4/tau)."""
    if not ce or "logprob" not in ce:
        return None
    num = render.to_float
    lp, old, adv, mask = ce["logprob"], ce["old_logprob"], ce["advantages"], ce["mask"]
    tokens = []
    for i, row in enumerate(lp):
        for j, x in enumerate(row):
            d = num(x) - num(old[i][j])
            a = num(adv[i][j] if isinstance(adv[i], list) else adv[i])
            tokens.append({"row": i, "col": j, "log_ratio": d, "advantage": a,
                           "tau": ce["options"]["tau_pos"] if a > 0 else ce["options"]["tau_neg"],
                           "mask": mask[i][j], "got": 0.25 * d, "expected": d})
    return {"quantity": "loss", "got": -0.19907726347446442, "expected": -0.796309032458497, "tokens": tokens[:8]}


def as_v2(report: dict, n_findings: int = 40, accepted: tuple[int, ...] = (3,),
          stale: tuple[str, ...] = ("edge.old-check:*",), title=None) -> dict:
    """The report with version-2 keys: its failing records split into
    ``n_findings`` findings (categories in turn), the ones in ``accepted``
    accepted, ``stale`` as stale accept entries."""
    doc = as_v1(report)
    doc["schema_version"] = 2
    failing = [r for r in doc["checks"] if r["status"] in ("fail", "error")]
    assert len(failing) >= n_findings
    for rec in doc["checks"]:
        bad = rec["status"] in ("fail", "error")
        rec.update(category=None, practical_error=None, defects=[], shape="", evidence=None)
        if bad:
            rec["evidence"] = _evidence(rec["counterexample"])
    found = []
    for k in range(n_findings):
        recs = failing[k::n_findings]
        known = k % 3 != 2
        cat = CATS[k % 4]
        shape = "" if known else "constant factor 0.2500 on the loss"
        for r in recs:
            r.update(category=cat, defects=["no-4-over-tau"] if known else [], shape=shape, practical_error=12.5)
        small = min(recs, key=lambda r: len(json.dumps(r["counterexample"])))
        found.append({
            "id": f"F{k + 1}", "category": cat, "defects": ["no-4-over-tau"] if known else [],
            "title": (title or "the gate lacks its 4/tau factor") if known else f"not a known defect: {shape}",
            "fix": FIX if known else None, "seen_in": "verl 0.4.1" if known else None, "shape": shape,
            "records": [r["id"] for r in recs], "checks": list(dict.fromkeys(r["check"] for r in recs)),
            "runs": list(dict.fromkeys(f"{r['params']['dtype']},{r['params']['loss_agg_mode']}" for r in recs)),
            "worst_ratio": max(r["max_error"] / r["bound"] for r in recs),
            "example": {"record": small["id"], "evidence": small["evidence"], "counterexample": small["counterexample"],
                        "reproduce": small["reproduce"]},
            "accepted": "known upstream, tracked in #12" if k in accepted else None,
        })
    doc["findings"] = found
    doc["categories"] = {c: {"findings": sum(1 for f in found if f["category"] == c and not f["accepted"]),
                             "accepted": sum(1 for f in found if f["category"] == c and f["accepted"])} for c in CATS}
    doc["status_line"] = render.status_line({"categories": doc["categories"]})
    doc["verdict_text"] = "non-conformant" if len(found) > len(accepted) else \
        f"conformant with {len(accepted)} accepted deviations"
    doc["accept"] = {"sources": ["accept.toml"], "entries": len(accepted) + len(stale),
                     "stale": [{"match": m, "reason": "fixed in 0.5"} for m in stale], "strict": False}
    doc["run"]["fail_on"] = list(CATS)
    return doc


@pytest.fixture(scope="module")
def v2(base) -> dict:
    return as_v2(base)


def test_the_verdict_and_status_line_come_first_in_every_format(v2):
    verdict, line, name = v2["verdict_text"], v2["status_line"], v2["candidate"]["name"]
    assert line.startswith("semantics ✗ 10 · non-finite ✗ 10 · ") and "contract ✗ 9 (+1 accepted)" in line
    md = render.render_markdown(v2)
    first, rest = md.split("\n", 1)
    assert first.startswith("# ") and f"Verdict: {verdict}" in first
    assert rest.lstrip().startswith(f"**{line}**")
    page = render.render_html(v2)
    body = page[page.index("<body>"):]
    assert body.index(verdict) < body.index(render.html_escape(line)) < body.index("<h2>")
    lines = render.terminal_summary(v2).splitlines()
    assert lines[0] == f"{name}: {verdict.upper()} — {line}"


def test_the_first_finding_shows_its_diagnosis_fix_tokens_and_counterexample(v2):
    f1 = v2["findings"][0]
    md = render.render_markdown(v2)
    section = md[md.index("### F1 · semantics · the gate lacks its 4/tau factor"):md.index("### F2 ·")]
    assert "`no-4-over-tau`" in section and FIX in section and "verl 0.4.1" in section
    assert "| row | col | log-ratio | A | τ | mask | got | expected |" in section
    assert "loss: got -0.1991, expected -0.7963" in section
    assert section.count("\n| ") - 1 <= 1 + 8  # the header and at most eight tokens
    assert "<details><summary>counterexample JSON</summary>" in section and "</details>" in section
    assert f1["example"]["reproduce"] in section
    assert "float32 × token-mean" in section and "Covers " in section
    page = render.render_html(v2)
    html_section = page[page.index('<h3 id="F1">'):page.index('<h3 id="F2">')]
    assert FIX in html_section and "<th>log-ratio</th>" in html_section
    assert render.html_escape(json.dumps(f1["example"]["counterexample"]["options"], separators=(", ", ": ")))[:40] \
        in html_section


def test_a_failing_everything_markdown_stays_under_30_kb(v2):
    md = render.render_markdown(v2)
    assert len(v2["findings"]) == 40 and sum(r["status"] == "fail" for r in v2["checks"]) >= 300
    assert len(md.encode()) < 30_000, len(md.encode())
    # the findings are the sections: no section per failing record
    headings = re.findall(r"^### (F\d+) ", md, flags=re.M)
    assert headings and len(headings) <= 40
    listed = set(headings) | set(re.findall(r"F\d+", md[md.find("more findings ("):]))
    assert {f["id"] for f in v2["findings"]} <= listed  # every finding, at least by its id
    order = [md.index(s) for s in ("## Findings", "## Summary by group", "## Checks")]
    assert order == sorted(order)
    assert "<svg" not in md


def test_accepted_findings_come_last_and_stale_entries_are_named(v2):
    md = render.render_markdown(v2)
    headings = re.findall(r"^### (F\d+) ", md, flags=re.M)
    assert "F4" not in headings or headings[-1] == "F4"
    few = render.render_markdown(as_v2(v2, n_findings=5, accepted=(1,)))
    assert re.findall(r"^### (F\d+) ", few, flags=re.M) == ["F1", "F3", "F4", "F5", "F2"]
    assert "**Accepted:** known upstream, tracked in #12." in few
    page = render.render_html(v2)
    assert page.index('<h3 id="F40">') < page.index('<h3 id="F4">')
    assert "Accepted:</strong> known upstream, tracked in #12" in page and "edge.old-check:*" in page
    assert "edge.old-check:*" in md


def test_the_terminal_prints_twenty_findings_then_a_count(v2):
    text = render.terminal_summary(v2)
    lines = text.splitlines()
    found = [line for line in lines if re.match(r"  F\d+ ", line)]
    assert len(found) == 20 and all(len(line) <= 160 for line in found)
    assert "  … and 20 more findings (see report.md)" in lines
    assert found[0].startswith("  F1 semantics  no-4-over-tau: the gate lacks its 4/tau factor — ")
    assert "checks in" in found[0] and "; fix: multiply" in found[0]
    assert "  stale accept entry: edge.old-check:* — no longer fails" in lines
    assert any(line.startswith("GROUP") for line in lines)
    few = as_v2(v2, n_findings=5, accepted=(1,), stale=())
    lines = render.terminal_summary(few).splitlines()
    assert lines[2].startswith("  F1 ") and lines[6].startswith("  F2 accepted (known upstream, tracked in #12) ")
    verbose = render.terminal_summary(few, verbose=True).splitlines()
    failing = [r for r in few["checks"] if r["status"] in ("fail", "error")]
    assert len(verbose) == len(lines) + len(failing)
    assert f"  FAIL {failing[0]['id']} [{failing[0]['category']}]: {failing[0]['message']}" in verbose


def test_a_long_counterexample_is_shortened_in_markdown_not_in_html(base):
    doc = as_v2(base, n_findings=1)
    f = doc["findings"][0]
    big = max((r for r in doc["checks"] if r["counterexample"]), key=lambda r: len(json.dumps(r["counterexample"])))
    assert len(json.dumps(big["counterexample"])) > 3 * render.CE_LIMIT
    f["example"].update(record=big["id"], counterexample=big["counterexample"])
    md = render.render_markdown(doc)
    details = md[md.index("<details>"):md.index("</details>")]
    assert "the full counterexample is in report.json" in details and big["id"] in details
    assert '"shape": [' in details and len(details) < render.CE_LIMIT + 500
    page = render.render_html(doc)
    assert render.html_escape(render._ce_text(big["counterexample"])) in page


def test_a_version_1_report_still_renders(base):
    doc = as_v1(base)
    md = render.render_markdown(doc)
    assert md.startswith(f"# {doc['candidate']['name']} — Verdict: non-conformant")
    assert "## Findings" not in md and "## Failures" in md and len(md.encode()) < 30_000
    page = render.render_html(doc)
    assert "<h2>Findings" not in page and "<h2>Failures</h2>" in page
    lines = render.terminal_summary(doc).splitlines()
    assert lines[0] == f"{doc['candidate']['name']}: {render.verdict_text(doc).upper()}"
    assert len(lines) < 40 and "more failing checks (see report.md)" in lines[22]
    assert render.status_line(doc) == "" and render.findings(doc) == [] and render.stale_accepts(doc) == []


def test_a_conformant_version_2_report_says_so(base):
    doc = as_v1(base)
    doc.update(schema_version=2, findings=[], verdict_text="conformant",
               status_line="semantics ✓ · non-finite ✓ · precision ✓ · contract ✓",
               accept={"sources": [], "entries": 0, "stale": [], "strict": False})
    md = render.render_markdown(doc)
    assert md.startswith(f"# {doc['candidate']['name']} — Verdict: conformant\n")
    assert "No findings." in md
    assert render.terminal_summary(doc).splitlines()[0].endswith("— semantics ✓ · non-finite ✓ · precision ✓ · contract ✓")


def test_untrusted_text_is_escaped(base):
    hostile = "<script>alert(1)</script>\x1b[2J|x"
    doc = as_v2(base, n_findings=3, title=hostile)
    f = doc["findings"][0]
    f["fix"] = f["seen_in"] = hostile
    f["records"][0] = f["checks"][0] = hostile
    doc["accept"]["stale"][0]["match"] = hostile
    page = render.render_html(doc)
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    text = render.terminal_summary(doc)
    assert "\x1b" not in text and "<script>alert(1)</script> [2J|x" in text
    md = render.render_markdown(doc)
    assert "<script>alert(1)</script>" in md  # Markdown is text; HTML is what a browser runs
    assert "\\|x" in md and "|x" not in md.replace("\\|x", "")


def test_malformed_findings_do_not_stop_the_rendering(base):
    doc = as_v2(base, n_findings=2)
    doc["findings"] += ["F9", {"id": 7, "example": None, "worst_ratio": "nan", "checks": "x", "runs": None},
                        {"example": {"record": "nosuch", "evidence": {"quantity": "grad", "tokens": [None, {}]}}}]
    doc["accept"] = {"stale": ["x", {"match": None}]}
    doc["categories"] = {"semantics": "many"}
    del doc["status_line"]
    for fn in (render.render_markdown, render.render_html, render.terminal_summary):
        assert fn(doc)


def test_plots_label_their_axes_and_the_bound():
    hist = render._histogram_svg([1e-4, 1e-3, 0.5, 2.0, 30.0], 1.0, "random:grad: error distribution")
    assert all(f">{t}<" in hist for t in ("1e-3", "1e-2", "1e-1", "1e0", "1e1"))
    assert ">bound<" in hist and "error / bound (log scale)" in hist and ">tokens<" in hist
    scatter = render._scatter_svg([(-2.0, 1e-3), (0.0, 1.0), (3.0, 10.0)], 1.0, "random:grad: error vs log-ratio")
    assert all(f">{t}<" in scatter for t in ("-2", "0", "2", "1e-2", "1e0", "1e1"))
    assert ">bound<" in scatter and "log-ratio" in scatter and "error / bound" in scatter
    assert render.decade_ticks(-12, 3) == [-12, -10, -8, -6, -4, -2, 0, 2]
    assert render.linear_ticks(-0.3, 0.7) == pytest.approx([-0.2, 0.0, 0.2, 0.4, 0.6])


def test_the_report_page_plots_have_tick_labels(v2):
    page = render.render_html(v2)
    plots = page[page.index('<div class="plots">'):]
    assert plots.count("<svg") >= 2 and ">1e0<" in plots and ">bound<" in plots
    assert page.index("<h2>Checks</h2>") < page.index('<div class="plots">')
