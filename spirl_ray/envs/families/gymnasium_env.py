"""Env family ``gymnasium``: any gymnasium env with a Box action space, the user's data or scripted policy.

YAML::

    env:
      name: gymnasium
      id: gymnasium_robotics:FetchReach-v4   # registered id; "pkg.module:Id" imports pkg first;
                                              # "pkg.module:EnvClass" builds the class itself
      kwargs: {reward_type: dense}            # passed to gym.make / the class
      obs_keys: [observation, desired_goal]   # Dict observations: entries to flatten (default: all, sorted)
      image_key: null                         # Dict observations: an (H, W, C) uint8 entry = image states
      max_episode_steps: null                 # default: the env's registered limit
    data:
      path: my_data.hdf5                      # a D4RL hdf5 file or a Minari dataset, or:
      collect: {policy: "my_pkg.policies:reach", episodes: 200}

Env: :func:`spirl_ray.envs.gymnasium_adapter.make_gymnasium_env`; data: the
user's policy run by :func:`spirl_ray.data.collect_policy.collect_policy_dataset`;
metric: success from ``info["success"]`` / ``info["is_success"]`` (the episode
return is reported for every env).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt

from spirl_ray.envs.families.base import EnvFamily, EpisodeMetric, load_entry_point

_ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


class GymnasiumFamily(EnvFamily):
    """``env.name: gymnasium`` — a gymnasium env by id or entry point (module docstring)."""

    name: Literal["gymnasium"] = "gymnasium"
    id: str = Field(description="registered gymnasium id, 'package.module:EnvId-v0' or 'package.module:EnvClass'")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of gym.make / the class")
    obs_keys: list[str] | None = Field(
        None, description="Dict observations: entries concatenated into the state vector, in order (None: all, sorted)"
    )
    image_key: str | None = Field(
        None, description="Dict observations: the (H, W, C) uint8 entry used as (C, H, W) image states"
    )
    max_episode_steps: PositiveInt | None = Field(None, description="episode limit in env steps; None: the env's own")

    factory: ClassVar[str] = "spirl_ray.envs.gymnasium_adapter:make_gymnasium_env"
    collector: ClassVar[str] = "spirl_ray.data.collect_policy:collect_policy_dataset"
    episode_metrics: ClassVar[tuple[EpisodeMetric, ...]] = (EpisodeMetric("success", "success_mean"),)

    @property
    def image_states(self) -> bool:
        return self.image_key is not None

    @property
    def label(self) -> str:
        """The id without its module, e.g. ``FetchReach-v4`` (trial names, collected file names)."""
        return re.sub(r"[^A-Za-z0-9_.+-]", "_", self.id.rpartition(":")[2])

    def env_kwargs(self) -> dict[str, Any]:
        return {"env_id": self.id, "kwargs": dict(self.kwargs), "max_episode_steps": self.max_episode_steps,
                "obs_keys": list(self.obs_keys) if self.obs_keys else None, "image_key": self.image_key}

    def reader_kwargs(self) -> dict[str, Any]:
        return {"state_layout": None, "dict_keys": list(self.obs_keys) if self.obs_keys else None}

    def data_settings(self) -> dict[str, Any]:
        return {"state_layout": None, "dict_keys": self.obs_keys}

    def dataset_variant(self, collect: Any = None) -> str:
        what = {"env": self.env_kwargs(), "policy": getattr(collect, "policy", None)}
        digest = hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"{self.label}_{digest}"

    def collection_banner(self, collect: Any) -> str:
        return f"collecting {collect.episodes} episodes of {self.id} with policy {collect.policy}"

    def collect(self, collect: Any, path: Path, show_progress: bool = True) -> str:
        summary = load_entry_point(self.collector)(
            path, env_kwargs=self.env_kwargs(), policy=collect.policy, num_episodes=collect.episodes,
            seed=collect.seed, num_workers=collect.num_workers,
            random_action_fraction=collect.random_action_fraction, show_progress=show_progress,
        )
        success = summary.get("success_rate")
        return (f"{summary['episodes']} episodes, {summary['total_steps']} env steps, mean episode length "
                f"{summary['mean_episode_length']:.0f} env steps, mean return {summary['mean_return']:.2f}"
                + ("" if success is None else f", success {success:.2f}") + f", {summary['wall_time_s']:.0f} s")

    def missing_images_hint(self) -> str:
        return f"env.image_key {self.image_key!r} trains on image states (key 'images')"

    def check_experiment(self, data: Any, offline_model: str | None) -> None:
        policy = data.collect.policy
        if policy is not None and not _ENTRY_POINT.match(policy):
            raise ValueError(f"data.collect.policy {policy!r} is not of the form 'package.module:function'")
        if offline_model is not None and data.path is None and policy is None:
            raise ValueError("env.name 'gymnasium' has no scripted expert: set data.path (a D4RL hdf5 file or a "
                             "Minari dataset) or data.collect.policy ('package.module:function')")
        if self.image_key is not None and data.path is not None and data.format == "minari":
            raise ValueError("env.image_key: image states are read from D4RL-layout files (key 'images'), not Minari")

    def preflight(self, data: Any = None, offline_model: str | None = None) -> None:
        """Build the env once: an unregistered id or unsupported spaces fail here, with gymnasium's reason;
        an env without a time limit needs ``env.max_episode_steps``; the policy must import.

        Raises:
            ValueError: the reason, naming the id / field.
        """
        from spirl_ray.envs.gymnasium_adapter import make_gymnasium_env, time_limit

        env = make_gymnasium_env(**self.env_kwargs())
        try:
            if time_limit(env) is None:
                raise ValueError(f"gymnasium env {self.id!r} has no time limit: set env.max_episode_steps "
                                 "(episodes must end for SAC's episodes and the skill env)")
        finally:
            env.close()
        policy = getattr(getattr(data, "collect", None), "policy", None)
        if policy is not None and offline_model is not None and data.path is None:
            try:
                load_entry_point(policy)
            except ValueError as e:
                raise ValueError(f"data.collect.policy: {e}") from None

    def prior_rollout_summary(self, r: dict[str, Any]) -> str:
        line = f"mean return {r['mean_return']:.2f}, {r['env_steps'] / max(r['episodes'], 1):.0f} env steps per episode"
        if "success_rate" in r:
            line = f"success rate {r['success_rate']:.2f}, " + line
        return line
