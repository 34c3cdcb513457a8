"""Env family ``kitchen``: FrankaKitchen-v1 with D4RL's state layout and SPiRL's ordered scoring.

Env: :func:`spirl_ray.envs.kitchen.make_kitchen_env`; data: the scripted
primitives (:func:`spirl_ray.data.collect_kitchen.collect_kitchen_dataset`);
metrics: subtasks completed per episode (the env's scoring) and success
(every target subtask done).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator

from spirl_ray.envs.families.base import EnvFamily, EpisodeMetric, load_entry_point

def check_kitchen_tasks(tasks: list[str]) -> list[str]:
    """Kitchen ``env.tasks_to_complete``: names of FrankaKitchen-v1's subtasks, at least one, none twice.

    The valid names are :data:`spirl_ray.envs.kitchen.KITCHEN_SUBTASKS` (the
    seven subtasks gymnasium-robotics scores). Checked when the config loads,
    so a typo fails before data collection, not in the RL EnvRunner.

    Raises:
        ValueError: an unknown name (with the closest valid names, difflib), a
            repeated name, or an empty list; the message lists the valid names.
    """
    from spirl_ray.envs.kitchen import KITCHEN_SUBTASKS

    valid = list(KITCHEN_SUBTASKS)
    if not tasks:
        raise ValueError(f"needs at least one subtask; valid names: {valid}")
    problems = []
    for name in tasks:
        if name not in KITCHEN_SUBTASKS:
            close = difflib.get_close_matches(str(name), valid, n=2, cutoff=0.6)
            hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
            problems.append(f"unknown subtask {name!r}{hint}")
    repeated = sorted({t for t in tasks if tasks.count(t) > 1})
    if repeated:
        problems.append(f"repeated subtask(s) {repeated}")
    if problems:
        raise ValueError("; ".join(problems) + f"; valid names: {valid}")
    return tasks


class KitchenFamily(EnvFamily):
    """``env.name: kitchen`` — FrankaKitchen-v1 (gymnasium-robotics), 9-d joint-velocity actions.

    Defaults: the paper's target (microwave, kettle, bottom burner, light
    switch), D4RL's 30-d qpos layout, ordered scoring, 280-step episodes.
    """

    name: Literal["kitchen"] = "kitchen"
    tasks_to_complete: list[str] = Field(
        default_factory=lambda: ["microwave", "kettle", "bottom burner", "light switch"],
        description="target subtasks, in order (the paper's kitchen target by default)",
    )
    state_layout: Literal["d4rl30", "full59"] = Field(
        "d4rl30", description="D4RL's 30-d qpos layout (default) or the full 59-d obs"
    )
    scoring: Literal["ordered", "any_order"] = Field("ordered", description="'ordered' = reference SPiRL scoring")
    max_episode_steps: PositiveInt = Field(280, description="episode length in env steps")

    factory: ClassVar[str] = "spirl_ray.envs.kitchen:make_kitchen_env"
    collector: ClassVar[str] = "spirl_ray.data.collect_kitchen:collect_kitchen_dataset"
    episode_metrics: ClassVar[tuple[EpisodeMetric, ...]] = (
        EpisodeMetric("num_subtasks_completed", "num_subtasks_completed_mean"),
        EpisodeMetric("success", "success_mean"),
    )

    @field_validator("tasks_to_complete")
    @classmethod
    def _known_tasks(cls, v: list[str]) -> list[str]:
        return check_kitchen_tasks(v)

    def env_kwargs(self) -> dict[str, Any]:
        return {
            "tasks_to_complete": tuple(self.tasks_to_complete),
            "state_layout": self.state_layout,
            "scoring": self.scoring,
            "max_episode_steps": self.max_episode_steps,
        }

    def reader_kwargs(self) -> dict[str, Any]:
        return {"state_layout": self.state_layout}

    def data_settings(self) -> dict[str, Any]:
        return {"state_layout": self.state_layout}

    def dataset_variant(self, collect: Any = None) -> str:
        order = getattr(collect, "subtask_order", "random")
        return self.state_layout if order == "random" else f"{self.state_layout}_{order}order"

    def collection_banner(self, collect: Any) -> str:
        return f"collecting {collect.episodes} scripted kitchen episodes ({collect.subtask_order} subtask order)"

    def collect(self, collect: Any, path: Path, show_progress: bool = True) -> str:
        summary = load_entry_point(self.collector)(
            path, num_episodes=collect.episodes, seed=collect.seed, num_workers=collect.num_workers,
            state_layout=self.state_layout, random_action_fraction=collect.random_action_fraction,
            subtask_order=collect.subtask_order, show_progress=show_progress,
        )
        rates = {
            name: (f"{v['successes']}/{v['attempts']}" if v.get("attempts") else "not scripted")
            for name, v in summary.get("per_subtask", {}).items()
        }
        return (f"collector success per subtask: {rates}; mean episode length "
                f"{summary.get('mean_episode_length', float('nan')):.0f} env steps")

    def prior_rollout_summary(self, r: dict[str, Any]) -> str:
        return (f"mean subtasks ({self.scoring}) {r['mean_subtasks']:.2f}, any of 7 {r['mean_any_subtasks']:.2f}, "
                f"mean return {r['mean_return']:.2f}")
