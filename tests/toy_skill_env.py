"""A fast stand-in for the kitchen skill env, shared by the SPiRL tests (no MuJoCo)."""

import gymnasium as gym
import numpy as np
import torch

from spirl_ray.skills.checkpoint import save_skill_model
from spirl_ray.skills.models import SkillModel, SkillModelConfig

OBS, Z, H, T = 8, 4, 10, 5


class ToySkillEnv(gym.Env):
    """8-d obs, Box(-2, 2, (4,)) skills, T high-level steps of H env steps each.

    Reward prefers z = (1, 1, 1, 1); info carries the kitchen-style keys.
    """

    def __init__(self, config=None):
        self.observation_space = gym.spaces.Box(-10, 10, (OBS,), np.float32)
        self.action_space = gym.spaces.Box(-2, 2, (Z,), np.float32)
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.np_random.normal(size=OBS).astype(np.float32), {}

    def step(self, action):
        assert self.action_space.contains(np.asarray(action, np.float32)), action
        self.t += 1
        obs = self.np_random.normal(size=OBS).astype(np.float32)
        done = self.t >= T
        info = {"env_steps": H, "num_subtasks_completed": self.t // 2, "success": done}
        return obs, -float(np.sum((action - 1.0) ** 2)), False, done, info


def save_toy_skill_model(path) -> str:
    """A small skill model for ToySkillEnv with non-trivial BatchNorm statistics; returns its path."""
    torch.manual_seed(0)
    model = SkillModel(SkillModelConfig(obs_dim=OBS, action_dim=3, horizon=H, latent_dim=Z))
    model.prior.train()
    with torch.no_grad():
        for _ in range(20):
            model.prior(3.0 * torch.randn(64, OBS) + 1.0)
    model.eval()
    return str(save_skill_model(path, model))
