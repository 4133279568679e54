"""The frameworks matrix: one row per framework and version, one column per
finding category, each cell naming the defects found with one sentence of
evidence.  ``python -m conformance.frameworks.matrix DIR`` reads
``DIR/reports/<name>/report.json`` (or ``install-error.txt``, written by
``scripts/frameworks.sh`` when a package cannot be installed here) and
writes ``DIR/README.md`` and ``DIR/matrix.html`` atomically.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ..render import html_escape, md_escape
from ..report import ReportError, atomic_write, load_report
from ..tolerance import CATEGORIES
from . import FRAMEWORKS


def _cell(report: dict, category: str) -> str:
    found = [f for f in report.get("findings") or [] if f["category"] == category]
    if not found:
        return "✓"
    parts = []
    for f in found:
        name = ", ".join(f["defects"]) or "not a known defect"
        accepted = f" (accepted: {f['accepted']})" if f.get("accepted") else ""
        parts.append(f"✗ **{name}**{accepted}: {f['example']['message'][:140]}")
    return "<br>".join(parts)


def rows(directory: Path) -> list[dict]:
    """One row per framework: its report, or why there is none."""
    out = []
    for fw in FRAMEWORKS:
        folder = directory / "reports" / fw.name
        row = {"framework": fw, "report": None, "why": ""}
        try:
            row["report"] = load_report(folder / "report.json")
        except ReportError:
            err = folder / "install-error.txt"
            lines = err.read_text(encoding="utf-8").strip().splitlines() if err.exists() else []
            row["why"] = (lines[1] if len(lines) > 1 else lines[0])[:300] if lines \
                else "not run (scripts/frameworks.sh)"
        out.append(row)
    return out


def markdown(table: list[dict]) -> str:
    lines = ["# SAPO in real frameworks", "",
             "Each framework's own SAPO code, installed from the package index and run unmodified through the "
             "adapters (`conformance/frameworks/`), certified against the oracle by `bash scripts/frameworks.sh` "
             "(torch pinned to 2.13.0; this file is written by it). A cell names the defects found in that "
             "category with the first failing example; README \"Findings\" explains the categories.", "",
             "| framework | version | where | verdict | " + " | ".join(CATEGORIES) + " | reproduce |",
             "|---|---|---|---|" + "---|" * len(CATEGORIES) + "---|"]
    for row in table:
        fw, rep = row["framework"], row["report"]
        note = f"<br>{md_escape(fw.note)}" if fw.note else ""
        head = f"| {fw.name} | {fw.version} | `{md_escape(fw.where)}`{note} |"
        if rep is None:
            lines.append(head + f" not certified: {md_escape(row['why'])} |" + " — |" * len(CATEGORIES) +
                         f" `{fw.install}` |")
            continue
        cells = " | ".join(_cell(rep, c) for c in CATEGORIES)
        checks = "".join(f" --check={c}" for c in fw.checks)
        cmd = f"`{fw.install}`, then `sapo-conformance run {fw.name} --profile {rep['run']['profile']}{checks}`"
        lines.append(head + f" {md_escape(rep['verdict_text'])} | {cells} | {cmd} |")
    lines += ["", "Run on: " + ", ".join(sorted({f"{r['report']['environment']['platform']}, Python "
                                                f"{r['report']['environment']['python']}"
                                                for r in table if r["report"]})) or "-", ""]
    return "\n".join(lines)


def html(table: list[dict]) -> str:
    from ..render import CSS

    head = "".join(f"<th>{c}</th>" for c in ("framework", "version", "verdict", *CATEGORIES))
    body = []
    for row in table:
        fw, rep = row["framework"], row["report"]
        cells = [html_escape(fw.name) + (f"<br><small>{html_escape(fw.note)}</small>" if fw.note else ""),
                 html_escape(fw.version)]
        if rep is None:
            cells += [f"not certified: {html_escape(row['why'])}"] + ["—"] * len(CATEGORIES)
        else:
            cells.append(html_escape(rep["verdict_text"]))
            for c in CATEGORIES:
                text = _cell(rep, c).replace("**", "")
                cells.append("<br>".join(html_escape(p) for p in text.split("<br>")))
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>SAPO in real frameworks</title>'
            f"<style>{CSS}</style></head><body><h1>SAPO in real frameworks</h1><table><tr>{head}</tr>"
            + "".join(body) + "</table></body></html>\n")


def write(directory) -> None:
    directory = Path(directory)
    table = rows(directory)
    atomic_write(directory / "README.md", markdown(table))
    atomic_write(directory / "matrix.html", html(table))


if __name__ == "__main__":  # pragma: no cover - scripts/frameworks.sh
    write(sys.argv[1] if len(sys.argv) > 1 else "frameworks")
    print(markdown(rows(Path(sys.argv[1] if len(sys.argv) > 1 else "frameworks"))))
