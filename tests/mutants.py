"""Deliberately wrong SAPO candidates the suites must reject.

Each mutant is a correct float32 PyTorch implementation with exactly one
defect, the kind real kernels have in the per-token formulas or the
aggregation (SPEC.md, sections 2 and 3), and names the checks meant to catch
it.  ``tests/test_mutants.py`` asserts that every mutant is reported
non-conformant by one of those checks and prints the kill table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from conformance import Candidate, CandidateInfo, KernelOutput
from sapo_ref import METRIC_NAMES

SAT = 60.0


@dataclass(frozen=True)
class Mutant:
    name: str
    defect: str
    caught_by: tuple[str, ...]  # glob patterns over record checks, e.g. "random:grad"
    candidate: Candidate


def _weights(m, mode, global_token_count, global_seq_count, count_empty=False):
    n = m.sum(-1).to(torch.float64)
    B, T = m.shape
    if mode == "token-mean":
        N = n.sum() if global_token_count is None else torch.tensor(float(global_token_count), dtype=torch.float64)
        c = torch.where(N > 0, 1 / N.clamp(min=1), 0.0).expand(B)
    elif mode == "seq-mean-token-sum-norm":
        c = torch.full((B,), 1.0 / max(T, 1), dtype=torch.float64)
    else:
        S = ((n > 0).sum() if not count_empty else torch.tensor(B)).to(torch.float64)
        if global_seq_count is not None:
            S = torch.tensor(float(global_seq_count), dtype=torch.float64)
        if mode == "seq-mean-token-sum":
            c = torch.where(S > 0, 1 / S.clamp(min=1), 0.0).expand(B)
        else:
            c = torch.where((n > 0) & (S > 0), 1 / (S.clamp(min=1) * n.clamp(min=1)), 0.0)
    return c.to(torch.float32)[:, None]


class _Expm1(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.expm1(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.exp(x)


class _GateGrad(torch.autograd.Function):
    """f(r) as a function of the log-ratio with a hand-written backward, for
    the mutants whose defect is in the gradient alone."""

    @staticmethod
    def forward(ctx, d, tau, defect):
        r = torch.exp(d)
        z = tau * torch.expm1(d)
        e = torch.exp(-z.abs())
        big, small = 1 / (1 + e), e / (1 + e)
        if defect == "naive-one-minus-sigmoid":
            s = torch.sigmoid(z)
            h = 4 * s * (1 - s) * r
        else:
            h = 4 * big * small * (r if defect != "grad-missing-r" else torch.ones_like(r))
        ctx.save_for_backward(h)
        return 4 / tau * torch.where(z >= 0, big, small)

    @staticmethod
    def backward(ctx, g):
        (h,) = ctx.saved_tensors
        return g * h * 1.0, None, None  # d f / d(log-ratio) = f'(r) r


class _SpreadOrNot(torch.autograd.Function):
    """The row mean of the log-ratios, broadcast over the row, whose gradient
    goes to each token unspread (GSPO-token's per-token form: right value,
    the gradient of the sequence-level loss it is not)."""

    @staticmethod
    def forward(ctx, raw, m):
        n = m.sum(-1, keepdim=True).clamp(min=1).to(raw.dtype)
        ctx.save_for_backward(m)
        return torch.where(m, (raw.sum(-1, keepdim=True) / n).expand_as(raw), 0.0)

    @staticmethod
    def backward(ctx, g):
        (m,) = ctx.saved_tensors
        return torch.where(m, g, 0.0), None


def _make(name, defect, *, dtypes=("float32",), deterministic=True, metrics=METRIC_NAMES, weights=False,
          profile="canonical"):
    sequence = profile == "canonical-sequence"

    def kernel(logprob, old_logprob, advantages, mask, *, tau_pos, tau_neg, loss_agg_mode,
               global_token_count=None, global_seq_count=None, rollout_is_weights=None):
        if defect == "local-counts":  # accepts the global counts, normalises by its own
            global_token_count = global_seq_count = None
        cdt = logprob.dtype if defect == "fp16-inside" else torch.float32
        m = mask
        B, T = m.shape
        lp, olp = logprob.to(cdt), old_logprob.to(cdt)
        adv = advantages.to(cdt)
        if defect == "broadcast-trap" and adv.dim() == 1 and B == T:
            adv = adv[None, :]  # (B,) against (B, T): NumPy/torch broadcasting aligns it with the tokens
        else:
            adv = adv.reshape(B, -1)
        if defect == "mutates-inputs":
            old_logprob.nan_to_num_(0.0)  # "harmless" in-place cleanup of the caller's tensor
        raw = lp - olp if defect != "inverted-ratio" else olp - lp
        if defect == "nan-through-mask":
            d = raw * m  # NaN * 0 = NaN
            a = adv * m
        else:
            d = torch.where(m, raw, 0.0)
            a = torch.where(m, adv, 0.0)
        if sequence:
            n = m.sum(-1, keepdim=True).clamp(min=1).to(cdt)
            if defect == "seq-arithmetic-mean":  # the mean of the ratios, not of the log-ratios
                d = torch.where(m, torch.log((torch.exp(d) * m).sum(-1, keepdim=True) / n).expand_as(d), 0.0)
            elif defect == "seq-unspread-grad":
                d = _SpreadOrNot.apply(d, m)
            else:
                d = torch.where(m, (d.sum(-1, keepdim=True) / n).expand_as(d), 0.0)
        w = None
        if rollout_is_weights is not None:
            w = torch.where(m, rollout_is_weights.to(cdt), 0.0)
        ttype = dict(dtype=cdt)
        if defect == "swapped-tau":
            tau = torch.where(a > 0, torch.tensor(tau_neg, **ttype), torch.tensor(tau_pos, **ttype))
        elif defect == "tau-pos-for-zero":
            tau = torch.where(a >= 0, torch.tensor(tau_pos, **ttype), torch.tensor(tau_neg, **ttype))
        elif defect == "weights-choose-tau" and w is not None:
            tau = torch.where(a * w > 0, torch.tensor(tau_pos, **ttype), torch.tensor(tau_neg, **ttype))
        else:
            tau = torch.where(a > 0, torch.tensor(tau_pos, **ttype), torch.tensor(tau_neg, **ttype))
        if w is not None and defect != "weights-ignored":
            a = a * w
        if defect == "exp-overflow-nan":
            gate = 4 / tau * torch.sigmoid(tau * (torch.exp(d) - 1))  # naive: inf * 0 = NaN gradients
        elif defect in ("grad-missing-r", "naive-one-minus-sigmoid"):
            gate = _GateGrad.apply(torch.where(d > SAT, SAT, d), tau, defect)
        else:
            z = tau * _Expm1.apply(torch.where(d > SAT, SAT, d))
            gate = torch.exp(-F.softplus(-z)) * (4 / tau if defect != "no-4-over-tau" else 1.0)
        if defect == "detached-gate":
            token = -a * gate.detach() * lp  # Trinity-RFT <= 0.6.0's surrogate
        else:
            token = -a * gate
        mode = "token-mean" if defect == "token-mean-for-seq" else loss_agg_mode
        c = _weights(m, mode, global_token_count, global_seq_count, count_empty=defect == "counts-empty-rows")
        if defect == "weights-in-denominator" and w is not None and mode == "token-mean":
            c = c * m.sum() / w.sum().clamp(min=1e-30)  # a weighted mean: sum(w l) / sum(w)
        loss = (token * c.to(cdt)).sum()
        if defect == "gradient-scaled":
            loss = loss + 0.01 * loss - (0.01 * loss).detach()  # same value, gradient x 1.01
        if defect == "nondeterministic":
            loss = loss + torch.rand(()) * 1e-6 * loss.detach().abs()  # a few float32 ulps
        count = m.sum().clamp(min=1).to(torch.float32)
        rd = torch.where(m, raw.detach().float(), 0.0)
        metrics = {
            "ppo_kl": (rd.sum() if defect == "ppo-kl-sign" else -rd.sum()) / count,
            "avg_ratio": torch.where(m, torch.exp(rd), 0.0).sum() / count,
            "avg_soft_gate": torch.where(m, gate.detach().float(), 0.0).sum() / count,
            "pos_adv_frac": ((adv.float() > 0) & m).sum() / count,
        }
        return KernelOutput(loss=loss, metrics=metrics)

    info = CandidateInfo(name=f"mutant-{name}", framework="torch", description=defect, dtypes=dtypes,
                         deterministic=deterministic, metrics=metrics, global_counts=True,
                         rollout_is_weights=weights, profile=profile, data_parallel=True)
    return Candidate(info, kernel)


MUTANTS = (
    Mutant("no-4-over-tau", "gate without the 4/tau factor (ms-swift 3.11-3.12.2)",
           ("random:loss", "random:grad", "edge.*:loss"), _make("no-4-over-tau", "no-4-over-tau")),
    Mutant("detached-gate", "-A * detach(f) * logprob: right gate, wrong loss and gradient (Trinity-RFT)",
           ("random:grad", "edge.*:grad"), _make("detached-gate", "detached-gate")),
    Mutant("swapped-tau", "tau_neg for A > 0 and tau_pos for A <= 0",
           ("edge.temperatures-*", "random:loss", "random:grad"), _make("swapped-tau", "swapped-tau")),
    Mutant("tau-pos-for-zero", "A >= 0 takes tau_pos (visible only in the gate of A = 0 tokens)",
           ("edge.zero-advantage:metric:avg_soft_gate", "edge.temperatures-0.5-4:metric:avg_soft_gate",
            "random:metric:avg_soft_gate", "edge.*:metric:avg_soft_gate"),
           _make("tau-pos-for-zero", "tau-pos-for-zero")),
    Mutant("inverted-ratio", "ratio = old / new", ("random:loss", "random:grad", "edge.*:grad"),
           _make("inverted-ratio", "inverted-ratio")),
    Mutant("grad-missing-r", "gradient -c A f'(r) without the factor r", ("random:grad", "edge.*:grad"),
           _make("grad-missing-r", "grad-missing-r")),
    Mutant("naive-one-minus-sigmoid", "f'(r) r as 4 s (1 - s) r in float32 (cancellation for z >~ 10)",
           ("random:grad", "edge.*:grad"), _make("naive-one-minus-sigmoid", "naive-one-minus-sigmoid")),
    Mutant("nan-through-mask", "x * mask instead of where: NaN in padding leaks",
           ("edge.masked-nonfinite:*", "random:*", "invariant.padding:*"), _make("nan-through-mask",
                                                                                  "nan-through-mask")),
    Mutant("token-mean-for-seq", "token-mean whatever mode is claimed",
           ("random:loss", "random:grad", "edge.*:loss"), _make("token-mean-for-seq", "token-mean-for-seq")),
    Mutant("counts-empty-rows", "rows with no token counted in S while 'exclude' is claimed",
           ("edge.empty-row:*", "random:loss", "random:grad", "invariant.*"),
           _make("counts-empty-rows", "counts-empty-rows")),
    Mutant("fp16-inside", "float16 inputs computed in float16", ("precision.*", "random:*", "edge.*"),
           _make("fp16-inside", "fp16-inside", dtypes=("float16",))),
    Mutant("exp-overflow-nan", "exp(log-ratio) overflows to inf and autograd gives inf * 0 = NaN",
           ("edge.exp-overflow:grad", "edge.log-ratio-infinite:*", "random:grad"),
           _make("exp-overflow-nan", "exp-overflow-nan")),
    Mutant("mutates-inputs", "cleans NaN out of old_logprob in place", ("*:inputs-unmodified",),
           _make("mutates-inputs", "mutates-inputs")),
    Mutant("broadcast-trap", "(B,) advantages broadcast along the token axis (silent when B == T)",
           ("invariant.layouts:*", "edge.square-batch:*"),
           _make("broadcast-trap", "broadcast-trap")),
    Mutant("ppo-kl-sign", "ppo_kl with the wrong sign", ("*:metric:ppo_kl",), _make("ppo-kl-sign", "ppo-kl-sign")),
    Mutant("gradient-scaled", "gradient 1 % too large, loss right", ("random:grad", "edge.*:grad"),
           _make("gradient-scaled", "gradient-scaled")),
    Mutant("nondeterministic", "claims determinism, adds run-to-run noise", ("invariant.determinism:*",),
           _make("nondeterministic", "nondeterministic")),
    Mutant("local-counts", "takes the global counts, normalises by the shard's own (wrong under data parallelism)",
           ("distributed.*", "invariant.shards:*"), _make("local-counts", "local-counts")),
    Mutant("weights-ignored", "claims rollout_is_weights, ignores them", ("weights.random:loss", "weights.random:grad"),
           _make("weights-ignored", "weights-ignored", weights=True)),
    Mutant("weights-in-denominator", "token-mean normalised by the sum of the weights, not the token count",
           ("weights.random:loss", "weights.random:grad"),
           _make("weights-in-denominator", "weights-in-denominator", weights=True)),
    Mutant("weights-choose-tau", "tau chosen by the sign of A * w (a zero weight switches the branch)",
           ("weights.random:metric:avg_soft_gate",),
           _make("weights-choose-tau", "weights-choose-tau", weights=True)),
    Mutant("seq-arithmetic-mean", "sequence level with the mean of the ratios instead of exp(mean log-ratio)",
           ("random:loss", "random:grad", "edge.*"),
           _make("seq-arithmetic-mean", "seq-arithmetic-mean", profile="canonical-sequence")),
    Mutant("seq-unspread-grad", "sequence-level value, but each token gets its own share of the gradient",
           ("random:grad", "edge.*:grad", "gradient.*"),
           _make("seq-unspread-grad", "seq-unspread-grad", profile="canonical-sequence")),
)
