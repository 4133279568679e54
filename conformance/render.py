"""Rendering one report: the terminal summary, Markdown, a self-contained
HTML page with SVG plots, and JUnit XML (comparing reports -- the diff and
the cross-candidate matrix -- is ``compare``'s).

Every format leads with the verdict and the status line (schema version 2:
``verdict_text``, ``status_line``), then the findings -- one per root cause,
each with its diagnosis, fix, the checks and runs it covers, the offending
tokens of its smallest counterexample and the command that reproduces it --
then the per-group and per-check tables.  A version-1 report (no findings)
still renders: its verdict, a compact list of failing checks, the tables.

Everything a candidate provides (its name, version, description, error
messages) and everything a report carries (record ids, finding titles) is
untrusted text: the HTML escapes all of it, and the page carries no script;
the terminal drops control characters.
"""

from __future__ import annotations

import html
import json
import math
import re
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from . import bench
from .report import from_num, verdict_text
from .findings import status_line as format_status_line
from .tolerance import CATEGORIES

def to_float(x) -> float | None:
    """A report number as a float; None for null or anything not a number."""
    if x is None:
        return None
    try:
        return from_num(x)
    except ValueError:
        return None


def _fmt(x) -> str:
    v = to_float(x)
    if v is None:
        return "-"
    if math.isinf(v) or math.isnan(v):
        return str(v)
    return f"{v:.3g}"


def group_summary(report: dict) -> list[dict]:
    """Per check group: counts and the worst error relative to its bound."""
    groups: dict[str, dict] = {}
    for rec in report["checks"]:
        g = groups.setdefault(rec["group"], {"group": rec["group"], "pass": 0, "fail": 0, "error": 0, "skip": 0,
                                               "worst": 0.0})
        g[rec["status"]] += 1
        err, bound = to_float(rec.get("max_error")), to_float(rec.get("bound"))
        if err is not None and bound:
            g["worst"] = max(g["worst"], err / bound)
    return list(groups.values())


def failures_by_check(report: dict) -> list[tuple[dict, list[str]]]:
    """Failing records grouped by check: the first in full, the others' ids."""
    groups: dict[str, list[dict]] = {}
    for rec in report["checks"]:
        if rec["status"] in ("fail", "error"):
            groups.setdefault(rec["check"], []).append(rec)
    return [(recs[0], [r["id"] for r in recs[1:]]) for recs in groups.values()]


def compilation_text(candidate: dict) -> str | None:
    """"compilations: N" and whether shape buckets were used, for a report's
    candidate section; None when the candidate says neither."""
    n, buckets = candidate.get("compilations"), candidate.get("shape_buckets")
    if n is None and not buckets:
        return None
    text = f"compilations: {n if n is not None else 'not reported'}"
    return text + ("; shape buckets used" if buckets else "; no shape buckets")


def candidate_table(rows: list[dict]) -> str:
    """``sapo-conformance list``: one line per registered candidate."""
    if not rows:
        return "no candidates registered (entry point group sapo_conformance.candidates)"
    table = [("NAME", "FRAMEWORK", "VERSION", "DTYPES", "DEVICES", "PROFILE", "RUNS HERE")]
    for r in rows:
        runs = f"yes ({', '.join(r['here'])})" if r["runs_here"] else f"no: {r['reason']}"
        table.append((r["name"], r["framework"], r["version"], ",".join(r["dtypes"]) or "-",
                      ",".join(r["devices"]) or "-", r["profile"], runs))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)




# ---------------------------------------------------------------------------
# findings (schema version 2), with version-1 defaults
# ---------------------------------------------------------------------------

#: how many check names / runs a finding lists before "and N more"
LIST_LIMIT = 6
#: the terminal's finding lines, and the width of each
TERMINAL_FINDINGS = 20
TERMINAL_WIDTH = 160


def _str(x, default: str = "") -> str:
    return x if isinstance(x, str) else default


def _strs(x) -> list[str]:
    """A report list of strings (anything else dropped)."""
    return [str(v) for v in x if isinstance(v, (str, int, float))] if isinstance(x, list) else []


def report_verdict_text(report: dict) -> str:
    """``report["verdict_text"]`` (version 2), else the verdict computed as
    version 1 did ("non-conformant", "conformant (partial: ...)")."""
    text = report.get("verdict_text")
    return text if isinstance(text, str) and text else verdict_text(report)


def status_line(report: dict) -> str:
    """``report["status_line"]``, else one built from ``report["categories"]``;
    "" for a version-1 report (neither)."""
    line = report.get("status_line")
    if isinstance(line, str):
        return line
    cats = report.get("categories")
    if not isinstance(cats, dict):
        return ""

    def count(name: str, key: str) -> int:
        c = cats.get(name) if isinstance(cats.get(name), dict) else {}
        v = c.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else 0

    return format_status_line({n: {"findings": count(n, "findings"), "accepted": count(n, "accepted")}
                               for n in CATEGORIES})


def findings(report: dict) -> list[dict]:
    """The report's findings, normalised (every key present, of its type),
    unaccepted ones first, each group in report order; [] for a version-1
    report."""
    raw = report.get("findings")
    out = []
    for i, f in enumerate(raw if isinstance(raw, list) else []):
        if not isinstance(f, dict):
            continue
        example = f.get("example") if isinstance(f.get("example"), dict) else {}
        ratio = to_float(f.get("worst_ratio"))
        accepted = f.get("accepted")
        out.append({
            "id": _str(f.get("id"), f"F{i + 1}") or f"F{i + 1}",
            "category": _str(f.get("category"), "?"),
            "defects": _strs(f.get("defects")),
            "title": _str(f.get("title")),
            "fix": _str(f.get("fix")) or None,
            "seen_in": _str(f.get("seen_in")) or None,
            "shape": _str(f.get("shape")),
            "records": _strs(f.get("records")),
            "checks": _strs(f.get("checks")),
            "runs": _strs(f.get("runs")),
            "worst_ratio": ratio,
            "example": {"record": _str(example.get("record")),
                        "evidence": example.get("evidence") if isinstance(example.get("evidence"), dict) else None,
                        "counterexample": example.get("counterexample")
                        if isinstance(example.get("counterexample"), dict) else None,
                        "reproduce": _str(example.get("reproduce")) or None},
            "accepted": (accepted if isinstance(accepted, str) else "accepted") if accepted else None,
        })
    return [f for f in out if not f["accepted"]] + [f for f in out if f["accepted"]]


def stale_accepts(report: dict) -> list[dict]:
    """``report["accept"]["stale"]``: accept entries that matched no failure."""
    acc = report.get("accept")
    stale = acc.get("stale") if isinstance(acc, dict) else None
    return [{"match": _str(s.get("match"), "?"), "reason": _str(s.get("reason"))}
            for s in (stale if isinstance(stale, list) else []) if isinstance(s, dict)]


def fail_on(report: dict) -> list[str] | None:
    """``report["run"]["fail_on"]``: the categories that fail the run; None
    when the report does not say (version 1: every failure fails it)."""
    run = report.get("run")
    value = run.get("fail_on") if isinstance(run, dict) else None
    return _strs(value) if isinstance(value, list) else None


def _accept_summary(report: dict) -> str:
    """"accept.toml: 3 entries (strict)" for the header tables; "" when no
    accept file was read."""
    acc = report.get("accept")
    if not isinstance(acc, dict):
        return ""
    sources, n = _strs(acc.get("sources")), acc.get("entries")
    n = n if isinstance(n, int) and not isinstance(n, bool) else 0
    if not sources and not n:
        return ""
    return (f"{', '.join(sources) or 'accept entries'}: {n} {'entry' if n == 1 else 'entries'}"
            + (" (strict)" if acc.get("strict") is True else ""))


def diagnosis(f: dict) -> str:
    """The defect ids, or "not a known defect" with the error's shape."""
    if f["defects"]:
        return ", ".join(f["defects"])
    return "not a known defect" + (f" ({f['shape']})" if f["shape"] else "")


def run_label(run: str) -> str:
    """"float32,token-mean" -> "float32 × token-mean"."""
    return " × ".join(p for p in run.split(",") if p) or run


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _listing(items: list[str], fmt, limit: int = LIST_LIMIT) -> str:
    """At most ``limit`` items, each through ``fmt``, then "and N more"."""
    shown = ", ".join(fmt(x) for x in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _records_by_id(report: dict) -> dict[str, dict]:
    return {r["id"]: r for r in report["checks"] if isinstance(r.get("id"), str)}


def _ratio(x) -> str:
    """An error / bound ratio: 3 decimals when small, 3 significant digits
    when large."""
    v = to_float(x)
    if v is None:
        return "-"
    if not math.isfinite(v):
        return str(v)
    return f"{v:.3f}" if abs(v) < 1000 else f"{v:.3g}"


def _pair(got, expected) -> tuple[str, str]:
    """got and expected with as many digits as it takes to tell them apart
    (4 to 17 significant digits)."""
    g, e = to_float(got), to_float(expected)
    if g is None or e is None or not (math.isfinite(g) and math.isfinite(e)) or g == e:
        return _fmt(got) if g is None else f"{g:.6g}", _fmt(expected) if e is None else f"{e:.6g}"
    for digits in range(4, 18):
        a, b = f"{g:.{digits}g}", f"{e:.{digits}g}"
        if a != b:
            return a, b
    return repr(g), repr(e)


EVIDENCE_HEADER = ("row", "col", "log-ratio", "A", "τ", "mask", "got", "expected")
#: the most offending tokens a finding shows
EVIDENCE_ROWS = 8


def evidence_view(evidence: dict | None) -> tuple[str | None, list[tuple[str, ...]]]:
    """A finding's evidence as ("loss: got X, expected Y" or None, token rows
    as text cells, at most EVIDENCE_ROWS)."""
    if not isinstance(evidence, dict):
        return None, []
    quantity = _str(evidence.get("quantity"), "quantity") or "quantity"
    scalar = None
    if "got" in evidence or "expected" in evidence:
        g, e = _pair(evidence.get("got"), evidence.get("expected"))
        scalar = f"{quantity}: got {g}, expected {e}"
    rows = []
    tokens = evidence.get("tokens")
    for t in (tokens if isinstance(tokens, list) else [])[:EVIDENCE_ROWS]:
        if not isinstance(t, dict):
            continue
        g, e = _pair(t.get("got"), t.get("expected"))
        mask = t.get("mask")
        rows.append((str(t.get("row", "-")), str(t.get("col", "-")), _fmt6(t.get("log_ratio")),
                     _fmt6(t.get("advantage")), _fmt6(t.get("tau")),
                     "1" if mask is True else "0" if mask is False else "-", g, e))
    return scalar, rows


def _fmt6(x) -> str:
    v = to_float(x)
    return "-" if v is None else f"{v:.6g}"


def _example_record(f: dict, records: dict[str, dict]) -> dict:
    rec = records.get(f["example"]["record"])
    return rec if isinstance(rec, dict) else {}


def _example_counterexample(f: dict, records: dict[str, dict]) -> dict | None:
    ce = f["example"]["counterexample"]
    if ce is None:
        ce = _example_record(f, records).get("counterexample")
    return ce if isinstance(ce, dict) and ce else None


def _error_text(rec: dict) -> str:
    """"error 12.5, bound 16", or ""."""
    if rec.get("max_error") is None:
        return ""
    return f"error {_fmt(rec.get('max_error'))}, bound {_fmt(rec.get('bound'))}"


def sentence(text: str) -> str:
    """``text`` ending in a full stop (unless it ends in . ! or ?)."""
    text = text.rstrip()
    return text if not text or text[-1] in ".!?" else text + "."


# ---------------------------------------------------------------------------
# terminal
# ---------------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def plain(text) -> str:
    """Untrusted text on one terminal line: control characters (escape
    sequences, line breaks) become spaces."""
    return _CONTROL.sub(" ", str(text))


def clip(text: str, width: int = TERMINAL_WIDTH) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def finding_line(f: dict) -> str:
    """``  F3 non-finite  nan-through-mask: <title> — 12 checks in 4 runs; fix: <fix>``."""
    head = f"  {f['id']} " + (f"accepted ({f['accepted']}) " if f["accepted"] else "") + f"{f['category']}  "
    title = f["title"] or diagnosis(f)
    body = (f"{','.join(f['defects'])}: " if f["defects"] else "") + title
    body += f" — {_plural(len(f['checks']), 'check')} in {_plural(len(f['runs']), 'run')}"
    if f["fix"]:
        body += f"; fix: {f['fix']}"
    return clip(plain(head + body))


def _counts_text(report: dict) -> str:
    s = report["summary"]
    return (f"{s['pass']} passed, {s['fail']} failed, {s['error']} errors of {s['total']} records (one per "
            f"compared quantity of each check unit) in {report['duration_s']:.1f} s")


def terminal_summary(report: dict, verbose: bool = False) -> str:
    """What ``run`` prints: the verdict and status line, one line per finding
    (at most TERMINAL_FINDINGS), stale accept entries, the group table,
    throughput and compilation; ``verbose`` adds one line per failing
    record."""
    cand = report["candidate"]
    name = plain(cand["name"])
    line = status_line(report)
    lines = [f"{name}: {plain(report_verdict_text(report).upper())}" + (f" — {plain(line)}" if line else ""),
             f"  {_counts_text(report)}"]
    fs = findings(report)
    for f in fs[:TERMINAL_FINDINGS]:
        lines.append(finding_line(f))
    if len(fs) > TERMINAL_FINDINGS:
        lines.append(f"  … and {len(fs) - TERMINAL_FINDINGS} more findings (see report.md)")
    if "findings" not in report and not verbose:  # version 1: the failing checks, one line each
        failing = failures_by_check(report)
        for rec, others in failing[:TERMINAL_FINDINGS]:
            more = f" (and {len(others)} more dtype/mode runs)" if others else ""
            lines.append(clip(plain(f"  {rec['status'].upper()} {rec['id']}{more}: {rec['message']}")))
        if len(failing) > TERMINAL_FINDINGS:
            lines.append(f"  … and {len(failing) - TERMINAL_FINDINGS} more failing checks (see report.md)")
    for s in stale_accepts(report):
        lines.append(clip(plain(f"  stale accept entry: {s['match']} — no longer fails")))
    rows = [("GROUP", "PASS", "FAIL", "ERROR", "WORST ERROR / BOUND")]
    for g in group_summary(report):
        rows.append((plain(g["group"]), str(g["pass"]), str(g["fail"]), str(g["error"]), f"{g['worst']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    if report.get("throughput"):
        lines.append(render_throughput_text(name, report["throughput"]))
    if compilation_text(cand):
        lines.append(f"{name}: {compilation_text(cand)}")
    if verbose:
        for rec in report["checks"]:
            if rec["status"] in ("fail", "error"):
                cat = rec.get("category")
                tag = f" [{cat}]" if isinstance(cat, str) and cat else ""
                lines.append(plain(f"  {rec['status'].upper()} {rec['id']}{tag}: {rec['message']}"))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def md_escape(text) -> str:
    """Text safe in a Markdown table cell (no "|", no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def md_code(text) -> str:
    """Untrusted text as an inline code span, safe in a table cell: the
    span's backtick fence is longer than any run of backticks inside."""
    text = md_escape(text).replace("\r", " ")
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _md_block(text: str, lang: str = "") -> list[str]:
    """A fenced code block whose fence no line of ``text`` can close."""
    fence = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return [fence + lang, text, fence]


# ---------------------------------------------------------------------------
# throughput
# ---------------------------------------------------------------------------


def _si(x: float, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}"


def format_seconds(s: float | None) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} us"


def format_ratio(value: float, low: float, high: float, *, percent: bool = False) -> str:
    """A ratio with its range: "2.87x (2.5-3.1x)", or "12.3% (11-13.5%)"."""
    scale, unit = (100, "%") if percent else (1, "x")
    return f"{scale * value:.3g}{unit} ({scale * low:.3g}-{scale * high:.3g}{unit})"


def noise_note(row: dict, baseline: str) -> str:
    """"NOISY: ..." naming the timings that spread too widely, or ""."""
    if not bench.is_noisy(row):
        return ""
    wide = bench.wide_spread(row)
    names = {"baseline": baseline}
    what = ", ".join(f"{names.get(k, k)} IQR {100 * v:.3g}%" for k, v in wide.items())
    return f"NOISY: {what} of median" if what else "NOISY"


def throughput_header(section: dict) -> tuple[str, ...]:
    return ("shape", "dtype", "median", "IQR", "tokens/s", "bytes/s", "roofline", f"vs {section['baseline']}",
            "first call (compile)", "notes")


def throughput_rows(section: dict) -> list[tuple[str, ...]]:
    """The throughput table as text cells (terminal, Markdown and HTML)."""
    out = []
    width = len(throughput_header(section))
    for r in section["rows"]:
        shape = f"{r['shape'][0]}x{r['shape'][1]}"
        if r["status"] in ("correctness-only", "error"):
            out.append((shape, r["dtype"], r["status"], str(r.get("reason", ""))) + ("",) * (width - 4))
            continue
        cand = r["candidate"]
        ratios = bench.row_ratios(r)
        sp = ratios["speedup"]
        notes = [noise_note(r, section["baseline"])]
        if r["status"] == "invalid":
            notes.append(f"INVALID: {r.get('reason', '')}")
        out.append((shape, r["dtype"], format_seconds(cand["median_s"]), format_seconds(cand["q3_s"] - cand["q1_s"]),
                    _si(r["tokens_per_s"], "tok/s"), _si(r["bytes_per_s"], "B/s"),
                    format_ratio(*ratios["roofline"], percent=True), "n/a" if sp is None else format_ratio(*sp),
                    format_seconds(cand.get("first_call_s")), "; ".join(n for n in notes if n)))
    return out


def _throughput_intro(section: dict) -> str:
    return (f"device {section['device']}, {section['timer']}, median and interquartile range (IQR) of "
            f"{section['rounds']} interleaved calls after {section['warmup']} warm-up calls; roofline = a plain "
            f"copy of the bytes the loss must move (read logprob, old_logprob, advantages, mask; write the "
            f"gradient), timed in the same run; speedup over {section['baseline']} in the same run; each ratio "
            f"is of medians, with the range its quartiles give (q1/q3 to q3/q1); "
            f"{bench.noisy_rule('the candidate, the copy or the baseline')}")


def render_throughput_text(name: str, section: dict) -> str:
    """The table ``bench`` prints (one line when timing is meaningless here)."""
    rows = section["rows"]
    if section.get("error"):
        return f"{name}: throughput {section['error']}"
    if rows and all(r["status"] == "correctness-only" for r in rows):
        return f"{name}: {rows[0]['reason']}"
    table = [throughput_header(section)] + throughput_rows(section)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]) - 1)]
    lines = [f"{name} ({_throughput_intro(section)})"]
    for r in table:
        lines.append(("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]).rstrip())
    return "\n".join(lines)


def render_oracle_speed(o: dict) -> str:
    """What ``bench --oracle`` prints: each contender's median and IQR, and
    each oracle's ratio to one np.exp pass with its range."""
    labels = {"exp": "one np.exp pass", "oracle": "oracle (default)", "reproducible": "oracle (reproducible=True)"}
    B, T = o["shape"]
    lines = [f"oracle {B}x{T} float64 loss + gradient ({o['loss_agg_mode']}) against one np.exp pass over the "
             f"same array: median and IQR of {o['rounds']} interleaved rounds; ratio of medians with the range its "
             f"quartiles give; {bench.noisy_rule('an oracle or np.exp')}"]
    rows = []
    for name, t in o["timings"].items():
        ratio = o["ratios"].get(name)
        cells = [labels.get(name, name), format_seconds(t["median_s"]), f"IQR {format_seconds(t['q3_s'] - t['q1_s'])}",
                 "" if ratio is None else f"{format_ratio(ratio['value'], *ratio['range'])} one np.exp pass"]
        if ratio and ratio["noisy"]:
            cells.append("NOISY: " + ", ".join(f"{labels.get(k, k)} IQR {100 * v:.3g}%" for k, v in
                                               ratio["wide"].items()) + " of median")
        rows.append(cells)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines += [("  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + "  ".join(r[4:])).rstrip()
              for r in rows]
    return "\n".join(lines)


def _throughput_markdown(section: dict | None) -> list[str]:
    if not section:
        return []
    if section.get("error"):
        return ["", "## Throughput", "", md_escape(f"Throughput {section['error']}.")]
    head = throughput_header(section)
    out = ["", "## Throughput", "", md_escape(_throughput_intro(section)) + ".", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in throughput_rows(section)]
    return out


_SERIES = (("candidate", "#4a78c2", ""), ("baseline", "#e08a1e", ""), ("copy", "#666", ' stroke-dasharray="4"'))


def _throughput_svg(section: dict, dtype: str, name: str, width=460, height=250) -> str:
    """Tokens/s against tokens (log-log): the candidate, the baseline and the
    copy roofline converted to tokens/s, each point with a bar spanning its
    quartiles; both axes with labelled decades and a title."""
    rows = [r for r in section["rows"] if r["dtype"] == dtype and r["status"] in ("ok", "invalid")]
    # per series: (log tokens, log tokens/s at the median, at q3, at q1)
    series: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k, _, _ in _SERIES}
    for r in sorted(rows, key=lambda r: r["tokens"]):
        t = r["tokens"]
        for key in series:
            timing = r.get(key)
            if not timing:
                continue
            pt = (t, t / timing["median_s"], t / timing["q3_s"], t / timing["q1_s"])
            if all(0 < v < math.inf for v in pt):  # only what a log scale can place
                series[key].append(tuple(math.log10(v) for v in pt))
    pts = [p for v in series.values() for p in v]
    if not pts:
        return ""
    xs = [p[0] for p in pts]
    ys = [y for p in pts for y in p[1:]]
    xlo, xhi = min(xs) - 0.1, max(xs) + 0.1
    ylo, yhi = math.floor(min(ys)), math.ceil(max(ys))
    if yhi == ylo:
        yhi += 1
    frame = _Frame(width, height, left=48, bottom=62)

    def sx(lx):  # both take log10 values
        return frame.x(lx, xlo, xhi)

    def sy(ly):
        return frame.y(ly, ylo, yhi)

    labels = {"candidate": name, "baseline": section["baseline"], "copy": "copy roofline"}
    parts = []
    for key, color, dash in _SERIES:
        v = series[key]
        if not v:
            continue
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y, _, _ in v)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2"{dash}>'
                     f"<title>{html_escape(labels[key])}</title></polyline>")
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>'
                  f'<line x1="{sx(x):.1f}" y1="{sy(lo):.1f}" x2="{sx(x):.1f}" y2="{sy(hi):.1f}" stroke="{color}"/>'
                  for x, y, lo, hi in v]
    legend = "".join(
        f'<text x="{frame.left + 150 * i}" y="{height - 6}" font-size="10" fill="{color}">— {html_escape(labels[key])}</text>'
        for i, (key, color, _) in enumerate(_SERIES) if series[key])
    axes = frame.axes([(sx(k), decade_label(k)) for k in decade_ticks(xlo, xhi)],
                      [(sy(k), decade_label(k)) for k in decade_ticks(ylo, yhi)],
                      "tokens per batch (log scale)", "tokens/s (log scale)")
    title = f"{dtype}: tokens/s against tokens per batch (log-log; bars: quartiles)"
    return frame.svg(title, axes + "".join(parts) + legend)


def _throughput_html(section: dict | None, name: str) -> str:
    if not section:
        return ""
    if section.get("error"):
        return f"<h2>Throughput</h2><p>Throughput {html_escape(section['error'])}.</p>"
    head = "".join(f"<th>{html_escape(h)}</th>" for h in throughput_header(section))
    body = "".join("<tr>" + "".join(f"<td>{html_escape(c)}</td>" for c in row) + "</tr>" for row in throughput_rows(section))
    dtypes = list(dict.fromkeys(r["dtype"] for r in section["rows"]))
    plots = [p for p in (_throughput_svg(section, d, name) for d in dtypes) if p]
    plot_html = '<div class="plots">' + "".join(plots) + "</div>" if plots else ""
    return (f"<h2>Throughput</h2><p>{html_escape(_throughput_intro(section))}.</p>{plot_html}"
            f"<table><tr>{head}</tr>{body}</table>")




def _ce_text(ce: dict) -> str:
    return json.dumps({k: v for k, v in ce.items() if v is not None}, separators=(", ", ": "))


#: the longest counterexample JSON the Markdown shows in full (characters)
CE_LIMIT = 2000
_PREVIEW_VALUES = 4


def _nested_shape(v, depth: int = 0) -> list[int]:
    if not isinstance(v, list) or depth > 8:
        return []
    return [len(v)] + (_nested_shape(v[0], depth + 1) if v else [])


def _first_values(v, n: int = _PREVIEW_VALUES) -> list:
    out, stack = [], [v]
    while stack and len(out) < n:
        x = stack.pop()
        if isinstance(x, list):
            stack.extend(reversed(x[:n]))
        else:
            out.append(x)
    return out


def ce_preview(ce: dict, limit: int = CE_LIMIT) -> tuple[str, bool]:
    """The counterexample's JSON when it is at most ``limit`` characters;
    else each array's shape and first values (and True: shortened)."""
    full = _ce_text(ce)
    if len(full) <= limit:
        return full, False
    short = {}
    for k, v in ce.items():
        if v is None:
            continue
        short[k] = {"shape": _nested_shape(v), "first": _first_values(v)} if isinstance(v, list) else v
    text = json.dumps(short, separators=(", ", ": "))
    return (text if len(text) <= limit else text[:limit] + " …"), True


#: the Markdown's size target in bytes: a report whose candidate fails every
#: check still renders well under 30 KB (report.html and report.json hold the rest)
MD_BUDGET = 27_000
#: the per-check table's share of it: every check when the table fits, else
#: the checks that failed (as many as fit) and a line on the others
MD_CHECK_TABLE = 6_000


def _size(lines: list[str]) -> int:
    return len(("\n".join(lines) + "\n").encode())


def _md_diagnosis(f: dict, fails_on: list[str] | None) -> str:
    diag = ", ".join(md_code(d) for d in f["defects"]) if f["defects"] else md_escape(diagnosis(f))
    parts = [f"**Diagnosis:** {diag}" + (f" (seen in {md_escape(f['seen_in'])})" if f["seen_in"] else "") + "."]
    if f["fix"]:
        parts.append(f"**Fix:** {md_escape(sentence(f['fix']))}")
    if f["accepted"]:
        parts.append(f"**Accepted:** {md_escape(sentence(f['accepted']))}")
    if fails_on is not None and f["category"] not in fails_on:
        parts.append(f"(Does not fail the run: it fails on {md_escape(', '.join(fails_on) or 'nothing')}.)")
    return " ".join(parts)


def _md_covers(f: dict, limit: int = LIST_LIMIT) -> str:
    """"Covers 12 checks (`a`, `b`, ... and 6 more) in 4 runs (float32 ×
    token-mean, ...); worst error 3.2e+04 × its bound"."""
    checks = _listing(f["checks"], md_code, limit)
    runs = _listing(f["runs"], lambda r: md_escape(run_label(r)), limit)
    text = (f"Covers {_plural(len(f['checks']), 'check')}" + (f" ({checks})" if checks else "")
            + f" in {_plural(len(f['runs']), 'run')}" + (f" ({runs})" if runs else ""))
    if f["worst_ratio"] is not None:
        text += f"; worst error {_ratio(f['worst_ratio'])} × its bound"
    return text


def _md_finding(f: dict, records: dict[str, dict], level: str, fails_on: list[str] | None) -> list[str]:
    """One finding's subsection: ``level`` "full" (evidence, counterexample
    JSON up to CE_LIMIT, reproduce), "medium" (no JSON) or "brief" (one
    paragraph: diagnosis, fix, what it covers)."""
    out = ["", f"### {md_escape(f['id'])} · {md_escape(f['category'])} · {md_escape(f['title'] or diagnosis(f))}",
           ""]
    ex = f["example"]
    if level == "brief":
        out.append(_md_diagnosis(f, fails_on) + " " + _md_covers(f, 3) + ".")
        return out
    out += [_md_diagnosis(f, fails_on), "", _md_covers(f) + "."]
    if not ex["record"]:
        return out
    rec = _example_record(f, records)
    msg = md_escape(rec.get("message") or "")
    err = _error_text(rec)
    out += ["", f"Smallest counterexample: {md_code(ex['record'])}" + (f" — {msg}" if msg else "")
            + (f" ({err})" if err else "") + "."]
    scalar, rows = evidence_view(ex["evidence"])
    if scalar:
        out += ["", md_escape(scalar)]
    if rows:
        out += ["", "| " + " | ".join(EVIDENCE_HEADER) + " |", "|" + "---|" * len(EVIDENCE_HEADER)]
        out += ["| " + " | ".join(md_escape(c) for c in row) + " |" for row in rows]
    ce = _example_counterexample(f, records)
    if ce and level == "full":
        text, shortened = ce_preview(ce)
        out += ["", "<details><summary>counterexample JSON</summary>", ""]
        if shortened:
            out += [f"Shortened (each array's shape and first values): the full counterexample is in report.json "
                    f"under {md_code(ex['record'])}.", ""]
        out += _md_block(text, "json") + ["", "</details>"]
    elif ce:
        out += ["", f"Counterexample JSON: report.json, under {md_code(ex['record'])}."]
    repro = ex["reproduce"] or _str(rec.get("reproduce"))
    if repro:
        out += ["", f"Reproduce: {md_code(repro)}"]
    return out


def _md_findings(report: dict, records: dict[str, dict], budget: int) -> list[str]:
    """The Findings section within ``budget`` bytes: the first finding in
    full, every other one at least briefly (as many as fit), then as many in
    full as fit, in order."""
    fs = findings(report)
    stale = stale_accepts(report)
    fails_on = fail_on(report)
    out = ["", "## Findings", ""]
    if fs:
        out.append("One per root cause, most severe first (accepted ones last); report.html shows each in full, "
                   "report.json holds every failing record.")
    else:
        out.append("No findings.")
    tail = []
    if stale:
        tail += ["", "### Stale accept entries", "", "These accept entries matched no failure; remove them:", ""]
        tail += [f"- {md_code(s['match'])}" + (f" — {md_escape(s['reason'])}" if s["reason"] else "")
                 for s in stale]
    room = budget - _size(out) - _size(tail) - 300  # 300: the "and N more findings" line
    entries = [_md_finding(f, records, "brief", fails_on) for f in fs]
    if fs:
        for level in ("full", "medium"):
            first = _md_finding(fs[0], records, level, fails_on)
            if _size(first) <= room // 2:
                entries[0] = first
                break
    sizes = [_size(e) for e in entries]
    shown = len(fs)
    while shown > 1 and sum(sizes[:shown]) > room:
        shown -= 1
    used = sum(sizes[:shown])
    for i in range(1, shown):
        for level in ("full", "medium"):
            e = _md_finding(fs[i], records, level, fails_on)
            if used - sizes[i] + _size(e) <= room:
                used += _size(e) - sizes[i]
                entries[i], sizes[i] = e, _size(e)
                break
    for e in entries[:shown]:
        out += e
    if shown < len(fs):
        rest = fs[shown:]
        out += ["", f"… and {len(rest)} more findings ({md_escape(_listing([f['id'] for f in rest], str))}): "
                    "see report.html."]
    return out + tail


def _md_failures_v1(report: dict, budget: int) -> list[str]:
    """A version-1 report's failing checks, one line each (as many as fit)."""
    failing = failures_by_check(report)
    if not failing:
        return []
    out = ["", "## Failures", "", "One line per failing check (its first failing run); report.json has every "
                                  "counterexample.", ""]
    for i, (r, others) in enumerate(failing):
        more = f" (and {len(others)} more runs)" if others else ""
        line = (f"- {md_code(r['id'])}{more} — {md_escape(r['status'])}: {md_escape(r['message']) or '(no message)'}"
                + (f"; {_error_text(r)}" if _error_text(r) else ""))
        if _size(out + [line]) > budget - 200:
            out.append(f"- … and {len(failing) - i} more failing checks: see report.html.")
            break
        out.append(line)
    return out


def _finding_ids_by_check(report: dict) -> dict[str, list[str]]:
    ids: dict[str, list[str]] = {}
    for f in findings(report):
        for c in f["checks"]:
            ids.setdefault(c, []).append(f["id"])
    return ids


def _md_checks(report: dict) -> list[str]:
    """The per-check table: every check when it fits in MD_CHECK_TABLE bytes,
    else those that failed (as many as fit) and one line on the rest."""
    fams = check_families(report)
    ids = _finding_ids_by_check(report)
    with_ids = bool(ids)
    head = ["", "## Checks", "", "Each check ran once per claimed dtype (and aggregation mode); report.json "
            "has every run."]
    cols = "| check | runs | pass | fail | error | worst error / bound |" + (" findings |" if with_ids else "")

    def row(f, what=True):
        return (f"| {md_code(f['check'])} | {f['runs']} | {f['pass']} | {f['fail']} | {f['error']} | "
                f"{_ratio(f['worst'])} |" + (f" {md_escape(', '.join(ids.get(f['check'], [])))} |" if with_ids else "")
                + (f" {md_escape(f['title'])} |" if what else ""))

    full = head + ["", cols + " what |", "|---" * (cols.count("|") - 1) + "|---|"] + [row(f) for f in fams]
    if _size(full) <= MD_CHECK_TABLE:
        return full
    bad = [f for f in fams if f["fail"] or f["error"]]
    good = [f for f in fams if not (f["fail"] or f["error"])]
    out = head[:-1] + [head[-1] + f" The {len(bad)} of {len(fams)} checks that failed in some run (report.html "
                                  "lists every check):"]
    if bad:
        out += ["", cols, "|---" * (cols.count("|") - 1) + "|"]
        for i, f in enumerate(bad):
            if _size(out + [row(f, False)]) > MD_CHECK_TABLE - 300:
                out += ["", f"… and {len(bad) - i} more failing checks: see report.html."]
                break
            out.append(row(f, False))
    if good:
        near = max(good, key=lambda f: f["worst"])
        out += ["", f"The other {len(good)} checks passed in every run they ran in; the closest to its bound: "
                    f"{md_code(near['check'])} at {_ratio(near['worst'])} of it."]
    return out


COVERAGE_INTRO = ("The inputs this run sent the candidate, per dimension, next to what SPEC.md accepts: the "
                  "verdict covers the exercised ranges, not the rest of the accepted ones")


def coverage_rows(report: dict) -> list[tuple[str, str, str]]:
    """(dimension, exercised, accepted) of the report's coverage section."""
    rows = []
    for c in report.get("coverage") or []:
        lo, hi = to_float(c.get("min")), to_float(c.get("max"))
        acc = [to_float(x) for x in c.get("accepted") or []]
        exercised = "not exercised" if lo is None or hi is None else f"{_fmt(lo)} – {_fmt(hi)}"
        accepted = f"{_fmt(acc[0])} – {_fmt(acc[1])}" if len(acc) == 2 and None not in acc else "?"
        rows.append((_str(c.get("label"), _str(c.get("dimension"), "?")), exercised, accepted))
    return rows


def _coverage_markdown(report: dict) -> list[str]:
    rows = coverage_rows(report)
    if not rows:
        return []
    return ["", "## Coverage", "", md_escape(COVERAGE_INTRO) + ".", "", "| input | exercised | accepted |",
            "|---|---|---|"] + [f"| {md_escape(a)} | {md_escape(b)} | {md_escape(c)} |" for a, b, c in rows]


def _coverage_html(report: dict) -> str:
    rows = coverage_rows(report)
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html_escape(a)}</td><td>{html_escape(b)}</td><td>{html_escape(c)}</td></tr>"
                   for a, b, c in rows)
    return (f"<h2>Coverage</h2><p>{html_escape(COVERAGE_INTRO)}.</p><table><tr><th>input</th><th>exercised</th>"
            f"<th>accepted</th></tr>{body}</table>")


def render_markdown(report: dict) -> str:
    c = report["candidate"]
    s = report["summary"]
    run = report["run"]
    line = status_line(report)
    fails_on = fail_on(report)
    acc = _accept_summary(report)
    out = [
        f"# {md_escape(c['name'])} — Verdict: {md_escape(report_verdict_text(report))}",
        "",
        (f"**{md_escape(line)}** — " if line else "")
        + f"{s['pass']} passed, {s['fail']} failed, {s['error']} errors, {s['skip']} skipped of {s['total']} "
          "records (SAPO conformance report).",
        "",
        "| | |",
        "|---|---|",
        f"| candidate | `{md_escape(c['spec'])}` ({md_escape(c['framework'])} {md_escape(c['framework_version'])}"
        f"{', version ' + md_escape(c['version']) if c.get('version') else ''}) |",
        f"| claims | profile `{md_escape(c['profile'])}`; dtypes {md_escape(', '.join(c['dtypes']))}; modes "
        f"{md_escape(', '.join(c['loss_agg_modes']))} |",
        *([f"| compilation | {md_escape(compilation_text(c))} |"] if compilation_text(c) else []),
        f"| run | profile `{md_escape(run['profile'])}`, seed {run['seed']}, device {md_escape(run['device'])}, "
        f"{report['duration_s']:.1f} s"
        + (f"; fails on {md_escape(', '.join(fails_on) or 'nothing')}" if fails_on is not None else "") + " |",
        *([f"| accept | {md_escape(acc)} |"] if acc else []),
        f"| harness | {md_escape(report['harness']['version'])} (oracle {md_escape(report['harness']['oracle_version'])}) |",
        f"| environment | Python {md_escape(report['environment']['python'])}, "
        f"{md_escape(', '.join(f'{k} {v}' for k, v in report['environment']['packages'].items()))} |",
        f"| created | {md_escape(report['created'])} (run `{md_escape(report.get('run_id', ''))}`) |",
    ]
    groups = ["", "## Summary by group", "", "| group | pass | fail | error | skip | worst error / bound |",
              "|---|---|---|---|---|---|"]
    for g in group_summary(report):
        groups.append(f"| {md_escape(g['group'])} | {g['pass']} | {g['fail']} | {g['error']} | {g['skip']} | "
                      f"{_ratio(g['worst'])} |")
    checks = _md_checks(report) + _coverage_markdown(report)
    throughput = _throughput_markdown(report.get("throughput"))
    budget = MD_BUDGET - _size(out + groups + checks + throughput)
    records = _records_by_id(report)
    middle = _md_findings(report, records, budget) if "findings" in report else _md_failures_v1(report, budget)
    return "\n".join(out + middle + groups + checks + throughput) + "\n"


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

#: the style sheet of every page (the report's, the matrix's)
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em;text-align:left} th{background:#f3f3f3}
.pass{background:#e7f6e7} .fail{background:#fbe3e3} .error{background:#fdf0d5} .skip{background:#eee}
.verdict-conformant{color:#17702b} .verdict-non-conformant{color:#b3261e}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em} pre{background:#f7f7f7;padding:.6em;
overflow-x:auto;white-space:pre-wrap;word-break:break-all} svg{background:#fff;border:1px solid #ddd}
.plots{display:flex;flex-wrap:wrap;gap:1em}
.finding{border-left:3px solid #b3261e;padding-left:.8em;margin:1em 0} .finding.accepted{border-color:#999;color:#555}
.finding h3{margin:.2em 0} details{margin:.4em 0} summary{cursor:pointer}
"""


def html_escape(text) -> str:
    """Untrusted text escaped for HTML content and quoted attributes."""
    return html.escape(str(text), quote=True)


def _log10_bound(bound) -> float | None:
    """log10 of a plottable bound (finite, > 0), else None.  The plots place
    log10(error) - log10(bound), never log10(error / bound): the quotient can
    underflow to 0."""
    return math.log10(bound) if bound and 0 < bound < math.inf else None




# ---------------------------------------------------------------------------
# plots
# ---------------------------------------------------------------------------

#: the most labelled ticks on an axis
MAX_TICKS = 8


def decade_ticks(lo: float, hi: float, max_ticks: int = MAX_TICKS) -> list[int]:
    """The integer exponents k in [lo, hi] to label (every one, or every
    second, third, ... so that at most ``max_ticks`` remain)."""
    first, last = math.ceil(lo), math.floor(hi)
    if last < first:
        return []
    step = max(1, math.ceil((last - first + 1) / max_ticks))
    return [k for k in range(first, last + 1) if k % step == 0]  # multiples of step: 1e0 (the bound) among them


def decade_label(k: int) -> str:
    """10**k as a tick label: "1e-3", "1e0", "1e2"."""
    return f"1e{k}"


def linear_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values (1, 2 or 5 times a power of ten apart) in [lo, hi]."""
    span = hi - lo
    if not (math.isfinite(span) and span > 0):
        return [lo] if math.isfinite(lo) else []
    raw = span / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step)
    ticks = [k * step for k in range(first, math.floor(hi / step) + 1)][:2 * MAX_TICKS]
    return [0.0 if abs(t) < step * 1e-9 else t for t in ticks]


def linear_label(x: float) -> str:
    return f"{x:.3g}"


class _Frame:
    """A plot's area inside an SVG: margins for tick labels and axis titles,
    data-to-pixel maps, the axes, and the SVG around it all."""

    def __init__(self, width: int, height: int, *, left: int = 48, right: int = 12, top: int = 24,
                 bottom: int = 44):
        self.width, self.height, self.left, self.top = width, height, left, top
        self.pw, self.ph = width - left - right, height - top - bottom

    def x(self, v: float, lo: float, hi: float) -> float:
        return self.left + (v - lo) / ((hi - lo) or 1.0) * self.pw

    def y(self, v: float, lo: float, hi: float) -> float:
        return self.top + self.ph - (v - lo) / ((hi - lo) or 1.0) * self.ph

    def axes(self, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]], xtitle: str,
             ytitle: str) -> str:
        """Both axes: lines, tick marks with their labels, and titles."""
        x0, y0 = self.left, self.top + self.ph
        out = [f'<line x1="{x0}" y1="{self.top}" x2="{x0}" y2="{y0}" stroke="#444"/>',
               f'<line x1="{x0}" y1="{y0}" x2="{x0 + self.pw}" y2="{y0}" stroke="#444"/>']
        for px, label in xticks:
            out.append(f'<line x1="{px:.1f}" y1="{y0}" x2="{px:.1f}" y2="{y0 + 4}" stroke="#444"/>'
                       f'<text x="{px:.1f}" y="{y0 + 14}" font-size="9" text-anchor="middle">'
                       f"{html_escape(label)}</text>")
        for py, label in yticks:
            out.append(f'<line x1="{x0 - 4}" y1="{py:.1f}" x2="{x0}" y2="{py:.1f}" stroke="#444"/>'
                       f'<text x="{x0 - 6}" y="{py + 3:.1f}" font-size="9" text-anchor="end">'
                       f"{html_escape(label)}</text>")
        out.append(f'<text x="{x0 + self.pw / 2:.1f}" y="{y0 + 28}" font-size="10" text-anchor="middle">'
                   f"{html_escape(xtitle)}</text>")
        cy = self.top + self.ph / 2
        out.append(f'<text x="11" y="{cy:.1f}" font-size="10" text-anchor="middle" '
                   f'transform="rotate(-90 11 {cy:.1f})">{html_escape(ytitle)}</text>')
        return "".join(out)

    def svg(self, title: str, body: str) -> str:
        return (f'<svg width="{self.width}" height="{self.height}" xmlns="http://www.w3.org/2000/svg" role="img">'
                f'<title>{html_escape(title)}</title><text x="{self.left}" y="14" font-size="11">'
                f"{html_escape(title)}</text>{body}</svg>")


_BOUND = "#b3261e"


def _histogram_svg(values: list[float], bound: float, title: str, width=420, height=200) -> str:
    """Histogram of error / bound on a log scale: decades labelled, the
    bound the labelled line at 1e0, the count of tokens on the y axis."""
    lb = _log10_bound(bound)
    if lb is None:
        return ""
    xs = [math.log10(v) - lb for v in values if v and v > 0 and math.isfinite(v)]
    if not xs:
        return ""
    lo, hi = min(min(xs), -3.0), max(max(xs), 0.5)
    n_bins = 30
    step = (hi - lo) / n_bins or 1.0
    counts = [0] * n_bins
    for x in xs:
        counts[min(n_bins - 1, int((x - lo) / step))] += 1
    top = max(counts)
    frame = _Frame(width, height)
    bw = frame.pw / n_bins
    bars = []
    for i, c in enumerate(counts):
        h = frame.ph * c / top
        bars.append(f'<rect x="{frame.left + i * bw:.1f}" y="{frame.top + frame.ph - h:.1f}" '
                    f'width="{max(bw - 1, 0.5):.1f}" height="{h:.1f}" fill="#4a78c2"/>')
    x0 = frame.x(0, lo, hi)
    yticks = [(frame.y(v, 0, top), str(v)) for v in sorted({0, top // 2, top})]
    axes = frame.axes([(frame.x(k, lo, hi), decade_label(k)) for k in decade_ticks(lo, hi)], yticks,
                      f"error / bound (log scale); {len(xs)} tokens", "tokens")
    bound_line = (f'<line x1="{x0:.1f}" y1="{frame.top - 4}" x2="{x0:.1f}" y2="{frame.top + frame.ph}" '
                  f'stroke="{_BOUND}" stroke-dasharray="3"/><text x="{x0 + 3:.1f}" y="{frame.top + 6}" '
                  f'font-size="9" fill="{_BOUND}">bound</text>')
    return frame.svg(title, "".join(bars) + axes + bound_line)


def _scatter_svg(points: list[tuple[float, float]], bound: float, title: str, width=420, height=200) -> str:
    """Error / bound (log scale, decades labelled) against the log-ratio,
    the bound the labelled line at 1e0."""
    lb = _log10_bound(bound)
    if lb is None:
        return ""
    pts = [(d, math.log10(e) - lb) for d, e in points if e and e > 0 and math.isfinite(e) and math.isfinite(d)]
    if not pts:
        return ""
    dlo, dhi = min(p[0] for p in pts), max(p[0] for p in pts)
    if dhi == dlo:
        dlo, dhi = dlo - 0.5, dhi + 0.5
    ylo, yhi = min(min(p[1] for p in pts), -3.0), max(max(p[1] for p in pts), 0.5)
    frame = _Frame(width, height)

    def sx(d):
        return frame.x(d, dlo, dhi)

    def sy(y):
        return frame.y(y, ylo, yhi)

    dots = "".join(f'<circle cx="{sx(d):.1f}" cy="{sy(y):.1f}" r="1.8" fill="#4a78c2" fill-opacity=".6"/>'
                   for d, y in pts)
    axes = frame.axes([(sx(t), linear_label(t)) for t in linear_ticks(dlo, dhi)],
                      [(sy(k), decade_label(k)) for k in decade_ticks(ylo, yhi)],
                      "log-ratio log(π / π_old)", "error / bound (log)")
    y0 = sy(0)
    bound_line = (f'<line x1="{frame.left}" y1="{y0:.1f}" x2="{frame.left + frame.pw}" y2="{y0:.1f}" '
                  f'stroke="{_BOUND}" stroke-dasharray="3"/><text x="{frame.left + frame.pw - 30}" '
                  f'y="{y0 - 3:.1f}" font-size="9" fill="{_BOUND}">bound</text>')
    return frame.svg(title, dots + axes + bound_line)


def _plots(report: dict) -> str:
    """A histogram and a scatter per elementwise check with samples."""
    bounds = {}
    for rec in report["checks"]:
        b = to_float(rec.get("bound"))
        if b:
            bounds.setdefault(rec["check"], b)
    parts = []
    for check, s in sorted((report.get("samples") or {}).items()):
        bound = bounds.get(check)
        if not bound:
            continue
        pts = [(to_float(d), to_float(e)) for d, e in zip(s.get("log_ratio", []), s.get("error", []))]
        pts = [(d, e) for d, e in pts if d is not None and e is not None]
        parts.append(_histogram_svg([e for _, e in pts], bound, f"{check}: error distribution"))
        parts.append(_scatter_svg(pts, bound, f"{check}: error vs log-ratio"))
    parts = [p for p in parts if p]
    return '<div class="plots">' + "".join(parts) + "</div>" if parts else "<p>No samples.</p>"


def check_families(report: dict) -> list[dict]:
    """Per check (over dtypes and modes): counts and the worst error / bound."""
    fams: dict[str, dict] = {}
    for rec in report["checks"]:
        f = fams.setdefault(rec["check"], {"check": rec["check"], "group": rec["group"], "title": rec["title"],
                                            "pass": 0, "fail": 0, "error": 0, "skip": 0, "worst": 0.0, "runs": 0})
        f[rec["status"]] += 1
        f["runs"] += 1
        err, bound = to_float(rec.get("max_error")), to_float(rec.get("bound"))
        if err is not None and bound:
            f["worst"] = max(f["worst"], err / bound)
    return list(fams.values())




def _html_code_list(items: list[str], limit: int = LIST_LIMIT) -> str:
    return _listing(items, lambda x: f"<code>{html_escape(x)}</code>", limit)


def _html_finding(f: dict, records: dict[str, dict], fails_on: list[str] | None) -> str:
    """One finding in full: diagnosis, fix, what it covers, the offending
    tokens and the whole counterexample of its smallest example."""
    diag = (", ".join(f"<code>{html_escape(d)}</code>" for d in f["defects"]) if f["defects"]
            else html_escape(diagnosis(f)))
    parts = [f'<h3 id="{html_escape(f["id"])}">{html_escape(f["id"])} · {html_escape(f["category"])} · '
             f'{html_escape(f["title"] or diagnosis(f))}</h3>',
             f"<p><strong>Diagnosis:</strong> {diag}"
             + (f" (seen in {html_escape(f['seen_in'])})" if f["seen_in"] else "") + "."
             + (f" <strong>Fix:</strong> {html_escape(sentence(f['fix']))}" if f["fix"] else "") + "</p>"]
    if f["accepted"]:
        parts.append(f'<p class="accepted"><strong>Accepted:</strong> {html_escape(sentence(f["accepted"]))}</p>')
    if fails_on is not None and f["category"] not in fails_on:
        parts.append(f"<p>Does not fail the run: it fails on {html_escape(', '.join(fails_on) or 'nothing')}.</p>")
    covers = (f"Covers {_plural(len(f['checks']), 'check')}"
              + (f" ({_html_code_list(f['checks'])})" if f["checks"] else "")
              + f" in {_plural(len(f['runs']), 'run')}"
              + (f" ({_listing(f['runs'], lambda r: html_escape(run_label(r)))})" if f["runs"] else ""))
    if f["worst_ratio"] is not None:
        covers += f"; worst error {html_escape(_ratio(f['worst_ratio']))} × its bound"
    parts.append(f"<p>{covers}.</p>")
    if f["records"]:
        parts.append(f"<details><summary>its {_plural(len(f['records']), 'failing record')}</summary><p>"
                     + ", ".join(f"<code>{html_escape(r)}</code>" for r in f["records"]) + "</p></details>")
    ex = f["example"]
    if ex["record"]:
        rec = _example_record(f, records)
        msg, err = rec.get("message") or "", _error_text(rec)
        parts.append(f"<p>Smallest counterexample: <code>{html_escape(ex['record'])}</code>"
                     + (f" — {html_escape(msg)}" if msg else "") + (f" ({html_escape(err)})" if err else "")
                     + ".</p>")
        scalar, rows = evidence_view(ex["evidence"])
        if scalar:
            parts.append(f"<p>{html_escape(scalar)}</p>")
        if rows:
            parts.append('<table class="tokens"><tr>' + "".join(f"<th>{html_escape(h)}</th>" for h in EVIDENCE_HEADER)
                         + "</tr>" + "".join("<tr>" + "".join(f"<td>{html_escape(c)}</td>" for c in row) + "</tr>"
                                             for row in rows) + "</table>")
        ce = _example_counterexample(f, records)
        if ce:
            parts.append(f"<details><summary>counterexample JSON</summary><pre>{html_escape(_ce_text(ce))}</pre>"
                         "</details>")
        repro = ex["reproduce"] or _str(rec.get("reproduce"))
        if repro:
            parts.append(f"<p>Reproduce:</p><pre>{html_escape(repro)}</pre>")
    cls = "finding accepted" if f["accepted"] else "finding"
    return f'<section class="{cls}">' + "".join(parts) + "</section>"


def _html_findings(report: dict, records: dict[str, dict]) -> str:
    if "findings" not in report:  # version 1: the failing checks, first failing run in full
        fails = []
        for r, others in failures_by_check(report):
            ce = r.get("counterexample")
            also = f"<p>Also failing: {html_escape(', '.join(others))}</p>" if others else ""
            fails.append(f'<h3><code>{html_escape(r["id"])}</code> — {html_escape(r["status"])}</h3>'
                         f'<p>{html_escape(r["message"])}</p>{also}'
                         + (f"<details><summary>counterexample JSON</summary><pre>{html_escape(_ce_text(ce))}</pre>"
                            "</details>" if ce else "")
                         + (f'<p>Reproduce:</p><pre>{html_escape(r["reproduce"])}</pre>' if r.get("reproduce") else ""))
        return "<h2>Failures</h2>" + "".join(fails) if fails else ""
    fs = findings(report)
    stale = stale_accepts(report)
    fails_on = fail_on(report)
    out = ["<h2>Findings</h2>"]
    if fs:
        out.append("<p>One per root cause, most severe first (accepted ones last).</p>")
        out += [_html_finding(f, records, fails_on) for f in fs]
    else:
        out.append("<p>No findings.</p>")
    if stale:
        out.append("<h3>Stale accept entries</h3><p>These accept entries matched no failure; remove them:</p><ul>"
                   + "".join(f"<li><code>{html_escape(s['match'])}</code>"
                             + (f" — {html_escape(s['reason'])}" if s["reason"] else "") + "</li>" for s in stale)
                   + "</ul>")
    return "".join(out)


def render_html(report: dict) -> str:
    c = report["candidate"]
    s = report["summary"]
    run = report["run"]
    line = status_line(report)
    fails_on = fail_on(report)
    acc = _accept_summary(report)
    ids = _finding_ids_by_check(report)
    rows = []
    for f in check_families(report):
        status = "error" if f["error"] else "fail" if f["fail"] else "pass"
        links = ", ".join(f'<a href="#{html_escape(i)}">{html_escape(i)}</a>' for i in ids.get(f["check"], []))
        rows.append(f'<tr class="{status}"><td><code>{html_escape(f["check"])}</code></td><td>{f["runs"]}</td>'
                    f'<td>{f["pass"]}</td><td>{f["fail"]}</td><td>{f["error"]}</td><td>{_ratio(f["worst"])}</td>'
                    + (f"<td>{links}</td>" if ids else "") + f'<td>{html_escape(f["title"])}</td></tr>')
    groups = "".join(
        f'<tr><td>{html_escape(g["group"])}</td><td>{g["pass"]}</td><td>{g["fail"]}</td><td>{g["error"]}</td>'
        f'<td>{g["skip"]}</td><td>{_ratio(g["worst"])}</td></tr>' for g in group_summary(report))
    env = report["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    fails_on_text = f"; fails on {html_escape(', '.join(fails_on) or 'nothing')}" if fails_on is not None else ""
    accept_row = f"<tr><th>accept</th><td>{html_escape(acc)}</td></tr>" if acc else ""
    status_html = f'<strong class="status">{html_escape(line)}</strong> — ' if line else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SAPO conformance: {html_escape(c["name"])}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body>
<h1 class="verdict-{html_escape(report["verdict"])}">{html_escape(c["name"])} — Verdict: {html_escape(report_verdict_text(report))}</h1>
<p>{status_html}{s["pass"]} passed, {s["fail"]} failed, {s["error"]} errors, {s["skip"]} skipped of {s["total"]} records
(SAPO conformance report).</p>
<table>
<tr><th>candidate</th><td><code>{html_escape(c["spec"])}</code> ({html_escape(c["framework"])} {html_escape(c["framework_version"])}
{html_escape(c.get("version") or "")}) — {html_escape(c.get("description") or "")}</td></tr>
<tr><th>claims</th><td>profile <code>{html_escape(c["profile"])}</code>; dtypes {html_escape(", ".join(c["dtypes"]))};
modes {html_escape(", ".join(c["loss_agg_modes"]))}; devices {html_escape(", ".join(c["devices"]))}</td></tr>
{f"<tr><th>compilation</th><td>{html_escape(compilation_text(c))}</td></tr>" if compilation_text(c) else ""}
<tr><th>run</th><td>profile <code>{html_escape(run["profile"])}</code>, seed {html_escape(run["seed"])}, device {html_escape(run["device"])},
{report["duration_s"]:.1f} s{fails_on_text}, <code>{html_escape(report["command"])}</code></td></tr>
{accept_row}
<tr><th>harness</th><td>{html_escape(report["harness"]["version"])} (oracle {html_escape(report["harness"]["oracle_version"])})</td></tr>
<tr><th>environment</th><td>Python {html_escape(env["python"])} on {html_escape(env["platform"])}; {html_escape(packages)};
devices {html_escape(", ".join(env["devices"]))}</td></tr>
<tr><th>created</th><td>{html_escape(report["created"])} (run <code>{html_escape(report.get("run_id", ""))}</code>)</td></tr>
</table>
{_html_findings(report, _records_by_id(report))}
<h2>Summary by group</h2>
<table><tr><th>group</th><th>pass</th><th>fail</th><th>error</th><th>skip</th><th>worst error / bound</th></tr>
{groups}</table>
<h2>Checks</h2>
<p>Each check ran once per claimed dtype (and aggregation mode); report.json has every run.</p>
<table><tr><th>check</th><th>runs</th><th>pass</th><th>fail</th><th>error</th><th>worst error / bound</th>
{"<th>findings</th>" if ids else ""}<th>what</th></tr>
{"".join(rows)}
</table>
{_coverage_html(report)}
<h2>Errors against the tolerance</h2>
<p>Each token's error in units of its tolerance scale, relative to the bound (README, "Tolerance policy").</p>
{_plots(report)}
{_throughput_html(report.get("throughput"), c["name"])}
</body></html>
"""


# ---------------------------------------------------------------------------
# JUnit
# ---------------------------------------------------------------------------


def render_junit(report: dict) -> str:
    s = report["summary"]
    name = f"sapo-conformance.{report['candidate']['name']}"
    cases = []
    for r in report["checks"]:
        attrs = f'classname={quoteattr(name + "." + r["group"])} name={quoteattr(r["id"])} time="{r["duration_s"]}"'
        msg = quoteattr(r["message"] or r["status"])
        body = ""
        if r["status"] == "fail":
            body = f"<failure message={msg}>{xml_escape(r.get('reproduce') or '')}</failure>"
        elif r["status"] == "error":
            body = f"<error message={msg}>{xml_escape(r.get('reproduce') or '')}</error>"
        elif r["status"] == "skip":
            body = f"<skipped message={msg}/>"
        cases.append(f"  <testcase {attrs}>{body}</testcase>")
    return (f'<?xml version="1.0" encoding="utf-8"?>\n<testsuite name={quoteattr(name)} tests="{s["total"]}" '
            f'failures="{s["fail"]}" errors="{s["error"]}" skipped="{s["skip"]}" time="{report["duration_s"]}">\n'
            f'  <properties><property name="verdict" value={quoteattr(verdict_text(report))}/></properties>\n'
            + "\n".join(cases) + "\n</testsuite>\n")


def defects_table() -> str:
    """``sapo-conformance defects``: the catalogue, one defect per line."""
    from .defects import DEFECTS

    return "\n".join(f"{d.id:<24} {d.category:<10} {d.title}" + (f" [seen in {d.seen_in}]" if d.seen_in else "")
                     for d in DEFECTS)
