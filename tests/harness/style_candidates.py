"""SAPO kernels written in three common PyTorch styles, for the harness's own
tests and for the README.

* ``verl_style``: verl 0.9.1's ``compute_policy_loss_sapo`` + ``agg_loss``
  behaviour, re-written here from the formulas: the right SAPO objective, with
  verl's robustness and precision choices (log-ratio clamped to [-20, 20],
  masking by multiplication, ``loss_agg_mode`` ignored, NaN on an all-masked
  batch, sigmoid's float32 backward).
* ``sigmoid_autograd``: the most common correct style: float32,
  ``4/tau * sigmoid(tau * (r - 1))`` through autograd, ``torch.where``
  masking.  Its one defect is sigmoid's backward s * (1 - s) in float32,
  which saturates (s rounds to 1) for large gate arguments.
* ``readme_recipe``: the function printed in README.md ("Your own function");
  the text between the two ``README recipe`` markers below is that code block,
  verbatim (``README_RECIPE`` holds it).

Each is the author's own code, written from SPEC.md; nothing is copied from
the frameworks.
"""

# --- README recipe: begin ---
# my_sapo.py
import torch
from conformance.adapters import from_torch_loss


def my_sapo(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
    m = response_mask.bool()
    delta = torch.where(m, log_prob.float() - old_log_prob.float(), 0.0)  # select, never multiply: NaN * 0 = NaN
    adv = torch.where(m, advantages.float(), 0.0)
    tau = torch.where(adv > 0, tau_pos, tau_neg)
    d = torch.where(delta > 60.0, 60.0, delta)          # exp stays finite; the exact gradient is 0 beyond
    r = torch.exp(d)
    z = tau * torch.where(d < -0.5, r - 1.0, torch.expm1(d))  # expm1's backward, expm1 + 1, cancels for d << 0
    s = torch.where(z < 0, torch.sigmoid(z), 1.0 - torch.sigmoid(-z))  # backward s (1 - s) never rounds s to 1
    gate = 4.0 / tau * s
    token = torch.where(m, -adv * gate, 0.0)
    n = m.sum(-1)
    rows = (n > 0).sum().clamp(min=1)                   # rows without tokens are not counted
    if loss_agg_mode == "token-mean":
        loss = token.sum() / n.sum().clamp(min=1)
    elif loss_agg_mode == "seq-mean-token-mean":
        loss = (token.sum(-1) / n.clamp(min=1)).sum() / rows
    elif loss_agg_mode == "seq-mean-token-sum":
        loss = token.sum() / rows
    else:  # "seq-mean-token-sum-norm": divided by the padded length T
        loss = token.sum() / max(token.shape[-1], 1)
    kl = -delta.sum() / n.sum().clamp(min=1)
    return loss, {"ppo_kl": kl}


candidate = from_torch_loss(my_sapo, name="my-sapo", dtypes=("float32", "bfloat16"), metrics=("ppo_kl",))
# --- README recipe: end ---


def _recipe_source() -> str:
    """The README code block: this module's text between the recipe markers."""
    import pathlib

    text = pathlib.Path(__file__).read_text(encoding="utf-8")
    begin, end = "# --- README recipe: begin ---\n", "# --- README recipe: end ---\n"
    return text[text.index(begin) + len(begin):text.index(end)]


README_RECIPE = _recipe_source()

readme_recipe = candidate.with_info(name="readme-recipe")


# --- the common style: sigmoid through autograd ------------------------------


def _aggregate(token, m, loss_agg_mode):
    """SPEC.md section 3 with the canonical choices: empty rows excluded, a 0
    denominator gives a 0 loss, sum-norm divides by the padded length."""
    n = m.sum(-1)
    rows = (n > 0).sum().clamp(min=1)
    if loss_agg_mode == "token-mean":
        return token.sum() / n.sum().clamp(min=1)
    if loss_agg_mode == "seq-mean-token-mean":
        return (token.sum(-1) / n.clamp(min=1)).sum() / rows
    if loss_agg_mode == "seq-mean-token-sum":
        return token.sum() / rows
    if loss_agg_mode == "seq-mean-token-sum-norm":
        return token.sum() / max(token.shape[-1], 1)
    raise ValueError(f"unknown loss_agg_mode {loss_agg_mode!r}")


def sigmoid_autograd_sapo(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode):
    m = response_mask.bool()
    log_ratio = torch.where(m, log_prob.float() - old_log_prob.float(), 0.0)
    adv = torch.where(m, advantages.float(), 0.0)
    tau = torch.where(adv > 0, tau_pos, tau_neg)
    # exp overflows float32 beyond 88.7 (then inf * 0 = NaN in the backward);
    # the gate is 4/tau and its gradient 0 long before, so cap the exponent there
    ratio = torch.exp(torch.where(log_ratio > 60.0, 60.0, log_ratio))
    gate = 4.0 / tau * torch.sigmoid(tau * (ratio - 1.0))
    token = torch.where(m, -adv * gate, 0.0)
    loss = _aggregate(token, m, loss_agg_mode)

    count = m.sum().clamp(min=1)
    positive = torch.where(adv.isnan(), torch.nan, (adv > 0).float())
    metrics = {
        "ppo_kl": -log_ratio.sum() / count,
        "avg_ratio": torch.where(m, torch.exp(log_ratio), 0.0).sum() / count,  # the uncapped ratio
        "avg_soft_gate": torch.where(m, gate, 0.0).sum() / count,
        "pos_adv_frac": torch.where(m, positive, 0.0).sum() / count,
    }
    return loss, {k: v.detach() for k, v in metrics.items()}


sigmoid_autograd = from_torch_loss(sigmoid_autograd_sapo, name="sigmoid-autograd", dtypes=("float32", "bfloat16"),
                                   metrics=("ppo_kl", "avg_ratio", "avg_soft_gate", "pos_adv_frac"))


# --- verl 0.9.1's behaviour ---------------------------------------------------


def verl_style_sapo(old_log_prob, log_prob, advantages, response_mask, *, tau_pos, tau_neg, loss_agg_mode,
                    global_batch_size=None, dp_size=1):
    """What verl 0.9.1 computes: arithmetic in the inputs' dtype, tau in the
    advantages' dtype, log-ratio clamped to [-20, 20], the loss always
    seq-mean-token-mean (``loss_agg_mode`` is ignored), masking by
    multiplication, the sequence count taken from the batch (0 on an
    all-masked batch: 0/0 = NaN), ppo_kl a masked mean with eps 1e-8."""
    del loss_agg_mode  # verl's SAPO always aggregates seq-mean-token-mean
    t_pos = torch.as_tensor(tau_pos, dtype=advantages.dtype, device=advantages.device)
    t_neg = torch.as_tensor(tau_neg, dtype=advantages.dtype, device=advantages.device)
    log_ratio = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(log_ratio)
    taus = torch.where(advantages > 0, t_pos, t_neg)
    gates = torch.sigmoid(taus * (ratio - 1.0)) * (4.0 / taus)
    token = -gates * advantages

    counts = response_mask.sum(-1)
    row_means = (token * response_mask).sum(-1) / (counts + 1e-8)  # NaN * 0 = NaN: padding can leak
    has_tokens = (counts > 0).to(row_means.dtype)
    n_rows = has_tokens.sum() if global_batch_size is None else global_batch_size
    kept = torch.where(has_tokens.bool(), row_means, 0.0) * has_tokens
    loss = kept.sum() / n_rows * dp_size  # 0 / 0 on an all-masked batch

    kl_terms = torch.where(response_mask.bool(), -log_ratio, 0.0) * response_mask
    ppo_kl = kl_terms.sum() / (response_mask.sum() + 1e-8)
    return loss, {"actor/pg_clipfrac": 0.0, "actor/ppo_kl": ppo_kl.detach().item(), "actor/pg_clipfrac_lower": 0.0}


# float32 only: verl computes in the inputs' dtype, and its trainer feeds the
# loss float32 log-probs and advantages (bfloat16 inputs would make every
# intermediate bfloat16, which is not how verl runs).
verl_style = from_torch_loss(verl_style_sapo, name="verl-style", dtypes=("float32",), profile="verl",
                             metrics=("ppo_kl",))
