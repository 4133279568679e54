"""Each built-in agrees with the oracle on the fixed table of edge cases
(conformance.cases), in every dtype and aggregation mode it claims.  The
hypothesis suites (test_suites.py) explore beyond this table."""

from __future__ import annotations

import types

import pytest

from conformance.candidate import CallOptions
from conformance.cases import CASES, CASES_BY_ID
from conformance.drivers import layouts_for
from conformance.evaluate import evaluate
from sapo_ref import LOSS_AGG_MODES

from .conftest import BUILTINS


def _combinations(name):
    """(case, dtype, mode) to run.  torch-compile compiles one graph per
    dtype and mode (seconds each on this CPU), so it runs every case in
    float32 and every dtype on two cases; the 32k-token row runs in float32
    token-mean only."""
    for case in CASES:
        for mode in LOSS_AGG_MODES:
            if case.long and mode != "token-mean":
                continue
            yield case.id, None, mode


def _dtypes(cand, case_id):
    if CASES_BY_ID[case_id].long:
        return ("float32",)
    if cand.name == "torch-compile" and case_id not in ("realistic", "exp-overflow"):
        return ("float32",)
    return cand.info.dtypes


@pytest.mark.parametrize("name", BUILTINS)
@pytest.mark.parametrize("case_id, _, mode", list(_combinations(None)))
def test_builtin_matches_oracle_on_edge_cases(builtin, name, case_id, _, mode):
    cand = builtin(name)
    case = CASES_BY_ID[case_id]
    batch = case.make()
    failures = []
    for dtype in _dtypes(cand, case_id):
        ev = evaluate(cand, batch, dtype=dtype, options=CallOptions(case.tau_pos, case.tau_neg, mode))
        failures += [f"{dtype}: {c.describe()}" for c in ev.failures()]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_accepts_every_advantage_layout(builtin, name):
    cand = builtin(name)
    batch = CASES_BY_ID["square-batch"].make()
    B, T = batch.shape
    results = []
    for layout in layouts_for(batch.advantages, B, T):
        ev = evaluate(cand, batch, dtype="float32", options=CallOptions(loss_agg_mode="seq-mean-token-mean"),
                      layout=layout)
        assert ev.passed, [c.describe() for c in ev.failures()]
        results.append(ev.output)
    assert len(results) == 3


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_global_counts_make_shards_sum_to_the_batch(builtin, name):
    cand = builtin(name)
    batch = CASES_BY_ID["empty-row"].make()
    for mode in LOSS_AGG_MODES:
        full = evaluate(cand, batch, dtype="float32", options=CallOptions(loss_agg_mode=mode))
        d = full.reference.denominators
        opts = CallOptions(loss_agg_mode=mode, global_token_count=d.tokens, global_seq_count=d.sequences)
        total = 0.0
        for rows in (slice(0, 1), slice(1, 4)):
            part = type(batch)(batch.logprob[rows], batch.old_logprob[rows], batch.advantages[rows], batch.mask[rows])
            ev = evaluate(cand, part, dtype="float32", options=opts)
            assert ev.passed, [c.describe() for c in ev.failures()]
            total += ev.output.loss
        assert total == pytest.approx(full.output.loss, rel=1e-6, abs=1e-7)


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_gate_matches_soft_gate(builtin, name):
    import numpy as np

    import sapo_ref
    from conformance.drivers import get_driver

    cand = builtin(name)
    if cand.gate is None:
        pytest.skip(f"{name} does not expose its gate")
    r = np.array([0.0, 0.3, 1.0, 1.0 + 2**-20, 2.5, 1e4, np.inf])
    adv = np.array([1.0, -1.0, 0.0, 1.0, -2.0, 1.0, -1.0])
    g, r_used, a_used, _ = get_driver(cand.info.framework).gate(cand, r, adv, 0.5, 4.0, "float32")
    ref = sapo_ref.soft_gate(r_used, a_used, 0.5, 4.0)
    assert np.allclose(g, ref, rtol=8 * 2.0**-23, atol=0), (g, ref)


def test_torch_compile_fails_instead_of_silently_running_eagerly(monkeypatch):
    """Past dynamo's recompilation limit torch.compile quietly runs the
    function eagerly, and a torch-compile certificate would describe eager
    code.  The built-in raises the limit for its own calls and turns hitting
    it into an error; here the limit is forced down to show the error."""
    torch = pytest.importorskip("torch")
    from conformance.builtins import torch_impl

    def call(dtype, mode):
        lp = torch.zeros((3, 5), dtype=dtype, requires_grad=True)
        mask = torch.ones((3, 5), dtype=torch.bool)
        return torch_impl.sapo_torch_compiled(lp, lp.detach() - 0.1, torch.ones(3, dtype=dtype), mask,
                                              tau_pos=1.0, tau_neg=1.05, loss_agg_mode=mode)[0]  # (loss, metrics)

    # dynamo keeps its graphs per code object, and earlier tests may have
    # compiled every combination below already: compile a copy of the core
    # with a code object of its own, so these calls must compile afresh
    core = torch_impl._sapo_core
    fresh = types.FunctionType(core.__code__.replace(), core.__globals__, core.__name__, core.__defaults__,
                               core.__closure__)
    monkeypatch.setattr(torch_impl, "_sapo_core", fresh)
    monkeypatch.setattr(torch_impl, "_compiled", None)
    monkeypatch.setitem(torch_impl._RECOMPILATION, "recompile_limit", 1)
    with pytest.raises(Exception, match="(?i)recompil"):
        for dtype in (torch.float32, torch.float64):  # two graphs at least: one past a limit of 1
            for mode in LOSS_AGG_MODES:
                call(dtype, mode)
    monkeypatch.undo()
    assert torch.isfinite(call(torch.float64, "seq-mean-token-sum"))
