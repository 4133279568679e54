"""Named profiles: what a given implementation computes, as data.

A profile fixes the choices that real SAPO implementations make differently
(aggregation, empty rows, count epsilons, a log-ratio clamp, the precision of
the temperatures).  ``sapo_loss(..., profile="verl")`` then computes exactly
what verl's definition computes, so a kernel can be certified against the
behaviour it documents rather than against the paper alone.

The canonical semantics are the profile ``"canonical"``; SPEC.md explains each
field and why the canonical choice is the one it is.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from types import MappingProxyType

from ._dtypes import DTYPES

#: the gate temperatures when none are given (the SAPO paper's: tau_pos 1.0, tau_neg 1.05)
DEFAULT_TAU_POS = 1.0
DEFAULT_TAU_NEG = 1.05

#: The aggregation modes, in the order SPEC.md lists them.
LOSS_AGG_MODES = (
    "token-mean",
    "seq-mean-token-mean",
    "seq-mean-token-sum",
    "seq-mean-token-sum-norm",
)

#: How rows with no unmasked token are treated (see SPEC.md, "Empty rows").
EMPTY_ROW_POLICIES = ("exclude", "count", "nan")

#: Precisions a profile may round the temperatures to before use.
TAU_DTYPES = DTYPES

#: Where the importance ratio is formed (see SPEC.md, "Sequence-level ratio").
IMPORTANCE_SAMPLING_LEVELS = ("token", "sequence")

#: The advantage a sequence-level loss uses for a token: its own, or the
#: masked mean of its row's (AReaL's form).
SEQUENCE_ADVANTAGES = ("token", "mean")


@dataclass(frozen=True)
class Profile:
    """The semantic choices of one SAPO implementation.

    Attributes:
        name: registry key.
        summary: one line for listings.
        source: the implementation (and versions) this profile models.
        loss_agg_mode: the aggregation the implementation always uses,
            whatever mode it is asked for; ``None`` means it honours the
            requested mode.
        empty_rows: ``"exclude"`` (rows with no unmasked token are not counted
            in the number of sequences), ``"count"`` (they are counted and
            contribute 0, as with a token count clamped to 1), or ``"nan"``
            (counted, and their per-row mean is 0/0: the loss is NaN).
        token_count_eps: added to the token count of every token mean (the
            ``token-mean`` loss and the metrics).
        row_count_eps: added to each row's token count in
            ``seq-mean-token-mean``.
        log_ratio_clamp: clamp log-ratios to [-c, c] before exp (gradient 0
            outside, passed through at the boundary); ``None`` for no clamp.
        tau_dtype: round tau_pos/tau_neg to this precision before use;
            ``"advantages"`` means the advantages' own dtype; ``None`` keeps
            them exact.
        token_sum_norm: the normaliser of ``seq-mean-token-sum-norm``;
            ``None`` means the padded length T.
        importance_sampling_level: ``"token"`` (the ratio of each token) or
            ``"sequence"`` (each token takes its row's geometric-mean ratio
            exp(mean of the row's log-ratios), GSPO-style).
        sequence_advantage: with the sequence level, ``"token"`` keeps each
            token's advantage, ``"mean"`` replaces it by its row's masked mean.
    """

    name: str
    summary: str
    source: str
    loss_agg_mode: str | None = None
    empty_rows: str = "exclude"
    token_count_eps: float = 0.0
    row_count_eps: float = 0.0
    log_ratio_clamp: float | None = None
    tau_dtype: str | None = None
    token_sum_norm: float | None = None
    importance_sampling_level: str = "token"
    sequence_advantage: str = "token"

    def __post_init__(self):
        if self.loss_agg_mode is not None and self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"profile {self.name!r}: unknown loss_agg_mode {self.loss_agg_mode!r}")
        if self.empty_rows not in EMPTY_ROW_POLICIES:
            raise ValueError(f"profile {self.name!r}: unknown empty_rows {self.empty_rows!r}")
        if self.tau_dtype not in (None, "advantages", *TAU_DTYPES):
            raise ValueError(f"profile {self.name!r}: unknown tau_dtype {self.tau_dtype!r}")
        if self.importance_sampling_level not in IMPORTANCE_SAMPLING_LEVELS:
            raise ValueError(f"profile {self.name!r}: unknown importance_sampling_level "
                             f"{self.importance_sampling_level!r}")
        if self.sequence_advantage not in SEQUENCE_ADVANTAGES:
            raise ValueError(f"profile {self.name!r}: unknown sequence_advantage {self.sequence_advantage!r}")

    def effective_mode(self, requested: str) -> str:
        """The aggregation this implementation computes when asked for ``requested``."""
        return self.loss_agg_mode or requested

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_ALL = (
    Profile(
        name="canonical",
        summary="the oracle's reference semantics; aggregation as requested",
        source="sapo-conformance SPEC.md",
    ),
    Profile(
        name="paper",
        summary="Gao et al. 2025: sequence mean of per-sequence token means",
        source="arXiv 2511.20347, eq. for J_SAPO",
        loss_agg_mode="seq-mean-token-mean",
    ),
    Profile(
        name="trinity",
        summary="Trinity-RFT's documented defaults: counts + 1e-8, all rows counted",
        source="Trinity-RFT <= 0.6.0 SAPOPolicyLossFn with trinity.algorithm.utils.masked_loss",
        empty_rows="count",
        token_count_eps=1e-8,
        row_count_eps=1e-8,
    ),
    Profile(
        name="verl",
        summary="verl: always seq-mean-token-mean, log-ratio clamped to 20, tau in the advantages' dtype",
        source="verl >= 0.7 compute_policy_loss_sapo with agg_loss",
        loss_agg_mode="seq-mean-token-mean",
        empty_rows="exclude",
        token_count_eps=1e-8,
        row_count_eps=1e-8,
        log_ratio_clamp=20.0,
        tau_dtype="advantages",
    ),
    Profile(
        name="trl",
        summary="TRL: per-row mean with the token count clamped to 1, mean over all rows",
        source='TRL >= 0.26 GRPOTrainer loss_type="sapo"',
        loss_agg_mode="seq-mean-token-mean",
        empty_rows="count",
    ),
    Profile(
        name="canonical-sequence",
        summary="the canonical semantics with the sequence-level (geometric-mean) ratio",
        source="sapo-conformance SPEC.md 2.2",
        importance_sampling_level="sequence",
    ),
    Profile(
        name="trl-sequence",
        summary='TRL with importance_sampling_level="sequence": one geometric-mean ratio per sequence',
        source='TRL >= 0.26 GRPOTrainer loss_type="sapo", importance_sampling_level="sequence"',
        loss_agg_mode="seq-mean-token-mean",
        empty_rows="count",
        importance_sampling_level="sequence",
    ),
    Profile(
        name="areal-sequence",
        summary="AReaL's sequence-level form: geometric-mean ratio and the row's mean advantage",
        source="AReaL sequence-level importance sampling (GSPO-style) with SAPO gating",
        importance_sampling_level="sequence",
        sequence_advantage="mean",
    ),
)

#: Every profile, by name (read-only).
PROFILES = MappingProxyType({p.name: p for p in _ALL})


def get_profile(profile: str | Profile | None) -> Profile:
    """Look a profile up by name (``None`` gives ``"canonical"``)."""
    if profile is None:
        return PROFILES["canonical"]
    if isinstance(profile, Profile):
        return profile
    if not isinstance(profile, str):
        raise TypeError(f"profile must be a profile name or a Profile, got {type(profile).__name__}")
    try:
        return PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown profile {profile!r}; valid profiles: {', '.join(PROFILES)}"
        ) from None
