"""Throughput: the bench engine, its guards, the CLI, the report's
throughput section, diff, and the pytest-benchmark regression gate.

These tests check what the measurements mean (bytes, ratios, spread,
guards, plumbing), never how fast anything is: performance figures come from
``sapo-conformance bench``, not from timed tests.  Where a test needs timings
with known properties (noisy or not, slower or not) it builds them from
chosen samples, and the regression gate runs on a stand-in clock, so no load
on the machine can change an outcome.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conformance import bench, cli, compare, render
from conformance.candidate import CandidateError
from conformance.loading import load_candidate
from conformance.report import load_report, validate

from tests.conftest import clean_environ

from .test_run import QUICK, ROOT, TIMEOUT_S, run_cli

BC = "tests.harness.bench_candidates"
TINY = replace(bench.BENCH_PROFILES["quick"], shapes=((4, 256),), rounds=3, warmup=1, fresh_bytes=0)


def measure(candidate, B=4, T=256, dtype="float32", **kw):
    return bench.measure(candidate, B, T, dtype, profile=TINY, **kw)


@pytest.fixture
def no_speed_heuristic(monkeypatch):
    """Beating the copy roofline is judged on timings, which a busy machine
    can skew at tiny shapes: off, for tests that expect a valid row."""
    monkeypatch.setattr(bench, "IMPLAUSIBLE_ROOFLINE_FRACTION", math.inf)


def _valid_but_for_timing(row) -> bool:
    """"ok", or invalid only by the timing heuristic (for rows measured in a
    subprocess, where no_speed_heuristic cannot reach)."""
    return row["status"] == "ok" or (
        row["status"] == "invalid" and all(f.startswith("implausibly fast") for f in row["flags"]))


# --- what is measured --------------------------------------------------------


@pytest.mark.parametrize("dtype,item", [("float32", 4), ("float16", 2), ("bfloat16", 2), ("float64", 8)])
def test_minimum_bytes_is_four_reads_and_one_write(dtype, item):
    cand = load_candidate("torch-eager")
    B, T = 8, 1024
    # logprob, old_logprob, per-token advantages and the gradient in the dtype, a 1-byte bool mask
    assert bench.minimum_bytes(cand, B, T, dtype, "BT") == B * T * (4 * item + 1)
    # per-row advantages are read once per row
    assert bench.minimum_bytes(cand, B, T, dtype, "B") == B * T * (3 * item + 1) + B * item
    float_mask = cand.with_info(mask_kind="float")
    assert bench.minimum_bytes(float_mask, B, T, dtype, "BT") == B * T * 5 * item


def test_inputs_are_reproducible_realistic_and_fresh():
    a, b, c = bench.make_batch(16, 512, 1), bench.make_batch(16, 512, 1), bench.make_batch(16, 512, 2)
    for x, y in zip((a.logprob, a.old_logprob, a.advantages, a.mask), (b.logprob, b.old_logprob, b.advantages, b.mask)):
        assert np.array_equal(x, y)
    assert not np.array_equal(a.logprob, c.logprob)
    d = (a.logprob - a.old_logprob)[a.mask]
    assert 0.05 < d.std() < 0.2 and np.all(a.logprob <= 0)  # log-ratios near 0, log-probabilities <= 0
    lengths = a.mask.sum(1)
    assert lengths.min() >= 256 and lengths.max() <= 512 and len(set(lengths.tolist())) > 1  # ragged rows
    assert np.array_equal(a.mask, np.arange(512)[None] < lengths[:, None])  # right padding
    assert np.all(a.advantages == a.advantages[:, :1])  # per-row (GRPO) advantages given per token


@pytest.mark.parametrize("samples", [[1e-6, 9e-6], [1e-7, 1e-6, 1e-6], [0.0, 0.0, 2e-6], [0.0], [5e-6] * 4])
def test_timing_quartiles_stay_within_the_samples_and_positive(samples):
    # statistics.quantiles' default method extrapolates beyond the samples:
    # for [1e-6, 9e-6] it gives q1 = -1e-6, which the report schema rejects
    t = bench.Timing(samples=list(samples))
    d = t.as_dict()
    assert 0 < d["min_s"] <= d["q1_s"] <= d["median_s"] <= d["q3_s"] <= max(max(samples), d["min_s"])
    assert d["median_s"] == t.median and d["rounds"] == len(samples)
    assert d["iqr_s"] == d["q3_s"] - d["q1_s"] >= 0


# --- spread: IQR, ratio ranges, the noisy rule (chosen samples, no timing) -----

MS = 2.0 ** -10  # about a millisecond; multiples of it are exact in binary


def _timing(median, rel_iqr):
    """Five samples with this median and IQR / median (inclusive quartiles:
    the 2nd and 4th sample)."""
    h = median * rel_iqr / 2
    return bench.Timing(samples=[median - 2 * h, median - h, median, median + h, median + 2 * h])


def _row(cand, copy, base=None, B=4, T=256):
    """A timed row built from Timings, as measure() builds it."""
    row = {"shape": [B, T], "tokens": B * T, "dtype": "float32", "device": "cpu", "status": "ok", "reason": "",
           "flags": [], "bytes": 17 * B * T}
    return bench.fill_timings(row, cand, copy, base)


@pytest.mark.parametrize("rel_iqr,noisy", [(0.0, False), (0.125, False), (0.25, False), (0.375, True), (1.0, True)])
def test_a_timing_is_noisy_when_its_iqr_exceeds_the_fraction_of_its_median(rel_iqr, noisy):
    assert bench.NOISY_SPREAD == 0.25  # the documented rule (README, "Throughput")
    d = _timing(64 * MS, rel_iqr).as_dict()
    assert d["iqr_s"] == rel_iqr * 64 * MS and bench.spread(d) == rel_iqr
    assert bool(bench.wide({"t": d})) is noisy


@pytest.mark.parametrize("wide_one", [None, "candidate", "copy", "baseline"])
def test_a_row_is_noisy_when_the_candidate_or_a_contender_of_its_ratios_is(wide_one):
    spreads = {k: 0.5 if k == wide_one else 0.1 for k in ("candidate", "copy", "baseline")}
    row = _row(_timing(64 * MS, spreads["candidate"]), _timing(8 * MS, spreads["copy"]),
               _timing(128 * MS, spreads["baseline"]))
    assert row["noisy"] is (wide_one is not None) and bench.is_noisy(row) is row["noisy"]
    assert list(bench.wide_spread(row)) == ([wide_one] if wide_one else [])
    note = render.noise_note(row, "torch-eager")
    assert note.startswith("NOISY") if wide_one else note == ""
    if wide_one:
        assert f"{'torch-eager' if wide_one == 'baseline' else wide_one} IQR 50% of median" in note


def test_ratios_come_with_the_range_their_quartiles_give():
    cand, copy, base = _timing(64 * MS, 0.25), _timing(16 * MS, 0.5), _timing(128 * MS, 0.125)
    row = _row(cand, copy, base)
    c, k, b = (t.as_dict() for t in (cand, copy, base))
    assert row["roofline_fraction"] == 0.25 and row["speedup_vs_baseline"] == 2.0
    assert row["roofline_range"] == [k["q1_s"] / c["q3_s"], k["q3_s"] / c["q1_s"]]
    assert row["speedup_range"] == [b["q1_s"] / c["q3_s"], b["q3_s"] / c["q1_s"]]
    for value, low, high in filter(None, bench.row_ratios(row).values()):
        assert low < value < high
    # the baseline itself: exactly 1, without spread; no baseline: no speedup
    assert _row(cand, copy, cand)["speedup_range"] == [1.0, 1.0]
    alone = _row(cand, copy)
    assert alone["speedup_range"] is None and bench.row_ratios(alone)["speedup"] is None
    assert render.format_ratio(*bench.row_ratios(row)["speedup"]) == "2x (1.67-2.43x)"
    assert render.format_ratio(*bench.row_ratios(row)["roofline"], percent=True) == "25% (16.7-35.7%)"


def test_a_row_written_before_the_spread_fields_reads_the_same():
    row = _row(_timing(64 * MS, 0.5), _timing(16 * MS, 0.1), _timing(128 * MS, 0.1))
    old = json.loads(json.dumps(row))
    for key in ("roofline_range", "speedup_range", "noisy"):
        del old[key]
    for key in ("candidate", "copy", "baseline"):
        del old[key]["iqr_s"]
    assert bench.row_ratios(old) == bench.row_ratios(row)
    assert bench.is_noisy(old) and bench.wide_spread(old) == bench.wide_spread(row)
    assert render.throughput_rows({"baseline": "torch-eager", "rows": [old]}) == \
        render.throughput_rows({"baseline": "torch-eager", "rows": [row]})


def test_fresh_input_sets_span_the_cache_budget():
    p = bench.BENCH_PROFILES["default"]
    assert bench._sets_for(1, p) == p.max_sets
    assert bench._sets_for(p.fresh_bytes, p) == p.min_sets
    assert bench._sets_for((p.fresh_bytes + 2) // 3, p) == 3


@pytest.mark.parametrize("spec", ["numpy-fp32", "torch-eager", "jax"])
def test_a_row_is_consistent_with_its_own_timings(spec, no_speed_heuristic):
    row = measure(load_candidate(spec))
    assert row["status"] == "ok", (row["status"], row["reason"][:500])
    med, copy = row["candidate"]["median_s"], row["copy"]["median_s"]
    assert row["candidate"]["rounds"] == TINY.rounds and row["input_sets"] == TINY.min_sets
    assert row["candidate"]["q1_s"] <= med <= row["candidate"]["q3_s"]
    assert row["tokens_per_s"] == pytest.approx(4 * 256 / med)
    assert row["bytes_per_s"] == pytest.approx(row["bytes"] / med)
    assert row["roofline_fraction"] == pytest.approx(copy / med)
    assert row["roofline_bytes_per_s"] == pytest.approx(row["bytes"] / copy)
    assert row["speedup_vs_baseline"] == pytest.approx(row["baseline"]["median_s"] / med)
    assert row["candidate"]["first_call_s"] > 0 and row["compile_s"] >= 0
    assert row["roofline_range"] == bench.ratio_range(row["copy"], row["candidate"])
    assert row["noisy"] is bool(bench.wide_spread(row))
    if spec == "torch-eager":
        assert row["speedup_vs_baseline"] == 1.0 and row["speedup_range"] == [1.0, 1.0]
    else:
        assert row["speedup_range"] == bench.ratio_range(row["baseline"], row["candidate"])


def test_without_the_baseline_the_speedup_is_absent_and_explained():
    row = measure(load_candidate("numpy-fp32"), baseline=False)
    assert row["baseline"] is None and row["speedup_vs_baseline"] is None and row["baseline_reason"]


# --- guards --------------------------------------------------------------------


def test_a_candidate_that_caches_results_across_calls_is_invalid(monkeypatch):
    # Caching usually also makes it "implausibly fast"; force that flag so the
    # test pins down that the proven problem, not the heuristic, is the reason.
    monkeypatch.setattr(bench, "IMPLAUSIBLE_ROOFLINE_FRACTION", 1e-9)
    row = measure(load_candidate(f"{BC}:numpy_caching"))
    assert row["status"] == "invalid"
    assert "input set 1" in row["reason"]  # set 0 is what it cached; set 1 gets set 0's answer
    assert any(f.startswith("implausibly fast") for f in row["flags"][1:])


def test_a_candidate_that_modifies_its_inputs_is_invalid():
    row = measure(load_candidate(f"{BC}:numpy_mutating"))
    assert row["status"] == "invalid" and any("inputs-unmodified" in f for f in row["flags"])


def test_faster_than_the_copy_roofline_is_flagged(monkeypatch):
    monkeypatch.setattr(bench, "IMPLAUSIBLE_ROOFLINE_FRACTION", 1e-9)
    row = measure(load_candidate("numpy-fp32"))
    assert row["status"] == "invalid" and row["reason"].startswith("implausibly fast")


def test_the_triton_interpreter_gives_no_number(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    cand = load_candidate("triton")
    row = measure(cand)
    assert row["status"] == "correctness-only" and "interpreter" in row["reason"] and "median_s" not in row
    section = bench.bench(cand, shapes=[(4, 256)], dtypes=["float32"], profile=TINY)
    assert render.render_throughput_text("triton", section) == f"triton: {row['reason']}"


def test_a_candidate_that_raises_is_an_error_row_and_the_rest_still_run(no_speed_heuristic):
    base = load_candidate("numpy-fp32")

    def kernel(logprob, *args, **kwargs):
        if logprob.shape[1] == 256:
            raise RuntimeError("kernel exploded\nsecond line")
        return base.kernel(logprob, *args, **kwargs)

    cand = replace(base, kernel=kernel, _ready=set())
    section = bench.bench(cand, shapes=[(4, 256), (4, 128)], dtypes=["float32"], profile=TINY, baseline=False)
    bad, good = section["rows"]
    assert bad["status"] == "error" and bad["reason"] == "RuntimeError: kernel exploded"
    assert good["status"] == "ok"


def test_unclaimed_dtypes_and_devices_are_refused():
    cand = load_candidate("numpy-fp32")
    with pytest.raises(CandidateError, match="does not claim dtype float64"):
        bench.bench(cand, shapes=[(4, 256)], dtypes=["float64"], profile=TINY)
    with pytest.raises(CandidateError, match="cannot run on cuda"):
        bench.bench(cand, shapes=[(4, 256)], device="cuda", profile=TINY)


@pytest.mark.parametrize("text,ok", [("64x4096", (64, 4096)), ("8X1024", (8, 1024)), ("64", None),
                                     ("0x5", None), ("ax3", None), ("3x-1", None), ("", None)])
def test_parse_shape(text, ok):
    if ok:
        assert bench.parse_shape(text) == ok
    else:
        with pytest.raises(ValueError, match="shape"):
            bench.parse_shape(text)


# --- timing helpers of the drivers --------------------------------------------


@pytest.mark.parametrize("framework", ["numpy", "torch", "jax"])
def test_copy_roofline_times_a_real_copy(framework):
    from conformance.drivers import get_driver

    copy = get_driver(framework).make_copy(1 << 20, "cpu", 2)
    times = [copy(i) for i in range(4)]
    assert all(isinstance(t, float) and 0 < t < math.inf for t in times)  # a duration, however long it took


# --- the command line ----------------------------------------------------------


def test_bench_cli_prints_a_table_and_writes_json(tmp_path):
    out_json = tmp_path / "bench.json"
    code, out, err = run_cli("bench", "numpy-fp32", "triton", "--shape", "4x256", "--shape", "8x128",
                             "--rounds", "3", "--dtype", "float32", "--json", str(out_json),
                             "--no-baseline")
    doc = json.loads(out_json.read_text())
    rows = doc["results"][0]["throughput"]["rows"]
    assert all(_valid_but_for_timing(r) for r in rows), [r["reason"][:200] for r in rows]
    assert code == (cli.EXIT_OK if all(r["status"] == "ok" for r in rows) else cli.EXIT_NONCONFORMANT), err[-2000:]
    assert "roofline" in out and "vs torch-eager" in out and "4x256" in out and "8x128" in out
    assert "triton: correctness only" in out  # no meaningless number under the interpreter
    assert doc["schema"] == "sapo-conformance.bench"
    names = [r["candidate"]["name"] for r in doc["results"]]
    assert names == ["numpy-fp32", "triton"]
    assert [r["shape"] for r in rows] == [[4, 256], [8, 128]]


def test_bench_cli_exit_codes(tmp_path, capsys):
    code, out, err = run_cli("bench", f"{BC}:numpy_caching", "--shape", "4x256", "--rounds", "3",
                             "--dtype", "float32", "--no-baseline")
    assert code == cli.EXIT_NONCONFORMANT and "INVALID" in out
    for args, msg in ((("bench", "no-such-candidate"), "no-such-candidate"),
                      (("bench", "numpy-fp32", "--shape", "64"), "not BxT"),
                      (("bench", "numpy-fp32", "--rounds", "0"), "--rounds"),
                      (("bench", "numpy-fp32", "--dtype", "float64"), "float64"),
                      (("bench",), "no candidate given"),
                      (("bench", "numpy-fp32", "--json", str(tmp_path / "missing" / "x.json")), "does not exist")):
        code, out, err = _main_in_process(capsys, *args)  # the real script is tested above
        assert code == cli.EXIT_USAGE, (args, out[-500:], err[-500:])
        assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def _main_in_process(capsys, *args):
    capsys.readouterr()
    try:
        code = cli.main(list(args))
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_run_has_a_throughput_section_in_every_format(tmp_path):
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), "--profile", "quick",
                             "--throughput", "quick", "--dtype", "float32", "--quiet")
    assert code == cli.EXIT_OK, err[-2000:]
    report = load_report(tmp_path / "report.json")
    rows = report["throughput"]["rows"]
    assert [r["shape"] for r in rows] == [list(s) for s in bench.BENCH_PROFILES["quick"].shapes]
    assert all(_valid_but_for_timing(r) and r["dtype"] == "float32" for r in rows)
    assert all({"roofline_range", "speedup_range", "noisy"} <= set(r) for r in rows)
    assert all("iqr_s" in r[k] for r in rows for k in ("candidate", "copy", "baseline"))
    markdown, page = (tmp_path / "report.md").read_text(), (tmp_path / "report.html").read_text()
    assert "## Throughput" in markdown
    assert "<h2>Throughput</h2>" in page and "tokens/s against tokens" in page
    assert page.count("<polyline") == 3  # candidate, torch-eager, copy roofline
    for text in (out, markdown, page):  # the same cells everywhere: IQR, ratio ranges, notes
        for cells in render.throughput_rows(report["throughput"]):
            missing = [c for c in cells if c not in text]
            assert not missing, missing


def _report(rows) -> dict:
    """A valid report whose throughput section holds these rows."""
    from conformance.report import build_report, dumps

    section = {"baseline": "torch-eager", "device": "cpu", "rounds": 5, "warmup": 0, "timer": "perf_counter",
               "rows": rows}
    report = json.loads(dumps(build_report(
        load_candidate("numpy-fp32"), "numpy-fp32", [], profile="quick", seed=0, device="cpu", dtypes=["float32"],
        modes=["token-mean"], checks=None, duration_s=0.1, command="x", throughput=section)))
    assert validate(report) is None
    return report


def test_every_format_shows_the_iqr_the_ratio_ranges_and_the_noisy_mark():
    quiet = _row(_timing(64 * MS, 0.125), _timing(8 * MS, 0.125), _timing(128 * MS, 0.125), B=4)
    noisy = _row(_timing(64 * MS, 0.5), _timing(8 * MS, 0.125), _timing(128 * MS, 0.125), B=8)
    report = _report([quiet, noisy])
    section = report["throughput"]
    outputs = {"terminal": render.render_throughput_text("numpy-fp32", section),
               "summary": render.terminal_summary(report), "markdown": render.render_markdown(report),
               "html": render.render_html(report)}
    expected = []
    for r in (quiet, noisy):
        ratios = bench.row_ratios(r)
        expected += [render.format_seconds(r["candidate"]["iqr_s"]),
                     render.format_ratio(*ratios["roofline"], percent=True), render.format_ratio(*ratios["speedup"])]
    for fmt, text in outputs.items():
        missing = [e for e in expected if e not in text]
        assert not missing, (fmt, missing)
        assert "IQR" in text and "exceeds 25 % of its median" in text, fmt  # the header and the rule
        assert text.count("NOISY: candidate IQR 50% of median") == 1, fmt  # the noisy row only


def test_the_spread_fields_are_validated_and_optional():
    report = _report([_row(_timing(64 * MS, 0.125), _timing(8 * MS, 0.125), _timing(128 * MS, 0.125))])

    def with_row(**changes):
        doc = json.loads(json.dumps(report))
        row = doc["throughput"]["rows"][0]
        for key, value in changes.items():
            if value is None:
                del row[key]
            else:
                row[key] = value
        return validate(doc)

    assert with_row(noisy=None, roofline_range=None, speedup_range=None) is None  # a report from before them
    for bad in ({"noisy": "yes"}, {"roofline_range": [0.5]}, {"roofline_range": [0.5, "x"]},
                {"speedup_range": [1, 2, 3]}, {"candidate": {**report["throughput"]["rows"][0]["candidate"],
                                                            "iqr_s": -1.0}}):
        problem = with_row(**bad)
        assert problem and problem.startswith("malformed report: throughput"), (bad, problem)


def test_quick_runs_and_partial_runs_skip_throughput(tmp_path):
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), *QUICK)
    assert code == cli.EXIT_OK and load_report(tmp_path / "report.json")["throughput"] is None
    from conformance import certify

    partial = certify("numpy-fp32", profile="default", checks=["value.gate"], isolate=False)
    assert partial.throughput is None and partial.partial == ["checks value.gate"]


def _timed_report(*factors, rel_iqr=(0.125, 0.125)):
    """A report with two rows (4x256, 8x256), the candidate at 64 ms times
    ``factors`` and spreading rel_iqr; copy and baseline quiet."""
    factors = factors or (1, 1)
    return _report([_row(_timing(64 * MS * f, rel), _timing(8 * MS, 0.125), _timing(128 * MS, 0.125), B=B)
                    for B, f, rel in zip((4, 8), factors, rel_iqr)])


def test_diff_shows_throughput_changes_with_their_range_and_gates_on_request():
    old, slow = _timed_report(), _timed_report(2, 2)
    d = compare.diff_reports(old, slow)
    assert [t["change"] for t in d["throughput"]] == [1.0, 1.0]
    lo, hi = d["throughput"][0]["change_range"]
    assert lo < 1.0 < hi and (lo, hi) == (120 / 68 - 1, 136 / 60 - 1)  # new q1 / old q3, new q3 / old q1
    assert not d["regression"]  # without a threshold, throughput is shown, not judged
    text = compare.render_diff(d)
    assert "+100.0%, range" in text and "4x256 float32" in text and "8x256 float32" in text
    gated = compare.diff_reports(old, slow, slower_threshold=10)
    assert gated["regression"] and len(gated["slower"]) == 2 and "SLOWER" in compare.render_diff(gated)
    assert not compare.diff_reports(old, _timed_report(1.05, 1.05), slower_threshold=10)["regression"]


def test_diff_ignores_rows_noisy_in_either_report_unless_asked(tmp_path, capsys):
    old = _timed_report()
    slow_noisy = _timed_report(2, 2, rel_iqr=(0.125, 0.5))  # both 2x slower, 8x256 noisy
    d = compare.diff_reports(old, slow_noisy, slower_threshold=10)
    assert [t["shape"] for t in d["slower"]] == ["4x256"] and [t["shape"] for t in d["ignored_noisy"]] == ["8x256"]
    text = compare.render_diff(d)
    assert "ignored as noisy by --fail-slower" in text and text.splitlines()[-2].endswith(": 8x256 float32")
    assert "new: NOISY: candidate IQR 50% of median" in text
    assert len(compare.diff_reports(old, slow_noisy, slower_threshold=10, include_noisy=True)["slower"]) == 2
    # noisy in the old report counts too; without a threshold nothing is ignored
    assert [t["shape"] for t in compare.diff_reports(slow_noisy, _timed_report(4, 4), slower_threshold=10)[
        "ignored_noisy"]] == ["8x256"]
    assert compare.diff_reports(old, slow_noisy)["ignored_noisy"] == []

    only_noisy_slower = _timed_report(1, 2, rel_iqr=(0.125, 0.5))
    paths = []
    for name, doc in (("old", old), ("new", only_noisy_slower)):
        paths.append(str(tmp_path / f"{name}.json"))
        (tmp_path / f"{name}.json").write_text(json.dumps(doc))
    code, out, err = _main_in_process(capsys, "diff", *paths, "--fail-slower", "10")
    assert code == cli.EXIT_OK and "ignored as noisy" in out and "8x256 float32" in out, out[-2000:]
    code, out, err = _main_in_process(capsys, "diff", *paths, "--fail-slower", "10", "--include-noisy")
    assert code == cli.EXIT_NONCONFORMANT and "SLOWER" in out and "ignored as noisy" not in out, out[-2000:]
    code, out, err = _main_in_process(capsys, "diff", *paths, "--include-noisy")
    assert code == cli.EXIT_USAGE and "--include-noisy" in err and len(err.strip().splitlines()) == 1, err[-500:]


def test_a_malformed_throughput_section_is_rejected(tmp_path):
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), *QUICK)
    report = load_report(tmp_path / "report.json")
    good = {"baseline": "torch-eager", "device": "cpu", "rounds": 1, "warmup": 0, "timer": "t", "rows": []}
    assert validate({**report, "throughput": good}) is None
    row = {"shape": [8, 8], "tokens": 64, "dtype": "float32", "device": "cpu", "status": "ok", "reason": "",
           "flags": []}
    for bad in ({**good, "rows": "x"}, [1], {**good, "rows": [{**row, "shape": "8x8"}]},
                {**good, "rows": [row]}, {**good, "rows": [{**row, "shape": [8]}]}):
        assert validate({**report, "throughput": bad}).startswith("malformed report: throughput")


# --- the pytest-benchmark regression gate -------------------------------------

#: pytest-benchmark's timer for these runs: a clock on which every timed call
#: lasts exactly 1/1024 s, so each run's statistics are known in advance
FAKE_CLOCK = f"--benchmark-timer={BC}.clock"
#: pytest-benchmark's time statistics (seconds); "ops" is their inverse
TIME_STATS = ("min", "max", "mean", "stddev", "median", "iqr", "q1", "q3", "ld15iqr", "hd15iqr", "total")


def _pytest_bench(tmp_path, spec, *extra):
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            "--sapo-candidate", spec, "--sapo-bench", "--sapo-bench-shape", "64x2048", "--benchmark-only",
            f"--benchmark-storage=file://{tmp_path / 'store'}", *extra]
    env = clean_environ(PYTHONPATH=str(ROOT))
    return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=TIMEOUT_S, env=env)


def _tail(res) -> str:
    return (res.stdout + res.stderr)[-3000:]


def _stored_with_times_scaled(saved, factor: float, number: int):
    """A copy of a saved pytest-benchmark run with every time statistic
    multiplied by ``factor``, saved as run ``number``."""
    doc = json.loads(saved.read_text())
    for b in doc["benchmarks"]:
        for key in TIME_STATS:
            b["stats"][key] *= factor
        b["stats"]["ops"] /= factor
    (saved.parent / f"{number:04d}_scaled.json").write_text(json.dumps(doc))


def test_the_compare_gate_fails_a_stored_baseline_20x_faster_and_passes_one_20x_slower(tmp_path):
    """The gate's logic on known data: a real saved baseline, its times
    rewritten, and a current run on the stand-in clock (every call 1/1024 s),
    so the outcome does not depend on how busy the machine is."""
    saved = _pytest_bench(tmp_path, "numpy-fp32", FAKE_CLOCK, "--benchmark-save=baseline")
    assert saved.returncode == 0, _tail(saved)
    assert "1 passed" in saved.stdout  # only the benchmark: --benchmark-only drops the suites
    stored = list((tmp_path / "store").rglob("0001_baseline.json"))
    assert len(stored) == 1
    entry = json.loads(stored[0].read_text())["benchmarks"][0]
    assert entry["fullname"].endswith("sapo-bench[numpy-fp32]::64x2048-float32")
    assert entry["extra_info"]["tokens"] == 64 * 2048
    assert entry["stats"]["median"] == entry["stats"]["max"] == 1 / 1024  # the clock, not the machine
    _stored_with_times_scaled(stored[0], 1 / 20, 2)  # as if this run were 20x slower than the baseline
    _stored_with_times_scaled(stored[0], 20, 3)  # ... or 20x faster
    gate = "--benchmark-compare-fail=median:100%"
    slower = _pytest_bench(tmp_path, "numpy-fp32", FAKE_CLOCK, "--benchmark-compare=0002", gate)
    assert slower.returncode != 0 and "Performance has regressed" in slower.stdout + slower.stderr, _tail(slower)
    faster = _pytest_bench(tmp_path, "numpy-fp32", FAKE_CLOCK, "--benchmark-compare=0003", gate)
    assert faster.returncode == 0 and "Performance has regressed" not in faster.stdout, _tail(faster)


def test_the_pytest_bench_items_check_outputs(tmp_path):
    res = _pytest_bench(tmp_path, f"{BC}:numpy_caching")
    assert res.returncode == 1 and "input set 1" in res.stdout, _tail(res)


# --- the oracle ------------------------------------------------------------------


def test_oracle_bench_times_exp_and_both_oracles_interleaved():
    o = bench.oracle_speed(4, 64, rounds=3)
    assert o["shape"] == [4, 64] and o["rounds"] == 3
    assert list(o["timings"]) == ["exp", "oracle", "reproducible"] and list(o["ratios"]) == ["oracle", "reproducible"]
    assert all(t["rounds"] == 3 and t["iqr_s"] == t["q3_s"] - t["q1_s"] for t in o["timings"].values())
    for name, r in o["ratios"].items():
        assert r["value"] == o["timings"][name]["median_s"] / o["timings"]["exp"]["median_s"]
        assert r["range"] == bench.ratio_range(o["timings"][name], o["timings"]["exp"])
        assert r["range"][0] <= r["value"] <= r["range"][1] and r["noisy"] is bool(r["wide"])


def test_oracle_bench_output_shows_each_median_iqr_and_ratio_with_its_range():
    timings = {"exp": _timing(MS, 0.125).as_dict(), "oracle": _timing(16 * MS, 0.125).as_dict(),
               "reproducible": _timing(64 * MS, 0.5).as_dict()}
    o = {"shape": [64, 4096], "loss_agg_mode": "seq-mean-token-mean", "rounds": 5, "timings": timings,
         "ratios": bench.oracle_ratios(timings)}
    lines = render.render_oracle_speed(o).splitlines()
    assert len(lines) == 4 and lines[0].startswith("oracle 64x4096 float64 loss + gradient")
    exp, fast, slow = lines[1:]
    assert exp.split() == ["one", "np.exp", "pass", "977", "us", "IQR", "122", "us"]
    assert "oracle (default)" in fast and "16x (14.1-18.1x) one np.exp pass" in fast and "NOISY" not in fast
    assert "oracle (reproducible=True)" in slow and "64x (45.2-85.3x) one np.exp pass" in slow
    assert slow.endswith("NOISY: oracle (reproducible=True) IQR 50% of median")


def test_bench_oracle_cli(capsys):
    code, out, err = _main_in_process(capsys, "bench", "--oracle", "--shape", "4x64", "--rounds", "3")
    assert code == cli.EXIT_OK, err[-500:]
    lines = out.splitlines()
    assert lines[0].startswith("oracle 4x64 float64") and len(lines) == 4, out[-2000:]
    for line, label in zip(lines[1:], ("one np.exp pass", "oracle (default)", "oracle (reproducible=True)")):
        assert line.lstrip().startswith(label) and "IQR" in line, line
    assert all("one np.exp pass" in line for line in lines[2:])
