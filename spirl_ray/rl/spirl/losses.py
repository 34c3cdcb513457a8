"""The SPiRL objective (paper Algorithm 1, appendix A) as small pure functions.

Symbols follow the paper: s state, z skill (the high-level action), π the
policy π_θ(z|s), p the learned skill prior p_a(z|s), Q the critic, Q̄ the
target critic, α the temperature, δ the target divergence, γ the discount.

Shapes: B = batch, Z = latent (skill) dim. ``*_params`` tensors are
(B, 2Z) = [mu, log_sigma] of a diagonal Gaussian over the *pre-squash* latent
u; the executed skill is z = 2·tanh(u) (appendix B.2), but the KL is taken
between the pre-squash Gaussians, as in the reference implementation.

**Scale of δ.** ``kl_to_prior`` reduces the per-dimension KLs over the Z
latent dims either by ``"mean"`` — what the reference implementation does
(``kl_divergence(...).mean(dim=-1)``), so the paper's δ = 5 (kitchen) is a
bound on the *mean* per-dim KL — or by ``"sum"``, the textbook KL of the two
diagonal Gaussians (a δ on the mean scale is δ·Z on the sum scale). The same
reduced KL enters the critic target, the actor loss and the α loss.

The same functions serve the entropy baselines (SSP w/o prior,
PriorInit + SAC): pass the squashed action's log-probability
log π(z|s) instead of a KL (``uniform_prior=True`` in the learner) — the KL to
a uniform prior up to a constant (paper §3.3, eq. 2 vs eq. 3).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.distributions import kl_divergence

from spirl_ray.skills.models import gaussian_from_params

# (B, 2Z) [mu, log_sigma] -> Normal, log_sigma clamped to [-5, 2] (RLlib's squashed-Gaussian range);
# shared with the skill model so the prior means the same distribution on both sides.
gaussian = gaussian_from_params


def kl_to_prior(
    pi_params: torch.Tensor,
    prior_params: torch.Tensor,
    estimator: Literal["analytic", "sampled"] = "analytic",
    n_samples: int = 10,
    clamp: float | None = 100.0,
    reduction: Literal["sum", "mean"] = "sum",
) -> torch.Tensor:
    """D_KL(π(·|s) ‖ p(·|s)) per state, reduced over latent dims: (B,).

    Args:
        pi_params: (B, 2Z) policy Gaussian params (gradients flow through them).
        prior_params: (B, 2Z) prior Gaussian params (treated as constants).
        estimator: ``"analytic"`` — closed form for two diagonal Gaussians
            (appendix F recommends it for stability); ``"sampled"`` — Monte-Carlo
            mean over ``n_samples`` reparameterised samples u ~ π of
            log π(u) − log p(u), as the reference implementation does.
        n_samples: number of samples of the MC estimate.
        clamp: the MC estimate is clamped to ±clamp after the reduction
            (reference: ±100); ``None`` disables. Not applied to the analytic KL
            (it is never negative).
        reduction: ``"sum"`` (textbook KL) or ``"mean"`` (the reference's scale
            for δ) over the Z latent dims.

    Returns:
        (B,) KL in nats (sum over Z) or nats per latent dim (mean over Z).
    """
    if reduction not in ("sum", "mean"):
        raise ValueError(f"kl reduction must be 'sum' or 'mean', got {reduction!r}")
    pi, prior = gaussian(pi_params), gaussian(prior_params.detach())
    if estimator == "analytic":
        per_dim = kl_divergence(pi, prior)
    elif estimator == "sampled":
        u = pi.rsample((n_samples,))  # (N, B, Z)
        per_dim = (pi.log_prob(u) - prior.log_prob(u)).mean(0)
    else:
        raise ValueError(f"kl estimator must be 'analytic' or 'sampled', got {estimator!r}")
    kl = per_dim.sum(-1) if reduction == "sum" else per_dim.mean(-1)
    if estimator == "sampled" and clamp is not None:
        kl = kl.clamp(-clamp, clamp)
    return kl


def critic_target(
    r: torch.Tensor,
    done: torch.Tensor,
    gamma: float | torch.Tensor,
    q_target_next_min: torch.Tensor,
    alpha: torch.Tensor,
    kl_next: torch.Tensor,
) -> torch.Tensor:
    """Q-target, Algorithm 1 line 8: Q̄ = r̃ + γ(1 − d)[min_i Q̄_i(s', z') − α·D_KL(π(·|s') ‖ p(·|s'))].

    Args:
        r: (B,) H-step reward r̃(s, z).
        done: (B,) 1.0 where s' is terminal (not on truncation).
        gamma: discount γ (a tensor (B,) for n-step returns: γ^n).
        q_target_next_min: (B,) min over the twin target critics at (s', z' ~ π(·|s')).
        alpha: temperature α (scalar tensor; detached here).
        kl_next: (B,) KL at s' (or log π(z'|s') for the entropy baselines).

    Returns:
        (B,) detached target.
    """
    v_next = q_target_next_min - alpha.detach() * kl_next
    return (r + gamma * (1.0 - done.float()) * v_next).detach()


def critic_loss(q_pred: torch.Tensor, q_target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Algorithm 1 line 10: mean over the batch of ½(Q_φ(s, z) − Q̄)² (MSE, not Huber); optional IS weights."""
    sq = 0.5 * (q_pred - q_target.detach()).pow(2)
    return (sq * weights).mean() if weights is not None else sq.mean()


def actor_loss(q_min: torch.Tensor, alpha: torch.Tensor, kl: torch.Tensor) -> torch.Tensor:
    """Algorithm 1 line 9 (minimised wrt θ): mean of α·D_KL(π(·|s) ‖ p(·|s)) − min_i Q_i(s, z̃), z̃ ~ π reparameterised.

    Args:
        q_min: (B,) min of the twin critics at the resampled skill (critic params frozen,
            gradient flowing into the policy through z̃).
        alpha: temperature α (detached here).
        kl: (B,) KL at s with gradient into the policy (or log π(z̃|s) for the entropy baselines).
    """
    return (alpha.detach() * kl - q_min).mean()


def alpha_loss(log_alpha: torch.Tensor, kl: torch.Tensor, delta: float) -> torch.Tensor:
    """Temperature loss, Algorithm 1 line 11 with log-α parameterisation: log α · (δ − D_KL).

    Minimising it by gradient descent gives ∂L/∂log α = δ − KL̄, so log α RISES
    when the mean KL exceeds δ (stronger pull towards the prior) and FALLS when
    KL < δ — the dual of max E[r] s.t. KL ≤ δ (appendix A). (Appendix A prints
    the objective with the opposite sign, a known typo.) Using log α instead of
    α, as RLlib and most SAC code do, changes the step size, not the sign, and
    keeps α > 0.

    Args:
        log_alpha: (1,) trainable log α.
        kl: (B,) KL (detached here); for the entropy baselines pass −entropy
            = log π(z̃|s), with ``delta`` = −target entropy.
        delta: target divergence δ (on the scale of ``kl``, see module docstring).
    """
    return (log_alpha * (delta - kl.detach())).mean()
