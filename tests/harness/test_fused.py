"""Fused kernels (SPEC.md §11): candidates that start from logits, or from
hidden states and an LM-head weight.  The built-ins written here pass; kernels
with a wrong softmax gradient, a dropped vocabulary chunk or a weight
gradient from one row only are rejected by the quantity they get wrong; the
expected gradients the harness carries through the log-softmax and the
linear layer agree with central differences of the float64 loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conformance import CandidateError, CandidateInfo, certify, load_candidate
from conformance.adapters import from_fused_loss
from conformance.builtins.torch_impl import sapo_torch
from conformance.candidate import Batch, CallOptions
from conformance.fused import evaluate as fused_evaluate
from conformance.fused import inputs_for
from conformance.suite.runner import plan
from sapo_ref import sapo_loss


class _NoSoftmaxGrad(torch.autograd.Function):
    """log_softmax(logits)[token] whose backward forgets the -softmax term."""

    @staticmethod
    def forward(ctx, logits, ids):
        ctx.save_for_backward(ids)
        ctx.shape = logits.shape
        return torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]

    @staticmethod
    def backward(ctx, g):
        (ids,) = ctx.saved_tensors
        out = torch.zeros(ctx.shape, dtype=g.dtype)
        out.scatter_(-1, ids[..., None], g[..., None])
        return out, None


def wrong_softmax_grad(logits, ids, old, adv, mask, **kw):
    return sapo_torch(_NoSoftmaxGrad.apply(logits.float(), ids), old, adv, mask, **kw)


def vocab_chunk_dropped(logits, ids, old, adv, mask, **kw):
    """The log-sum-exp over vocabulary chunks of 16 skips the last one."""
    x = logits.float()
    V = x.shape[-1]
    keep = V - (V % 16 or 16) if V > 16 else V
    lp = x.gather(-1, ids[..., None])[..., 0] - torch.logsumexp(x[..., :keep], -1)
    return sapo_torch(lp, old, adv, mask, **kw)


def weight_grad_first_row(hidden, weight, ids, old, adv, mask, **kw):
    """The LM head's gradient from the first sequence only (a chunk loop that
    overwrites instead of accumulating)."""
    logits = torch.cat([hidden[:1] @ weight.T, hidden[1:] @ weight.detach().T]).float()
    lp = torch.log_softmax(logits, -1).gather(-1, ids[..., None])[..., 0]
    return sapo_torch(lp, old, adv, mask, **kw)


CLAIMS = dict(dtypes=("float32",), advantage_shapes=("B", "B1", "BT"), mask_kind="bool")
FUSED_MUTANTS = (
    (from_fused_loss(wrong_softmax_grad, name="wrong-softmax-grad", **CLAIMS), "random:grad-logits"),
    (from_fused_loss(vocab_chunk_dropped, name="vocab-chunk-dropped", **CLAIMS), "random:loss"),
    (from_fused_loss(weight_grad_first_row, name="weight-grad-first-row", inputs="hidden", **CLAIMS),
     "random:grad-weight"),
)


@pytest.mark.parametrize("name", ["torch-logits", "torch-linear"])
def test_the_fused_builtins_are_conformant_in_every_dtype(name):
    report = certify(load_candidate(name), profile="quick", isolate=False, throughput="none")
    bad = [f"{r.id}: {r.message[:200]}" for r in report.records if r.status != "pass"]
    assert not bad, f"{len(bad)} failing records, first: {bad[:3]}"
    checks = {r.check.split(":")[0] for r in report.records}
    assert "random" in checks and any(c.startswith("edge.") for c in checks)
    quantities = {r.check.split(":", 1)[1] for r in report.records}
    assert ({"grad-logits"} if name == "torch-logits" else {"grad-hidden", "grad-weight"}) <= quantities


@pytest.mark.parametrize("mutant,caught_by", FUSED_MUTANTS, ids=[m.name for m, _ in FUSED_MUTANTS])
def test_fused_mutants_are_rejected_by_what_they_get_wrong(mutant, caught_by):
    report = certify(mutant, profile="quick", isolate=False, throughput="none", checks=["random"])
    failing = {r.check for r in report.records if r.status == "fail"}
    assert caught_by in failing, f"{mutant.name}: failing {sorted(failing)}"
    assert report.verdict == "non-conformant"


def _loss_of_logits(logits, ids, old, adv, mask, opts):
    top = logits.max(-1, keepdims=True)
    lse = (top + np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 0]
    lp = np.take_along_axis(logits, ids[..., None], -1)[..., 0] - lse
    return sapo_loss(lp, old, adv, mask, **opts.oracle_kwargs()).loss


@pytest.mark.parametrize("mode", ["token-mean", "seq-mean-token-mean"])
def test_the_expected_logit_gradient_matches_central_differences(mode):
    """The harness's d loss / d logits (chain rule through log-softmax)
    against float64 central differences of the oracle's loss as a function
    of the logits: an independent route to the same number."""
    rng = np.random.default_rng(3)
    B, T = 2, 5
    olp = -rng.exponential(1.0, (B, T))
    batch = Batch(olp + rng.normal(0, 0.5, (B, T)), olp, rng.normal(0, 1, B), rng.random((B, T)) < 0.8)
    cand = load_candidate("torch-logits")
    opts = CallOptions(tau_pos=1.3, tau_neg=0.7, loss_agg_mode=mode)
    ev = fused_evaluate(cand, batch, dtype="float64", options=opts)
    grad_cmp = next(c for c in ev.comparisons if c.quantity == "grad-logits")
    assert grad_cmp.passed, grad_cmp.describe()
    fx = inputs_for("logits", batch, "float64")
    logits, ids = fx["logits"], fx["token_ids"]
    old = ev.output.inputs.old_logprob
    adv = ev.output.inputs.advantages
    h = 1e-6
    numeric = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape):
        up, down = logits.copy(), logits.copy()
        up[idx] += h
        down[idx] -= h
        numeric[idx] = (_loss_of_logits(up, ids, old, adv, batch.mask, opts)
                        - _loss_of_logits(down, ids, old, adv, batch.mask, opts)) / (2 * h)
    # the candidate (float64 autograd) passed the harness's comparison; the harness's expected array agrees
    # with the numeric derivative, so the comparison is against the right numbers
    g = np.where(batch.mask, ev.reference.grad, 0.0)[..., None]
    onehot = np.zeros_like(logits)
    np.put_along_axis(onehot, ids[..., None], 1.0, axis=-1)
    expected = g * (onehot - fx["softmax"])
    np.testing.assert_allclose(expected, numeric, rtol=1e-6, atol=1e-9)


def test_a_fused_candidate_runs_only_the_checks_that_draw_through_the_fused_path():
    units = plan(load_candidate("torch-logits"))
    assert units and {u.check.group for u in units} == {"random", "edge"}
    assert not [u for u in plan(load_candidate("torch-logits"), checks=["-edge.long-row"])
                if u.check.name == "edge.long-row"]


@pytest.mark.parametrize("claim", [dict(global_counts=True), dict(rollout_is_weights=True), dict(framework="jax"),
                                   dict(data_parallel=True), dict(inputs="probs")])
def test_a_fused_claim_it_cannot_honour_is_refused_in_one_line(claim):
    kw = {"name": "k", "framework": "torch", "inputs": "logits", **claim}
    with pytest.raises(CandidateError) as err:
        CandidateInfo(**kw)
    assert "\n" not in str(err.value) and "'k'" in str(err.value)


def naive_from_logits(logits, ids, old, adv, mask, *, tau_pos, tau_neg, loss_agg_mode):
    """What a plain fused kernel does: exp(log-ratio) unclamped, autograd
    through torch.sigmoid, masking with where (token-mean)."""
    lp = torch.log_softmax(logits.float(), -1).gather(-1, ids[..., None])[..., 0]
    r = torch.exp(lp - old)
    a = adv.reshape(adv.shape[0], -1).expand_as(r)
    tau = torch.where(a > 0, tau_pos, tau_neg)
    gate = torch.sigmoid(tau * (r - 1)) * 4 / tau
    tokens = torch.where(mask, -gate * a, 0.0)
    return tokens.sum() / mask.sum().clamp(min=1)


def test_a_fused_kernel_s_defects_are_named_through_its_logit_gradient():
    cand = from_fused_loss(naive_from_logits, name="naive-fused", loss_agg_modes=("token-mean",), **CLAIMS)
    report = certify(cand, profile="quick", isolate=False, throughput="none",
                     checks=["edge.exp-overflow", "edge.gate-knee"])
    named = {r.check: set(r.defects) for r in report.records if r.status == "fail"}
    assert "exp-overflow-nan" in named.get("edge.exp-overflow:grad-logits", set()), named
    assert "naive-one-minus-sigmoid" in named.get("edge.gate-knee:grad-logits", set()), named
