"""Profiles: each models one implementation's choices (SPEC.md, "Profiles")."""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import pytest

import sapo_ref
from sapo_ref import PROFILES, Profile, get_profile

rng = np.random.default_rng(11)
LP = rng.normal(0, 0.3, (3, 5))
OLP = rng.normal(0, 0.3, (3, 5))
ADV = np.array([1.0, -0.5, 2.0])
MASK = np.array([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)


def run(**kw):
    return sapo_ref.sapo_loss(LP, OLP, ADV, MASK, **kw)


@pytest.mark.parametrize("name", ["paper", "verl", "trl"])
def test_fixed_mode_profiles_ignore_the_requested_mode(name):
    results = [run(profile=name, loss_agg_mode=m) for m in sapo_ref.LOSS_AGG_MODES]
    for res in results:
        assert res.semantics.loss_agg_mode == "seq-mean-token-mean"
        assert res.loss == results[0].loss and np.array_equal(res.grad, results[0].grad)


def test_canonical_and_trinity_honour_the_requested_mode():
    for name in ("canonical", "trinity"):
        for m in sapo_ref.LOSS_AGG_MODES:
            assert run(profile=name, loss_agg_mode=m).semantics.loss_agg_mode == m


def test_paper_profile_is_canonical_seq_mean_token_mean():
    a = run(profile="paper")
    b = run(loss_agg_mode="seq-mean-token-mean")
    assert a.loss == b.loss and np.array_equal(a.grad, b.grad)


def test_verl_clamps_log_ratios_at_twenty():
    lp = np.array([[25.0, -30.0, 1.5]])
    res = sapo_ref.sapo_loss(lp, np.zeros_like(lp), [1.0], np.ones_like(lp), profile="verl")
    assert res.ratio[0, 0] == math.exp(20.0) and res.ratio[0, 1] == math.exp(-20.0)
    assert res.grad[0, 0] == 0 and res.grad[0, 1] == 0 and res.grad[0, 2] != 0
    unclamped = sapo_ref.sapo_loss(lp, np.zeros_like(lp), [1.0], np.ones_like(lp), profile="verl",
                                   log_ratio_clamp=math.inf)
    assert unclamped.semantics.log_ratio_clamp is None and unclamped.ratio[0, 0] == math.exp(25.0)


@pytest.mark.parametrize("dtype, tau_neg", [("float64", 1.05), ("float32", float(np.float32(1.05))),
                                             ("float16", float(np.float16(1.05)))])
def test_verl_rounds_tau_to_the_advantages_dtype(dtype, tau_neg):
    res = sapo_ref.sapo_loss(LP, OLP, ADV.astype(dtype), MASK, profile="verl")
    assert res.semantics.tau_dtype == dtype and res.semantics.tau_neg == tau_neg


def test_bfloat16_rounding_of_tau():
    res = run(profile="verl", tau_dtype="bfloat16")
    assert res.semantics.tau_neg == 1.046875 and res.semantics.tau_pos == 1.0
    explicit = run(profile="verl", tau_neg=1.046875, tau_dtype="float64")
    assert res.loss == explicit.loss


def test_verl_denominators():
    res = run(profile="verl")
    assert res.denominators.sequences == 2  # the empty row is excluded
    n = MASK.sum(axis=1)
    assert res.agg_weight[0, 0] == float(1 / (2 * (int(n[0]) + Fraction(1e-8))))


def test_trl_counts_empty_rows():
    assert run(profile="trl").denominators.sequences == 3


def test_trinity_adds_eps_to_counts():
    res = run(profile="trinity")
    assert res.agg_weight[0, 0] == float(1 / (8 + Fraction(1e-8)))
    assert res.metrics["avg_ratio"] == pytest.approx(float(np.sum(res.ratio)) / (8 + 1e-8), rel=1e-15)


def test_explicit_options_override_the_profile():
    res = run(profile="verl", empty_rows="count", row_count_eps=0.0, tau_dtype="float64")
    assert res.semantics.empty_rows == "count" and res.semantics.row_count_eps == 0.0
    assert res.semantics.log_ratio_clamp == 20.0  # not overridden


def test_registry_is_read_only_and_profiles_frozen():
    with pytest.raises(TypeError):
        PROFILES["mine"] = PROFILES["canonical"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PROFILES["verl"].log_ratio_clamp = 10.0  # type: ignore[misc]


def test_custom_profile_objects():
    mine = Profile(name="mine", summary="s", source="me", empty_rows="count", log_ratio_clamp=5.0)
    assert get_profile(mine) is mine
    assert run(profile=mine).semantics.profile == "mine"
    with pytest.raises(ValueError, match="unknown empty_rows"):
        Profile(name="bad", summary="", source="", empty_rows="drop")
    with pytest.raises(ValueError, match="unknown loss_agg_mode"):
        Profile(name="bad", summary="", source="", loss_agg_mode="mean")
    with pytest.raises(ValueError, match="unknown tau_dtype"):
        Profile(name="bad", summary="", source="", tau_dtype="int8")


def test_profile_dicts_round_trip():
    for p in PROFILES.values():
        assert Profile(**p.as_dict()) == p
