"""Parallel collection with a user's scripted policy, for ``env.name: gymnasium``, into a D4RL-layout hdf5.

The policy is ``"package.module:function"``, called once per env step as
``function(observation, rng) -> action``: ``observation`` as the gymnasium
env returns it (a dict for Dict spaces, before any flattening), ``rng`` a
``numpy.random.Generator`` seeded per episode. Actions are clipped to the
env's Box. Episodes run as Ray tasks (``num_cpus=1``) in chunks; episode
``i`` is seeded from ``(seed, i)`` only, so the file does not depend on the
number of workers. A ``random_action_fraction`` of the episodes (chosen by
``seed``) take uniform random actions instead (data-quality ablations).

File layout (episodes concatenated; what :func:`~spirl_ray.data.readers.read_d4rl_hdf5` reads):
``observations`` (N, D) float32, the env's observation as the RL env sees it
(:class:`~spirl_ray.envs.gymnasium_adapter.GymnasiumAdapter`; with
``image_key``, the other Box entries flattened, possibly D = 0),
``images`` (N, C, H, W) uint8 with ``image_key``, ``actions`` (N, A) float32,
``rewards`` (N,), ``terminals`` (N,) bool (the env's ``terminated``),
``timeouts`` (N,) bool (``truncated``, or the collector's last step),
``infos/success`` (N,) bool when the env reports success, ``metadata/*``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from spirl_ray.envs.families.base import load_entry_point
from spirl_ray.envs.gymnasium_adapter import flatten_dict_batch, make_gymnasium_env, success_of
from spirl_ray.data.parallel import collect_in_parallel
from spirl_ray.utils import atomic_path

#: the collector's own cap on an episode (env steps) when the env sets none
MAX_EPISODE_STEPS = 10_000


def episode_seed(seed: int, index: int) -> int:
    """Seed of episode ``index`` of a collection with base ``seed`` (worker-independent)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def _vector_part(env, raw_obs) -> np.ndarray:
    """``observations`` row of one raw observation: the adapter's vector, or with images the other Box entries."""
    if env.image_key is None:
        return env.observation(raw_obs)
    keys = sorted(k for k in raw_obs if k != env.image_key and np.asarray(raw_obs[k]).dtype != np.uint8)
    if not keys:
        return np.zeros(0, np.float32)
    return flatten_dict_batch({k: np.asarray(raw_obs[k])[None] for k in keys}, keys)[0]


def collect_episodes(indices: list[int], seed: int, env_kwargs: dict[str, Any], policy: str,
                     random_mask: list[bool]) -> list[dict]:
    """Run episodes ``indices`` (one Ray task); returns one dict of arrays per episode."""
    env = make_gymnasium_env(**env_kwargs)
    act_fn = load_entry_point(policy)
    low, high = env.action_space.low, env.action_space.high
    out = []
    for index, random_episode in zip(indices, random_mask):
        s = episode_seed(seed, index)
        rng = np.random.default_rng(s)
        env.action_space.seed(s)
        raw, _ = env.env.reset(seed=s)  # the adapter's inner env: the policy sees raw observations
        obs, images, actions, rewards, terms = [], [], [], [], []
        success: list[bool] = []
        truncated = terminated = False
        while not (terminated or truncated) and len(actions) < MAX_EPISODE_STEPS:
            obs.append(_vector_part(env, raw))
            if env.image_key is not None:
                images.append(env.observation(raw))
            a = env.action_space.sample() if random_episode else act_fn(raw, rng)
            a = np.clip(np.asarray(a, np.float32).reshape(env.action_space.shape), low, high)
            raw, r, terminated, truncated, info = env.env.step(a)
            actions.append(a)
            rewards.append(float(r))
            terms.append(bool(terminated))
            flag = success_of(info)
            if flag is not None:
                success.append(flag)
        out.append({
            "index": index, "seed": s, "random": bool(random_episode),
            "observations": np.asarray(obs, np.float32).reshape(len(obs), -1),
            "images": np.asarray(images, np.uint8) if images else None,
            "actions": np.asarray(actions, np.float32), "rewards": np.asarray(rewards, np.float32),
            "terminals": np.asarray(terms, bool),
            "success": np.asarray(success, bool) if len(success) == len(actions) else None,
        })
    env.close()
    return out


def _write_hdf5(path, episodes: list[dict], meta: dict) -> None:
    cat = lambda key: np.concatenate([e[key] for e in episodes])  # noqa: E731
    n = sum(len(e["actions"]) for e in episodes)
    timeouts = np.zeros(n, bool)
    timeouts[np.cumsum([len(e["actions"]) for e in episodes]) - 1] = True
    terminals = cat("terminals")
    timeouts &= ~terminals
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("observations", data=cat("observations"), compression="gzip", compression_opts=4)
            if episodes[0]["images"] is not None:
                f.create_dataset("images", data=cat("images"), compression="gzip", compression_opts=4)
            f.create_dataset("actions", data=cat("actions"), compression="gzip", compression_opts=4)
            f.create_dataset("rewards", data=cat("rewards"))
            f.create_dataset("terminals", data=terminals)
            f.create_dataset("timeouts", data=timeouts)
            if all(e["success"] is not None for e in episodes):
                f.create_dataset("infos/success", data=cat("success"))
            m = f.create_group("metadata")
            m.create_dataset("episode_lengths", data=np.array([len(e["actions"]) for e in episodes], np.int64))
            m.create_dataset("random_episode", data=np.array([e["random"] for e in episodes], bool))
            m.create_dataset("episode_seeds", data=np.array([e["seed"] for e in episodes], np.uint64))
            for k, v in meta.items():
                m.attrs[k] = v


def collect_policy_dataset(path, env_kwargs: dict[str, Any], policy: str, num_episodes: int = 100, seed: int = 0,
                           num_workers: int | None = None, random_action_fraction: float = 0.0,
                           show_progress: bool = True, chunk_size: int | None = None) -> dict:
    """Collect ``num_episodes`` episodes of ``policy`` in the gymnasium env ``env_kwargs`` into ``path``.

    Args:
        path: output hdf5 (D4RL layout, module docstring); ``<path>.summary.json`` gets the summary.
        env_kwargs: :func:`~spirl_ray.envs.gymnasium_adapter.make_gymnasium_env` arguments.
        policy: ``"package.module:function"``, ``function(observation, rng) -> action``.
        num_workers: parallel Ray tasks (default: the CPUs Ray has); starts a local Ray when none runs.
        random_action_fraction: fraction of episodes with uniform random actions.
    Returns:
        summary: ``episodes``, ``total_steps``, ``mean_episode_length`` (env steps),
        ``mean_return``, ``success_rate`` (policy episodes whose last step reported
        success; None when the env reports none), ``wall_time_s``, ...
    Raises:
        ValueError: the policy or env cannot be loaded, ``num_episodes`` < 1, bad fraction.
    """
    if num_episodes <= 0:
        raise ValueError("num_episodes must be positive")
    if not 0.0 <= random_action_fraction <= 1.0:
        raise ValueError(f"random_action_fraction must be in [0, 1], got {random_action_fraction}")
    load_entry_point(policy)  # fails here, naming the policy, rather than in a Ray task
    mask = np.zeros(num_episodes, bool)
    k = int(round(random_action_fraction * num_episodes))
    if k:
        mask[np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED])).permutation(num_episodes)[:k]] = True
    t0 = time.time()
    episodes, num_workers = collect_in_parallel(
        collect_episodes, lambda c: (seed, env_kwargs, policy, mask[c].tolist()), num_episodes, num_workers,
        chunk_size, 50, f"{env_kwargs['env_id']} episodes", show_progress,
    )
    wall = time.time() - t0
    lengths = np.array([len(e["actions"]) for e in episodes])
    scripted = [e for e in episodes if not e["random"]]
    finals = [bool(e["success"][-1]) for e in scripted if e["success"] is not None and len(e["success"])]
    summary = {
        "episodes": int(num_episodes), "random_episodes": int(mask.sum()), "total_steps": int(lengths.sum()),
        "mean_episode_length": float(lengths.mean()), "mean_return": float(np.mean([e["rewards"].sum() for e in episodes])),
        "success_rate": float(np.mean(finals)) if finals and len(finals) == len(scripted) else None,
        "wall_time_s": wall, "num_workers": int(num_workers), "path": str(path), "seed": int(seed),
        "policy": policy, "env_kwargs": env_kwargs, "random_action_fraction": float(random_action_fraction),
    }
    meta = {"source": f"spirl_ray policy collector: {policy}", "env_kwargs": json.dumps(env_kwargs),
            "policy": policy, "seed": int(seed), "num_episodes": int(num_episodes),
            "random_action_fraction": float(random_action_fraction)}
    _write_hdf5(path, episodes, meta)
    with atomic_path(f"{path}.summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    return summary
