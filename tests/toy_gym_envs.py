"""Small gymnasium envs for the ``env.name: gymnasium`` tests, built by entry point (``toy_gym_envs:<Class>``)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class DictReachEnv(gym.Env):
    """Dict observations ``pos`` (2,), ``goal`` (2,), ``camera`` (8, 8, 3) uint8; Box(-1, 1, (2,)) actions.

    ``pos`` moves by 0.1 x action; reward = -distance; ``info["is_success"]`` when within 0.1 of the goal.
    No time limit of its own (give ``max_episode_steps``).
    """

    def __init__(self, goal=(0.5, -0.5)):
        self.observation_space = gym.spaces.Dict({
            "pos": gym.spaces.Box(-2, 2, (2,), np.float32), "goal": gym.spaces.Box(-2, 2, (2,), np.float32),
            "camera": gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)})
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)
        self.goal = np.asarray(goal, np.float32)

    def _obs(self):
        cam = np.zeros((8, 8, 3), np.uint8)
        cam[..., 0] = np.uint8(min(255, 100 * np.linalg.norm(self.pos - self.goal)))
        return {"pos": self.pos.copy(), "goal": self.goal.copy(), "camera": cam}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-0.2, 0.2, 2).astype(np.float32)
        return self._obs(), {}

    def step(self, action):
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float32), -2, 2).astype(np.float32)
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -dist, False, False, {"is_success": dist < 0.1}


def toward_goal(observation, rng):
    """Scripted policy for :class:`DictReachEnv`: step toward the goal, with noise."""
    delta = observation["goal"] - observation["pos"]
    return np.clip(5 * delta + 0.2 * rng.normal(size=2), -1, 1)


class TupleObsEnv(DictReachEnv):
    """Unsupported observations: a Tuple space."""

    def __init__(self):
        super().__init__()
        self.observation_space = gym.spaces.Tuple((gym.spaces.Discrete(3), gym.spaces.Discrete(2)))
