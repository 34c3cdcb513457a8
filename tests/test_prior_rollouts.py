"""Prior rollouts execute exactly what the prior-initialised policy executes (issue: kitchen results, §4)."""

import torch

from spirl_ray.experiments.prior_rollouts import squash_skill
from spirl_ray.rl.spirl.rl_module import SquashedGaussianSquashedMode, to_squash_space


def test_squash_skill_is_the_policy_map_not_a_clamp():
    u = torch.tensor([[-3.0, -1.0, -0.2, 0.0, 0.4, 1.5, 2.5]])
    z = squash_skill(u, z_bound=2.0, squash_scale=2.0)
    torch.testing.assert_close(z, 2.0 * torch.tanh(u / 2.0))
    assert not torch.allclose(z, u.clamp(-2, 2), atol=1e-3)  # the old prior-rollout map


def test_squash_skill_matches_the_rl_modules_deterministic_action():
    """Same u -> same z: RLlib's squashed mean in [-1, 1], rescaled to the skill env's Box(-2, 2)."""
    torch.manual_seed(0)
    mu, log_sigma = 1.5 * torch.randn(5, 4), torch.full((5, 4), -1.0)
    params = to_squash_space(torch.cat([mu, log_sigma], -1), 2.0)
    a = SquashedGaussianSquashedMode.from_logits(params).to_deterministic().sample()  # in [-1, 1]
    torch.testing.assert_close(2.0 * a, squash_skill(mu, 2.0, 2.0))
    # The scale is wired: the reference map 2·tanh(u) differs.
    assert not torch.allclose(2.0 * a, squash_skill(mu, 2.0, 1.0), atol=1e-3)
