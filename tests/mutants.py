"""Deliberately wrong SAPO candidates the suites must reject.

Each mutant is a correct float32 PyTorch implementation with exactly one
defect, the kind real kernels have in the per-token formulas or the
aggregation (SPEC.md, sections 2 and 3), and names the checks meant to catch
it.  ``tests/test_mutants.py`` asserts that every mutant is reported
non-conformant by one of those checks and prints the kill table.  A mutant's
name is the id of its defect in the catalogue (``conformance.defects``), which
supplies its description; ``tests/harness/test_defects.py`` checks that the
catalogue's transformed oracle reproduces each mutant.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from conformance import Candidate, CandidateInfo, KernelOutput
from conformance.defects import DEFECTS_BY_ID
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
            # "harmless" in-place cleanup of the caller's padding (nan_to_num_ would also turn an
            # unmasked -inf into -3.4e38: a second, value-changing defect)
            old_logprob.masked_fill_(~m.bool(), 0.0)
        raw = lp - olp if defect != "inverted-ratio" else olp - lp
        if defect == "nan-through-mask":
            d = raw * m  # NaN * 0 = NaN
            a = adv * m
        else:
            d = torch.where(m, raw, 0.0)
            a = torch.where(m, adv, 0.0)
        if sequence:
            n = m.sum(-1, keepdim=True).clamp(min=1).to(cdt)
            if defect == "seq-arithmetic-mean":  # the mean of the ratios, not of the log-ratios (no overflow)
                lse = torch.logsumexp(torch.where(m, d, -torch.inf), -1, keepdim=True)
                d = torch.where(m, (lse - torch.log(n)).expand_as(d), 0.0)
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
        if defect == "exp-overflow-nan":  # naive exp: inf * 0 = NaN gradients (1 - sigmoid itself stable)
            gate = 4 / tau * torch.exp(F.logsigmoid(tau * (torch.exp(d) - 1)))
        elif defect in ("grad-missing-r", "naive-one-minus-sigmoid"):
            gate = _GateGrad.apply(torch.where(d > SAT, SAT, d), tau, defect)
        else:
            z = tau * _Expm1.apply(torch.where(d > SAT, SAT, d))
            gate = torch.exp(-F.softplus(-z)) * (4 / tau if defect != "no-4-over-tau" else 1.0)
        if defect == "detached-gate":
            token = -a * gate.detach() * torch.where(m, lp, 0.0)  # Trinity-RFT <= 0.6.0's surrogate
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
        ratio_d = torch.where(m, d.detach().float(), 0.0)  # the ratio's own log: the row's at the sequence level
        metrics = {
            "ppo_kl": (rd.sum() if defect == "ppo-kl-sign" else -rd.sum()) / count,
            "avg_ratio": torch.where(m, torch.exp(ratio_d), 0.0).sum() / count,
            "avg_soft_gate": torch.where(m, gate.detach().float(), 0.0).sum() / count,
            "pos_adv_frac": ((adv.float() > 0) & m).sum() / count,
        }
        return KernelOutput(loss=loss, metrics=metrics)

    info = CandidateInfo(name=f"mutant-{name}", framework="torch", description=DEFECTS_BY_ID[defect].title,
                         dtypes=dtypes, deterministic=deterministic, metrics=metrics, global_counts=True,
                         rollout_is_weights=weights, profile=profile, data_parallel=True)
    return Candidate(info, kernel)


def _mutant(name, caught_by, **kw):
    """A mutant whose name is its defect's id in the catalogue, and whose
    description is the catalogue's title (one source for both)."""
    return Mutant(name, DEFECTS_BY_ID[name].title, caught_by, _make(name, name, **kw))


MUTANTS = (
    _mutant("no-4-over-tau", ("random:loss", "random:grad", "edge.*:loss")),
    _mutant("detached-gate", ("random:grad", "edge.*:grad")),
    _mutant("swapped-tau", ("edge.temperatures-*", "random:loss", "random:grad")),
    _mutant("tau-pos-for-zero", ("edge.zero-advantage:metric:avg_soft_gate",
                                 "edge.temperatures-0.5-4:metric:avg_soft_gate", "random:metric:avg_soft_gate",
                                 "edge.*:metric:avg_soft_gate")),
    _mutant("inverted-ratio", ("random:loss", "random:grad", "edge.*:grad")),
    _mutant("grad-missing-r", ("random:grad", "edge.*:grad")),
    _mutant("naive-one-minus-sigmoid", ("random:grad", "edge.*:grad")),
    _mutant("nan-through-mask", ("edge.masked-nonfinite:*", "random:*", "invariant.padding:*")),
    _mutant("token-mean-for-seq", ("random:loss", "random:grad", "edge.*:loss")),
    _mutant("counts-empty-rows", ("edge.empty-row:*", "random:loss", "random:grad", "invariant.*")),
    _mutant("fp16-inside", ("precision.*", "random:*", "edge.*"), dtypes=("float16",)),
    _mutant("exp-overflow-nan", ("edge.exp-overflow:grad", "edge.log-ratio-infinite:*", "random:grad")),
    _mutant("mutates-inputs", ("*:inputs-unmodified",)),
    _mutant("broadcast-trap", ("invariant.layouts:*", "edge.square-batch:*")),
    _mutant("ppo-kl-sign", ("*:metric:ppo_kl",)),
    _mutant("gradient-scaled", ("random:grad", "edge.*:grad")),
    _mutant("nondeterministic", ("invariant.determinism:*",)),
    _mutant("local-counts", ("distributed.*", "invariant.shards:*")),
    _mutant("weights-ignored", ("weights.random:loss", "weights.random:grad"), weights=True),
    _mutant("weights-in-denominator", ("weights.random:loss", "weights.random:grad"), weights=True),
    _mutant("weights-choose-tau", ("weights.random:metric:avg_soft_gate",), weights=True),
    _mutant("seq-arithmetic-mean", ("random:loss", "random:grad", "edge.*"), profile="canonical-sequence"),
    _mutant("seq-unspread-grad", ("random:grad", "edge.*:grad", "gradient.*"), profile="canonical-sequence"),
)


# -- mutants wrong only in one far region of the accepted domain (issue 16):
# correct torch-eager everywhere else, so only a check whose inputs reach
# the region can reject them.  They are not catalogued defects: the test
# asks that ``default`` rejects them, not what the diagnosis calls them.


def _region_mutant(name: str, description: str, edit) -> Candidate:
    """torch-eager with its inputs edited by ``edit(kwargs)`` before the call."""
    from dataclasses import replace

    from conformance import load_candidate

    base = load_candidate("torch-eager")

    def kernel(logprob, old_logprob, advantages, mask, **kw):
        args = {"logprob": logprob, "old_logprob": old_logprob, "advantages": advantages, "mask": mask, **kw}
        edit(args)
        return base.kernel(**args)

    return Candidate(replace(base.info, name=f"mutant-{name}", description=description), kernel)


def _floor_tau(args):  # a "safety" floor on the temperature
    args["tau_pos"], args["tau_neg"] = max(args["tau_pos"], 1e-3), max(args["tau_neg"], 1e-3)


def _clip_advantages(args):  # a "safety" clip on the advantages
    args["advantages"] = args["advantages"].clamp(-1e6, 1e6)


def _first_16384_tokens(args):  # a kernel whose row loop stops after one 16384-token block
    mask = args["mask"].clone()
    mask[:, 16384:] = False
    args["mask"] = mask


REGION_MUTANTS = {
    "tau-floored-at-1e-3": _region_mutant("tau-floored-at-1e-3", "temperatures below 1e-3 raised to 1e-3",
                                          _floor_tau),
    "advantages-clipped-at-1e6": _region_mutant("advantages-clipped-at-1e6", "|A| above 1e6 clipped to 1e6",
                                                _clip_advantages),
    "row-cut-at-16384": _region_mutant("row-cut-at-16384", "tokens after the 16384th of a row ignored",
                                       _first_16384_tokens),
}
