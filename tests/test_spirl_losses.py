"""The SPiRL loss terms (spirl_ray/rl/spirl/losses.py) against closed forms and Algorithm 1."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from spirl_ray.rl.spirl import losses


def _params(b=16, z=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.cat([torch.randn(b, z, generator=g), 0.5 * torch.randn(b, z, generator=g)], dim=-1)


def test_analytic_kl_equals_torch_distributions_summed_over_latent_dims():
    pi, prior = _params(seed=0), _params(seed=1)
    ref = kl_divergence(
        Normal(pi[:, :4], pi[:, 4:].exp()), Normal(prior[:, :4], prior[:, 4:].exp())
    ).sum(-1)
    got = losses.kl_to_prior(pi, prior, "analytic")
    assert got.shape == (16,)
    torch.testing.assert_close(got, ref)
    # KL of a distribution to itself is zero.
    torch.testing.assert_close(losses.kl_to_prior(pi, pi), torch.zeros(16), atol=1e-6, rtol=0)


def test_sampled_kl_matches_analytic_for_many_samples_and_is_clamped():
    torch.manual_seed(0)
    pi, prior = _params(b=8, seed=2), _params(b=8, seed=3)
    analytic = losses.kl_to_prior(pi, prior, "analytic")
    sampled = losses.kl_to_prior(pi, prior, "sampled", n_samples=20000, clamp=None)
    torch.testing.assert_close(sampled, analytic, atol=0.15 + 0.03 * analytic.max().item(), rtol=0.03)
    # Reference clamp: ±100.
    far = prior.clone()
    far[:, :4] += 100.0
    assert losses.kl_to_prior(pi, far, "sampled", n_samples=4).max().item() == pytest.approx(100.0)


def test_kl_gradient_flows_into_policy_not_prior():
    pi, prior = _params().requires_grad_(), _params(seed=1).requires_grad_()
    losses.kl_to_prior(pi, prior).sum().backward()
    assert pi.grad is not None and pi.grad.abs().sum() > 0
    assert prior.grad is None


def test_unknown_estimator_raises():
    with pytest.raises(ValueError, match="analytic"):
        losses.kl_to_prior(_params(), _params(), "exact")


@pytest.mark.parametrize("kl_value, direction", [(8.0, +1), (2.0, -1)])
def test_alpha_rises_when_kl_above_delta_and_falls_below(kl_value, direction):
    delta = 5.0
    log_alpha = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([log_alpha], lr=3e-4)
    loss = losses.alpha_loss(log_alpha, torch.full((32,), kl_value), delta)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert direction * log_alpha.item() > 0, (kl_value, log_alpha.item())
    # ∂L/∂log α = δ − mean KL.
    assert log_alpha.grad.item() == pytest.approx(delta - kl_value)


def test_critic_target_formula_algorithm1_line8():
    r = torch.tensor([1.0, 2.0, -1.0])
    done = torch.tensor([0.0, 1.0, 0.0])
    q_next = torch.tensor([10.0, 10.0, 4.0])
    kl_next = torch.tensor([2.0, 3.0, 0.5])
    alpha = torch.tensor([0.5], requires_grad=True)
    got = losses.critic_target(r, done, 0.9, q_next, alpha, kl_next)
    # r + γ(1−d)(Q̄ − α KL)
    expected = torch.tensor([1.0 + 0.9 * (10.0 - 1.0), 2.0, -1.0 + 0.9 * (4.0 - 0.25)])
    torch.testing.assert_close(got, expected)
    assert not got.requires_grad


def test_critic_loss_is_half_mse_and_actor_loss_uses_detached_alpha():
    q = torch.tensor([1.0, 3.0], requires_grad=True)
    target = torch.tensor([0.0, 1.0])
    assert losses.critic_loss(q, target).item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    alpha = torch.tensor([2.0], requires_grad=True)
    kl = torch.tensor([1.0, 3.0])
    q_min = torch.tensor([5.0, 1.0])
    a_loss = losses.actor_loss(q_min, alpha, kl)
    assert a_loss.item() == pytest.approx(((2 * 1 - 5) + (2 * 3 - 1)) / 2)
    assert not a_loss.requires_grad  # α is detached in the actor loss; nothing else needs grad here


def test_entropy_mode_matches_rllib_sac_alpha_loss():
    """With kl := log π and δ := −target_entropy the α loss equals RLlib SAC's."""
    log_alpha = torch.tensor([0.3])
    logp = torch.tensor([-1.0, 0.5, 2.0])
    target_entropy = -4.0
    rllib = -(log_alpha * (logp + target_entropy)).mean()
    ours = losses.alpha_loss(log_alpha, logp, -target_entropy)
    assert ours.item() == pytest.approx(rllib.item())
    assert math.isfinite(ours.item())


def test_mean_reduction_is_the_reference_scale():
    """kl_reduction='mean' is the per-latent-dim mean (the scale of the paper's δ); 'sum' the textbook KL."""
    pi, prior = _params(seed=0), _params(seed=1)
    total = losses.kl_to_prior(pi, prior, reduction="sum")
    assert (total > 0.1).all()
    mean = losses.kl_to_prior(pi, prior, reduction="mean")
    z = pi.shape[-1] // 2
    torch.testing.assert_close(mean * z, total)
    with pytest.raises(ValueError, match="reduction"):
        losses.kl_to_prior(pi, prior, reduction="max")
