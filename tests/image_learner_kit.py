"""Shared pieces of the image-learner tests (test_image_prior.py, test_prior_feature_cache.py):
tiny image spaces, a SPiRL learner on them, and a fixed random replay batch."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns

from spirl_ray.rl.spirl import SPiRLConfig

IMG = (2, 32, 32)  # maze-like: two stacked 32 x 32 frames
Z, H, A = 4, 5, 2  # |Z|, skill horizon, action dim


def image_spaces() -> tuple[gym.spaces.Box, gym.spaces.Box]:
    """(uint8 image observation space, skill action space Box(-2, 2, (Z,)))."""
    return gym.spaces.Box(0, 255, IMG, np.uint8), gym.spaces.Box(-2, 2, (Z,), np.float32)


def image_learner(path, batch_size: int = 16, fast: bool = True, fused_image_forward: bool = True, **training):
    """A SPiRL learner on :func:`image_spaces` with the skill model at ``path`` (critics 2 x 32, large
    learning rates and tau so that a few steps move every weight); torch seeded 0 before it is built."""
    obs_space, act_space = image_spaces()

    class _Env(gym.Env):
        observation_space, action_space = obs_space, act_space

    config = (SPiRLConfig().environment(observation_space=obs_space, action_space=act_space)
              .training(skill_model_path=path, train_batch_size_per_learner=batch_size, target_divergence=1.0,
                        learner_fast_path=fast, tau=0.3, actor_lr=3e-3, critic_lr=3e-3, **training)
              .rl_module(model_config={"critic_hidden": 32, "critic_layers": 2,
                                       "fused_image_forward": fused_image_forward}))
    torch.manual_seed(0)
    return config.build_learner(env=_Env())


def image_data(n: int, seed: int = 4) -> dict[str, np.ndarray]:
    """``n`` random transitions: uint8 images s and s', actions in [-1, 1], rewards, 20 % terminal."""
    rng = np.random.default_rng(seed)
    return {Columns.OBS: rng.integers(0, 256, (n, *IMG), dtype=np.uint8),
            Columns.NEXT_OBS: rng.integers(0, 256, (n, *IMG), dtype=np.uint8),
            Columns.ACTIONS: rng.uniform(-1, 1, (n, Z)).astype(np.float32),
            Columns.REWARDS: rng.normal(size=n).astype(np.float32),
            Columns.TERMINATEDS: (rng.random(n) < 0.2).astype(np.float32)}


def module_state(learner) -> dict[str, torch.Tensor]:
    """Copies of the learner's module state dict (parameters and buffers)."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    return {k: v.detach().clone() for k, v in learner.module[DEFAULT_MODULE_ID].state_dict().items()}


def reference_vs_fast_steps(ref, fast, data: dict[str, np.ndarray], minibatch: int) -> None:
    """len(data) / minibatch RLlib ``Learner.update`` calls on ``ref``, one minibatch each, and ONE fast-path
    call on ``fast`` over all rows (``minibatch_size=minibatch``), torch seeded 0 before each side."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    n, ts = len(data[Columns.REWARDS]), {"num_env_steps_sampled_lifetime": 1000}
    torch.manual_seed(0)
    for start in range(0, n, minibatch):
        part = {c: v[start:start + minibatch] for c, v in data.items()}
        ref.update(batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(part)}, env_steps=minibatch), timesteps=ts)
    torch.manual_seed(0)
    fast.update(batch=MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=n), minibatch_size=minibatch,
                num_epochs=1, timesteps=ts)
