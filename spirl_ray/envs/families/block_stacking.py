"""Env family ``block_stacking``: the planar MuJoCo gripper with blocks (paper §4.3, appendix C).

Env: :func:`spirl_ray.envs.block_stacking.make_block_stacking_env`; data:
the noisy stacking script in the 5-block env
(:func:`spirl_ray.data.collect_block_stacking.collect_block_stacking_dataset`);
metrics: stacked blocks at the episode's end (the paper's "# blocks
stacked") and the episode's highest tower.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt

from spirl_ray.envs.families.base import EpisodeMetric, ImageOrVectorFamily, load_entry_point


class BlockStackingFamily(ImageOrVectorFamily):
    """``env.name: block_stacking`` — the 11-block downstream task, image states, dense reward, 1000 steps."""

    name: Literal["block_stacking"] = "block_stacking"
    state: Literal["image", "state"] = Field(
        "image", description="'image' = 2 stacked 32x32 RGB front views, uint8 (6, 32, 32) (paper); "
        "'state' = the 5 + 4 x blocks vector",
    )
    task: Literal["downstream", "data_collection"] = Field(
        "downstream", description="RL env: 'downstream' = 11 blocks in a row (paper's target task); "
        "'data_collection' = the 5-block env of the data (random stacks)",
    )
    reward: Literal["dense", "sparse"] = Field(
        "dense", description="'dense' = lift + on-top + tower terms (appendix C); 'sparse' = tower only"
    )
    max_episode_steps: PositiveInt = Field(1000, description="episode length in env steps")

    factory: ClassVar[str] = "spirl_ray.envs.block_stacking:make_block_stacking_env"
    collector: ClassVar[str] = "spirl_ray.data.collect_block_stacking:collect_block_stacking_dataset"
    episode_metrics: ClassVar[tuple[EpisodeMetric, ...]] = (
        EpisodeMetric("stacked_blocks", "stacked_blocks_mean"),
        EpisodeMetric("max_stacked_blocks", "max_stacked_blocks_mean"),
    )
    state_in_info: ClassVar[bool] = True

    @property
    def image_states(self) -> bool:
        return self.state == "image"

    def env_kwargs(self) -> dict[str, Any]:
        from spirl_ray.envs.block_stacking import DATA_COLLECTION_KWARGS, DOWNSTREAM_KWARGS

        base = DOWNSTREAM_KWARGS if self.task == "downstream" else DATA_COLLECTION_KWARGS
        return {**base, "obs_mode": self.state, "reward_type": self.reward, "max_episode_steps": self.max_episode_steps}

    def check_experiment(self, data: Any, offline_model: str | None) -> None:
        super().check_experiment(data, offline_model)
        if self.state == "state" and self.task == "downstream" and offline_model is not None:
            raise ValueError(
                "env.state 'state' with env.task 'downstream': the prior learns from 5-block data (25-d states) and "
                "cannot read the 11-block env's 49-d states; use env.state 'image' (the paper's) or env.task "
                "'data_collection'"
            )

    def dataset_variant(self, collect: Any = None) -> str:
        scale = getattr(collect, "step_noise_scale", 1.0)
        return self.state if scale == 1.0 else f"{self.state}_stepnoise{scale:g}"

    def collection_banner(self, collect: Any) -> str:
        return (f"collecting {collect.episodes} scripted block-stacking episodes (5 blocks, {self.state} observations, "
                f"{collect.random_action_fraction:.0%} random-action episodes, per-step action noise "
                f"x{collect.step_noise_scale:g})")

    def collect(self, collect: Any, path: Path, show_progress: bool = True) -> str:
        from spirl_ray.data.scripted.stacking_policy import StackingNoise

        default = StackingNoise()
        noise = StackingNoise(action_noise=default.action_noise * collect.step_noise_scale,
                              opening_noise=default.opening_noise * collect.step_noise_scale)
        summary = load_entry_point(self.collector)(
            path, num_episodes=collect.episodes, seed=collect.seed, num_workers=collect.num_workers,
            images=self.state == "image", random_action_fraction=collect.random_action_fraction,
            show_progress=show_progress, noise=noise,
        )
        st, sb = summary["stacks_per_episode"], summary["stacked_blocks"]
        mean_stacks = "n/a" if st["mean"] is None else f"{st['mean']:.2f}"
        max_stacked = "n/a" if sb["scripted_max_mean"] is None else f"{sb['scripted_max_mean']:.2f}"
        return (f"{mean_stacks} successful stacks per scripted episode, highest tower {max_stacked} stacked blocks, "
                f"{summary['total_steps']} env steps, mean episode length {summary['mean_episode_length']:.0f} env "
                f"steps, {summary['wall_time_s']:.0f} s")

    def prior_rollout_summary(self, r: dict[str, Any]) -> str:
        return (f"stacked blocks {r['mean_stacked_blocks']:.2f} at the end, {r['mean_max_stacked_blocks']:.2f} at "
                f"best, mean return {r['mean_return']:.1f}")
