"""Trinity-RFT's SAPO loss, unmodified: the ``SAPOPolicyLossFn`` class
through ``from_trinity_policy_loss`` (the ``trinity`` profile: counts + 1e-8,
every row counted; τ_neg ≥ τ_pos required; every metric).
"""

from __future__ import annotations

from ..adapters import from_trinity_policy_loss


class _Lazy:
    """Imports the class at first construction, so that the candidate can be
    described where Trinity-RFT is not installed."""

    def __new__(cls, **kwargs):
        from trinity.algorithm.policy_loss_fn.sapo_policy_loss import SAPOPolicyLossFn

        return SAPOPolicyLossFn(**kwargs)


def candidate():
    return from_trinity_policy_loss(_Lazy, name="trinity-rft",
                                    description="Trinity-RFT SAPOPolicyLossFn (real package)")
