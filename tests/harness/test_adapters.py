"""Each adapter, with a small function or class written in that framework's
style (tests/harness/example_candidates.py), loaded through module:attr."""

from __future__ import annotations

import numpy as np
import pytest

from conformance import CandidateError, load_candidate
from conformance.adapters import from_torch_loss, from_verl_policy_loss, normalise_metrics
from conformance.candidate import CallOptions
from conformance.cases import CASES_BY_ID
from conformance.evaluate import evaluate
from sapo_ref import LOSS_AGG_MODES

EX = "tests.harness.example_candidates"
CASE_IDS = ("realistic", "empty-row", "temperatures-0.5-4", "per-token-advantages")


@pytest.mark.parametrize("target", ["torch_candidate", "jax_candidate", "trinity_candidate", "verl_candidate",
                                    "verl_old_style"])
@pytest.mark.parametrize("case_id", CASE_IDS)
def test_adapted_correct_implementations_pass(target, case_id):
    cand = load_candidate(f"{EX}:{target}")
    case = CASES_BY_ID[case_id]
    for mode in LOSS_AGG_MODES:
        ev = evaluate(cand, case.make(), dtype="float32", options=CallOptions(case.tau_pos, case.tau_neg, mode))
        assert ev.passed, [c.describe() for c in ev.failures()]


@pytest.mark.parametrize("target", ["verl_candidate", "torch_weighted"])
def test_adapters_pass_rollout_is_weights_through(target):
    """The weights checks reach the wrapped function's own weights argument;
    the same function with the weights dropped by the adapter is caught."""
    from conformance.suite import CHECKS
    from conformance.suite import Unit, run_units

    cand = load_candidate(f"{EX}:{target}")
    unit = Unit(next(c for c in CHECKS if c.name == "weights.random"), "float32", "seq-mean-token-mean")
    # precision findings (verl's plain sigmoid autograd on the gate's far knee) are not about the weights
    bad = [r.id for r in run_units(cand, [unit], profile="quick") if r.status != "pass" and r.category != "precision"]
    assert not bad, (target, bad)
    dropped = cand.with_info(rollout_is_weights=False)
    assert not [c for c in CHECKS if c.name == "weights.random" and c.applies(dropped, "float32")]


def test_trinity_published_surrogate_is_caught():
    """The detached-gate surrogate: right gate, wrong loss and gradient."""
    cand = load_candidate(f"{EX}:trinity_published")
    ev = evaluate(cand, CASES_BY_ID["realistic"].make(), dtype="float32", options=CallOptions())
    failed = {c.quantity for c in ev.failures()}
    assert {"loss", "grad"} <= failed
    assert "metric:avg_soft_gate" not in failed


def test_verl_adapter_passes_global_batch_info_and_uses_make_config():
    from tests.harness import example_candidates as ex

    seen = []

    def make_config(**kw):
        seen.append(kw)
        from types import SimpleNamespace

        return SimpleNamespace(**kw)

    cand = from_verl_policy_loss(ex.compute_policy_loss_sapo, name="verl-made", make_config=make_config, dp_size=1)
    batch = CASES_BY_ID["realistic"].make()
    ev = evaluate(cand, batch, dtype="float32", options=CallOptions(global_seq_count=10, global_token_count=99))
    assert ev.passed, [c.describe() for c in ev.failures()]
    assert seen[-1]["global_batch_info"] == {"dp_size": 1, "batch_num_tokens": 99, "global_batch_size": 10}
    assert seen[-1]["tau_pos"] == 1.0


def test_verl_profile_rounds_tau_like_verl():
    """verl casts tau to the advantages' dtype: in bfloat16, 1.05 -> 1.046875;
    the verl profile tells the oracle to do the same."""
    cand = load_candidate(f"{EX}:verl_candidate").with_info(dtypes=("float32", "bfloat16"))
    ev = evaluate(cand, CASES_BY_ID["realistic"].make(), dtype="bfloat16", options=CallOptions())
    assert ev.reference.semantics.tau_neg == 1.046875
    assert ev.passed, [c.describe() for c in ev.failures()]


def test_metric_names_are_normalised():
    assert normalise_metrics({"actor/ppo_kl": 1.0, "sapo_loss": 2.0, "avg_ratio": 3.0}) == {
        "ppo_kl": 1.0, "avg_ratio": 3.0}


def test_adapter_errors():
    with pytest.raises(CandidateError, match="expected a function"):
        from_torch_loss(3, name="x")
    with pytest.raises(CandidateError, match="invalid dtypes"):
        from_torch_loss(lambda *a, **k: 0, name="x", dtypes=("half",))
    from conformance.adapters import from_trinity_policy_loss

    with pytest.raises(CandidateError, match="expected a class"):
        from_trinity_policy_loss(lambda: 0)


@pytest.mark.parametrize("claim", ["global_counts", "data_parallel", "rollout_is_weights"])
def test_an_adapter_rejects_a_claim_its_calling_convention_cannot_carry(claim):
    """Built, not discovered as a TypeError in every shard check: one line
    naming the claim, why, and what to do."""
    from conformance.adapters import from_trinity_policy_loss

    from .example_candidates import TrinityStyleSAPO

    with pytest.raises(CandidateError) as err:
        from_trinity_policy_loss(TrinityStyleSAPO, name="t", **{claim: True})
    msg = str(err.value)
    assert "\n" not in msg and f"{claim}=True" in msg and "from_torch_loss" in msg, msg
    assert from_trinity_policy_loss(TrinityStyleSAPO, name="t", **{claim: False}).info.name == "t"


def test_adapter_that_returns_a_bad_tuple_is_reported():
    import torch

    cand = from_torch_loss(lambda *a, **k: (torch.tensor(0.0, requires_grad=True), 1, 2), name="bad-tuple")
    with pytest.raises(CandidateError, match="bad-tuple.*tuple of 3"):
        evaluate(cand, CASES_BY_ID["realistic"].make(), dtype="float32")


def test_non_differentiable_loss_is_reported():
    import torch

    cand = from_torch_loss(lambda *a, **k: torch.tensor(0.0), name="constant")
    with pytest.raises(CandidateError, match="'constant': the loss is not differentiable"):
        evaluate(cand, CASES_BY_ID["realistic"].make(), dtype="float32")
    assert np.isfinite(0.0)


def test_a_jax_loss_is_compiled_once_per_shape_and_one_that_cannot_be_traced_runs_eagerly():
    """The JAX driver jits value-and-grad with the temperatures traced: three
    temperature pairs on one shape trace the function once.  A function with
    Python control flow on a temperature cannot be traced; it runs eagerly
    and is judged the same way."""
    pytest.importorskip("jax")
    import numpy as np

    from conformance.adapters import from_jax_loss
    from conformance.evaluate import evaluate
    from conformance.types import Batch, CallOptions

    from .example_candidates import jax_sapo

    traces = []

    def counted(*args, **kwargs):
        traces.append(1)
        return jax_sapo(*args, **kwargs)

    def branchy(*args, tau_pos, tau_neg, **kwargs):
        if float(tau_pos) <= 0:  # concrete values only: not traceable
            raise ValueError("tau_pos must be positive")
        return jax_sapo(*args, tau_pos=tau_pos, tau_neg=tau_neg, **kwargs)

    rng = np.random.default_rng(0)
    olp = -rng.exponential(1.0, (3, 7))
    batch = Batch(olp + rng.normal(0, 0.1, (3, 7)), olp, rng.normal(0, 1, 3), np.ones((3, 7), bool))
    for fn, name in ((counted, "counted"), (branchy, "branchy")):
        cand = from_jax_loss(fn, name=name)
        for taus in ((1.0, 1.05), (0.5, 4.0), (3.0, 0.2)):
            ev = evaluate(cand, batch, dtype="float32", options=CallOptions(*taus))
            assert all(c.passed for c in ev.comparisons), [c.describe() for c in ev.comparisons if not c.passed]
    assert len(traces) == 1

    # new global counts reuse the compilation too (they are traced, not static)
    def counted_global(old, lp, adv, mask, *, tau_pos, tau_neg, loss_agg_mode, global_token_count=None,
                       global_seq_count=None):
        traces.append(1)
        token_mean = jax_sapo(old, lp, adv, mask, tau_pos=tau_pos, tau_neg=tau_neg, loss_agg_mode="token-mean")
        return token_mean * mask.sum() / global_token_count

    cand = from_jax_loss(counted_global, name="global", global_counts=True, loss_agg_modes=("token-mean",))
    traces.clear()
    for n in (21, 30, 45):
        ev = evaluate(cand, batch, dtype="float32", options=CallOptions(global_token_count=n))
        assert all(c.passed for c in ev.comparisons), [c.describe() for c in ev.comparisons if not c.passed]
    assert len(traces) == 1
