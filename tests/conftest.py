"""Shared fixtures: tiny synthetic datasets and envs, made on the fly."""

from __future__ import annotations

import gymnasium as gym
import h5py
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _torch_threads():
    torch.set_num_threads(1)


def write_d4rl(path, episodes: list[tuple[np.ndarray, np.ndarray]]) -> None:
    """Write a flat D4RL-layout hdf5 file from (obs (T, S), actions (T, A)) episodes."""
    obs = np.concatenate([o for o, _ in episodes]).astype(np.float32)
    act = np.concatenate([a for _, a in episodes]).astype(np.float32)
    timeouts = np.zeros(len(obs), bool)
    ends = np.cumsum([len(o) for o, _ in episodes]) - 1
    timeouts[ends] = True
    with h5py.File(path, "w") as f:
        f["observations"] = obs
        f["actions"] = act
        f["rewards"] = np.zeros(len(obs), np.float32)
        f["terminals"] = np.zeros(len(obs), bool)
        f["timeouts"] = timeouts


def structured_episodes(n_episodes=12, length=40, obs_dim=4, act_dim=2, seed=0):
    """Episodes whose actions follow the state (learnable skills): a_t = tanh(W s_t) + small noise."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(act_dim, obs_dim))
    eps = []
    for _ in range(n_episodes):
        s = np.zeros((length, obs_dim), np.float32)
        a = np.zeros((length, act_dim), np.float32)
        s[0] = rng.normal(size=obs_dim)
        for t in range(length):
            a[t] = np.tanh(w @ s[t]) + 0.01 * rng.normal(size=act_dim)
            if t + 1 < length:
                s[t + 1] = 0.9 * s[t] + 0.3 * np.pad(a[t], (0, obs_dim - act_dim))
        eps.append((s, a))
    return eps


class CountingEnv(gym.Env):
    """Box obs (obs_dim,), Box(-1,1) actions; reward 1 per step; terminates after ``terminate_at`` steps.

    Records every action it receives in ``self.actions``.
    """

    def __init__(self, obs_dim=4, act_dim=2, terminate_at=25, truncate_at=1000):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self.terminate_at, self.truncate_at = terminate_at, truncate_at
        self.actions: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.full(self.observation_space.shape, 0.0, np.float32), {}

    def step(self, action):
        self.actions.append(np.array(action))
        self.t += 1
        obs = np.full(self.observation_space.shape, float(self.t), np.float32)
        return obs, 1.0, self.t >= self.terminate_at, self.t >= self.truncate_at, {"t": self.t}
