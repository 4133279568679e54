"""Findings a person can act on, on kernels written the way real ones are
(tests/harness/style_candidates.py): graded, diagnosed by name, accepted
by a declared deviation, and a README recipe that is certified as printed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance import CandidateInfo, KernelOutput, certify
from conformance.candidate import Candidate
from tests.conftest import clean_environ

from . import style_candidates as sc

ROOT = Path(__file__).resolve().parents[2]

#: what verl 0.9.1's kernel gets wrong, by catalogue id (README "What the harness found")
VERL_DEFECTS = {"nan-through-mask", "all-masked-nan", "nan-grad-zeroed", "naive-one-minus-sigmoid"}


@pytest.fixture(scope="module")
def verl_report():
    return certify(sc.verl_style, profile="quick", isolate=False, throughput="none")


def _named(report) -> set[str]:
    return {d for f in report.findings for d in f["defects"]}


def test_verl_style_computes_the_right_function_and_each_finding_names_its_defect(verl_report):
    cats = verl_report.document["categories"]
    assert cats["semantics"]["findings"] == 0 and cats["contract"]["findings"] == 0, verl_report.document["status_line"]
    assert cats["non-finite"]["findings"] and cats["precision"]["findings"]
    assert all(f["defects"] for f in verl_report.findings), [f["title"] for f in verl_report.findings]
    assert _named(verl_report) == VERL_DEFECTS
    first = verl_report.findings[0]
    assert first["category"] == "non-finite" and first["fix"] and first["example"]["evidence"]["tokens"]
    assert verl_report.document["status_line"].startswith("semantics ✓ · non-finite ✗")


def test_a_correct_sigmoid_autograd_kernel_has_precision_findings_only():
    report = certify(sc.sigmoid_autograd, profile="quick", isolate=False, throughput="none")
    assert report.document["status_line"].startswith("semantics ✓ · non-finite ✓ · precision ✗")
    assert report.document["status_line"].endswith("contract ✓")
    assert {f["category"] for f in report.findings} == {"precision"}
    assert _named(report) == {"naive-one-minus-sigmoid"}
    # within the practical tolerance: every precision record's practical error is at most 1
    prec = [r for r in report.failures if r["category"] == "precision"]
    assert prec and all(r["practical_error"] <= 1 for r in prec)


def _accept_file(tmp_path, defects) -> Path:
    path = tmp_path / "deviations.toml"
    lines = [f'{{ defect = "{d}", reason = "declared: {d}" }},' for d in sorted(defects)]
    path.write_text("accept = [\n  " + "\n  ".join(lines) + "\n]\n")
    return path


def test_an_accept_file_turns_the_verl_style_run_green_and_lists_what_it_accepted(tmp_path):
    path = _accept_file(tmp_path, VERL_DEFECTS)
    report = certify(sc.verl_style, profile="quick", isolate=False, throughput="none", accept=path)
    assert not report.fails
    n = len(report.findings)
    assert report.verdict_text == f"conformant with {n} accepted deviations"
    assert all(f["accepted"].startswith("declared: ") for f in report.findings)
    assert report.document["accept"]["stale"] == []


def test_an_entry_whose_defect_is_gone_is_stale_and_strict_accept_fails_on_it(tmp_path):
    path = _accept_file(tmp_path, VERL_DEFECTS)
    report = certify(sc.sigmoid_autograd, profile="quick", isolate=False, throughput="none", accept=path)
    stale = {s["match"] for s in report.document["accept"]["stale"]}
    assert stale == {f"defect {d}" for d in VERL_DEFECTS - {"naive-one-minus-sigmoid"}}
    assert not report.fails and report.conformant
    strict = certify(sc.sigmoid_autograd, profile="quick", isolate=False, throughput="none", accept=path,
                     strict_accept=True, checks=["edge.*"])
    assert strict.fails


def test_fail_on_leaves_precision_findings_out_of_the_exit_code(verl_report):
    report = certify(sc.sigmoid_autograd, profile="quick", isolate=False, throughput="none",
                     fail_on="semantics,non-finite,contract")
    assert not report.conformant and not report.fails
    assert report.document["run"]["fail_on"] == ["semantics", "non-finite", "contract"]


def test_the_readme_recipe_is_printed_verbatim_and_certified_conformant():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "```python\n" + sc.README_RECIPE + "```" in readme, "README's recipe and style_candidates differ"
    report = certify(sc.readme_recipe, profile="default", isolate=False, throughput="none")
    assert report.conformant and not report.findings, report.document["status_line"]


def _wrong_everywhere(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
                      global_token_count=None, global_seq_count=None):
    loss = (logprob * advantages.reshape(logprob.shape[0], -1)).float().sum() * 0.37 + 1.0
    return KernelOutput(loss=loss, metrics={})


def test_a_kernel_that_fails_everything_gets_a_markdown_report_under_30_kb(tmp_path):
    info = CandidateInfo(name="wrong-everywhere", framework="torch", dtypes=("float32", "bfloat16", "float16"),
                         deterministic=True, metrics=(), global_counts=True)
    report = certify(Candidate(info, _wrong_everywhere), profile="quick", isolate=False, throughput="none")
    assert len(report.failures) > 100
    report.write(tmp_path)
    md = (tmp_path / "report.md").read_text(encoding="utf-8")
    assert len(md.encode()) < 30_000, f"{len(md.encode())} bytes"
    assert md.index("non-conformant") < md.index("## ")  # the verdict first


def test_the_command_line_reads_accept_files_and_the_project_table(tmp_path):
    """`run --accept` and pyproject.toml's [tool.sapo-conformance] both accept;
    the exit code follows --fail-on; a malformed entry is a usage error."""
    project = tmp_path / "proj"
    project.mkdir()
    spec = "tests.harness.style_candidates:sigmoid_autograd"
    env = clean_environ(PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "conformance.cli", "run", spec, "--profile", "quick", "--throughput", "none",
           "--no-isolate", "--quiet", "--check", "random", "--check", "edge.gate-knee", "--report-dir"]

    def run(*extra):
        return subprocess.run([*cmd, str(tmp_path / "out"), *extra], capture_output=True, text=True, cwd=project,
                              env=env, timeout=600)

    assert run().returncode == 1
    assert run("--fail-on", "semantics,non-finite").returncode == 0
    bad = run("--fail-on", "speed")
    assert bad.returncode == 2 and "unknown category 'speed'" in bad.stderr
    (project / "pyproject.toml").write_text('[project]\nname = "p"\n\n[tool.sapo-conformance]\naccept = [\n'
                                            '  { defect = "naive-one-minus-sigmoid", reason = "float32 backward" },\n]\n')
    ok = run()
    assert ok.returncode == 0, ok.stdout[-2000:]
    doc = json.loads((tmp_path / "out" / "report.json").read_text())
    assert doc["accept"]["sources"] == [str(project / "pyproject.toml")]
    assert doc["verdict_text"].startswith("conformant with ")
    bad_file = tmp_path / "bad.toml"
    bad_file.write_text('accept = [{ defect = "detached-gates", reason = "x" }]\n')
    bad = run("--accept", str(bad_file))
    assert bad.returncode == 2 and "did you mean detached-gate" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_a_low_precision_input_s_result_is_graded_at_that_precision_whatever_it_is_returned_in():
    """A float32 loss 1 % off from bfloat16 inputs is what computing in
    bfloat16 gives (precision); the same error from float32 inputs is
    another function (semantics).  The strict bound fails both."""
    from conformance import tolerance as tol

    kw = dict(terms_abs_sum=1.0, n_terms=8, out_dtype="float32", acc_dtype="float32")
    from_bf16 = tol.compare_scalar("loss", 1.01, 1.0, input_dtype="bfloat16", **kw)
    from_fp32 = tol.compare_scalar("loss", 1.01, 1.0, input_dtype="float32", **kw)
    assert not from_bf16.passed and from_bf16.category == "precision"
    assert not from_fp32.passed and from_fp32.category == "semantics"
    assert tol.practical_tolerance("float32", "bfloat16") == tol.PRACTICAL["bfloat16"]
    assert tol.practical_tolerance("bfloat16", "float32") == tol.PRACTICAL["bfloat16"]


def test_a_float32_result_modelled_as_float16_accumulation_stays_finite_beyond_float16_s_range():
    """Diagnosing fp16-inside grades a float32 metric at float16's precision;
    the expected value is still the float32 one (162120 is finite there),
    and only an inf whose value or partial sums float16 cannot hold passes
    as overflow.  (It used to be compared with inf and left undiagnosed.)"""
    from conformance import tolerance as tol

    kw = dict(terms_abs_sum=162120.3, n_terms=1, out_dtype="float32", acc_dtype="float16",
              cond_abs_sum=162120.3 * 12, partial_sums_max=162120.3)
    assert tol.compare_scalar("metric:avg_ratio", 162754.8, 162120.3, **kw).passed  # d rounded in float16
    assert tol.compare_scalar("metric:avg_ratio", float("inf"), 162120.3, **kw).passed  # overflowed in float16
    assert not tol.compare_scalar("metric:avg_ratio", float("-inf"), 162120.3, **kw).passed
    assert not tol.compare_scalar("metric:avg_ratio", 2.5e5, 162120.3, **kw).passed  # 54 % off
    # a float32 accumulation of the same value: no overflow excuse
    assert not tol.compare_scalar("metric:avg_ratio", float("inf"), 162120.3,
                                  **{**kw, "acc_dtype": "float32"}).passed


@pytest.mark.parametrize(("log_ratio", "flush_below", "passes"), [
    (0.0079, 1e-34, True),  # z = 79: the gradient, ~1e-35, is what flushing |c A| 4/tau sigma' (~1e-39) leaves
    (0.0057, 1e-20, False),  # z = 57: a gradient of ~1e-25 set to 0 is not an underflow
])
def test_a_gradient_lost_to_an_underflowing_intermediate_is_allowed_and_no_more(log_ratio, flush_below, passes):
    """XLA on CPU and GPUs flush subnormal intermediates: with tau = 1e4,
    |c A| 4/tau sigma'(z) leaves float32's normal range before tau r scales
    it back to ~1e-35 (the jax built-in returned 0 there).  The bound allows
    the compute precision's smallest normal times that scale-up, and no more."""
    from dataclasses import replace

    import numpy as np

    from conformance.evaluate import evaluate
    from conformance.types import Batch, CallOptions

    from . import broken_candidates as bc

    flushing = bc._wrap("flushing", bc._garbage(
        lambda o: replace(o, grad=np.where(np.abs(o.grad) < flush_below, 0.0, o.grad).astype(o.grad.dtype))))
    batch = Batch(np.array([[-0.8832663531213296 + log_ratio]]), np.array([[-0.8832663531213296]]),
                  np.array([-0.57]), np.ones((1, 1), bool))
    ev = evaluate(flushing, batch, dtype="float32", options=CallOptions(tau_pos=1e-6, tau_neg=1e4))
    grad = next(c for c in ev.comparisons if c.quantity == "grad")
    assert 0 < abs(float(ev.reference.grad[0, 0])) < flush_below and ev.output.grad[0, 0] == 0
    assert grad.passed is passes, grad.describe()


def test_the_fp16_inside_mutant_s_overflowing_ratio_is_diagnosed_as_its_defect():
    """The batch the random check found for the fp16-inside mutant: one token
    at log-ratio 12, which overflows exp in float16 (the gradient is NaN)
    and rounds the float32 metrics' log-ratio; every failure is that defect."""
    import numpy as np

    from conformance import diagnose
    from conformance.evaluate import evaluate
    from conformance.types import Batch, CallOptions
    from tests.mutants import MUTANTS

    (mutant,) = [m for m in MUTANTS if m.name == "fp16-inside"]
    for adv in (0.0, 0.7, -0.7):
        batch = Batch(np.array([[10.98010214]]), np.array([[-1.01989786]]), np.array([adv]), np.ones((1, 1), bool))
        ev = evaluate(mutant.candidate, batch, dtype="float16",
                      options=CallOptions(1.0, 1.05, loss_agg_mode="seq-mean-token-sum-norm"), layout="B")
        failing = [c for c in ev.comparisons if not c.passed]
        assert any(c.quantity == "grad" and c.category == "non-finite" for c in failing)
        for c in failing:
            assert diagnose.diagnose(ev, c, check="random").defects[:1] == ("fp16-inside",), (adv, c.describe())


@pytest.mark.parametrize("name", ["torch-eager", "numpy-fp32"])
def test_forming_z_far_below_the_knee_is_not_held_against_a_correct_float32_kernel(name):
    """tau 19.5-31 and r = e^-11: z = tau (r - 1) ~ -tau is rounded once in
    float32, which moves sigmoid(z) by ~eps32 |z| relative; the bound must
    allow it (without that term these inputs measured 1.7-2.1x the bound on
    loss and avg_soft_gate).  That the term leaves the naive 1 - sigmoid
    backward caught is tests/test_mutants.py's business."""
    import numpy as np

    from conformance import load_candidate
    from conformance.evaluate import evaluate
    from conformance.types import Batch, CallOptions

    from .conftest import available_or_skip

    cand = available_or_skip(load_candidate(name))
    worst = {}
    for tau in (19.5167, 24.0, 31.0):
        for lp in (-12.1199, -11.7, -12.6):
            batch = Batch(np.array([[lp]]), np.array([[-1.0199]]), np.array([[0.64]]), np.ones((1, 1), bool))
            for dtype in ("float32", "bfloat16"):
                ev = evaluate(cand, batch, dtype=dtype, options=CallOptions(tau_pos=tau, tau_neg=1.05))
                for c in ev.comparisons:
                    worst[c.quantity] = max(worst.get(c.quantity, 0.0), c.error / c.k if c.k else c.error)
                    assert c.passed, f"tau {tau}, logprob {lp}, {dtype}: {c.describe()}"
    assert worst["loss"] > 0  # the comparisons measured something
