"""The conformance report: a versioned JSON document, and writing it safely.

Schema ``sapo-conformance.report`` version 2 (README, "Reports"; version 1
is version 2 without the keys marked "v2", and is still read):

    {
      "schema": "sapo-conformance.report", "schema_version": 2,
      "run_id": str, "created": ISO-8601 UTC, "duration_s": float, "command": str,
      "harness": {"version": str, "oracle_version": str},
      "environment": {"python": str, "platform": str, "packages": {name: version}, "devices": [str]},
      "candidate": {"spec": str, ...CandidateInfo fields (shape_buckets among them)...,
                    "compilations": int | null},
      "run": {"profile": str, "seed": int, "device": str, "dtypes": [str], "loss_agg_modes": [str],
              "checks": [glob], "partial": [str], "fail_on": [category] (v2)},
      "verdict": "conformant" | "non-conformant" | "harness-error",
      "verdict_text": str, "status_line": str,                                          (v2)
      "categories": {category: {"findings": int, "accepted": int}},                       (v2)
      "findings": [finding, ...],                                                         (v2)
      "accept": {"sources": [str], "entries": int, "stale": [{"match", "reason", "source"}],
                 "strict": bool},                                                         (v2)
      "summary": {"total": int, "pass": int, "fail": int, "error": int, "skip": int},
      "checks": [record, ...],
      "samples": {...}
    }

and each record:

    {"id": "random:grad[float32,token-mean]", "check": "random:grad", "group": "random",
     "title": str, "params": {"dtype": str, "loss_agg_mode": str | null, "device": str},
     "status": "pass" | "fail" | "error" | "skip", "max_error": float | null, "bound": float | null,
     "worst_at": null | [int] (where in its output the worst observation's worst element was),
     "examples": int, "duration_s": float, "message": str,
     "counterexample": null | {"logprob": [[x]], "old_logprob": [[x]], "advantages": [x] | [[x]],
                               "mask": [[bool]], "options": {...CallOptions...}, "dtype": str,
                               "layout": str | null, "case": str | null},
     "reproduce": str | null,
     (v2) "category": null | category, "practical_error": null | float, "defects": [str], "shape": str,
          "evidence": null | {"quantity": str, "got"?: float, "expected"?: float,
                              "tokens": [{"row", "col", "log_ratio", "advantage", "tau", "mask", "got"?,
                                          "expected"?}]}}

and each finding (conformance.findings: one per root cause):

    {"id": "F1", "category": "semantics" | "non-finite" | "precision" | "contract",
     "defects": [catalogue id], "title": str, "fix": str | null, "seen_in": str | null, "shape": str,
     "records": [record id], "checks": [str], "runs": ["dtype,mode"], "worst_ratio": float,
     "example": {"record", "message", "evidence", "counterexample", "reproduce"}, "accepted": null | reason}

"candidate.compilations" is how many programs the candidate compiled during
the run (``Candidate.compile_count``, summed over its worker processes; null
when it does not say).  "samples": {check: {"log_ratio": [float], "error":
[float]}} holds, per elementwise check (e.g. "random:grad"), up to 400
tokens' errors in units of their tolerance scale with their log-ratios, for
the plots.  "coverage": [{"dimension", "label", "min", "max", "accepted":
[lo, hi]}] is, per input dimension (conformance.coverage), the range the
run's evaluations exercised (null: none) next to the range SPEC.md accepts.

Floats are JSON numbers except NaN and +-inf, written as the strings "nan",
"inf" and "-inf" (the file is strict JSON).  ``max_error`` is in units of the
tolerance scale (tolerance module): a check passes when max_error <= bound.
No pickle anywhere; every file is written to a temporary name and renamed.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import shlex
import tempfile
import uuid
from pathlib import Path

import numpy as np

from sapo_ref._version import ORACLE_VERSION, __version__

from .candidate import Batch, CallOptions, Candidate
from .suite.records import Counterexample, Record
from .types import package_version

SCHEMA = "sapo-conformance.report"
SCHEMA_VERSION = 2
#: report versions this harness reads (version 1 has no findings: diff and render still take it)
READS_VERSIONS = (1, 2)
BENCH_SCHEMA_VERSION = 1
STATUSES = ("pass", "fail", "error", "skip")
#: "harness-error": a check run raised inside the harness or the oracle; the
#: run says nothing about the candidate until that is fixed (exit code 3)
VERDICTS = ("conformant", "non-conformant", "harness-error")


def harness_faults(records: list[dict]) -> list[dict]:
    """The records (report.json form) of check runs the harness could not
    finish: its own errors, never the candidate's."""
    from .suite.records import HARNESS

    return [r for r in records if r["check"].endswith(":" + HARNESS)]


def harness_error_line(document: dict) -> str:
    """What ``run`` says on stderr for a report whose verdict is "harness-error"."""
    faults = harness_faults(document["checks"])
    return (f"harness error: {len(faults)} check run{'s' if len(faults) != 1 else ''} raised inside sapo-conformance, "
            f"not the candidate; first: {faults[0]['id']}: {faults[0]['message'].removeprefix('harness error: ')}")
PACKAGES = ("numpy", "torch", "jax", "jaxlib", "triton", "hypothesis", "mpmath", "ml_dtypes")


class ReportError(ValueError):
    """A report file that cannot be used; the message names the file."""


# ---------------------------------------------------------------------------
# JSON-safe values
# ---------------------------------------------------------------------------


def _num(x):
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def from_num(x) -> float:
    """A number as the report writes it (a JSON number, or "nan", "inf",
    "-inf") as a float; ValueError for anything else (bools included)."""
    if isinstance(x, str):
        if x in ("nan", "inf", "-inf"):
            return float(x)
        raise ValueError(f"not a number: {x!r}")
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"not a number: {x!r}")
    return float(x)


def _array_to_json(a: np.ndarray):
    a = np.asarray(a)
    if a.dtype == bool:
        return a.tolist()
    return np.vectorize(_num, otypes=[object])(a).tolist() if a.size else a.tolist()


def _array_from_json(v, name: str, *, boolean: bool = False) -> np.ndarray:
    try:
        if boolean:
            arr = np.array(v, dtype=bool)
            if not all(isinstance(x, bool) for x in np.asarray(v, dtype=object).ravel()):
                raise ValueError("mask values must be true/false")
            return arr
        obj = np.asarray(v, dtype=object)
        return np.vectorize(from_num, otypes=[np.float64])(obj) if obj.size else obj.astype(np.float64)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"counterexample {name}: {exc}") from None


def encode_counterexample(ce: Counterexample | None):
    if ce is None:
        return None
    out = {"options": {k: v for k, v in vars(ce.options).items()}, "dtype": ce.dtype, "layout": ce.layout,
           "case": ce.case}
    if ce.batch is not None:
        b = ce.batch
        out.update(logprob=_array_to_json(b.logprob), old_logprob=_array_to_json(b.old_logprob),
                   advantages=_array_to_json(b.advantages), mask=_array_to_json(np.asarray(b.mask, bool)))
        if b.weights is not None:
            out["rollout_is_weights"] = _array_to_json(b.weights)
    return out


def decode_counterexample(d: dict) -> Counterexample:
    if not isinstance(d, dict):
        raise ValueError("counterexample must be an object")
    opts = d.get("options") or {}
    if not isinstance(opts, dict):
        raise ValueError("counterexample options must be an object")
    try:
        options = CallOptions(**opts)
    except TypeError as exc:
        raise ValueError(f"counterexample options: {exc}") from None
    batch = None
    if "logprob" in d:
        batch = Batch(_array_from_json(d["logprob"], "logprob"), _array_from_json(d["old_logprob"], "old_logprob"),
                      _array_from_json(d["advantages"], "advantages"), _array_from_json(d["mask"], "mask",
                                                                                         boolean=True),
                      None if d.get("rollout_is_weights") is None
                      else _array_from_json(d["rollout_is_weights"], "rollout_is_weights"))
    return Counterexample(batch, options, str(d.get("dtype")), d.get("layout"), d.get("case"))


def encode_record(rec: Record) -> dict:
    """A record as JSON-safe data, losslessly (for the isolation worker)."""
    return {"check": rec.check, "group": rec.group, "title": rec.title, "dtype": rec.dtype, "loss_agg_mode": rec.loss_agg_mode,
            "device": rec.device, "status": rec.status,
            "max_error": None if rec.max_error is None else _num(rec.max_error),
            "bound": None if rec.bound is None else _num(rec.bound), "examples": rec.examples,
            "worst_at": None if rec.worst_at is None else list(rec.worst_at),
            "duration_s": rec.duration_s, "message": rec.message,
            "counterexample": encode_counterexample(rec.counterexample),
            "samples": [[_num(a), _num(b)] for a, b in rec.samples], **_diagnosis_json(rec),
            "coverage": {k: [_num(a), _num(b)] for k, (a, b) in rec.coverage.items()}}


def _diagnosis_json(rec: Record) -> dict:
    return {"category": rec.category,
            "practical_error": None if rec.practical_error is None else _num(rec.practical_error),
            "defects": list(rec.defects), "shape": rec.shape, "evidence": _evidence_json(rec.evidence)}


def _evidence_json(ev: dict | None):
    if ev is None:
        return None
    out = {k: (_num(v) if isinstance(v, float) else v) for k, v in ev.items() if k != "tokens"}
    out["tokens"] = [{k: (_num(v) if isinstance(v, float) else v) for k, v in t.items()} for t in ev["tokens"]]
    return out


def _evidence_from_json(ev):
    if ev is None:
        return None
    out = {k: (from_num(v) if k in ("got", "expected") else v) for k, v in ev.items() if k != "tokens"}
    out["tokens"] = [{k: (from_num(v) if k in _TOKEN_NUMS else v) for k, v in t.items()} for t in ev["tokens"]]
    return out


_TOKEN_NUMS = ("log_ratio", "advantage", "tau", "got", "expected")


def decode_record(d: dict) -> Record:
    """The inverse of :func:`encode_record`; ValueError if malformed."""
    try:
        return Record(check=str(d["check"]), group=str(d["group"]), title=str(d["title"]), dtype=str(d["dtype"]),
                      loss_agg_mode=d["loss_agg_mode"], device=str(d["device"]), status=d["status"] if d["status"] in STATUSES
                      else "error", max_error=None if d["max_error"] is None else from_num(d["max_error"]),
                      bound=None if d["bound"] is None else from_num(d["bound"]), examples=int(d["examples"]),
                      worst_at=None if d.get("worst_at") is None else tuple(int(i) for i in d["worst_at"]),
                      duration_s=float(d["duration_s"]), message=str(d["message"]),
                      counterexample=None if d["counterexample"] is None
                      else decode_counterexample(d["counterexample"]),
                      samples=[(from_num(a), from_num(b)) for a, b in d["samples"]],
                      category=d.get("category"),
                      practical_error=None if d.get("practical_error") is None else from_num(d["practical_error"]),
                      defects=tuple(d.get("defects") or ()), shape=str(d.get("shape") or ""),
                      evidence=_evidence_from_json(d.get("evidence")),
                      coverage={str(k): [from_num(a), from_num(b)] for k, (a, b) in (d.get("coverage") or {}).items()})
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed record: {exc}") from None


# ---------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------


def environment(device: str) -> dict:
    versions = {name: package_version(name, None) for name in PACKAGES}
    packages = {name: v for name, v in versions.items() if v is not None}
    devices = ["cpu"]
    if device == "cuda":
        try:
            import torch

            devices.append(f"cuda: {torch.cuda.get_device_name(0)}")
        except Exception:  # pragma: no cover - depends on the machine
            devices.append("cuda")
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine(),
            "packages": packages, "devices": devices}


def reproduce_command(report_path: str, record_id: str) -> str:
    return f"sapo-conformance reproduce {shlex.quote(report_path)} {shlex.quote(record_id)}"


#: points per check family kept for the plots (the largest errors and a spread)
SAMPLES_PER_CHECK = 400


def _merge_samples(records: list[Record]) -> dict:
    families: dict[str, list] = {}
    for rec in records:
        if rec.samples:
            families.setdefault(rec.check, []).extend(rec.samples)
    out = {}
    for check, pts in sorted(families.items()):
        if len(pts) > SAMPLES_PER_CHECK:
            pts = sorted(pts, key=lambda p: p[1])
            top = pts[-SAMPLES_PER_CHECK // 2:]
            rest = pts[: -SAMPLES_PER_CHECK // 2]
            pts = rest[:: max(1, len(rest) // (SAMPLES_PER_CHECK // 2))] + top
        out[check] = {"log_ratio": [_num(a) for a, _ in pts], "error": [_num(b) for _, b in pts]}
    return out


def coverage_json(records: list[Record]) -> list[dict]:
    """The report's coverage section (conformance.coverage): what the run's
    evaluations exercised, per input dimension, and what SPEC.md accepts."""
    from . import coverage

    rows = coverage.section(coverage.merge(r.coverage for r in records))
    return [{**row, "min": None if row["min"] is None else _num(row["min"]),
             "max": None if row["max"] is None else _num(row["max"]),
             "accepted": [_num(x) for x in row["accepted"]]} for row in rows]


def record_to_json(rec: Record, report_path: str) -> dict:
    return {
        "id": rec.id,
        "check": rec.check,
        "group": rec.group,
        "title": rec.title,
        "params": {"dtype": rec.dtype, "loss_agg_mode": rec.loss_agg_mode, "device": rec.device},
        "status": rec.status,
        "max_error": None if rec.max_error is None else _num(rec.max_error),
        "bound": None if rec.bound is None else _num(rec.bound),
        "worst_at": None if rec.worst_at is None else list(rec.worst_at),
        "examples": rec.examples,
        "duration_s": round(rec.duration_s, 6),
        "message": rec.message,
        "counterexample": encode_counterexample(rec.counterexample),
        "reproduce": reproduce_command(report_path, rec.id) if rec.status in ("fail", "error") and rec.group != "run"
        else None,
        **_diagnosis_json(rec),
    }


def summarize(records: list) -> dict:
    counts = {s: 0 for s in STATUSES}
    for r in records:
        counts[r["status"]] += 1
    return {"total": len(records), **counts}


def verdict_text(report: dict) -> str:
    """The verdict as every format shows it: "conformant", "non-conformant",
    "conformant with N accepted deviations", with "(partial: ...)" when the
    run was restricted to some checks, dtypes or modes."""
    accepted = sum(c["accepted"] for c in (report.get("categories") or {}).values())
    return format_verdict(report["verdict"], report["run"].get("partial"), accepted)


def format_verdict(verdict: str, partial=None, accepted: int = 0) -> str:
    """``verdict``, with "(partial: a; b)" when the run was restricted."""
    if verdict == "harness-error":
        verdict = "harness error (a bug in sapo-conformance, not a finding against the candidate)"
    if verdict == "conformant" and accepted:
        verdict += f" with {accepted} accepted deviation{'s' if accepted != 1 else ''}"
    return verdict + (f" (partial: {'; '.join(partial)})" if partial else "")


def fails(report: dict) -> bool:
    """Should the run's exit code say "non-conformant"?  An unaccepted
    finding in a category of ``run.fail_on`` (default: every category), no
    passing check at all, or -- with ``accept.strict`` -- a stale entry."""
    from .tolerance import CATEGORIES

    if "findings" not in report or report["verdict"] == "harness-error":  # version 1, or no verdict at all
        return report["verdict"] != "conformant"
    fail_on = report["run"].get("fail_on") or list(CATEGORIES)
    if any(f["accepted"] is None and f["category"] in fail_on for f in report["findings"]):
        return True
    if report["summary"]["pass"] == 0:
        return True
    acc = report.get("accept") or {}
    return bool(acc.get("strict") and acc.get("stale"))


def build_report(candidate: Candidate, spec: str, records: list[Record], *, profile: str, seed: int, device: str,
                 dtypes, modes, checks, duration_s: float, command: str, report_path: str = "report.json",
                 throughput: dict | None = None, compilations: int | None = None,
                 partial: list[str] | None = None, accept=(), strict_accept: bool = False,
                 fail_on=None) -> dict:
    from . import findings as _findings
    from .tolerance import CATEGORIES

    recs = [record_to_json(r, report_path) for r in records]
    summary = summarize(recs)
    faults = harness_faults(recs)
    outcome = _findings.build([r for r in recs if r not in faults], list(accept))
    verdict = ("harness-error" if faults else
               "conformant" if not outcome.unaccepted and summary["pass"] > 0 else "non-conformant")
    document = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "run_id": uuid.uuid4().hex,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "duration_s": round(duration_s, 3),
        "command": command,
        "harness": {"version": __version__, "oracle_version": ORACLE_VERSION},
        "environment": environment(device),
        "candidate": {"spec": spec, **candidate.info.as_dict(), "compilations": compilations},
        "run": {"profile": profile, "seed": seed, "device": device, "dtypes": list(dtypes),
                "loss_agg_modes": list(modes), "checks": list(checks or ["*"]), "partial": list(partial or []),
                "fail_on": list(fail_on or CATEGORIES)},
        "verdict": verdict,
        "verdict_text": "",
        "status_line": _findings.status_line(outcome.categories),
        "categories": outcome.categories,
        "findings": _findings_json(outcome.findings),
        "accept": {"sources": sorted({e.source for e in accept}), "entries": len(accept), "stale": outcome.stale,
                   "strict": bool(strict_accept)},
        "summary": summary,
        "checks": recs,
        "samples": _merge_samples(records),
        "coverage": coverage_json(records),
        "throughput": throughput,
    }
    document["verdict_text"] = verdict_text(document)
    return document


def _findings_json(findings: list[dict]) -> list[dict]:
    return [{**f, "worst_ratio": _num(f["worst_ratio"])} for f in findings]


BENCH_SCHEMA = "sapo-conformance.bench"


def bench_document(results: list[dict], *, device: str, command: str) -> dict:
    """What ``bench --json`` writes: one throughput section per candidate."""
    return {
        "schema": BENCH_SCHEMA,
        "schema_version": BENCH_SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        "harness": {"version": __version__, "oracle_version": ORACLE_VERSION},
        "environment": environment(device),
        "results": results,
    }


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------


def atomic_write(path: Path, text: str) -> None:
    """Write to a temporary file in the same directory, then rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def dumps(report: dict) -> str:
    return json.dumps(report, indent=1, allow_nan=False) + "\n"


def read_json(path):
    """The strict JSON in a file (no bare NaN/Infinity); ReportError naming
    the file if it cannot be read or parsed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not a UTF-8 text file") from None
    try:
        return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"bare {c}")))
    except (ValueError, RecursionError) as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None


def load_validated(path, validator) -> dict:
    """Read a JSON document and check it with ``validator`` (what is wrong,
    or None); ReportError naming the file otherwise."""
    data = read_json(Path(path))
    problem = validator(data)
    if problem:
        raise ReportError(f"{path}: {problem}")
    return data


def load_report(path) -> dict:
    """Read and validate a report; ReportError naming the file otherwise."""
    return load_validated(path, validate)


# ---------------------------------------------------------------------------
# validation: the schema as data
# ---------------------------------------------------------------------------
#
# A spec is a Python type (str, int, bool, dict, list), NUM (a JSON number or
# "nan"/"inf"/"-inf"), a tuple of alternatives, ("list", spec), ("map", spec)
# (string keys), ("enum", values...), or a dict of required keys (a key
# written "name?" is optional).  Everything the renderers read is in it, so a
# report that validates renders.

NUM = "number"  # any, "nan"/"inf" included (errors can be)
NONNEG = "finite number >= 0"
POSITIVE = "finite number > 0"
_STRS = ("list", str)
_TIMING = {"median_s": POSITIVE, "q1_s": POSITIVE, "q3_s": POSITIVE, "iqr_s?": NONNEG, "min_s": POSITIVE,
           "rounds": int, "first_call_s": (POSITIVE, None)}
_RANGE = ("list", POSITIVE)  # [low, high]
_THROUGHPUT_ROW = {
    "shape": ("list", int), "tokens": int, "dtype": str, "device": str,
    "status": ("enum", "ok", "invalid", "correctness-only", "error"), "reason": str, "flags": _STRS,
    "bytes?": POSITIVE, "candidate?": _TIMING, "copy?": _TIMING, "baseline?": (_TIMING, None),
    "tokens_per_s?": POSITIVE, "bytes_per_s?": POSITIVE, "roofline_bytes_per_s?": POSITIVE,
    "roofline_fraction?": POSITIVE, "speedup_vs_baseline?": (POSITIVE, None),
    # added later (a report without them reads its spread from the quartiles)
    "roofline_range?": _RANGE, "speedup_range?": (_RANGE, None), "noisy?": bool,
}
#: what every timed row ("ok" or "invalid") has
_TIMED_KEYS = ("bytes", "candidate", "copy", "baseline", "tokens_per_s", "bytes_per_s", "roofline_bytes_per_s",
               "roofline_fraction", "speedup_vs_baseline")
_CATEGORY = ("enum", "semantics", "non-finite", "precision", "contract")
_TOKEN = {"row": int, "col": int, "log_ratio": NUM, "advantage": NUM, "tau": NUM, "mask": bool,
          "got?": NUM, "expected?": NUM}
_EVIDENCE = {"quantity": str, "got?": NUM, "expected?": NUM, "tokens": ("list", _TOKEN)}
_RECORD = {
    "id": str, "check": str, "group": str, "title": str,
    "params": {"dtype": str, "loss_agg_mode": (str, None), "device": str},
    "status": ("enum",) + STATUSES, "max_error": (NUM, None), "bound": (NONNEG, None), "examples": int,
    "duration_s": NONNEG, "message": str, "counterexample": (dict, None), "reproduce": (str, None),
    # version 2
    "category?": (_CATEGORY, None), "practical_error?": (NUM, None), "defects?": _STRS, "shape?": str,
    "evidence?": (None, _EVIDENCE), "worst_at?": (None, ("list", int)),
}
_FINDING = {
    "id": str, "category": _CATEGORY, "defects": _STRS, "title": str, "fix": (str, None), "seen_in": (str, None),
    "shape": str, "records": _STRS, "checks": _STRS, "runs": _STRS, "worst_ratio": NUM,
    "example": {"record": str, "message": str, "evidence": (None, _EVIDENCE), "counterexample": (dict, None),
                "reproduce": (str, None)},
    "accepted": (str, None),
}
REPORT_SPEC = {
    "schema": str, "schema_version": int, "run_id": str, "created": str, "duration_s": NONNEG, "command": str,
    "harness": {"version": str, "oracle_version": str},
    "environment": {"python": str, "platform": str, "packages": ("map", str), "devices": _STRS},
    "candidate": {"spec": str, "name": str, "framework": str, "framework_version": str, "version?": str,
                  "description?": str, "profile": str, "dtypes": _STRS, "loss_agg_modes": _STRS,
                  "devices": _STRS, "shape_buckets?": bool, "compilations?": (int, None)},
    "run": {"profile": str, "seed": int, "device": str, "dtypes": _STRS, "loss_agg_modes": _STRS,
            "checks": _STRS, "partial?": _STRS, "fail_on?": ("list", _CATEGORY)},
    "verdict": ("enum",) + VERDICTS,
    # version 2
    "verdict_text?": str, "status_line?": str,
    "categories?": {c: {"findings": int, "accepted": int} for c in ("semantics", "non-finite", "precision", "contract")},
    "findings?": ("list", _FINDING),
    "accept?": {"sources": _STRS, "entries": int, "stale": ("list", {"match": str, "reason": str, "source": str}),
                "strict": bool},
    "summary": {"total": int, "pass": int, "fail": int, "error": int, "skip": int},
    "checks": ("list", _RECORD),
    "samples?": ("map", {"log_ratio": ("list", NUM), "error": ("list", NUM)}),
    "coverage?": ("list", {"dimension": str, "label": str, "min": (NUM, None), "max": (NUM, None),
                           "accepted": ("list", NUM)}),
    "throughput?": (None, {"baseline": str, "device": str, "rounds": int, "warmup": int, "timer": str,
                           "rows": ("list", _THROUGHPUT_ROW), "error?": str}),
}


def _where(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else p) for i, p in enumerate(path)) or "report"


def check_spec(value, spec, path: tuple = ()) -> str | None:
    """What in ``value`` does not match ``spec``, or None."""
    if spec is None:
        return None if value is None else f"{_where(path)} must be null"
    if spec in (NUM, NONNEG, POSITIVE):
        try:
            x = from_num(value)
        except ValueError:
            return f"{_where(path)} is not a number"
        ok = spec is NUM or (math.isfinite(x) and (x > 0 if spec is POSITIVE else x >= 0))
        return None if ok else f"{_where(path)} must be a {spec}"
    if isinstance(spec, type):
        ok = isinstance(value, spec) and not (spec is int and isinstance(value, bool))
        return None if ok else f"{_where(path)} must be {spec.__name__}"
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            return f"{_where(path)} must be an object"
        for key, sub in spec.items():
            name = key.rstrip("?")
            if name not in value:
                if key.endswith("?"):
                    continue
                return f"{_where(path + (name,))} is missing"
            problem = check_spec(value[name], sub, path + (name,))
            if problem:
                return problem
        return None
    kind = spec[0] if spec and isinstance(spec[0], str) else None
    if kind == "list":
        if not isinstance(value, list):
            return f"{_where(path)} must be a list"
        for i, item in enumerate(value):
            problem = check_spec(item, spec[1], path + (i,))
            if problem:
                return problem
        return None
    if kind == "map":
        if not isinstance(value, dict):
            return f"{_where(path)} must be an object"
        for k, item in value.items():
            problem = check_spec(item, spec[1], path + (k,))
            if problem:
                return problem
        return None
    if kind == "enum":
        return None if isinstance(value, str) and value in spec[1:] else \
            f"{_where(path)} must be one of {', '.join(spec[1:])}"
    problems = [check_spec(value, alt, path) for alt in spec]  # alternatives
    return None if any(p is None for p in problems) else problems[-1]


def check_document(data, kind: str, schema: str, version: int, spec) -> str | None:
    """What is wrong with a versioned document of ``kind`` ("report",
    "matrix"): not an object, another schema or version, or ``spec`` unmet."""
    if not isinstance(data, dict):
        return f"not a {kind} (expected a JSON object)"
    if data.get("schema") != schema:
        return f"not a sapo-conformance {kind} (schema {data.get('schema')!r})"
    versions = version if isinstance(version, tuple) else (version,)
    if data.get("schema_version") not in versions:
        readable = " or ".join(str(v) for v in versions)
        return f"unsupported {kind} schema version {data.get('schema_version')!r} (this harness reads {readable})"
    problem = check_spec(data, spec)
    return f"malformed {kind}: {problem}" if problem else None


def validate(data) -> str | None:
    """What is wrong with a report document, or None."""
    problem = check_document(data, "report", SCHEMA, READS_VERSIONS, REPORT_SPEC)
    if problem:
        return problem
    for row in (data.get("throughput") or {}).get("rows", []):
        if row["status"] in ("ok", "invalid"):
            missing = [k for k in _TIMED_KEYS if k not in row]
            if missing:
                return f"malformed report: throughput row {row['shape']} lacks {', '.join(missing)}"
        if any(len(row.get(k) or [0, 0]) != 2 for k in ("roofline_range", "speedup_range")):
            return f"malformed report: throughput row {row['shape']}: a ratio range is not [low, high]"
        if len(row["shape"]) != 2 or row["tokens"] <= 0:
            return "malformed report: a throughput shape is not [B, T] with B*T > 0"
    return None
