"""SAPOPolicyLoss mirrors Trinity-RFT's SAPOPolicyLossFn API (SPEC.md, section 11)."""

from __future__ import annotations

import numpy as np
import pytest

import sapo_ref
from sapo_ref import SAPOPolicyLoss

rng = np.random.default_rng(5)
LP = rng.normal(-1, 0.2, (3, 4))
OLP = LP + rng.normal(0, 0.2, (3, 4))
MASK = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]])
ADV = np.array([[0.5], [-1.0], [2.0]]) * np.ones((3, 4))


def test_defaults_match_the_seed():
    assert SAPOPolicyLoss.default_args() == {"tau_pos": 1.0, "tau_neg": 1.05, "loss_agg_mode": "token-mean"}
    fn = SAPOPolicyLoss()
    assert (fn.tau_pos, fn.tau_neg, fn.loss_agg_mode) == (1.0, 1.05, "token-mean")


def test_select_keys_follow_the_backend():
    assert SAPOPolicyLoss().select_keys == ["old_log_probs", "response_mask", "advantages"]
    assert SAPOPolicyLoss(backend="trinity").select_keys == ["old_logprob", "action_mask", "advantages"]
    with pytest.raises(ValueError, match="backend"):
        SAPOPolicyLoss(backend="megatron")


@pytest.mark.parametrize("mode", sapo_ref.LOSS_AGG_MODES)
def test_call_returns_loss_and_trinity_metrics(mode):
    fn = SAPOPolicyLoss(0.5, 2.0, mode)
    loss, metrics = fn(LP, OLP, MASK, ADV, ref_logprob=None, step=3)
    ref = sapo_ref.sapo_loss(LP, OLP, ADV, MASK, tau_pos=0.5, tau_neg=2.0, loss_agg_mode=mode, profile="trinity")
    assert isinstance(loss, float) and loss == ref.loss
    assert set(metrics) == {"sapo_loss", "ppo_kl", "avg_soft_gate", "avg_ratio", "pos_adv_frac"}
    assert metrics["sapo_loss"] == loss and metrics["ppo_kl"] == ref.metrics["ppo_kl"]
    assert np.array_equal(fn.evaluate(LP, OLP, MASK, ADV).grad, ref.grad)


def test_soft_gate_function():
    fn = SAPOPolicyLoss(0.5, 4.0)
    r = np.exp(LP - OLP)
    assert np.array_equal(fn.soft_gate_function(r, ADV), sapo_ref.soft_gate(r, ADV, 0.5, 4.0))


def test_unlike_trinity_tau_neg_below_tau_pos_is_allowed():
    fn = SAPOPolicyLoss(tau_pos=4.0, tau_neg=0.5)
    assert np.isfinite(fn(LP, OLP, MASK, ADV)[0])


def test_constructor_validates():
    with pytest.raises(ValueError, match="tau_pos"):
        SAPOPolicyLoss(tau_pos=0)
    with pytest.raises(ValueError, match="loss_agg_mode"):
        SAPOPolicyLoss(loss_agg_mode="sum")
    with pytest.raises(ValueError, match="profile"):
        SAPOPolicyLoss(profile="nope")
    assert "tau_neg=1.05" in repr(SAPOPolicyLoss())
