"""The defect catalogue (conformance.defects) and its transformed oracles
(conformance._variants): each mutant's defect reproduces the mutant's outputs
where the canonical oracle does not, and no prediction explains a correct
built-in."""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass

import numpy as np
import pytest

import sapo_ref
from conformance import load_candidate
from conformance import tolerance as tol
from conformance._variants import VARIANTS, Prediction, Situation, predict
from conformance.defects import DEFECTS, DEFECTS_BY_ID
from conformance.tolerance import CATEGORIES
from conformance.evaluate import conditioning, evaluate
from conformance.types import Batch, CallOptions

from ..mutants import MUTANTS
from .conftest import available_or_skip

MUTANTS_BY_NAME = {m.name: m for m in MUTANTS}
SEPARATED = dict(tau_pos=0.5, tau_neg=4.0)


# -- batches -------------------------------------------------------------------


def _batch(seed=0, B=5, T=8, spread=3.0, adv="B", zero_adv=False, weights=False, pad=True) -> Batch:
    """Log-ratios uniform in [-spread, spread] (past the gate's knee at 3),
    one exactly 0; rows of different lengths (one full) when ``pad``."""
    rng = np.random.default_rng(seed)
    olp = np.log(rng.uniform(0.05, 0.95, (B, T)))
    d = rng.uniform(-spread, spread, (B, T))
    d[0, 0] = 0.0
    lengths = rng.integers(2, T + 1, B) if pad else np.full(B, T)
    lengths[0] = T
    mask = np.arange(T)[None, :] < lengths[:, None]
    a = rng.normal(size=(B, T) if adv == "BT" else B)
    if zero_adv:
        a[1] = 0.0
    w = None
    if weights:
        w = rng.uniform(0.5, 1.5, (B, T))
        w[0, 1] = 0.0
        w[1, 0] = -0.5
        w[~mask] = np.nan  # junk in the padding
    return Batch(olp + d, olp, a, mask, w)


def _with(batch: Batch, **arrays) -> Batch:
    fields_ = dict(logprob=batch.logprob, old_logprob=batch.old_logprob, advantages=batch.advantages,
                   mask=batch.mask, weights=batch.weights)
    fields_.update(arrays)
    return Batch(**fields_)


def _nan_padding(seed):
    b = _batch(seed)
    lp, olp = b.logprob.copy(), b.old_logprob.copy()
    pad = np.argwhere(~b.mask)
    lp[tuple(pad[0])] = np.nan
    olp[tuple(pad[-1])] = -np.inf
    return _with(b, logprob=lp, old_logprob=olp)


def _empty_row(seed):
    b = _batch(seed)
    m = b.mask.copy()
    m[2] = False
    return _with(b, mask=m)


def _saturating(seed):
    """Positive advantages and log-ratios in [1, 3] with tau_pos 1: z up to 19."""
    b = _batch(seed, spread=1.0)
    d = np.abs(b.logprob - b.old_logprob) * 2 + 1
    return _with(b, logprob=b.old_logprob + d, advantages=np.abs(b.advantages) + 0.1)


def _overflow(seed):
    b = _batch(seed)
    lp = b.logprob.copy()
    lp[0, 2] = b.old_logprob[0, 2] + 100.0
    lp[1, 1] = b.old_logprob[1, 1] + 95.0
    return _with(b, logprob=lp)


@dataclass(frozen=True)
class Case:
    batch: Batch
    dtype: str = "float32"
    options: CallOptions = CallOptions()
    layout: str | None = None


SEQ = CallOptions(loss_agg_mode="seq-mean-token-mean")
SPREAD = CallOptions(**SEPARATED)

#: mutant -> calls where its defect shows
CASES: dict[str, list[Case]] = {
    "no-4-over-tau": [Case(_batch(0)),
                      Case(_batch(1, adv="BT"), options=CallOptions(loss_agg_mode="seq-mean-token-mean", **SEPARATED))],
    "detached-gate": [Case(_batch(2)), Case(_batch(3), options=SEQ)],
    "swapped-tau": [Case(_batch(4), options=SPREAD), Case(_batch(5, adv="BT"))],
    "tau-pos-for-zero": [Case(_batch(6, zero_adv=True)), Case(_batch(7, zero_adv=True), options=SPREAD)],
    "inverted-ratio": [Case(_batch(8)), Case(_batch(9), options=SEQ)],
    "grad-missing-r": [Case(_batch(10)), Case(_batch(11, adv="BT"), options=SEQ)],
    "naive-one-minus-sigmoid": [Case(_saturating(12)), Case(_saturating(13), options=SEQ)],
    "nan-through-mask": [Case(_nan_padding(14)), Case(_nan_padding(15), options=SEQ)],
    "token-mean-for-seq": [Case(_batch(16), options=SEQ),
                           Case(_batch(17), options=CallOptions(loss_agg_mode="seq-mean-token-sum-norm"))],
    "counts-empty-rows": [Case(_empty_row(18), options=SEQ),
                          Case(_empty_row(19), options=CallOptions(loss_agg_mode="seq-mean-token-sum"))],
    "fp16-inside": [Case(_batch(20, spread=0.5), dtype="float16"),
                    Case(_batch(21, spread=0.5), dtype="float16", options=SEQ)],
    "exp-overflow-nan": [Case(_overflow(22)), Case(_overflow(23), options=SEQ)],
    "mutates-inputs": [Case(_nan_padding(24))],
    "broadcast-trap": [Case(_batch(25, B=6, T=6), layout="B"),
                       Case(_batch(26, B=6, T=6, zero_adv=True), layout="B", options=SEQ)],
    "ppo-kl-sign": [Case(_batch(27))],
    "gradient-scaled": [Case(_batch(28)), Case(_batch(29), options=SEQ)],
    "nondeterministic": [Case(_batch(30))],
    "local-counts": [Case(_batch(31), options=CallOptions(global_token_count=50)),
                     Case(_batch(32), options=CallOptions(loss_agg_mode="seq-mean-token-mean", global_seq_count=9))],
    "weights-ignored": [Case(_batch(33, weights=True)), Case(_batch(34, weights=True), options=SEQ)],
    "weights-in-denominator": [Case(_batch(35, weights=True))],
    "weights-choose-tau": [Case(_batch(36, weights=True), options=SPREAD)],
    "seq-arithmetic-mean": [Case(_batch(37, spread=1.0)), Case(_batch(38, spread=1.0, adv="BT"), options=SEQ)],
    "seq-unspread-grad": [Case(_batch(39, spread=1.0, adv="BT")), Case(_batch(40, spread=1.0, adv="BT"), options=SEQ)],
}


# -- running and matching --------------------------------------------------------


def _run(candidate, case: Case):
    ev = evaluate(candidate, case.batch, dtype=case.dtype, options=case.options, layout=case.layout)
    out = ev.output
    sit = Situation(out.inputs, case.options, sapo_ref.get_profile(candidate.info.profile), out.dtype, case.layout,
                    ev.reference, out.loss, out.grad, out.metrics)
    return ev, sit


def _canonical(sit: Situation, like: Prediction) -> Prediction:
    """The canonical oracle's outputs, for the quantities ``like`` predicts."""
    ref = sit.reference
    return Prediction(None if like.loss is None else ref.loss, None if like.grad is None else np.array(ref.grad),
                      {k: float(ref.metrics[k]) for k in like.metrics})


def _mismatches(p: Prediction, sit: Situation) -> list[str]:
    """Where the prediction misses the candidate's outputs: loss within 1e-5
    of sum|c l| (+ |loss|), gradient within 1e-5 max|grad| + 1e-5 |c A w| max(1, r)
    per token, identical NaN patterns, metrics within 1e-5 (1 + |value|)."""
    ref = sit.reference
    bad = []
    with np.errstate(all="ignore"):
        if p.loss is not None:
            got, want = sit.got_loss, float(p.loss)
            scale = float(np.nansum(np.abs(ref.agg_weight * ref.token_loss))) + (abs(want) if math.isfinite(want)
                                                                                  else 0.0)
            if math.isnan(got) or math.isnan(want):
                ok = math.isnan(got) and math.isnan(want)
            else:
                ok = got == want or abs(got - want) <= 1e-5 * scale
            if not ok:
                bad.append(f"loss {got!r} vs {want!r}")
        if p.grad is not None:
            got, want = sit.got_grad, np.asarray(p.grad)
            if not np.array_equal(np.isnan(got), np.isnan(want)):
                bad.append(f"grad NaN at {np.argwhere(np.isnan(got)).tolist()}, "
                           f"predicted at {np.argwhere(np.isnan(want)).tolist()}")
            else:
                B, T = got.shape
                a = np.broadcast_to(np.asarray(sit.inputs.advantages).reshape(B, -1), (B, T))
                w = 1.0 if sit.inputs.weights is None else np.where(sit.inputs.mask, sit.inputs.weights, 0.0)
                caw = np.abs(np.nan_to_num(ref.agg_weight * a * w))
                r = np.nan_to_num(ref.ratio, posinf=0.0)
                fin = np.isfinite(got) & np.isfinite(want)
                top = max(float(np.max(np.abs(got[fin]), initial=0.0)), float(np.max(np.abs(want[fin]), initial=0.0)))
                allowed = 1e-5 * top + 1e-5 * caw * np.maximum(1.0, r)
                over = fin & (np.abs(got - want) > allowed)
                over |= ~fin & ~((got == want) | (np.isnan(got) & np.isnan(want)))
                if over.any():
                    i = tuple(np.argwhere(over)[0])
                    bad.append(f"grad at {i}: {got[i]!r} vs {want[i]!r}")
        for k, want in p.metrics.items():
            got = sit.got_metrics.get(k)
            if got is None or not (got == want or abs(got - want) <= 1e-5 * (1 + abs(want))):
                bad.append(f"{k} {got!r} vs {want!r}")
    return bad


def _relative_grad_error(x: np.ndarray, sit: Situation) -> np.ndarray:
    """|x - got| / |got| per unmasked token (0 where both are 0)."""
    got = sit.got_grad
    m = sit.inputs.mask.astype(bool)
    with np.errstate(all="ignore"):
        rel = np.abs(x - got) / np.maximum(np.abs(got), np.abs(x))
    return np.where(m & (np.abs(x) + np.abs(got) > 0), rel, 0.0)


# -- the catalogue itself ----------------------------------------------------------


def test_catalogue_entries_are_complete():
    assert len({d.id for d in DEFECTS}) == len(DEFECTS) == len(DEFECTS_BY_ID)
    for d in DEFECTS:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", d.id), d.id
        assert d.title.strip() and "\n" not in d.title, d.id
        assert d.fix.strip() and d.fix.rstrip().endswith("."), d.id
        assert d.category in CATEGORIES, d.id
        if d.variant.startswith("check:"):
            assert d.category == "contract" and d.variant[len("check:"):], d.id
        else:
            assert d.variant in VARIANTS, d.id
    assert DEFECTS[-1].id == "gradient-scaled"  # the most generic shape last


def test_every_mutant_is_a_catalogue_entry_and_takes_its_title():
    for m in MUTANTS:
        assert m.name in DEFECTS_BY_ID, m.name
        assert m.defect == DEFECTS_BY_ID[m.name].title
    assert set(CASES) == set(MUTANTS_BY_NAME)


def test_aggregation_family_has_one_entry_per_mode():
    family = [d for d in DEFECTS if d.variant == "aggregation_mode"]
    assert sorted(d.params["mode"] for d in family) == sorted(sapo_ref.LOSS_AGG_MODES)
    assert DEFECTS_BY_ID["token-mean-for-seq"].params["mode"] == "token-mean"


def test_contract_defects_name_the_checks_that_identify_them():
    assert fnmatch.fnmatchcase("random:inputs-unmodified", DEFECTS_BY_ID["mutates-inputs"].check_glob)
    assert fnmatch.fnmatchcase("edge.masked-nonfinite:inputs-unmodified", DEFECTS_BY_ID["mutates-inputs"].check_glob)
    assert fnmatch.fnmatchcase("invariant.determinism:bitwise", DEFECTS_BY_ID["nondeterministic"].check_glob)
    # the oracle comparisons made inside the determinism check are not about determinism
    assert not fnmatch.fnmatchcase("invariant.determinism:loss", DEFECTS_BY_ID["nondeterministic"].check_glob)
    assert not fnmatch.fnmatchcase("random:loss", DEFECTS_BY_ID["nondeterministic"].check_glob)


# -- the mutants ---------------------------------------------------------------------------


def _cases():
    for name, cases in CASES.items():
        for i, case in enumerate(cases):
            yield pytest.param(name, case, id=f"{name}-{i}")


@pytest.mark.parametrize("name,case", list(_cases()))
def test_defect_reproduces_its_mutant(name, case):
    mutant = MUTANTS_BY_NAME[name]
    defect = DEFECTS_BY_ID[name]
    ev, sit = _run(mutant.candidate, case)
    p = predict(defect, sit)
    if defect.variant.startswith("check:"):  # the failing check names it; no oracle to transform
        assert p is None
        if name == "mutates-inputs":
            assert ev.output.modified_inputs and not ev.passed
        return
    assert p is not None, f"{name}: not applicable to its own case"
    if p.tolerance_dtype is not None:  # fp16-inside: the strict bound in the input precision
        out, ref = ev.output, ev.reference
        assert not ev.passed  # outside the float32 bound ...
        m = out.inputs.mask.astype(bool)
        grad = tol.compare_elementwise("grad", out.grad, p.grad, out.dtype, where=m,
                                       cond=conditioning(ref, out.inputs).grad, compute_dtype=p.tolerance_dtype)
        loss = tol.compare_scalar("loss", out.loss, p.loss, out_dtype=out.dtype, acc_dtype=p.tolerance_dtype,
                                  terms_abs_sum=float(np.nansum(np.abs(ref.agg_weight * ref.token_loss))),
                                  n_terms=int(m.sum()))
        assert grad.passed and loss.passed, (grad.describe(), loss.describe())  # ... inside the float16 one
        return
    if defect.category == "precision":
        # much closer to the candidate than the canonical oracle, where the defect shows
        ours = _relative_grad_error(p.grad, sit)
        theirs = _relative_grad_error(np.array(sit.reference.grad), sit)
        assert theirs.max() > 1e-2, theirs.max()
        assert ours.max() < 1e-3 * theirs.max(), (ours.max(), theirs.max())
        return
    assert not _mismatches(p, sit), (p.note, _mismatches(p, sit))
    assert _mismatches(_canonical(sit, p), sit), f"{name}: the canonical oracle matches too"
    if name == "gradient-scaled":
        assert p.note == "k = 1.0100"


def test_precision_variant_reproduces_float32_rounding_exactly_enough():
    """naive-one-minus-sigmoid also meets the ordinary practical tolerance."""
    case = CASES["naive-one-minus-sigmoid"][0]
    _, sit = _run(MUTANTS_BY_NAME["naive-one-minus-sigmoid"].candidate, case)
    p = predict(DEFECTS_BY_ID["naive-one-minus-sigmoid"], sit)
    assert not _mismatches(p, sit)


def test_clamp_is_estimated_from_the_gradient_and_loss():
    """A candidate that clamps the log-ratio to 2.5 (no mutant): c is
    estimated between the largest passing and the smallest zeroed |log-ratio|."""
    b = _batch(41, spread=4.0)
    cand = available_or_skip(load_candidate("torch-eager"))
    ev, sit = _run(cand, Case(b))
    clamped = sapo_ref.sapo_loss(sit.inputs.logprob, sit.inputs.old_logprob, sit.inputs.advantages,
                                 sit.inputs.mask, log_ratio_clamp=2.5)
    fake = Situation(sit.inputs, sit.options, sit.profile, sit.dtype, None, sit.reference, clamped.loss,
                     np.array(clamped.grad), dict(clamped.metrics))
    p = predict(DEFECTS_BY_ID["log-ratio-clamp"], fake)
    assert p is not None and "c = 2.5" in p.note, p and p.note
    assert not _mismatches(p, fake)
    assert predict(DEFECTS_BY_ID["log-ratio-clamp"], sit) is None  # a correct candidate shows no clamp


def test_all_masked_nan_predicts_only_the_loss():
    b = _batch(42)
    b = _with(b, mask=np.zeros_like(b.mask))
    cand = available_or_skip(load_candidate("torch-eager"))
    _, sit = _run(cand, Case(b))
    p = predict(DEFECTS_BY_ID["all-masked-nan"], sit)
    assert p is not None and math.isnan(p.loss) and p.grad is None
    fake = Situation(sit.inputs, sit.options, sit.profile, sit.dtype, None, sit.reference, math.nan,
                     sit.got_grad, sit.got_metrics)
    assert not _mismatches(p, fake) and _mismatches(p, sit)


def test_oracle_only_variants_follow_their_definitions():
    """gate-times-r and row-mean-padded-length have no mutant: check them
    against their definitions on a hand-made batch."""
    b = _batch(43)
    cand = available_or_skip(load_candidate("torch-eager"))
    _, sit = _run(cand, Case(b, dtype="float64", options=SEQ))
    ref = sit.reference
    m = b.mask
    A = np.broadcast_to(b.advantages[:, None], m.shape)
    n = m.sum(axis=1)
    S = int((n > 0).sum())
    T = m.shape[1]
    p = predict(DEFECTS_BY_ID["row-mean-padded-length"], sit)
    assert math.isclose(p.loss, float(np.sum(np.where(m, ref.token_loss, 0))) / (S * T), rel_tol=1e-12)
    assert np.allclose(p.grad, ref.grad * n[:, None] / T, rtol=1e-12, atol=0)
    p = predict(DEFECTS_BY_ID["gate-times-r"], sit)
    c, r, f = ref.agg_weight, ref.ratio, ref.gate
    assert math.isclose(p.loss, float(np.sum(np.where(m, -c * A * f * r, 0))), rel_tol=1e-12)
    h = 1e-6  # central differences of the token loss -A f(r) r in the log-ratio
    d = b.logprob - b.old_logprob
    fd = np.zeros(m.shape)
    for sign in (1, -1):
        rr = np.exp(d + sign * h)
        fd += sign * -A * sapo_ref.soft_gate(rr, b.advantages) * rr / (2 * h)
    assert np.allclose(p.grad, np.where(m, c * fd, 0.0), rtol=1e-6, atol=1e-9)


def test_generic_variants_at_the_sequence_level():
    """With one advantage per row, the sequence level's row-spread gradient
    of the gate-only defects is the canonical one times a per-row factor."""
    cand = available_or_skip(load_candidate("torch-sequence"))
    _, sit = _run(cand, Case(_batch(44, spread=1.0), dtype="float64", options=SEQ))
    ref, m = sit.reference, sit.inputs.mask
    tau = np.where(sit.inputs.advantages > 0, 1.0, 1.05)[:, None]
    p = predict(DEFECTS_BY_ID["no-4-over-tau"], sit)
    assert np.allclose(p.grad, ref.grad * tau / 4, rtol=1e-12, atol=0)
    assert math.isclose(p.loss, float(np.sum(np.where(m, ref.agg_weight * ref.token_loss * tau / 4, 0))),
                        rel_tol=1e-12)
    p = predict(DEFECTS_BY_ID["grad-missing-r"], sit)
    r = np.where(m, ref.ratio, 1.0)
    assert np.allclose(p.grad, ref.grad / r, rtol=1e-12, atol=0) and p.loss == ref.loss
    assert predict(DEFECTS_BY_ID["seq-unspread-grad"], sit) is None  # per-row advantages: shares are equal
    assert predict(DEFECTS_BY_ID["seq-arithmetic-mean"], sit) is not None


# -- a correct built-in: no prediction explains it -------------------------------------------------


@pytest.mark.parametrize("name,case", list(_cases()))
def test_no_prediction_explains_a_correct_builtin(name, case):
    seq = MUTANTS_BY_NAME[name].candidate.info.profile == "canonical-sequence"
    cand = available_or_skip(load_candidate("torch-sequence" if seq else "torch-eager"))
    ev, sit = _run(cand, case)
    assert ev.passed, [c.describe() for c in ev.failures()]
    for d in DEFECTS:
        p = predict(d, sit)
        if p is None or p.tolerance_dtype is not None:  # fp16-inside only explains failures
            continue
        if d.category == "precision":
            ours = _relative_grad_error(p.grad, sit).max()
            theirs = _relative_grad_error(np.array(sit.reference.grad), sit).max()
            assert not ours < 1e-3 * theirs, (d.id, ours, theirs)
        else:
            assert _mismatches(p, sit), f"{d.id} explains the correct {cand.name} ({p.note})"
