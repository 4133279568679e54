"""Rendering reports: Markdown, a self-contained HTML page with SVG plots,
JUnit XML, the cross-candidate matrix, and the diff of two reports.

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
from .report import _from_num


def _f(x) -> float | None:
    if x is None:
        return None
    try:
        return _from_num(x)
    except ValueError:
        return None


def _fmt(x) -> str:
    v = _f(x)
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
        err, bound = _f(rec.get("max_error")), _f(rec.get("bound"))
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
    lines.append(f"{cand['name']}: {report['verdict'].upper()} -- {s['pass']} passed, {s['fail']} failed, "
                 f"{s['error']} errors of {s['total']} checks in {report['duration_s']:.1f} s")
    for rec, others in failures_by_check(report):
        more = f" (and {len(others)} more dtype/mode runs)" if others else ""
        lines.append(f"  {rec['status'].upper()} {rec['id']}{more}: {rec['message']}")
        if rec.get("reproduce"):
            lines.append(f"      reproduce: {rec['reproduce']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------


def _md(text) -> str:
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
        return ["", "## Throughput", "", _md(f"Throughput {section['error']}.")]
    head = throughput_header(section)
    out = ["", "## Throughput", "", _md(_throughput_intro(section)) + ".", "",
           "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in throughput_rows(section)]
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
                     f"<title>{_e(labels[key])}</title></polyline>")
        parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>'
                  f'<line x1="{sx(x):.1f}" y1="{sy(lo):.1f}" x2="{sx(x):.1f}" y2="{sy(hi):.1f}" stroke="{color}"/>'
                  for x, y, lo, hi in v]
    legend = "".join(
        f'<text x="{pad + 150 * i}" y="{height - 26}" font-size="10" fill="{color}">— {_e(labels[key])}</text>'
        for i, (key, color, _) in enumerate(_SERIES) if series[key])
    ystep = max(1, math.ceil((yhi - ylo) / 10))  # at most about ten labelled decades per axis
    xstep = max(1, math.ceil((xhi - xlo) / 10))
    ticks = "".join(f'<text x="4" y="{sy(k) + 3:.1f}" font-size="9">1e{k}</text>'
                    for k in range(int(ylo), int(yhi) + 1, ystep))
    ticks += "".join(f'<text x="{sx(k) - 8:.1f}" y="{height - 38}" font-size="9">1e{k}</text>'
                     for k in range(math.ceil(xlo), math.floor(xhi) + 1, xstep))
    title = f"{dtype}: tokens/s against tokens per batch (log-log; bars: quartiles)"
    return (f'<svg width="{width}" height="{height}" xmlns="http://www.w3.org/2000/svg" role="img">'
            f'<title>{_e(title)}</title><text x="{pad}" y="14" font-size="11">{_e(title)}</text>{ticks}'
            + "".join(parts) + legend
            + f'<text x="{pad}" y="{height - 8}" font-size="10">tokens 1e{xlo:.1f} to 1e{xhi:.1f} (x); '
            f"tokens/s (y)</text></svg>")


def _throughput_html(section: dict | None, name: str) -> str:
    if not section:
        return ""
    if section.get("error"):
        return f"<h2>Throughput</h2><p>Throughput {_e(section['error'])}.</p>"
    head = "".join(f"<th>{_e(h)}</th>" for h in throughput_header(section))
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in throughput_rows(section))
    dtypes = list(dict.fromkeys(r["dtype"] for r in section["rows"]))
    plots = [p for p in (_throughput_svg(section, d, name) for d in dtypes) if p]
    plot_html = '<div class="plots">' + "".join(plots) + "</div>" if plots else ""
    return (f"<h2>Throughput</h2><p>{_e(_throughput_intro(section))}.</p>{plot_html}"
            f"<table><tr>{head}</tr>{body}</table>")


def render_markdown(report: dict) -> str:
    c = report["candidate"]
    s = report["summary"]
    run = report["run"]
    out = [
        f"# SAPO conformance report: {_md(c['name'])}",
        "",
        f"**Verdict: {report['verdict']}** — {s['pass']} passed, {s['fail']} failed, {s['error']} errors, "
        f"{s['skip']} skipped of {s['total']} checks.",
        "",
        "| | |",
        "|---|---|",
        f"| candidate | `{_md(c['spec'])}` ({_md(c['framework'])} {_md(c['framework_version'])}"
        f"{', version ' + _md(c['version']) if c.get('version') else ''}) |",
        f"| claims | profile `{_md(c['profile'])}`; dtypes {_md(', '.join(c['dtypes']))}; modes "
        f"{_md(', '.join(c['loss_agg_modes']))} |",
        *([f"| compilation | {_md(compilation_text(c))} |"] if compilation_text(c) else []),
        f"| run | profile `{_md(run['profile'])}`, seed {run['seed']}, device {_md(run['device'])}, "
        f"{report['duration_s']:.1f} s |",
        f"| harness | {_md(report['harness']['version'])} (oracle {_md(report['harness']['oracle_version'])}) |",
        f"| environment | Python {_md(report['environment']['python'])}, "
        f"{_md(', '.join(f'{k} {v}' for k, v in report['environment']['packages'].items()))} |",
        f"| created | {_md(report['created'])} (run `{_md(report.get('run_id', ''))}`) |",
        "",
        "## Summary by group",
        "",
        "| group | pass | fail | error | skip | worst error / bound |",
        "|---|---|---|---|---|---|",
    ]
    for g in group_summary(report):
        out.append(f"| {_md(g['group'])} | {g['pass']} | {g['fail']} | {g['error']} | {g['skip']} | "
                   f"{g['worst']:.3f} |")
    failing = failures_by_check(report)
    if failing:
        out += ["", "## Failures", "", "One section per failing check: its first failing run in full."]
        for r, others in failing:
            out += ["", f"### `{_md(r['id'])}` — {r['status']}", "", _md(r["message"]) or "(no message)", ""]
            if others:
                out += [f"Also failing: {', '.join('`' + _md(o) + '`' for o in others)}.", ""]
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
        out.append(f"| `{_md(f['check'])}` | {f['runs']} | {f['pass']} | {f['fail']} | {f['error']} | "
                   f"{f['worst']:.3f} | {_md(f['title'])} |")
    out += _throughput_markdown(report.get("throughput"))
    return "\n".join(out) + "\n"


def _ce_text(ce: dict) -> str:
    import json

    return json.dumps({k: v for k, v in ce.items() if v is not None}, separators=(", ", ": "))


# ---------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:2em} table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:.9em;text-align:left} th{background:#f3f3f3}
.pass{background:#e7f6e7} .fail{background:#fbe3e3} .error{background:#fdf0d5} .skip{background:#eee}
.verdict-conformant{color:#17702b} .verdict-non-conformant{color:#b3261e}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.85em} pre{background:#f7f7f7;padding:.6em;
overflow-x:auto;white-space:pre-wrap;word-break:break-all} svg{background:#fff;border:1px solid #ddd}
.plots{display:flex;flex-wrap:wrap;gap:1em}
"""


def _e(text) -> str:
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
            f'<title>{_e(title)}</title><text x="{pad}" y="14" font-size="11">{_e(title)}</text>'
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
            f'<title>{_e(title)}</title><text x="{pad}" y="14" font-size="11">{_e(title)}</text>{dots}'
            f'<line x1="{pad}" y1="{sy(0):.1f}" x2="{pad + pw}" y2="{sy(0):.1f}" stroke="#b3261e" '
            f'stroke-dasharray="3"/><text x="{pad}" y="{height - 8}" font-size="10">log-ratio {dlo:.3g} to '
            f'{dhi:.3g} (x); log10(error / bound) (y); red line = bound</text></svg>')


def _plots(report: dict) -> str:
    """A histogram and a scatter per elementwise check with samples."""
    bounds = {}
    for rec in report["checks"]:
        b = _f(rec.get("bound"))
        if b:
            bounds.setdefault(rec["check"], b)
    parts = []
    for check, s in sorted((report.get("samples") or {}).items()):
        bound = bounds.get(check)
        if not bound:
            continue
        pts = [(_f(d), _f(e)) for d, e in zip(s.get("log_ratio", []), s.get("error", []))]
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
        err, bound = _f(rec.get("max_error")), _f(rec.get("bound"))
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
        rows.append(f'<tr class="{status}"><td><code>{_e(f["check"])}</code></td><td>{f["runs"]}</td>'
                    f'<td>{f["pass"]}</td><td>{f["fail"]}</td><td>{f["error"]}</td><td>{f["worst"]:.3f}</td>'
                    f'<td>{_e(f["title"])}</td></tr>')
    fails = []
    for r, others in failures_by_check(report):
        ce = r.get("counterexample")
        also = f"<p>Also failing: {_e(', '.join(others))}</p>" if others else ""
        fails.append(f'<h3><code>{_e(r["id"])}</code> — {_e(r["status"])}</h3><p>{_e(r["message"])}</p>{also}'
                     + (f"<p>Counterexample:</p><pre>{_e(_ce_text(ce))}</pre>" if ce else "")
                     + (f'<p>Reproduce:</p><pre>{_e(r["reproduce"])}</pre>' if r.get("reproduce") else ""))
    groups = "".join(
        f'<tr><td>{_e(g["group"])}</td><td>{g["pass"]}</td><td>{g["fail"]}</td><td>{g["error"]}</td>'
        f'<td>{g["skip"]}</td><td>{g["worst"]:.3f}</td></tr>' for g in group_summary(report))
    env = report["environment"]
    packages = ", ".join(f"{k} {v}" for k, v in env["packages"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SAPO conformance: {_e(c["name"])}</title>
<meta name="viewport" content="width=device-width,initial-scale=1"><style>{_CSS}</style></head><body>
<h1>SAPO conformance report: {_e(c["name"])}</h1>
<p class="verdict-{_e(report["verdict"])}"><strong>Verdict: {_e(report["verdict"])}</strong> — {s["pass"]} passed,
{s["fail"]} failed, {s["error"]} errors, {s["skip"]} skipped of {s["total"]} checks.</p>
<table>
<tr><th>candidate</th><td><code>{_e(c["spec"])}</code> ({_e(c["framework"])} {_e(c["framework_version"])}
{_e(c.get("version") or "")}) — {_e(c.get("description") or "")}</td></tr>
<tr><th>claims</th><td>profile <code>{_e(c["profile"])}</code>; dtypes {_e(", ".join(c["dtypes"]))};
modes {_e(", ".join(c["loss_agg_modes"]))}; devices {_e(", ".join(c["devices"]))}</td></tr>
{f"<tr><th>compilation</th><td>{_e(compilation_text(c))}</td></tr>" if compilation_text(c) else ""}
<tr><th>run</th><td>profile <code>{_e(run["profile"])}</code>, seed {_e(run["seed"])}, device {_e(run["device"])},
{report["duration_s"]:.1f} s, <code>{_e(report["command"])}</code></td></tr>
<tr><th>harness</th><td>{_e(report["harness"]["version"])} (oracle {_e(report["harness"]["oracle_version"])})</td></tr>
<tr><th>environment</th><td>Python {_e(env["python"])} on {_e(env["platform"])}; {_e(packages)};
devices {_e(", ".join(env["devices"]))}</td></tr>
<tr><th>created</th><td>{_e(report["created"])} (run <code>{_e(report.get("run_id", ""))}</code>)</td></tr>
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
            + "\n".join(cases) + "\n</testsuite>\n")


# ---------------------------------------------------------------------------
# the matrix of several candidates
# ---------------------------------------------------------------------------


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
        "schema": "sapo-conformance.matrix",
        "schema_version": 1,
        "candidates": [{"name": e["name"], "status": e["status"], "reason": e.get("reason", ""),
                        "verdict": (e.get("report") or {}).get("verdict")} for e in entries],
        "checks": {k: checks[k] for k in sorted(checks)},
    }


def render_matrix_markdown(m: dict) -> str:
    names = [c["name"] for c in m["candidates"]]
    out = ["# SAPO conformance matrix", "", "| candidate | verdict |", "|---|---|"]
    for c in m["candidates"]:
        verdict = c["verdict"] or f"{c['status']}: {c['reason']}"
        out.append(f"| {_md(c['name'])} | {_md(verdict)} |")
    out += ["", "| check | " + " | ".join(_md(n) for n in names) + " |", "|---|" + "---|" * len(names)]
    for check, cells in m["checks"].items():
        out.append(f"| `{_md(check)}` | " + " | ".join(cells.get(n, "-") for n in names) + " |")
    return "\n".join(out) + "\n"


def render_matrix_html(m: dict) -> str:
    names = [c["name"] for c in m["candidates"]]
    head = "".join(f"<th>{_e(n)}</th>" for n in names)
    verdicts = "".join(
        f'<tr><td>{_e(c["name"])}</td><td class="{_e(c["verdict"] or "skip")}">'
        f'{_e(c["verdict"] or c["status"] + ": " + c["reason"])}</td></tr>' for c in m["candidates"])
    rows = "".join(
        f"<tr><td><code>{_e(check)}</code></td>" + "".join(
            f'<td class="{_e(cells.get(n, "skip"))}">{_e(cells.get(n, "-"))}</td>' for n in names) + "</tr>"
        for check, cells in m["checks"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>SAPO conformance matrix</title><style>{_CSS}
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


def diff_reports(old: dict, new: dict, *, slower_threshold: float | None = None,
                 include_noisy: bool = False) -> dict:
    """What changed.  A regression: a new failure, an error that grew
    markedly, or (only when ``slower_threshold`` is given, in percent) a
    throughput median that got slower by more than that.  Rows noisy in
    either report are not judged (listed in ``ignored_noisy``) unless
    ``include_noisy``."""
    olds = {r["id"]: r for r in old["checks"]}
    news = {r["id"]: r for r in new["checks"]}
    bad = ("fail", "error")
    out = {"new_failures": [], "fixed": [], "error_growth": [], "added": [], "removed": []}
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
        eo, en, b = _f(o.get("max_error")), _f(n.get("max_error")), _f(n.get("bound"))
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
    out["regression"] = bool(out["new_failures"] or out["error_growth"] or out["slower"])
    out["verdicts"] = [old["verdict"], new["verdict"]]
    return out


def render_diff(d: dict) -> str:
    lines = [f"verdict: {d['verdicts'][0]} -> {d['verdicts'][1]}"]
    for key, label in (("new_failures", "new failures"), ("fixed", "fixed"), ("added", "new checks"),
                       ("removed", "removed checks")):
        if d[key]:
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
