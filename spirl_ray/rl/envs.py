"""Env construction for RLlib EnvRunners: low-level env by name, optionally wrapped as a skill env.

RLlib builds envs from a registered name plus an ``env_config`` dict; this
module is that one entry point (registered as :data:`RL_ENV_NAME`), so every
EnvRunner, local or on a cluster node, builds the same env from the config.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

#: name under which :func:`make_rl_env` is registered with Tune/RLlib.
RL_ENV_NAME = "spirl_ray_env"

_skill_model_cache: dict[str, Any] = {}


def make_low_level_env(name: str, env_kwargs: dict[str, Any] | None = None) -> gym.Env:
    """Build the low-level env of family ``name`` (:data:`spirl_ray.envs.families.FAMILIES`) from its factory's kwargs.

    Raises:
        ValueError: unknown ``name`` (the message lists the known ones), or the factory refuses the kwargs.
    """
    from spirl_ray.envs.families import make_env

    return make_env(name, env_kwargs)


def make_rl_env(env_config: dict[str, Any]) -> gym.Env:
    """RLlib env creator.

    ``env_config`` keys: ``env`` (env family name, :mod:`spirl_ray.envs.families`),
    ``env_kwargs`` (dict for its factory), ``skill_model_path`` (wrap in :class:`~spirl_ray.rl.skill_env.SkillEnv`
    when set; flat env otherwise), ``z_bound`` (default 2.0),
    ``torch_threads`` (decoder threads in this process, default 1).
    """
    import torch

    from spirl_ray.rl.skill_env import SkillEnv
    from spirl_ray.skills.checkpoint import load_skill_model

    env = make_low_level_env(env_config.get("env", "kitchen"), env_config.get("env_kwargs"))
    path = env_config.get("skill_model_path")
    if not path:
        return env
    torch.set_num_threads(int(env_config.get("torch_threads", 1)))
    if path not in _skill_model_cache:
        _skill_model_cache[path] = load_skill_model(path)
    return SkillEnv(env, _skill_model_cache[path], z_bound=float(env_config.get("z_bound", 2.0)))


def register_envs() -> None:
    """Register :func:`make_rl_env` with Tune under :data:`RL_ENV_NAME` (idempotent)."""
    from ray.tune.registry import register_env

    register_env(RL_ENV_NAME, make_rl_env)
