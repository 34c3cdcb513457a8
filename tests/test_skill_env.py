"""Skill env wrapper: decodes z, sums H rewards, stops early, reports env steps."""

import numpy as np
import pytest
import torch

from spirl_ray.rl.skill_env import SkillEnv
from spirl_ray.skills.models import SkillModel, SkillModelConfig

from conftest import CountingEnv

H, Z = 4, 3


def model(decoder="open_loop", obs_dim=4, act_dim=2):
    torch.manual_seed(0)
    return SkillModel(SkillModelConfig(obs_dim=obs_dim, action_dim=act_dim, horizon=H, latent_dim=Z, decoder=decoder,
                                       lstm_hidden=16, decoder_hidden=16, decoder_layers=2)).eval()


@pytest.mark.parametrize("decoder", ["open_loop", "closed_loop"])
def test_sums_rewards_over_h_steps_and_executes_decoded_actions(decoder):
    m = model(decoder)
    base = CountingEnv(terminate_at=100)
    env = SkillEnv(base, m)
    assert env.action_space.shape == (Z,) and env.action_space.low[0] == -2 and env.action_space.high[0] == 2
    obs, info = env.reset(seed=0)
    z = np.array([0.5, -1.0, 2.0], np.float32)
    obs, r, term, trunc, info = env.step(z)
    assert r == H and info["env_steps"] == H and not (term or trunc)
    assert obs[0] == H  # the env advanced H low-level steps
    zt = torch.as_tensor(z)[None]
    if decoder == "open_loop":
        expected = m.decode(zt)[0].detach().numpy()
    else:  # closed loop: each action from the state it was taken in (CountingEnv obs = t)
        expected = np.stack([m.decode_step(zt, torch.full((1, 4), float(t)))[0].detach().numpy() for t in range(H)])
    np.testing.assert_allclose(np.stack(base.actions), np.clip(expected, -1, 1), atol=1e-5)


def test_stops_early_on_termination():
    env = SkillEnv(CountingEnv(terminate_at=6), model())
    env.reset(seed=0)
    _, r1, term1, _, i1 = env.step(np.zeros(Z, np.float32))
    _, r2, term2, _, i2 = env.step(np.zeros(Z, np.float32))
    assert (r1, term1, i1["env_steps"]) == (4.0, False, 4)
    assert (r2, term2, i2["env_steps"]) == (2.0, True, 2)


def test_stops_early_on_truncation():
    env = SkillEnv(CountingEnv(truncate_at=3), model())
    env.reset(seed=0)
    _, r, term, trunc, info = env.step(np.zeros(Z, np.float32))
    assert (r, term, trunc, info["env_steps"]) == (3.0, False, True, 3)


def test_decoded_actions_are_clipped_to_env_bounds():
    m = model()
    with torch.no_grad():
        m.decoder_head.bias.fill_(50.0)
    base = CountingEnv()
    env = SkillEnv(base, m)
    env.reset(seed=0)
    env.step(np.zeros(Z, np.float32))
    assert np.all(np.stack(base.actions) == 1.0)


def test_mismatched_state_dim_is_a_clear_error():
    with pytest.raises(ValueError, match="state_layout"):
        SkillEnv(CountingEnv(obs_dim=5), model(obs_dim=4))


def test_numpy_closed_loop_decoder_equals_torch():
    """The env's numpy decoder (BatchNorm folded) computes decode_step's numbers."""
    from spirl_ray.rl.skill_env import numpy_mlp, run_numpy_mlp

    m = model("closed_loop")
    m.train()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for _ in range(10):
            m.decode_step(torch.randn(64, Z) * 2, torch.randn(64, 4) * 3 + 1)
    m.eval()
    z, s = torch.randn(16, Z), torch.randn(16, 4)
    expected = m.decode_step(z, s).detach().numpy()
    got = run_numpy_mlp(numpy_mlp(m.decoder_mlp), np.concatenate([s.numpy(), z.numpy()], axis=1))
    np.testing.assert_allclose(got, expected, atol=1e-5)


class _ImageCountingEnv(CountingEnv):
    """CountingEnv with (2, 8, 8) uint8 image states whose pixels encode the env step t."""

    def __init__(self):
        super().__init__(terminate_at=100)
        import gymnasium as gym

        self.observation_space = gym.spaces.Box(0, 255, (2, 8, 8), np.uint8)

    @staticmethod
    def image(t: int) -> np.ndarray:
        rng = np.random.default_rng(t)  # a different image at every step
        return rng.integers(0, 256, (2, 8, 8), dtype=np.uint8)

    def reset(self, *, seed=None, options=None):
        _, info = super().reset(seed=seed, options=options)
        return self.image(self.t), info

    def step(self, action):
        _, r, term, trunc, info = super().step(action)
        return self.image(self.t), r, term, trunc, info


def test_closed_loop_decoder_on_images_reads_each_steps_image():
    torch.manual_seed(0)
    m = SkillModel(SkillModelConfig(obs_dim=2 * 8 * 8, action_dim=2, horizon=H, latent_dim=Z, decoder="closed_loop",
                                    image_shape=(2, 8, 8), conv_channels=(4, 8), lstm_hidden=16, decoder_hidden=16,
                                    decoder_layers=2)).eval()
    base = _ImageCountingEnv()
    env = SkillEnv(base, m)
    env.reset(seed=0)
    z = np.array([0.5, -1.0, 2.0], np.float32)
    env.step(z)
    zt = torch.as_tensor(z)[None]
    with torch.no_grad():
        per_step = [m.decode_step(zt, torch.as_tensor(base.image(t))[None])[0].numpy() for t in range(H)]
        first_image_only = m.decode_step(zt.expand(H, -1), torch.as_tensor(base.image(0))[None].expand(H, -1, -1, -1))
    executed = np.stack(base.actions)
    np.testing.assert_allclose(executed, np.clip(np.stack(per_step), -1, 1), atol=1e-5)
    assert not np.allclose(executed, np.clip(first_image_only.numpy(), -1, 1), atol=1e-3)  # the state is fed back
