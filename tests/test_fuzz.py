"""Fuzzing the input boundaries: the oracle's validation, the report loader
and validator, and the golden-fixture loader.  For any input: a correct
result, or a ValueError/TypeError (ReportError and GoldenError are
ValueErrors) -- never another exception type, a hang or a crash.  Hangs are
caught by hypothesis' deadline."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import sapo_ref
from conformance import compare, golden, render
from conformance.report import ReportError, build_report, dumps, load_report, validate

FUZZ = settings(deadline=timedelta(seconds=5), suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])

# --- the oracle ----------------------------------------------------------------

DTYPES = [np.bool_, np.int8, np.int64, np.uint16, np.float16, np.float32, np.float64, np.complex64, np.longdouble]


def arrays():
    shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
    numeric = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(dt, shapes))
    return st.one_of(numeric, st.lists(st.floats(allow_nan=True), max_size=4),
                     st.lists(st.lists(st.floats(), max_size=3), max_size=3), st.none(), st.text(max_size=3),
                     st.floats(), st.integers())


def scalars():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10, 10**6), st.none(),
                     st.text(max_size=4), st.booleans(), st.just(np.float32(1.5)), st.just([1.0]))


def shaped_batch():
    """Mostly-valid batches, so that validation of the options is reached too."""
    return st.tuples(st.integers(0, 3), st.integers(0, 4)).flatmap(lambda bt: st.tuples(
        hnp.arrays(np.float64, bt), hnp.arrays(np.float64, bt),
        st.one_of(hnp.arrays(np.float64, bt[:1]), hnp.arrays(np.float64, (bt[0], 1)), hnp.arrays(np.float64, bt),
                  arrays()),
        st.one_of(hnp.arrays(np.bool_, bt), hnp.arrays(np.float32, bt), arrays())))


def _check_result(res, logprob):
    assert isinstance(res.loss, float)
    assert res.grad.shape == np.asarray(logprob).shape and res.grad.dtype == np.float64
    dict(res.metrics)  # computing the metrics must not raise either


@FUZZ
@given(arrays(), arrays(), arrays(), arrays())
def test_oracle_arbitrary_arrays(lp, olp, adv, mask):
    try:
        res = sapo_ref.sapo_loss(lp, olp, adv, mask)
    except (ValueError, TypeError) as exc:
        assert str(exc)  # a message, naming the problem
        return
    _check_result(res, lp)


@FUZZ
@given(shaped_batch(), scalars(), scalars(), st.one_of(st.sampled_from(sapo_ref.LOSS_AGG_MODES), st.text(max_size=8),
       scalars()), st.one_of(st.none(), st.sampled_from(sorted(sapo_ref.PROFILES)), st.text(max_size=5), scalars()),
       scalars(), scalars(), st.one_of(st.none(), scalars()), st.one_of(st.none(), arrays()),
       st.one_of(st.none(), st.sampled_from(["token", "sequence"]), scalars()),
       st.one_of(st.none(), st.sampled_from(["token", "mean"]), scalars()))
def test_oracle_arbitrary_options(batch, tau_pos, tau_neg, mode, profile, gtc, gsc, clamp, weights, level, seq_adv):
    lp, olp, adv, mask = batch
    if weights is None and level is not None:  # reach the weights' validation with well-shaped ones too
        weights = np.ones_like(np.asarray(lp, dtype=float))
    kwargs = dict(tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode=mode, profile=profile,
                  global_token_count=gtc, global_seq_count=gsc, log_ratio_clamp=clamp, rollout_is_weights=weights,
                  importance_sampling_level=level, sequence_advantage=seq_adv)
    try:
        res = sapo_ref.sapo_loss(lp, olp, adv, mask, **kwargs)
    except (ValueError, TypeError) as exc:
        assert str(exc)
        return
    _check_result(res, lp)


@FUZZ
@given(arrays(), arrays(), scalars(), scalars())
def test_gate_functions_arbitrary_input(ratio, adv, tau_pos, tau_neg):
    for fn in (sapo_ref.soft_gate, sapo_ref.gate_weight):
        try:
            out = fn(ratio, adv, tau_pos, tau_neg)
        except (ValueError, TypeError):
            continue
        assert isinstance(out, np.ndarray) and out.dtype == np.float64


@FUZZ
@given(scalars(), scalars(), st.one_of(st.text(max_size=8), scalars()), shaped_batch())
def test_policy_loss_mirror_arbitrary_input(tau_pos, tau_neg, mode, batch):
    lp, olp, adv, mask = batch
    try:
        fn = sapo_ref.SAPOPolicyLoss(tau_pos, tau_neg, mode)
        loss, metrics = fn(lp, olp, mask, adv)
    except (ValueError, TypeError):
        return
    assert isinstance(metrics, dict)


# --- reports -------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
                    | st.text(max_size=6) | st.sampled_from(["nan", "inf", "-inf", "", "ok", "pass"]),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                 max_size=4), max_leaves=20)


@pytest.fixture(scope="module")
def real_report():
    from conformance.loading import load_candidate
    from conformance.suite import plan, run_units

    from dataclasses import replace

    from conformance import bench

    cand = load_candidate("numpy-fp32")
    recs = run_units(cand, plan(cand, dtypes=["float32"], modes=["token-mean"], checks=["random"]),
                     profile="quick")[:3]  # loss (with samples), grad, grad-dtype
    recs[0].status, recs[0].message = "fail", "made to fail"
    tiny = replace(bench.BENCH_PROFILES["quick"], rounds=2, warmup=0, fresh_bytes=0)
    section = bench.bench(cand, shapes=[(2, 64)], dtypes=["float32"], profile=tiny)
    section["rows"].append({**section["rows"][0], "status": "correctness-only", "reason": "r"})
    report = build_report(cand, "numpy-fp32", recs, profile="quick", seed=0, device="cpu", dtypes=["float32"],
                          modes=["token-mean"], checks=None, duration_s=1.0, command="x", throughput=section)
    assert validate(report) is None
    return json.loads(dumps(report))


@FUZZ
@given(st.binary(max_size=300))
def test_load_report_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("r") / "report.json"
    path.write_bytes(data)
    with pytest.raises(ReportError):
        load_report(path)


@FUZZ
@given(JSON)
def test_validate_arbitrary_json(doc):
    assert validate(doc) is None or isinstance(validate(doc), str)


def _paths(doc, prefix=()):
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _paths(v, prefix + (i,))


def _replace(doc, path, value):
    if not path:
        return value
    doc = json.loads(json.dumps(doc))
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


@settings(FUZZ, max_examples=300)
@given(st.data())
def test_a_report_that_validates_always_renders(real_report, data):
    """Mutate one node of a real report; whatever validate() accepts, every
    renderer and diff must handle without raising."""
    paths = list(_paths(real_report))
    path = data.draw(st.sampled_from(paths), label="path")
    mutated = _replace(real_report, path, data.draw(JSON, label="value"))
    if validate(mutated) is not None:
        return
    _render_everything(real_report, mutated)


def _render_everything(original: dict, mutated: dict) -> None:
    render.render_markdown(mutated)
    render.render_html(mutated)
    render.render_junit(mutated)
    render.terminal_summary(mutated)
    compare.render_diff(compare.diff_reports(original, mutated))
    compare.render_diff(compare.diff_reports(mutated, original, slower_threshold=10))


TRICKY = ["nan", "inf", "-inf", None, 0, -1, 1, 1e300, -1e300, 1e-300, 5e-324, "", "x", [], {}, True, [1, 2], ["a"], {"a": 1}]


def test_every_node_of_a_report_mutated_systematically(real_report):
    """Every node of a real report replaced by each tricky value: what
    validate() accepts, every renderer handles (hypothesis samples this
    space; here it is enumerated)."""
    accepted = 0
    for path in _paths(real_report):
        for value in TRICKY:
            mutated = _replace(real_report, path, value)
            if validate(mutated) is not None:
                continue
            accepted += 1
            try:
                _render_everything(real_report, mutated)
            except Exception as exc:
                raise AssertionError(f"{path} = {value!r}: {type(exc).__name__}: {exc}") from exc
    assert accepted > 100  # the mutations that stay valid are many: the test is not vacuous


# --- golden fixtures -------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=400))
def test_npz_loader_arbitrary_bytes(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("g") / "x.npz"
    path.write_bytes(data)
    try:
        arrays = golden._open_npz(path)
    except golden.GoldenError as exc:
        assert str(path) in str(exc)
        return
    assert all(isinstance(a, np.ndarray) and a.dtype != object for a in arrays.values())


@pytest.fixture(scope="module")
def one_case():
    """The smallest real fixture case: its arrays as one .npz, and its manifest entry."""
    import io

    manifest, cases = golden.load(golden.default_dir())
    case = min(cases, key=lambda c: c.batch.logprob.size)
    arrays = {f"c__{n}": a for n, a in zip(golden.INPUTS, (case.batch.logprob, case.batch.old_logprob,
                                                           case.batch.advantages, case.batch.mask))}
    arrays.update({f"c__{n}": a for n, a in case.outputs.items()})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue(), {**manifest["cases"][case.id], "file": "a.npz"}


@settings(FUZZ, max_examples=200)
@given(st.data())
def test_golden_loader_arbitrary_manifest(tmp_path_factory, one_case, data):
    blob, meta = one_case
    d = tmp_path_factory.mktemp("gd")
    (d / "a.npz").write_bytes(blob)
    manifest = {"schema": golden.SCHEMA, "schema_version": golden.SCHEMA_VERSION, "oracle_version": "x",
                "files": {"a.npz": {"sha256": hashlib.sha256(blob).hexdigest(), "cases": ["c"]}},
                "cases": {"c": meta}}
    (d / "manifest.json").write_text(json.dumps(manifest))
    golden.verify(d)  # the unmutated set is fine
    path = data.draw(st.sampled_from(list(_paths(manifest))), label="path")
    mutated = _replace(manifest, path, data.draw(JSON, label="value"))
    (d / "manifest.json").write_text(json.dumps(mutated))
    try:
        golden.verify(d)
    except golden.GoldenError as exc:
        assert str(d) in str(exc)


@FUZZ
@given(st.binary(max_size=200))
def test_golden_manifest_arbitrary_bytes(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("gm")
    (d / "manifest.json").write_bytes(data)
    with pytest.raises(golden.GoldenError):
        golden.load(d)
