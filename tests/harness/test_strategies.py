"""The input strategy reaches the regions its docstring promises.

A check can only catch an error where its inputs go.  These tests ask
hypothesis to *find* a batch in each promised region; if the strategy cannot
produce one, ``find`` raises and the test fails.  They pin down coverage, not
values: a kernel that is wrong only on the knee of a small temperature's gate
(for instance one that clamps the log-ratio at 5 before exp) passes every
check that never puts a token there.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, find, settings

from conformance.profiles import SUITE_PROFILES
from conformance.strategies import EXTREME_LOG_RATIOS, advantage_range, batches, random_inputs, tau_pairs

SETTINGS = settings(max_examples=2000, database=None, derandomize=True, phases=(Phase.generate,),
                    suppress_health_check=list(HealthCheck))  # the first hit, unshrunk: long rows shrink slowly


def _log_ratio(b):
    with np.errstate(invalid="ignore"):
        return np.where(b.mask, b.logprob - b.old_logprob, np.nan)


def _on_knee(b, taus, sign):
    """Fraction of the unmasked tokens on the steep part of their gate's
    knee, 4 <= |z| <= 50 with z = tau (r - 1) (tau by the sign of the
    token's advantage), on the given side of r = 1: there the gate is nearly
    saturated while its gradient is still far from 0."""
    d = _log_ratio(b)
    live = b.mask & np.isfinite(d)
    if live.sum() < 8:
        return 0.0
    B, T = b.shape
    adv = np.broadcast_to(np.asarray(b.advantages).reshape(B, -1), (B, T))
    tau = np.where(adv > 0, taus[0], taus[1])[live]
    with np.errstate(over="ignore", invalid="ignore"):
        z = tau * np.expm1(d[live])
    return float(np.mean((np.abs(z) >= 4) & (np.abs(z) <= 50) & (np.sign(z) == sign)))


DEFAULT = SUITE_PROFILES["default"]


def default_inputs(dtype="float32", **kw):
    """What the default profile's random check draws (a candidate taking
    (B,) advantages, weights and global counts)."""
    return random_inputs(max_rows=DEFAULT.max_rows, max_cols=DEFAULT.max_cols, dtype=dtype,
                         **{"weights": True, "global_counts": True, **kw})


#: temperatures across the accepted range [1e-6, 1e6], by region: (low, high)
TAU_REGIONS = [(1e-6, 1e-5), (1e-3, 1e-2), (0.05, 50.0), (1e2, 1e3), (1e5, 1e6)]


@pytest.mark.parametrize("region", TAU_REGIONS, ids=[f"{lo:g}-{hi:g}" for lo, hi in TAU_REGIONS])
def test_each_temperature_reaches_every_region_on_its_own(region):
    for which in (0, 1):
        def hit(taus):
            return region[0] <= taus[which] <= region[1] and not region[0] <= taus[1 - which] <= region[1]

        assert hit(find(tau_pairs(), hit, settings=SETTINGS))


#: one temperature per region, and the paper's
KNEE_TAUS = [1e-6, 3e-4, 0.05, 1.0, 20.0, 5e2, 1e6]


@pytest.mark.parametrize("tau", KNEE_TAUS)
def test_every_temperature_gets_batches_on_its_positive_knee(tau):
    b = find(batches(taus=(tau, tau)), lambda b: _on_knee(b, (tau, tau), 1) > 0.15, settings=SETTINGS)
    assert _on_knee(b, (tau, tau), 1) > 0.15


@pytest.mark.parametrize("tau", [t for t in KNEE_TAUS if t > 8.0])  # below r = 1, |z| <= tau (1 - r)
def test_large_temperatures_get_batches_on_their_negative_knee(tau):
    b = find(batches(taus=(tau, tau)), lambda b: _on_knee(b, (tau, tau), -1) > 0.15, settings=SETTINGS)
    assert _on_knee(b, (tau, tau), -1) > 0.15


def test_the_knee_follows_each_token_s_own_temperature():
    """Rows of either sign on their own temperature's knee: tau_pos 1e-5
    (r - 1 ~ 1e6) and tau_neg 1e5 (r - 1 ~ 1e-4) in one batch."""
    taus = (1e-5, 1e5)

    def hit(b):
        adv = np.asarray(b.advantages)
        return adv.ndim == 1 and (adv > 0).any() and (adv < 0).any() and _on_knee(b, taus, 1) > 0.5

    assert hit(find(batches(taus=taus), hit, settings=SETTINGS))


@pytest.mark.parametrize("dtype", ["float64", "float32", "bfloat16", "float16"])
def test_advantages_reach_the_bottom_and_the_top_of_the_certified_range(dtype):
    lo, hi = advantage_range(dtype)
    # below: accepted, not certified (flush-to-zero platforms flush A or c A)
    assert lo == {"float64": 2.2250738585072014e-294, "float16": 2.0**-14}.get(dtype, 1.1754943508222875e-24)
    assert hi >= (3e4 if dtype == "float16" else 1e24)

    def live_adv(x):
        b = x[1]
        a = np.abs(np.broadcast_to(np.asarray(b.advantages).reshape(b.shape[0], -1), b.shape))[b.mask]
        return a[np.isfinite(a) & (a > 0)]

    for region in (lambda a: a.size and a.min() < lo * 100, lambda a: a.size and a.max() > hi / 100):
        x = find(default_inputs(dtype), lambda x: bool(region(live_adv(x))), settings=SETTINGS)
        assert region(live_adv(x)) and live_adv(x).max() <= hi


def test_long_rows_with_tokens_past_16384():
    def hit(x):
        b = x[1]
        return b.shape[1] > 16384 and bool(b.mask[:, 16384:].any())

    b = find(default_inputs(), hit, settings=SETTINGS)[1]
    assert hit((None, b)) and b.shape[1] <= 32768


def test_square_batches_with_per_sequence_advantages():
    def hit(x):
        b = x[1]
        return b.shape[0] == b.shape[1] >= 4 and np.asarray(b.advantages).ndim == 1

    assert hit(find(default_inputs(), hit, settings=SETTINGS))


def test_global_counts_reach_1000x_the_local_ones():
    def hit(x):
        b, counts = x[1], x[3]
        return bool(counts) and counts["global_seq_count"] >= 500 * b.shape[0] and \
            counts["global_token_count"] >= 500 * max(int(b.mask.sum()), 1)

    x = find(default_inputs(), hit, settings=SETTINGS)
    assert hit(x) and x[3]["global_token_count"] <= 1000 * max(int(x[1].mask.sum()), 1) + 1


@pytest.mark.parametrize("value", [0.0, 1e-30, 1e6])
def test_weights_reach_their_limits_at_unmasked_tokens(value):
    def hit(x):
        b = x[1]
        return bool(np.any(b.weights[b.mask] == value))

    assert hit(find(default_inputs(), hit, settings=SETTINGS))


def test_a_default_run_exercises_the_whole_accepted_range():
    """Not only can the strategy get there: one default run of the random
    check (float32) does, in its coverage section."""
    from conformance import coverage, load_candidate
    from conformance.suite import plan, run_units

    cand = load_candidate("numpy-fp32")
    records = run_units(cand, plan(cand, checks=["random"], dtypes=["float32"]), profile="default", seed=0)
    got = coverage.merge(r.coverage for r in records)
    assert got["tau_pos"][0] < 1e-3 and got["tau_neg"][0] < 1e-3
    assert got["tau_pos"][1] > 1e5 and got["tau_neg"][1] > 1e5
    assert got["advantage"][0] < 1e-20 and got["advantage"][1] > 1e6
    assert got["cols"][1] > 16384 and got["empty_rows"][1] >= 1
    assert got["log_ratio"][1] > 88.8


@pytest.mark.parametrize("value", EXTREME_LOG_RATIOS)
def test_every_extreme_log_ratio_is_injected_unmasked(value):
    b = find(batches(), lambda b: bool(np.any(_log_ratio(b) == value)), settings=SETTINGS)
    assert np.any(_log_ratio(b) == value)


@pytest.mark.parametrize("junk", [np.nan, np.inf, -np.inf])
def test_padding_carries_non_finite_junk(junk):
    def has(b):
        pad = ~b.mask
        vals = b.logprob[pad]
        return bool(pad.any() and (np.isnan(vals).all() if np.isnan(junk) else np.all(vals == junk)))

    assert has(find(batches(), has, settings=SETTINGS))


def test_empty_rows_and_zero_advantages_occur():
    b = find(batches(), lambda b: bool((b.mask.sum(1) == 0).any() and (b.advantages == 0).any()),
             settings=SETTINGS)
    assert (b.mask.sum(1) == 0).any() and (b.advantages == 0).any()



_FINGERPRINT = """
import importlib, json, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from conformance import load_candidate
from conformance.suite import plan, run_units
cand = load_candidate("numpy-fp32")
units = plan(cand, checks=["random"], dtypes=["float32"])
print(json.dumps([r.coverage for r in run_units(cand, units, profile="quick", seed=0)]))
"""


def test_a_seed_names_the_same_batches_whatever_the_process_imported(tmp_path):
    """Hypothesis draws literal constants from the local modules a process
    has imported; the random check must not: the command line, the pytest
    plugin and a user's own modules see the same batches for one seed.  The
    ranges a run exercised (its coverage) fingerprint its batches."""
    import subprocess
    import sys

    from tests.conftest import clean_environ

    (tmp_path / "user_kernel_constants.py").write_text("".join(
        f"C{i} = {v!r}\n" for i, v in enumerate([0.0137, 7.25, -3.5, 11.0, 0.125, 4.0, 12, 48, 3, 2, 1, 5, 6])))
    root = Path(__file__).resolve().parents[2]
    env = clean_environ(PYTHONPATH=f"{root}:{tmp_path}")

    def fingerprint(*imports):
        proc = subprocess.run([sys.executable, "-c", _FINGERPRINT, *imports], capture_output=True, text=True,
                              env=env, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout

    assert fingerprint() == fingerprint("user_kernel_constants", "conformance.bench", "conformance.render")
