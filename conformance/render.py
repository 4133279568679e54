"""Rendering one report: the terminal summary, Markdown, a self-contained
HTML page with SVG plots, and JUnit XML (comparing reports -- the diff and
the cross-candidate matrix -- is ``compare``'s).

Everything a candidate provides (its name, version, description, error
messages) is untrusted text: the HTML escapes all of it, and the page
carries no script.
"""

from __future__ import annotations

import html
import math
from xml.sax.saxutils import escape as xml_escape
from xml.sax.saxutils import quoteattr

from . import bench
from .report import from_num, verdict_text


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
    table = [("NAME", "FRAMEWORK", "VERSION", "DTYPES", "DEVICES", "PROFILE", "RUNS HERE")]
    for r in rows:
        runs = f"yes ({', '.join(r['here'])})" if r["runs_here"] else f"no: {r['reason']}"
        table.append((r["name"], r["framework"], r["version"], ",".join(r["dtypes"]) or "-",
                      ",".join(r["devices"]) or "-", r["profile"], runs))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]) - 1)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in table)


def terminal_summary(report: dict) -> str:
    rows = [("GROUP", "PASS", "FAIL", "ERROR", "WORST ERROR / BOUND")]
    for g in group_summary(report):
        rows.append((g["group"], str(g["pass"]), str(g["fail"]), str(g["error"]), f"{g['worst']:.3f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    s = report["summary"]
    cand = report["candidate"]
    if report.get("throughput"):
        lines.append(render_throughput_text(cand["name"], report["throughput"]))
    if compilation_text(cand):
        lines.append(f"{cand['name']}: {compilation_text(cand)}")
    lines.append(f"{cand['name']}: {verdict_text(report).upper()} -- {s['pass']} passed, {s['fail']} failed, "
                 f"{s['error']} errors of {s['total']} records (one per compared quantity of each check unit) "
                 f"in {report['duration_s']:.1f} s")
    for rec, others in failures_by_check(report):
        more = f" (and {len(others)} more dtype/mode runs)" if others else ""
        lines.append(f"  {rec['status'].upper()} {rec['id']}{more}: {rec['message']}")
        if rec.get("reproduce"):
            lines.append(f"      reproduce: {rec['reproduce']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def md_escape(text) -> str:
    """Text safe in a Markdown table cell (no "|", no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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


def _throughput_svg(section: dict, dtype: str, name: str, width=460, height=240) -> str:
    """Tokens/s against tokens (log-log): the candidate, the baseline and the
    copy roofline converted to tokens/s, each point with a bar spanning its
    quartiles."""
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
    pad, ph, pw = 45, height - 70, width - 60

    def sx(lx):  # both take log10 values
        return pad + (lx - xlo) / (xhi - xlo) * pw

    def sy(ly):
        return 20 + ph - (ly - ylo) / ((yhi - ylo) or 1) * ph

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
        f'<text x="{pad + 150 * i}" y="{height - 26}" font-size="10" fill="{color}">— {html_escape(labels[key])}</text>'
        for i, (key, color, _) in enumerate(_SERIES) if series[key])
    ystep = max(1, math.ceil((yhi - ylo) / 10))  # at most about ten labelled decades per axis
    xstep = max(1, math.ceil((xhi - xlo) / 10))
    ticks = "".join(f'<text x="4" y="{sy(k) + 3:.1f}" font-size="9">1e{k}</text>'
                    for k in range(int(ylo), int(yhi) + 1, ystep))
    ticks += "".join(f'<text x="{sx(k) - 8:.1f}" y="{height - 38}" font-size="9">1e{k}</text>'
                     for k in range(math.ceil(xlo), math.floor(xhi) + 1, xstep))
    title = f"{dtype}: tokens/s against tokens per batch (log-log; bars: quartiles)"
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<title>{html_escape(title)}</title><text x="{pad}" y="14" font-size="11">{html_escape(title)}</text>{ticks}'
            + "".join(parts) + legend
            + f'<text x="{pad}" y="{height - 8}" font-size="10">tokens 1e{xlo:.1f} to 1e{xhi:.1f} (x); '
            f"tokens/s (y)</text></svg>")


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


def render_markdown(report: dict) -> str:
    c = report["candidate"]
    s = report["summary"]
    run = report["run"]
    out = [
        f"# SAPO conformance report: {md_escape(c['name'])}",
        "",
        f"**Verdict: {md_escape(verdict_text(report))}** — {s['pass']} passed, {s['fail']} failed, "
        f"{s['error']} errors, {s['skip']} skipped of {s['total']} records.",
        "",
        "| | |",
        "|---|---|",
        f"| candidate | `{md_escape(c['spec'])}` ({md_escape(c['framework'])} {md_escape(c['framework_version'])}"
        f"{', version ' + md_escape(c['version']) if c.get('version') else ''}) |",
        f"| claims | profile `{md_escape(c['profile'])}`; dtypes {md_escape(', '.join(c['dtypes']))}; modes "
        f"{md_escape(', '.join(c['loss_agg_modes']))} |",
        *([f"| compilation | {md_escape(compilation_text(c))} |"] if compilation_text(c) else []),
        f"| run | profile `{md_escape(run['profile'])}`, seed {run['seed']}, device {md_escape(run['device'])}, "
        f"{report['duration_s']:.1f} s |",
        f"| harness | {md_escape(report['harness']['version'])} (oracle {md_escape(report['harness']['oracle_version'])}) |",
        f"| environment | Python {md_escape(report['environment']['python'])}, "
        f"{md_escape(', '.join(f'{k} {v}' for k, v in report['environment']['packages'].items()))} |",
        f"| created | {md_escape(report['created'])} (run `{md_escape(report.get('run_id', ''))}`) |",
        "",
        "## Summary by group",
        "",
        "| group | pass | fail | error | skip | worst error / bound |",
        "|---|---|---|---|---|---|",
    ]
    for g in group_summary(report):
        out.append(f"| {md_escape(g['group'])} | {g['pass']} | {g['fail']} | {g['error']} | {g['skip']} | "
                   f"{g['worst']:.3f} |")
    failing = failures_by_check(report)
    if failing:
        out += ["", "## Failures", "", "One section per failing check: its first failing run in full."]
        for r, others in failing:
            out += ["", f"### `{md_escape(r['id'])}` — {r['status']}", "", md_escape(r["message"]) or "(no message)", ""]
            if others:
                out += [f"Also failing: {', '.join('`' + md_escape(o) + '`' for o in others)}.", ""]
            if r.get("max_error") is not None:
                out.append(f"Error {_fmt(r['max_error'])} (bound {_fmt(r['bound'])}) over {r['examples']} "
                           f"example(s).")
                out.append("")
            ce = r.get("counterexample")
            if ce:
                out += ["Counterexample:", "", "```json", _ce_text(ce), "```", ""]
            if r.get("reproduce"):
                out += ["Reproduce:", "", "```", r["reproduce"], "```", ""]
    out += ["", "## Checks", "", "Each check ran once per claimed dtype (and aggregation mode); report.json "
            "has every run.", "", "| check | runs | pass | fail | error | worst error / bound | what |",
            "|---|---|---|---|---|---|---|"]
    for f in check_families(report):
        out.append(f"| `{md_escape(f['check'])}` | {f['runs']} | {f['pass']} | {f['fail']} | {f['error']} | "
                   f"{f['worst']:.3f} | {md_escape(f['title'])} |")
    out += _throughput_markdown(report.get("throughput"))
    return "\n".join(out) + "\n"


def _ce_text(ce: dict) -> str:
    import json

    return json.dumps({k: v for k, v in ce.items() if v is not None}, separators=(", ", ": "))


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
"""


def html_escape(text) -> str:
    """Untrusted text escaped for HTML content and quoted attributes."""
    return html.escape(str(text), quote=True)


def _log10_bound(bound) -> float | None:
    """log10 of a plottable bound (finite, > 0), else None.  The plots place
    log10(error) - log10(bound), never log10(error / bound): the quotient can
    underflow to 0."""
    return math.log10(bound) if bound and 0 < bound < math.inf else None


def _histogram_svg(values: list[float], bound: float, title: str, width=420, height=170) -> str:
    """Histogram of log10(error / bound); the bound is the line at 0."""
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
    pad, ph, pw = 30, height - 50, width - 40
    bars = []
    for i, c in enumerate(counts):
        h = ph * c / top
        bars.append(f'<rect x="{pad + i * pw / n_bins:.1f}" y="{20 + ph - h:.1f}" width="{pw / n_bins - 1:.1f}" '
                    f'height="{h:.1f}" fill="#4a78c2"/>')
    x0 = pad + (0 - lo) / (hi - lo) * pw
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<title>{html_escape(title)}</title><text x="{pad}" y="14" font-size="11">{html_escape(title)}</text>'
            + "".join(bars)
            + f'<line x1="{x0:.1f}" y1="18" x2="{x0:.1f}" y2="{20 + ph}" stroke="#b3261e" stroke-dasharray="3"/>'
            f'<text x="{pad}" y="{height - 8}" font-size="10">log10(error / bound): {lo:.1f} to {hi:.1f}; '
            f'red line = bound; {len(xs)} tokens</text></svg>')


def _scatter_svg(points: list[tuple[float, float]], bound: float, title: str, width=420, height=170) -> str:
    """Error / bound (log scale) against the log-ratio."""
    lb = _log10_bound(bound)
    if lb is None:
        return ""
    pts = [(d, math.log10(e) - lb) for d, e in points if e and e > 0 and math.isfinite(e) and math.isfinite(d)]
    if not pts:
        return ""
    dlo, dhi = min(p[0] for p in pts), max(p[0] for p in pts)
    ylo, yhi = min(min(p[1] for p in pts), -3.0), max(max(p[1] for p in pts), 0.5)
    pad, ph, pw = 30, height - 50, width - 40
    span_d = (dhi - dlo) or 1.0

    def sx(d):
        return pad + (d - dlo) / span_d * pw

    def sy(y):
        return 20 + ph - (y - ylo) / (yhi - ylo) * ph

    dots = "".join(f'<circle cx="{sx(d):.1f}" cy="{sy(y):.1f}" r="1.8" fill="#4a78c2" fill-opacity=".6"/>'
                   for d, y in pts)
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<title>{html_escape(title)}</title><text x="{pad}" y="14" font-size="11">{html_escape(title)}</text>{dots}'
            f'<line x1="{pad}" y1="{sy(0):.1f}" x2="{pad + pw}" y2="{sy(0):.1f}" stroke="#b3261e" '
            f'stroke-dasharray="3"/><text x="{pad}" y="{height - 8}" font-size="10">log-ratio {dlo:.3g} to '
            f'{dhi:.3g} (x); log10(error / bound) (y); red line = bound</text></svg>')


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


def render_html(report: dict) -> str:
    c = report["candidate"]
    s = report["summary"]
    run = report["run"]
    rows = []
    for f in check_families(report):
        status = "error" if f["error"] else "fail" if f["fail"] else "pass"
        rows.append(f'<tr class="{status}"><td><code>{html_escape(f["check"])}</code></td><td>{f["runs"]}</td>'
                    f'<td>{f["pass"]}</td><td>{f["fail"]}</td><td>{f["error"]}</td><td>{f["worst"]:.3f}</td>'
                    f'<td>{html_escape(f["title"])}</td></tr>')
    fails = []
    for r, others in failures_by_check(report):
        ce = r.get("counterexample")
        also = f"<p>Also failing: {html_escape(', '.join(others))}</p>" if others else ""
        fails.append(f'<h3><code>{html_escape(r["id"])}</code> — {html_escape(r["status"])}</h3><p>{html_escape(r["message"])}</p>{also}'
                     + (f"<p>Counterexample:</p><pre>{html_escape(_ce_text(ce))}</pre>" if ce else "")
                     + (f'<p>Reproduce:</p><pre>{html_escape(r["reproduce"])}</pre>' if r.get("reproduce") else ""))
    groups = "".join(
        f'<tr><td>{html_escape(g["group"])}</td><td>{g["pass"]}</td><td>{g["fail"]}</td><td>{g["error"]}</td>'
        f'<td>{g["skip"]}</td><td>{g["worst"]:.3f}</td></tr>' for g in group_summary(report))
    env = report["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SAPO conformance: {html_escape(c["name"])}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{CSS}</style></head><body>
<h1>SAPO conformance report: {html_escape(c["name"])}</h1>
<p class="verdict-{html_escape(report["verdict"])}"><strong>Verdict: {html_escape(verdict_text(report))}</strong> — {s["pass"]} passed,
{s["fail"]} failed, {s["error"]} errors, {s["skip"]} skipped of {s["total"]} records.</p>
<table>
<tr><th>candidate</th><td><code>{html_escape(c["spec"])}</code> ({html_escape(c["framework"])} {html_escape(c["framework_version"])}
{html_escape(c.get("version") or "")}) — {html_escape(c.get("description") or "")}</td></tr>
<tr><th>claims</th><td>profile <code>{html_escape(c["profile"])}</code>; dtypes {html_escape(", ".join(c["dtypes"]))};
modes {html_escape(", ".join(c["loss_agg_modes"]))}; devices {html_escape(", ".join(c["devices"]))}</td></tr>
{f"<tr><th>compilation</th><td>{html_escape(compilation_text(c))}</td></tr>" if compilation_text(c) else ""}
<tr><th>run</th><td>profile <code>{html_escape(run["profile"])}</code>, seed {html_escape(run["seed"])}, device {html_escape(run["device"])},
{report["duration_s"]:.1f} s, <code>{html_escape(report["command"])}</code></td></tr>
<tr><th>harness</th><td>{html_escape(report["harness"]["version"])} (oracle {html_escape(report["harness"]["oracle_version"])})</td></tr>
<tr><th>environment</th><td>Python {html_escape(env["python"])} on {html_escape(env["platform"])}; {html_escape(packages)};
devices {html_escape(", ".join(env["devices"]))}</td></tr>
<tr><th>created</th><td>{html_escape(report["created"])} (run <code>{html_escape(report.get("run_id", ""))}</code>)</td></tr>
</table>
<h2>Summary by group</h2>
<table><tr><th>group</th><th>pass</th><th>fail</th><th>error</th><th>skip</th><th>worst error / bound</th></tr>
{groups}</table>
{"<h2>Failures</h2>" + "".join(fails) if fails else ""}
<h2>Errors against the tolerance</h2>
<p>Each token's error in units of its tolerance scale, relative to the bound (README, "Tolerance policy").</p>
{_plots(report)}
<h2>Checks</h2>
<p>Each check ran once per claimed dtype (and aggregation mode); report.json has every run.</p>
<table><tr><th>check</th><th>runs</th><th>pass</th><th>fail</th><th>error</th><th>worst error / bound</th>
<th>what</th></tr>
{"".join(rows)}
</table>
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
