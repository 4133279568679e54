"""A NumPy mirror of Trinity-RFT's ``SAPOPolicyLossFn`` API.

Same constructor, methods and call convention as Trinity-RFT's
``SAPOPolicyLossFn`` (SPEC.md, section 11), but computing the canonical SAPO
objective with the oracle:
the returned loss is the SAPO loss itself (Trinity-RFT returns a surrogate
whose value differs and whose gradient is the detached-gate one), and
:meth:`SAPOPolicyLoss.evaluate` gives its exact gradient.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

from . import _validate as V
from ._gate import soft_gate
from ._loss import SAPOResult, sapo_loss
from .profiles import DEFAULT_TAU_NEG, DEFAULT_TAU_POS, LOSS_AGG_MODES, get_profile

# The keys each training backend uses for the inputs the call takes after
# ``logprob`` (Trinity-RFT's key mapper).
_BACKEND_KEYS = {
    "verl": ("old_log_probs", "response_mask", "advantages"),
    "trinity": ("old_logprob", "action_mask", "advantages"),
}


class SAPOPolicyLoss:
    """SAPO policy loss with the seed's API.

    Args:
        tau_pos: temperature for positive advantages (default 1.0).
        tau_neg: temperature for the others (default 1.05).  Trinity-RFT
            asserts ``tau_neg >= tau_pos``; the mirror does not, because the
            loss is well defined for any positive pair (SPEC.md).
        loss_agg_mode: one of ``LOSS_AGG_MODES`` (default "token-mean").
        backend: naming convention of :attr:`select_keys` ("verl" or "trinity").
        profile: the aggregation conventions (default "trinity", the
            behaviour of the class this mirrors; "canonical" for the oracle's).
    """

    def __init__(
        self,
        tau_pos: float = DEFAULT_TAU_POS,
        tau_neg: float = DEFAULT_TAU_NEG,
        loss_agg_mode: str = "token-mean",
        *,
        backend: str = "verl",
        profile: str = "trinity",
    ) -> None:
        self.tau_pos = V.temperature(tau_pos, "tau_pos")
        self.tau_neg = V.temperature(tau_neg, "tau_neg")
        self.loss_agg_mode = V.choice(loss_agg_mode, "loss_agg_mode", LOSS_AGG_MODES)
        self.backend = V.choice(backend, "backend", tuple(_BACKEND_KEYS))
        self.profile = get_profile(profile).name

    def soft_gate_function(self, ratio, advantages):
        """f(r) = sigmoid(tau (r - 1)) * 4 / tau with the per-token tau."""
        return soft_gate(ratio, advantages, self.tau_pos, self.tau_neg)

    @classmethod
    def default_args(cls) -> Dict:
        """The paper's temperatures and Trinity-RFT's default aggregation."""
        return {"tau_pos": 1.0, "tau_neg": 1.05, "loss_agg_mode": "token-mean"}

    @property
    def select_keys(self) -> List[str]:
        """The backend's names for the inputs the call takes after ``logprob``."""
        return list(_BACKEND_KEYS[self.backend])

    def evaluate(self, logprob, old_logprob, action_mask, advantages) -> SAPOResult:
        """The full oracle result (loss, gradient, token losses, metrics)."""
        return sapo_loss(
            logprob,
            old_logprob,
            advantages,
            action_mask,
            tau_pos=self.tau_pos,
            tau_neg=self.tau_neg,
            loss_agg_mode=self.loss_agg_mode,
            profile=self.profile,
        )

    def __call__(self, logprob, old_logprob, action_mask, advantages, **kwargs) -> Tuple[float, Dict]:
        """``(loss, metrics)`` like the seed; extra keyword inputs are ignored,
        as the seed ignores the step-level inputs it does not use."""
        result = self.evaluate(logprob, old_logprob, action_mask, advantages)
        metrics = {"sapo_loss": result.loss, **result.metrics}
        return result.loss, metrics

    def __repr__(self) -> str:
        return (
            f"SAPOPolicyLoss(tau_pos={self.tau_pos!r}, tau_neg={self.tau_neg!r}, "
            f"loss_agg_mode={self.loss_agg_mode!r}, backend={self.backend!r}, profile={self.profile!r})"
        )
