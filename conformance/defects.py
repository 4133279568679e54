"""The catalogue of known SAPO defect signatures, as data.

Each :class:`Defect` names one way real kernels get SAPO wrong, where it was
seen, how to fix it, and how to test for it: ``variant`` names a transformed
oracle in :mod:`conformance._variants` (what a kernel with exactly this defect
computes on a batch), or ``"check:<glob>"`` for contract defects that the
failing check itself identifies (matched against record check names such as
``"random:inputs-unmodified"``).  The harness evaluates every signature on a
failing counterexample and names those whose prediction matches the
candidate's outputs; ``DEFECTS`` is in order of preference (the most specific
first, generic shapes such as a constant gradient factor last).

For every mutant in ``tests/mutants.py`` the mutant's name is the id of its
defect here; the mutants take their descriptions from this catalogue.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from sapo_ref import LOSS_AGG_MODES


@dataclass(frozen=True)
class Defect:
    id: str  # kebab-case; a mutant's name where one exists
    title: str  # one line: what the kernel does wrong
    category: str  # one of tolerance.CATEGORIES: where its findings usually land
    seen_in: str  # frameworks and versions where it was seen; "" if none known
    fix: str  # one sentence for the kernel's author
    variant: str  # a function in conformance._variants.VARIANTS, or "check:<glob>"
    params: Mapping = field(default_factory=lambda: MappingProxyType({}))  # fixed knobs passed to the variant

    @property
    def check_glob(self) -> str | None:
        """The record-check glob of a contract defect, else None."""
        return self.variant[len("check:"):] if self.variant.startswith("check:") else None


def _agg(mode: str, id_: str, seen_in: str = "") -> Defect:
    return Defect(
        id_, f"aggregates with {mode} whatever mode is requested", "semantics", seen_in,
        f"Honour loss_agg_mode (SPEC.md section 3) instead of always aggregating with {mode}.",
        "aggregation_mode", MappingProxyType({"mode": mode}))


#: The wrong-aggregation family: one entry per mode a kernel may hard-wire.
#: The token-mean entry keeps the id of its mutant, ``token-mean-for-seq``.
_AGGREGATION = tuple(
    _agg(mode, "token-mean-for-seq" if mode == "token-mean" else f"agg-{mode}",
         "verl >= 0.7 (compute_policy_loss_sapo ignores loss_agg_mode)" if mode == "seq-mean-token-mean" else "")
    for mode in LOSS_AGG_MODES
)

DEFECTS: tuple[Defect, ...] = (
    Defect("detached-gate",
           "the gate is detached: the loss is -A*detach(f(r))*logprob and the gradient -A*f(r), not -A*f'(r)*r",
           "semantics", "Trinity-RFT <= 0.6.0 (SAPOPolicyLossFn)",
           "Differentiate the gate itself: return -A*f(r) with f(r) = 4/tau*sigmoid(tau*(r-1)) and let autograd "
           "through it, instead of multiplying a detached gate by logprob.",
           "detached_gate"),
    Defect("no-4-over-tau", "the gate lacks the 4/tau factor: f(r) = sigmoid(tau*(r-1)), 0.25x at r = 1",
           "semantics", "ms-swift 3.11.0-3.12.2 (fixed in 3.12.3)",
           "Multiply the sigmoid by 4/tau so that f'(1) = 1.",
           "no_four_over_tau"),
    Defect("grad-missing-r", "the gradient lacks the factor r: -c*A*f'(r) instead of -c*A*f'(r)*r", "semantics",
           "", "Differentiate with respect to logprob, not the ratio: d r / d logprob = r.",
           "grad_missing_r"),
    Defect("gate-times-r", "the gate is multiplied by the ratio: token loss -A*f(r)*r", "semantics", "",
           "Use -A*f(r) as the token loss; the ratio enters only through the gate.",
           "gate_times_r"),
    Defect("inverted-ratio", "the ratio is inverted: r = pi_old / pi (log-ratio old_logprob - logprob)",
           "semantics", "", "Form the log-ratio as logprob - old_logprob.",
           "inverted_ratio"),
    Defect("swapped-tau", "the temperatures are swapped: tau_neg for A > 0 and tau_pos for A <= 0", "semantics",
           "", "Use tau_pos where A > 0 and tau_neg elsewhere.",
           "swapped_tau"),
    Defect("tau-pos-for-zero", "A = 0 takes tau_pos (A >= 0 rule): visible in the gate metrics only", "semantics",
           "EasyR1 (surveyed late 2026)", "Select tau_pos with A > 0, strictly, so that A = 0 takes tau_neg.",
           "tau_pos_for_zero"),
    Defect("weights-choose-tau", "the temperature follows the sign of A*w instead of A", "semantics", "",
           "Choose tau from the advantage alone and multiply by the importance weight afterwards.",
           "weights_choose_tau"),
    Defect("weights-ignored", "rollout_is_weights are accepted but not applied", "semantics", "",
           "Multiply each token's loss by its rollout importance weight w.",
           "weights_ignored"),
    Defect("weights-in-denominator", "token-mean divides by the sum of the weights instead of the token count",
           "semantics", "",
           "Divide the weighted token sum by the token count, not by the sum of the weights.",
           "weights_in_denominator"),
    Defect("broadcast-trap", "(B,) advantages broadcast along the token axis: A[b, t] = adv[t] (silent when B == T)",
           "semantics", "", "Reshape (B,) advantages to (B, 1) before broadcasting them against (B, T).",
           "broadcast_trap"),
    Defect("seq-arithmetic-mean",
           "the sequence-level ratio is the mean of the row's ratios instead of exp(mean log-ratio)",
           "semantics", "", "Take the geometric mean: exp of the masked mean of the row's log-ratios.",
           "seq_arithmetic_mean"),
    Defect("seq-unspread-grad",
           "sequence level: each token gets its own share -c*A*w*f'(r_b)*r_b instead of the row's total / n",
           "semantics", "",
           "Let the gradient flow through the row mean of the log-ratios, which spreads the row's total evenly.",
           "seq_unspread_grad"),
    Defect("log-ratio-clamp",
           "the log-ratio is clamped to [-c, c] (zero gradient beyond), a clamp the claimed profile does not have",
           "semantics", "verl >= 0.7 and SkyRL 0.4.0 clamp to +-20 (their profiles say so)",
           "Remove the clamp, or claim a profile whose log_ratio_clamp is c.",
           "log_ratio_clamp"),
    Defect("counts-empty-rows", "rows with no unmasked token are counted in the number of sequences S",
           "semantics",
           "TRL 1.16.0, Liger-Kernel 0.8.5, SkyRL 0.4.0 (count clamped to 1), Trinity-RFT 0.6.0 (count + 1e-8)",
           "Count only rows with at least one unmasked token, or claim a profile with empty_rows='count'.",
           "counts_empty_rows"),
    Defect("row-mean-padded-length",
           "seq-mean-token-mean divides each row by the padded length T instead of its token count",
           "semantics", "", "Divide each row's sum by its number of unmasked tokens.",
           "row_mean_padded_length"),
    Defect("local-counts", "global_token_count / global_seq_count are accepted but the local counts are used",
           "semantics", "",
           "Normalise by the global counts when they are given, so that shards sum to the full batch.",
           "local_counts"),
    *_AGGREGATION,
    Defect("ppo-kl-sign", "ppo_kl has the wrong sign (mean of logprob - old_logprob)", "semantics", "",
           "Report ppo_kl as the masked mean of old_logprob - logprob.",
           "ppo_kl_sign"),
    Defect("nan-through-mask", "masking by multiplication (x * mask): NaN or inf in masked padding makes the loss NaN",
           "non-finite", "verl 0.9.1 (upstream PR #6349 open)",
           "Mask with where/select (torch.where(mask, x, 0)) instead of multiplying by the mask.",
           "nan_through_mask"),
    Defect("nan-grad-zeroed",
           "a NaN or infinite log-ratio at an unmasked token gets a 0 gradient while the loss is NaN: the NaN is "
           "hidden from the optimizer", "non-finite",
           "verl 0.9.1 (torch.clamp's backward is 0 for a NaN log-ratio)",
           "Clamp with torch.where(d > c, c, d) (its backward keeps the NaN) or reject non-finite log-probs "
           "explicitly.", "nan_grad_zeroed"),
    Defect("all-masked-nan", "a batch with no unmasked token gives 0/0 = NaN instead of a 0 loss", "non-finite",
           "verl 0.9.1 (0/0 in its sequence count)",
           "Give a zero weight when a denominator is 0 (clamp the count to 1 or select 0).",
           "all_masked_nan"),
    Defect("exp-overflow-nan",
           "exp(log-ratio) overflows to inf in the compute precision and autograd gives inf*0 = NaN gradients",
           "non-finite", "Liger-Kernel 0.8.5 (Triton backward, log-ratio > 88.7)",
           "Evaluate f'(r)*r in log space (4*exp(log s + log(1-s) + log-ratio)) or clamp the exponent, so that "
           "huge log-ratios give the limit 0.",
           "exp_overflow_nan"),
    Defect("naive-one-minus-sigmoid",
           "f'(r)*r is computed as 4*s*(1-s)*r with s = sigmoid(z) rounded first: 1 - s cancels for large z",
           "precision", "verl 0.9.1 (plain autograd through torch.sigmoid in float32)",
           "Compute 1 - sigmoid(z) as sigmoid(-z) (or a hand-written backward) instead of 1 - sigmoid(z).",
           "naive_one_minus_sigmoid"),
    Defect("fp16-inside", "computes and accumulates in the low-precision input dtype instead of float32",
           "precision", "",
           "Upcast float16/bfloat16 inputs to float32 for the gate, the gradient and every sum.",
           "low_precision"),
    Defect("mutates-inputs", "modifies an input tensor in place", "contract", "",
           "Work on copies (x.nan_to_num(), not x.nan_to_num_()); never write to the caller's tensors.",
           "check:*:inputs-unmodified"),
    Defect("nondeterministic", "claims determinism but reruns are not bit-identical", "contract", "",
           "Use deterministic reductions (fixed order, no atomics) or stop claiming determinism.",
           "check:invariant.determinism:bitwise"),
    Defect("gradient-scaled", "the gradient is off by a constant factor k while the loss is right", "semantics", "",
           "Make the gradient the derivative of the returned loss (no extra scaling in a hand-written backward).",
           "gradient_scaled"),
)

DEFECTS_BY_ID: Mapping[str, Defect] = MappingProxyType({d.id: d for d in DEFECTS})
assert len(DEFECTS_BY_ID) == len(DEFECTS), "duplicate defect ids"
