"""Throughput: the bench engine, its guards, the CLI, the report's
throughput section, diff, and the pytest-benchmark regression gate.

These tests check what the measurements mean (bytes, ratios, guards,
plumbing), never how fast anything is: performance figures come from
``sapo-conformance bench``, not from timed tests.  The one exception is the
regression gate, which must fail on a 2x slowdown; it compares the fastest
round (``min``, the statistic least disturbed by a busy machine) with a 50 %
threshold, far from both the injected +100 % and run-to-run noise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from conformance import bench, cli, render
from conformance.candidate import CandidateError
from conformance.loading import load_candidate
from conformance.report import load_report, validate

from .test_run import QUICK, ROOT, run_cli

BC = "tests.harness.bench_candidates"
TINY = replace(bench.BENCH_PROFILES["quick"], shapes=((4, 256),), rounds=3, warmup=1, fresh_bytes=0)


def measure(candidate, B=4, T=256, dtype="float32", **kw):
    return bench.measure(candidate, B, T, dtype, profile=TINY, **kw)


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


def test_fresh_input_sets_span_the_cache_budget():
    p = bench.BENCH_PROFILES["default"]
    assert bench._sets_for(1, p) == p.max_sets
    assert bench._sets_for(p.fresh_bytes, p) == p.min_sets
    assert bench._sets_for((p.fresh_bytes + 2) // 3, p) == 3


@pytest.mark.parametrize("spec", ["numpy-fp32", "torch-eager", "jax"])
def test_a_row_is_consistent_with_its_own_timings(spec):
    row = measure(load_candidate(spec))
    assert row["status"] == "ok", row
    med, copy = row["candidate"]["median_s"], row["copy"]["median_s"]
    assert row["candidate"]["rounds"] == TINY.rounds and row["input_sets"] == TINY.min_sets
    assert row["candidate"]["q1_s"] <= med <= row["candidate"]["q3_s"]
    assert row["tokens_per_s"] == pytest.approx(4 * 256 / med)
    assert row["bytes_per_s"] == pytest.approx(row["bytes"] / med)
    assert row["roofline_fraction"] == pytest.approx(copy / med)
    assert row["roofline_bytes_per_s"] == pytest.approx(row["bytes"] / copy)
    assert row["speedup_vs_baseline"] == pytest.approx(row["baseline"]["median_s"] / med)
    assert row["candidate"]["first_call_s"] > 0 and row["compile_s"] >= 0
    if spec == "torch-eager":
        assert row["speedup_vs_baseline"] == 1.0


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


def test_a_candidate_that_raises_is_an_error_row_and_the_rest_still_run():
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
    assert all(0 < t < 1 for t in times)


# --- the command line ----------------------------------------------------------


def test_bench_cli_prints_a_table_and_writes_json(tmp_path):
    out_json = tmp_path / "bench.json"
    code, out, err = run_cli("bench", "numpy-fp32", "triton", "--shape", "4x256", "--shape", "8x128",
                             "--rounds", "3", "--dtype", "float32", "--json", str(out_json),
                             "--no-baseline")
    assert code == cli.EXIT_OK, err
    assert "roofline" in out and "vs torch-eager" in out and "4x256" in out and "8x128" in out
    assert "triton: correctness only" in out  # no meaningless number under the interpreter
    doc = json.loads(out_json.read_text())
    assert doc["schema"] == "sapo-conformance.bench"
    names = [r["candidate"]["name"] for r in doc["results"]]
    assert names == ["numpy-fp32", "triton"]
    assert [r["shape"] for r in doc["results"][0]["throughput"]["rows"]] == [[4, 256], [8, 128]]


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
        assert code == cli.EXIT_USAGE, (args, out, err)
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
    assert code == cli.EXIT_OK, err
    report = load_report(tmp_path / "report.json")
    rows = report["throughput"]["rows"]
    assert [r["shape"] for r in rows] == [list(s) for s in bench.BENCH_PROFILES["quick"].shapes]
    assert all(r["status"] == "ok" and r["dtype"] == "float32" for r in rows)
    assert "## Throughput" in (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Throughput</h2>" in page and "tokens/s against tokens" in page
    assert page.count("<polyline") == 3  # candidate, torch-eager, copy roofline
    assert "roofline" in out


def test_quick_runs_and_partial_runs_skip_throughput(tmp_path):
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), *QUICK)
    assert code == cli.EXIT_OK and load_report(tmp_path / "report.json")["throughput"] is None
    args = cli.build_parser().parse_args(["run", "x", "--check", "edge.*"])
    assert cli._throughput_section(None, args, quiet=True) is None


def _with_slower(report: dict, factor: float) -> dict:
    new = json.loads(json.dumps(report))
    for r in new["throughput"]["rows"]:
        r["candidate"]["median_s"] *= factor
        r["roofline_fraction"] /= factor
    return new


def test_diff_shows_throughput_changes_and_gates_on_request(tmp_path):
    code, out, err = run_cli("run", "numpy-fp32", "--report-dir", str(tmp_path), "--profile", "quick",
                             "--throughput", "quick", "--dtype", "float32", "--quiet")
    assert code == cli.EXIT_OK, err
    old = load_report(tmp_path / "report.json")
    slow = _with_slower(old, 2.0)
    assert validate(slow) is None
    d = render.diff_reports(old, slow)
    assert [t["change"] for t in d["throughput"]] == pytest.approx([1.0, 1.0])
    assert not d["regression"]  # without a threshold, throughput is shown, not judged
    text = render.render_diff(d)
    assert "+100.0%" in text and "64x4096 float32" in text
    gated = render.diff_reports(old, slow, slower_threshold=10)
    assert gated["regression"] and len(gated["slower"]) == 2 and "SLOWER" in render.render_diff(gated)
    assert not render.diff_reports(old, _with_slower(old, 1.05), slower_threshold=10)["regression"]
    (tmp_path / "slow.json").write_text(json.dumps(slow))
    code, out, err = run_cli("diff", str(tmp_path / "report.json"), str(tmp_path / "slow.json"),
                             "--fail-slower", "10")
    assert code == cli.EXIT_NONCONFORMANT and "SLOWER" in out


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


def _pytest_bench(tmp_path, spec, *extra):
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
            "--sapo-candidate", spec, "--sapo-bench", "--sapo-bench-shape", "64x2048", "--benchmark-only",
            f"--benchmark-storage=file://{tmp_path / 'store'}", *extra]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, timeout=600, env=env)


def test_the_compare_gate_fails_on_an_injected_2x_slowdown(tmp_path):
    saved = _pytest_bench(tmp_path, "numpy-fp32", "--benchmark-save=baseline")
    assert saved.returncode == 0, saved.stdout + saved.stderr
    assert "1 passed" in saved.stdout  # only the benchmark: --benchmark-only drops the suites
    stored = list((tmp_path / "store").rglob("0001_baseline.json"))
    assert len(stored) == 1
    bench_entry = json.loads(stored[0].read_text())["benchmarks"][0]
    assert bench_entry["fullname"].endswith("sapo-bench[numpy-fp32]::64x2048-float32")
    assert bench_entry["extra_info"]["tokens"] == 64 * 2048
    gate = ["--benchmark-compare=0001", "--benchmark-compare-fail=min:50%"]
    same = _pytest_bench(tmp_path, "numpy-fp32", *gate)
    assert same.returncode == 0, same.stdout + same.stderr
    slow = _pytest_bench(tmp_path, f"{BC}:numpy_twice", *gate)
    assert slow.returncode != 0, slow.stdout + slow.stderr
    assert "Performance has regressed" in slow.stdout + slow.stderr


def test_the_pytest_bench_items_check_outputs(tmp_path):
    res = _pytest_bench(tmp_path, f"{BC}:numpy_caching")
    assert res.returncode == 1 and "input set 1" in res.stdout


def test_oracle_speed_is_a_ratio_of_interleaved_medians():
    o = bench.oracle_speed(8, 256, rounds=5)
    assert o["shape"] == [8, 256] and o["oracle"]["rounds"] == o["exp"]["rounds"] == 5
    assert o["ratio"] == pytest.approx(o["oracle"]["median_s"] / o["exp"]["median_s"])
    code, out, err = run_cli("bench", "--oracle", "--shape", "8x256", "--rounds", "3")
    assert code == cli.EXIT_OK and "x one np.exp pass" in out, err
