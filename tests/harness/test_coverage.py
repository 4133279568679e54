"""The report says which inputs its verdict covers: per input dimension, the
range the run exercised next to the range SPEC.md accepts, in every format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conformance import certify, coverage
from conformance.report import decode_record, encode_record, validate
from conformance.types import Batch, CallOptions


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """numpy-fp32 through worker isolation: coverage must survive the trip."""
    out = tmp_path_factory.mktemp("coverage")
    rep = certify("numpy-fp32", profile="quick", throughput="none", checks=["random", "edge.long-row"],
                  dtypes=["float32"], modes=["token-mean"])
    rep.write(out)
    return rep, out


def test_every_dimension_is_in_the_report_with_the_accepted_range(report):
    rep, out = report
    doc = json.loads((out / "report.json").read_text())
    assert validate(doc) is None
    rows = {c["dimension"]: c for c in doc["coverage"]}
    assert list(rows) == list(coverage.NAMES)
    assert rows["tau_pos"]["accepted"] == [1e-6, 1e6]
    # what the checks sent: the random batches' temperatures, the long row's 32768 tokens
    taus = [float(x) for x in (rows["tau_pos"]["min"], rows["tau_pos"]["max"])]
    assert 0 < taus[0] < taus[1] <= 1e6
    assert rows["cols"]["max"] == 32768
    assert rows["masked_fraction"]["min"] >= 0 and rows["masked_fraction"]["max"] <= 1
    assert rows["weights"]["min"] is None  # no weights check ran: said, not invented
    md = (out / "report.md").read_text()
    assert "## Coverage" in md and "| τ_pos |" in md and "not exercised" in md
    html = (out / "report.html").read_text()
    assert "<h2>Coverage</h2>" in html and "τ_neg" in html


def test_coverage_is_measured_on_the_inputs_the_candidate_saw():
    """Masked tokens, non-finite log-ratios and zero advantages are not
    'exercised' magnitudes; a record's ranges survive the isolation codec."""
    lp = np.array([[0.5, -3.0, np.inf], [0.1, 0.0, 0.0]])
    olp = np.zeros((2, 3))
    mask = np.array([[True, True, True], [True, False, False]])
    ranges: dict = {}
    coverage.observe(ranges, Batch(lp, olp, np.array([0.0, -2.5]), mask), CallOptions(tau_pos=0.3, tau_neg=7.0))
    coverage.observe(ranges, Batch(lp[:1], olp[:1], np.array([1e-3]), mask[:1]), CallOptions(tau_pos=2.0))
    assert ranges["tau_pos"] == [0.3, 2.0] and ranges["tau_neg"][1] == 7.0
    assert ranges["log_ratio"] == [0.1, 3.0]  # inf left out
    assert ranges["advantage"] == [1e-3, 2.5]  # 0 left out
    assert ranges["rows"] == [1.0, 2.0] and ranges["cols"] == [3.0, 3.0]
    assert ranges["masked_fraction"] == [0.0, pytest.approx(2 / 6)]
    assert "weights" not in ranges

    from conformance.suite.records import Record

    rec = Record("random:loss", "random", "t", "float32", "token-mean", "cpu", coverage=ranges)
    assert decode_record(encode_record(rec)).coverage == ranges
