"""``sapo-conformance reproduce``: re-run one failing check of a report on
its counterexample, in this process, and say what the candidate does."""

from __future__ import annotations

import shlex
import traceback
from dataclasses import dataclass


class NoCounterexample(Exception):
    """The record has no single counterexample; the message says how to re-run its check."""


@dataclass(frozen=True)
class Outcome:
    text: str
    passed: bool


def reproduce(report_path, check_id: str) -> Outcome:
    """The candidate of ``report_path`` on the counterexample of ``check_id``.

    ReportError / ValueError for a bad report, an unknown id or a candidate
    that cannot be loaded; NoCounterexample for a record without one.  A
    candidate that raises on the counterexample is the candidate's failure:
    the outcome shows its traceback."""
    from .candidate import CandidateError
    from .cases import CASES_BY_ID
    from .fused import evaluate_any as evaluate
    from .loading import load_candidate
    from .report import decode_counterexample, load_report

    report = load_report(report_path)
    rec = next((r for r in report["checks"] if r["id"] == check_id), None)
    if rec is None:
        raise ValueError(f"{report_path}: no check {check_id!r}")
    ce = rec.get("counterexample")
    if not ce:
        p = rec["params"]
        cmd = (f"sapo-conformance run {shlex.quote(report['candidate']['spec'])} --check "
               f"{shlex.quote(rec['check'].split(':')[0])} --dtype {p['dtype']}"
               + (f" --mode {p['loss_agg_mode']}" if p["loss_agg_mode"] else "")
               + f" --seed {report['run']['seed']} --profile {report['run']['profile']}")
        raise NoCounterexample(f"{rec['id']} has no single counterexample; re-run its check:\n  {cmd}")
    try:
        example = decode_counterexample(ce)
        cand = load_candidate(report["candidate"]["spec"])
    except CandidateError as exc:
        raise ValueError(str(exc)) from None
    batch = example.batch if example.batch is not None else CASES_BY_ID[example.case].make()
    head = (f"{rec['id']} on {cand.name}: options {example.options}, dtype {example.dtype}, "
            f"layout {example.layout}")
    try:
        ev = evaluate(cand, batch, dtype=example.dtype, device=rec["params"]["device"], options=example.options,
                      layout=example.layout)
    except Exception as exc:  # the candidate's own error: show where it came from
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
        return Outcome(f"{head}\n  the candidate raised {type(exc).__name__}: {exc}\n\n{tb}", False)
    return Outcome("\n".join([head] + ["  " + comp.describe() for comp in ev.comparisons]), ev.passed)
