"""One confirming example per finding of the framework matrix.

``collect(DIR)`` reads ``DIR/reports/*/report.json`` and picks, for every
framework and every finding, the finding's first failing record whose
counterexample batch is embedded; ``write(DIR)`` saves them to
``DIR/evidence.json``.  ``tests/harness/test_framework_evidence.py``
recomputes each example's expected value with an independent float64/mpmath
implementation of SPEC.md, so that no framework is accused by a harness bug.

Non-finite floats are the strings "nan", "inf" and "-inf", as in report.json.

    python -m conformance.frameworks.evidence frameworks
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from ..report import atomic_write
from ..types import INPUT_NAMES

BATCH = INPUT_NAMES
_AT = re.compile(r"at \(([\d, ]+)\): got (\S+), expected (\S+)")
_SCALAR = re.compile(r"got (\S+), expected (\S+)")
_FIRST = re.compile(r"\(first (\S+)\)")
#: quantities the independent test recomputes; a finding's example is the first of these if it has one
CONFIRMABLE = ("loss", "grad", "grad-masked-zero")


def _num(text):
    """A number of a message ("nan", "-0.0", "1e-08") as report.json writes it."""
    text = text.rstrip(",;)")
    value = float(text)
    return value if value == value and abs(value) != float("inf") else text.lstrip("+")


def _values(record: dict):
    """(quantity, index, got, expected) of a failing record, or None."""
    ev = record.get("evidence") or {}
    quantity = ev.get("quantity") or record["check"].split(":", 1)[1]
    msg = record.get("message") or ""
    if quantity == "grad-masked-zero":
        bad = [t for t in ev.get("tokens") or [] if not t.get("mask") and t.get("got", 0.0) not in (0, 0.0)]
        m = _FIRST.search(msg)
        if not bad:  # a fused kernel's hidden/logit gradient: no token table, the first value only
            return (quantity, None, _num(m[1]), 0.0) if m else None
        return quantity, [bad[0]["row"], bad[0]["col"]], bad[0]["got"], bad[0].get("expected", 0.0)
    m = _AT.search(msg)
    if m:
        return quantity, [int(i) for i in m[1].split(",")], _num(m[2]), _num(m[3])
    if "got" in ev and "expected" in ev:
        return quantity, None, ev["got"], ev["expected"]
    m = _SCALAR.search(msg)
    if m:
        return quantity, None, _num(m[1]), _num(m[2])
    return None


def _fused_inputs(kind: str, ce: dict) -> dict:
    """What the oracle saw for a fused kernel (conformance.fused): log-probs formed
    from the drawn logits, old log-probs keeping each token's log-ratio, rounded."""
    import numpy as np

    from ..drivers import get_driver
    from ..fused import inputs_for
    from ..types import Batch

    arr = lambda k: np.array([[float(x) for x in row] for row in ce[k]], dtype=np.float64)  # noqa: E731
    adv = np.array([float(x) if not isinstance(x, list) else [float(y) for y in x] for x in ce["advantages"]])
    batch = Batch(arr("logprob"), arr("old_logprob"), adv, np.array(ce["mask"], dtype=bool))
    fx = inputs_for(kind, batch, ce["dtype"])
    drv = get_driver("torch")
    with np.errstate(invalid="ignore", over="ignore"):
        old = drv.to_numpy(drv.to_framework(fx["logprob"] - (batch.logprob - batch.old_logprob), ce["dtype"], "cpu"))
    enc = lambda a: [[x if x == x and abs(x) != float("inf") else str(x) for x in row] for row in a.tolist()]  # noqa
    drawn = {k: fx[k].tolist() for k in ("logits", "hidden", "weight") if k in fx}
    if "hidden" in drawn:
        del drawn["logits"]  # h W^T: the test forms them itself
    return {"logprob": enc(fx["logprob"]), "old_logprob": enc(old), "token_ids": fx["token_ids"].tolist(), **drawn}


def _example(name: str, report: dict, finding: dict, records: dict):
    ids = finding["records"]
    ids = [r for r in ids if r.split(":", 1)[1].split("[")[0] in CONFIRMABLE] + ids  # confirmable ones first
    for rid in ids:
        rec = records.get(rid)
        ce = (rec or {}).get("counterexample") or {}
        if rec is None or rec.get("status") != "fail" or not all(k in ce for k in BATCH):
            continue
        vals = _values(rec)
        if vals is None:
            continue
        quantity, index, got, expected = vals
        opts = ce.get("options") or {}
        cand = report["candidate"]
        return {
            "framework": name, "version": cand.get("version"), "finding": finding["id"],
            "defects": list(finding.get("defects") or []), "category": rec.get("category") or finding["category"],
            "record": rid, "quantity": quantity, "dtype": ce.get("dtype") or rec["params"]["dtype"],
            "profile": cand.get("profile") or "canonical", "layout": ce.get("layout"), "case": ce.get("case"),
            "options": {k: opts.get(k) for k in ("tau_pos", "tau_neg", "loss_agg_mode",
                                                 "global_token_count", "global_seq_count")},
            "batch": {k: ce[k] for k in BATCH},
            "index": index, "got": got, "expected": expected, "message": rec.get("message"),
            "inputs": cand.get("inputs") or "logprob",
            "fused_inputs": _fused_inputs(cand["inputs"], ce) if cand.get("inputs") in ("hidden", "logits") else None,
        }
    return None


def collect(directory) -> dict:
    """{"frameworks": {name: {"version", "profile", "examples": [...], "unconfirmable": [finding id]}}}."""
    out = {}
    for path in sorted(Path(directory).glob("reports/*/report.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        records = {r["id"]: r for r in report.get("checks") or []}
        examples, missing = [], []
        for finding in report.get("findings") or []:
            ex = _example(path.parent.name, report, finding, records)
            (examples.append(ex) if ex else missing.append(finding["id"]))
        out[path.parent.name] = {"version": report["candidate"].get("version"),
                                 "profile": report["candidate"].get("profile") or "canonical",
                                 "report": str(path.relative_to(directory)), "examples": examples,
                                 "unconfirmable": missing}
    return {"schema": "sapo-conformance.framework-evidence", "frameworks": out}


def write(directory) -> Path:
    """Write DIR/evidence.json (atomically, sorted keys) and return its path."""
    path = Path(directory) / "evidence.json"
    atomic_write(path, json.dumps(collect(directory), sort_keys=True, indent=1, allow_nan=False) + "\n")
    return path


if __name__ == "__main__":  # pragma: no cover
    target = write(sys.argv[1] if len(sys.argv) > 1 else "frameworks")
    data = json.loads(target.read_text(encoding="utf-8"))["frameworks"]
    print(f"{target}: " + ", ".join(f"{k} {len(v['examples'])}" for k, v in data.items()))
