"""The skill env: a gymnasium wrapper whose action is a skill z (paper §3.3).

One high-level step = decode z with the frozen skill decoder and execute up to
H low-level env steps, summing their rewards (the H-step reward r~ of Alg. 1).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from spirl_ray.skills.models import SkillModel


class SkillEnv(gym.Wrapper):
    """Executes skills z in Box(-z_bound, z_bound, (|Z|,)) on a low-level env.

    Open-loop decoder: the H actions are decoded at once from z. Closed-loop
    decoder: each action is decoded from [s_t, z] on the current state.
    Decoded actions are clipped to the low-level action space.

    Args:
        env: low-level env with a flat Box observation (the state the decoder reads).
        skill_model: trained :class:`SkillModel`; used frozen, in eval mode, on CPU.
        z_bound: skill action bound; the paper squashes to [-2, 2] (appendix B.2).

    ``info`` of a step is the last low-level ``info`` plus ``env_steps``: the
    number of low-level env steps executed (H unless the episode ended early).
    Episode length in RLlib counts high-level steps; ``env_steps`` is how
    results are plotted against env steps, the paper's x axis.
    """

    def __init__(self, env: gym.Env, skill_model: SkillModel, z_bound: float = 2.0):
        super().__init__(env)
        cfg = skill_model.config
        if env.observation_space.shape != (cfg.obs_dim,):
            raise ValueError(
                f"skill model expects states of shape ({cfg.obs_dim},) but the env observes "
                f"{env.observation_space.shape}; check env state_layout vs the prior's dataset"
            )
        if env.action_space.shape != (cfg.action_dim,):
            raise ValueError(f"skill model decodes {cfg.action_dim}-d actions but the env takes {env.action_space.shape}")
        self.model = skill_model.cpu().eval().requires_grad_(False)
        self.horizon = cfg.horizon
        self.closed_loop = cfg.decoder == "closed_loop"
        self.action_space = gym.spaces.Box(-z_bound, z_bound, (cfg.latent_dim,), np.float32)
        self._low = np.asarray(env.action_space.low, np.float32)
        self._high = np.asarray(env.action_space.high, np.float32)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        info = dict(info, env_steps=0)
        return obs, info

    @torch.inference_mode()
    def step(self, z: np.ndarray):
        z_t = torch.as_tensor(np.asarray(z, np.float32)).reshape(1, -1)
        if not self.closed_loop:
            actions = np.clip(self.model.decode(z_t)[0].numpy(), self._low, self._high)
        total_reward = 0.0
        terminated = truncated = False
        info: dict[str, Any] = {}
        obs = self._obs
        k = 0
        for k in range(1, self.horizon + 1):
            if self.closed_loop:
                s = torch.as_tensor(obs, dtype=torch.float32).reshape(1, -1)
                action = np.clip(self.model.decode_step(z_t, s)[0].numpy(), self._low, self._high)
            else:
                action = actions[k - 1]
            obs, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            if terminated or truncated:
                break
        self._obs = obs
        info = dict(info, env_steps=k)
        return obs, total_reward, terminated, truncated, info
