"""Comparing reports: the diff of two reports of one candidate (``diff``)
and the matrix of several candidates (``run --all``).

The matrix is a versioned JSON document, validated like a report (the
spec below is read by ``report.check_spec``):

    {
      "schema": "sapo-conformance.matrix", "schema_version": 1,
      "candidates": [{"name": str, "status": "ran" | "unavailable" | "error", "reason": str,
                      "verdict": "conformant" | "non-conformant" | "harness-error" | null}, ...],
      "checks": {check: {candidate name: "pass" | "fail" | "error" | "skip"}}
    }

A candidate has a verdict exactly when it ran; a check's cell is the worst
status of that check over the candidate's dtypes and modes, and names only
candidates listed in "candidates".
"""

from __future__ import annotations

from . import bench
from .render import CSS, format_ratio, format_seconds, html_escape, md_escape, noise_note, to_float
from .report import STATUSES, VERDICTS, check_document, format_verdict, load_validated

# ---------------------------------------------------------------------------
# the matrix of several candidates
# ---------------------------------------------------------------------------

MATRIX_SCHEMA = "sapo-conformance.matrix"
MATRIX_SCHEMA_VERSION = 1
#: what became of each candidate of ``run --all``
ENTRY_STATUSES = ("ran", "unavailable", "error")
MATRIX_SPEC = {
    "schema": str, "schema_version": int,
    "candidates": ("list", {"name": str, "status": ("enum",) + ENTRY_STATUSES, "reason": str,
                            "verdict": (None, ("enum",) + VERDICTS), "partial?": ("list", str)}),
    "checks": ("map", ("map", ("enum",) + STATUSES)),
}


def validate_matrix(doc) -> str | None:
    """What is wrong with a matrix document, or None."""
    problem = check_document(doc, "matrix", MATRIX_SCHEMA, MATRIX_SCHEMA_VERSION, MATRIX_SPEC)
    if problem:
        return problem
    names = {c["name"] for c in doc["candidates"]}  # a name registered twice is listed twice (once in error)
    for i, c in enumerate(doc["candidates"]):
        if (c["verdict"] is None) != (c["status"] != "ran"):
            return (f"malformed matrix: candidates[{i}].verdict must be "
                    + ("a verdict: the candidate ran" if c["status"] == "ran" else f"null: the candidate did not "
                       f"run ({c['status']})"))
    for check, cells in doc["checks"].items():
        unknown = sorted(set(cells) - names)
        if unknown:
            return f"malformed matrix: checks.{check} names {', '.join(unknown)}, not among the candidates"
    return None


def load_matrix(path) -> dict:
    """Read and validate a matrix; ReportError naming the file otherwise."""
    return load_validated(path, validate_matrix)


def matrix(entries: list[dict]) -> dict:
    """entries: {"name", "status" ("ran" | "unavailable" | "error"), "reason", "report"?}
    -> rows of check family x candidate: the worst status over dtypes and modes."""
    order = {"error": 3, "fail": 2, "pass": 1, "skip": 0}
    checks: dict[str, dict] = {}
    for e in entries:
        for r in (e.get("report") or {}).get("checks", []):
            cell = checks.setdefault(r["check"], {})
            prev = cell.get(e["name"])
            if prev is None or order[r["status"]] > order[prev]:
                cell[e["name"]] = r["status"]
    return {
        "schema": MATRIX_SCHEMA,
        "schema_version": MATRIX_SCHEMA_VERSION,
        "candidates": [{"name": e["name"], "status": e["status"], "reason": e.get("reason") or "",
                        "verdict": (e.get("report") or {}).get("verdict"),
                        "partial": ((e.get("report") or {}).get("run") or {}).get("partial") or []}
                       for e in entries],
        "checks": {k: checks[k] for k in sorted(checks)},
    }


def _verdict_cell(c: dict) -> str:
    if c["verdict"] is None:
        return f"{c['status']}: {c['reason']}"
    return format_verdict(c["verdict"], c.get("partial"))


def render_matrix_markdown(m: dict) -> str:
    names = [c["name"] for c in m["candidates"]]
    out = ["# SAPO conformance matrix", "", "| candidate | verdict |", "|---|---|"]
    for c in m["candidates"]:
        out.append(f"| {md_escape(c['name'])} | {md_escape(_verdict_cell(c))} |")
    out += ["", "| check | " + " | ".join(md_escape(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    for check, cells in m["checks"].items():
        out.append(f"| `{md_escape(check)}` | " + " | ".join(cells.get(n, "-") for n in names) + " |")
    return "\n".join(out) + "\n"


def render_matrix_html(m: dict) -> str:
    names = [c["name"] for c in m["candidates"]]
    head = "".join(f"<th>{html_escape(n)}</th>" for n in names)
    verdicts = "".join(
        f'<tr><td>{html_escape(c["name"])}</td><td class="{html_escape(c["verdict"] or "skip")}">'
        f'{html_escape(_verdict_cell(c))}</td></tr>' for c in m["candidates"])
    rows = "".join(
        f"<tr><td><code>{html_escape(check)}</code></td>" + "".join(
            f'<td class="{html_escape(cells.get(n, "skip"))}">{html_escape(cells.get(n, "-"))}</td>' for n in names)
        + "</tr>"
        for check, cells in m["checks"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SAPO conformance matrix</title><style>{CSS}
.conformant{{background:#e7f6e7}} .non-conformant{{background:#fbe3e3}}</style></head><body>
<h1>SAPO conformance matrix</h1><table><tr><th>candidate</th><th>verdict</th></tr>{verdicts}</table>
<table><tr><th>check</th>{head}</tr>{rows}</table></body></html>
"""


# ---------------------------------------------------------------------------
# diff
# ---------------------------------------------------------------------------

#: an error that grows by more than this factor (and beyond 10 % of its
#: bound) is a regression
GROWTH_FACTOR = 2.0


def _throughput_by_key(report: dict) -> dict:
    tp = report.get("throughput") or {}
    return {(f"{r['shape'][0]}x{r['shape'][1]}", r["dtype"]): r for r in tp.get("rows", [])
            if r.get("status") in ("ok", "invalid")}


def throughput_changes(old: dict, new: dict) -> list[dict]:
    """Per shape x dtype timed in both: old and new medians, their ratio as a
    change with the range the two runs' quartiles give, the roofline
    fractions (which survive a change of machine better) with theirs, and
    which of the two reports marks the row noisy."""
    olds, news = _throughput_by_key(old), _throughput_by_key(new)
    out = []
    for key in sorted(set(olds) & set(news), key=lambda k: (k[1], olds[k]["tokens"])):
        o, n = olds[key], news[key]
        om, nm = o["candidate"]["median_s"], n["candidate"]["median_s"]
        lo, hi = bench.ratio_range(n["candidate"], o["candidate"])
        out.append({"shape": key[0], "dtype": key[1], "old_median_s": om, "new_median_s": nm,
                    "change": nm / om - 1.0, "change_range": [lo - 1.0, hi - 1.0],
                    "old_roofline": o["roofline_fraction"], "new_roofline": n["roofline_fraction"],
                    "old_roofline_range": bench.row_ratios(o)["roofline"][1:],
                    "new_roofline_range": bench.row_ratios(n)["roofline"][1:],
                    "noisy": {which: noise_note(r, rep["throughput"]["baseline"])
                              for which, r, rep in (("old", o, old), ("new", n, new)) if bench.is_noisy(r)}})
    return out


def comparability_warnings(old: dict, new: dict) -> list[str]:
    """Why two reports may not compare like for like: different candidates,
    or a different profile or seed (the same check id then names different
    examples).  Empty when they compare."""
    out = []
    on, nn = old["candidate"]["name"], new["candidate"]["name"]
    if on != nn:
        out.append(f"the reports are for different candidates: {on} (old) and {nn} (new); compare runs of one "
                   f"candidate")
    for key, what in (("profile", "profiles"), ("seed", "seeds")):
        ov, nv = old["run"][key], new["run"][key]
        if ov != nv:
            out.append(f"the reports ran different {what}: {ov} (old) and {nv} (new); a check id then names "
                       f"different examples, so its errors do not compare")
    return out


def diff_reports(old: dict, new: dict, *, slower_threshold: float | None = None,
                 include_noisy: bool = False) -> dict:
    """What changed.  A regression: a new failure, an error that grew
    markedly, or (only when ``slower_threshold`` is given, in percent) a
    throughput median that got slower by more than that.  Rows noisy in
    either report are not judged (listed in ``ignored_noisy``) unless
    ``include_noisy``.  ``warnings`` says why the two may not compare
    (:func:`comparability_warnings`)."""
    olds = {r["id"]: r for r in old["checks"]}
    news = {r["id"]: r for r in new["checks"]}
    bad = ("fail", "error")
    out = {"warnings": comparability_warnings(old, new), "new_failures": [], "fixed": [], "error_growth": [],
           "added": [], "removed": []}
    for rid, n in news.items():
        o = olds.get(rid)
        if o is None:
            out["added"].append(rid)
            if n["status"] in bad:
                out["new_failures"].append(rid)
            continue
        if n["status"] in bad and o["status"] not in bad:
            out["new_failures"].append(rid)
        elif o["status"] in bad and n["status"] not in bad:
            out["fixed"].append(rid)
        eo, en, b = to_float(o.get("max_error")), to_float(n.get("max_error")), to_float(n.get("bound"))
        if eo is not None and en is not None and b and en > GROWTH_FACTOR * max(eo, 1e-300) and en > 0.1 * b:
            out["error_growth"].append({"id": rid, "old": eo, "new": en, "bound": b})
    out["removed"] = sorted(set(olds) - set(news))
    out["throughput"] = throughput_changes(old, new)
    out["slower_threshold"] = slower_threshold
    out["include_noisy"] = include_noisy
    skip_noisy = slower_threshold is not None and not include_noisy
    out["ignored_noisy"] = [t for t in out["throughput"] if skip_noisy and t["noisy"]]
    out["slower"] = [] if slower_threshold is None else [
        t for t in out["throughput"] if t["change"] * 100 > slower_threshold and not (skip_noisy and t["noisy"])]
    out["same_machine"] = (old.get("environment", {}).get("platform") == new.get("environment", {}).get("platform")
                           and old.get("environment", {}).get("devices") == new.get("environment", {}).get("devices"))
    out.update(findings_changes(old, new))
    out["regression"] = bool(out["new_failures"] or out["error_growth"] or out["slower"] or out["new_findings"])
    out["verdicts"] = [old["verdict"], new["verdict"]]
    return out


def _findings_by_cause(report: dict) -> dict:
    """Findings keyed by root cause: category and first defect (or title)."""
    return {(f["category"], f["defects"][0] if f["defects"] else f["title"]): f for f in report.get("findings") or []}


def findings_changes(old: dict, new: dict) -> dict:
    """Root causes that appeared (unaccepted), disappeared, or became
    accepted, as one line each.  A version-1 report has no findings: then
    nothing is compared (``findings_compared`` False)."""
    if "findings" not in old or "findings" not in new:
        return {"findings_compared": False, "new_findings": [], "resolved_findings": [], "newly_accepted": []}
    of, nf = _findings_by_cause(old), _findings_by_cause(new)

    def line(f: dict) -> str:
        return f"{f['category']}: {f['title']} ({len(f['records'])} records)"

    return {"findings_compared": True,
            "new_findings": [line(f) for k, f in nf.items() if f["accepted"] is None
                             and (k not in of or of[k]["accepted"] is not None)],
            "resolved_findings": [line(f) for k, f in of.items() if k not in nf],
            "newly_accepted": [line(f) + f": {f['accepted']}" for k, f in nf.items()
                               if f["accepted"] is not None and k in of and of[k]["accepted"] is None]}


def render_diff(d: dict) -> str:
    lines = [f"WARNING: {w}" for w in d.get("warnings", [])]
    lines.append(f"verdict: {d['verdicts'][0]} -> {d['verdicts'][1]}")
    for key, label in (("new_findings", "new findings"), ("resolved_findings", "resolved findings"),
                       ("newly_accepted", "newly accepted findings"), ("new_failures", "new failures"),
                       ("fixed", "fixed"), ("added", "new checks"), ("removed", "removed checks")):
        if d.get(key):
            lines.append(f"{label} ({len(d[key])}):")
            lines += [f"  {rid}" for rid in d[key][:50]]
    if d["error_growth"]:
        lines.append(f"error growth ({len(d['error_growth'])}):")
        lines += [f"  {g['id']}: {g['old']:.3g} -> {g['new']:.3g} (bound {g['bound']:g})" for g in d["error_growth"]]
    if d["throughput"]:
        note = "" if d["same_machine"] else " (different machines: compare the roofline fractions)"
        lines.append(f"throughput (median per call, old -> new; ranges from the quartiles){note}:")
        slower = {(t["shape"], t["dtype"]) for t in d["slower"]}
        for t in d["throughput"]:
            flags = [f"{which}: {what}" for which, what in t["noisy"].items()]
            if (t["shape"], t["dtype"]) in slower:
                flags.append(f"SLOWER than the {d['slower_threshold']:g}% allowed")
            lo, hi = t["change_range"]
            roofs = [format_ratio(t[f"{w}_roofline"], *t[f"{w}_roofline_range"], percent=True) for w in ("old", "new")]
            lines.append(f"  {t['shape']} {t['dtype']}: {format_seconds(t['old_median_s'])} -> "
                         f"{format_seconds(t['new_median_s'])} ({100 * t['change']:+.1f}%, range {100 * lo:+.1f}% "
                         f"to {100 * hi:+.1f}%), roofline {roofs[0]} -> {roofs[1]}" + "".join(f"  {f}" for f in flags))
    if d["ignored_noisy"]:
        lines.append("ignored as noisy by --fail-slower (noisy in either report; --include-noisy judges them): "
                     + ", ".join(f"{t['shape']} {t['dtype']}" for t in d["ignored_noisy"]))
    lines.append("REGRESSION" if d["regression"] else "no regression")
    return "\n".join(lines)
