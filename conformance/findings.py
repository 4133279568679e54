"""From failing records to findings: one per root cause, graded, diagnosed,
and accepted or not.

A *finding* gathers the failing records (report.json form) of one category
that share a diagnosis: the first defect of the catalogue that reproduced
them, or -- for records no known defect reproduces -- the same compared
quantity (the loss, the gradient, one metric, ...).  A
record compared with no oracle output (an invariant's self-consistency, a
rerun) takes the diagnosis of a record of its own check unit that has one.
An accept entry (``conformance.accept``) covering every record of a finding
accepts it; entries that cover no failing record are *stale*.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

from .suite.records import error_ratio
from .tolerance import CATEGORIES, SEVERITY


def _unit(rec: dict) -> tuple:
    p = rec["params"]
    return rec["check"].split(":", 1)[0], p["dtype"], p["loss_agg_mode"]


def _inherit(failing: list[dict]) -> dict[str, list[str]]:
    """Each failing record's defects: those a contract check names, those
    its diagnosis found, or -- for a record without evidence of its own --
    those of a diagnosed record of the same unit."""
    from .defects import DEFECTS

    named = {r["id"]: [d.id for d in DEFECTS if d.check_glob and fnmatch.fnmatchcase(r["check"], d.check_glob)]
             for r in failing}
    by_unit: dict[tuple, list[str]] = {}
    for r in failing:
        if r.get("defects"):
            by_unit.setdefault(_unit(r), list(r["defects"]))
    return {r["id"]: named[r["id"]] or list(r.get("defects") or ([] if r.get("evidence")
                                                                  else by_unit.get(_unit(r), [])))
            for r in failing}


def _size(rec: dict) -> int:
    ce = rec.get("counterexample") or {}
    lp = ce.get("logprob")
    if not lp:
        return math.inf if ce.get("case") is None else 10**9
    return sum(len(row) for row in lp)


def _ratio(rec: dict) -> float:
    if rec.get("max_error") is None or rec.get("bound") is None:
        return math.inf if rec["status"] == "error" else 0.0
    # the report writes inf and nan as strings, which float() reads
    return error_ratio(float(rec["max_error"]), float(rec["bound"]))


@dataclass(frozen=True)
class Outcome:
    findings: list[dict]
    categories: dict
    stale: list[dict]

    @property
    def unaccepted(self) -> list[dict]:
        return [f for f in self.findings if f["accepted"] is None]

    def failing_categories(self, fail_on) -> list[str]:
        """The categories of ``fail_on`` that have an unaccepted finding."""
        return [c for c in CATEGORIES if c in fail_on and self.categories[c]["findings"]]


def build(records: list[dict], entries=(), ) -> Outcome:
    """Findings from the records of a report (report.json form)."""
    from .defects import DEFECTS_BY_ID

    failing = [r for r in records if r["status"] in ("fail", "error")]
    defects = _inherit(failing)
    used = [False] * len(entries)
    groups: dict[tuple, list[dict]] = {}
    reasons: dict[tuple, str | None] = {}
    for r in failing:
        category = r.get("category") or ("contract" if r["status"] == "error" else "semantics")
        reason = None
        for i, entry in enumerate(entries):
            if entry.covers({**r, "category": category, "defects": defects[r["id"]]}):
                used[i] = True
                reason = reason or entry.reason
        ds = defects[r["id"]]
        key = (category, ds[0] if ds else "quantity:" + r["check"].split(":", 1)[-1], reason)
        groups.setdefault(key, []).append(r)
        reasons[key] = reason
    order = sorted(groups, key=lambda k: (k[2] is not None, SEVERITY.index(k[0]), -len(groups[k]), k[1]))
    findings = []
    for n, key in enumerate(order, 1):
        category, _, reason = key
        recs = groups[key]
        common = [d for d in defects[recs[0]["id"]] if all(d in defects[r["id"]] for r in recs)]
        example = min(recs, key=lambda r: (_size(r), -_ratio(r)))
        first = DEFECTS_BY_ID.get(common[0]) if common else None
        shape = "" if first else next((r.get("shape") for r in recs if r.get("shape")), "") or example["message"]
        findings.append({
            "id": f"F{n}",
            "category": category,
            "defects": common,
            "title": first.title if first else f"not a known defect: {shape}"[:300],
            "fix": first.fix if first else None,
            "seen_in": (first.seen_in or None) if first else None,
            "shape": shape,
            "records": [r["id"] for r in recs],
            "checks": sorted({r["check"] for r in recs}),
            "runs": sorted({",".join(x for x in (r["params"]["dtype"], r["params"]["loss_agg_mode"]) if x)
                            for r in recs}),
            "worst_ratio": max(_ratio(r) for r in recs),
            "example": {"record": example["id"], "message": example["message"], "evidence": example.get("evidence"),
                        "counterexample": example.get("counterexample"), "reproduce": example.get("reproduce")},
            "accepted": reason,
        })
    categories = {c: {"findings": 0, "accepted": 0} for c in CATEGORIES}
    for f in findings:
        categories[f["category"]]["accepted" if f["accepted"] else "findings"] += 1
    stale = [{"match": e.match, "reason": e.reason, "source": e.source} for e, u in zip(entries, used) if not u]
    return Outcome(findings, categories, stale)


def status_line(categories: dict) -> str:
    """"semantics ✓ · non-finite ✗ 3 · precision ✗ 1 · contract ✓"."""
    parts = []
    for c in CATEGORIES:
        n, a = categories[c]["findings"], categories[c]["accepted"]
        mark = f"✗ {n}" if n else "✓"
        parts.append(f"{c} {mark}" + (f" (+{a} accepted)" if a else ""))
    return " · ".join(parts)
