"""Env family ``maze``: PointMaze on a fixed downstream layout (paper §4.2, appendix C).

Env: :func:`spirl_ray.envs.maze.make_maze_env`; data: the BFS planner +
waypoint controller on a new random 10x10 layout per episode
(:func:`spirl_ray.data.collect_maze.collect_maze_dataset`); metric: success
(goal reached).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from spirl_ray.envs.families.base import EpisodeMetric, ImageOrVectorFamily, load_entry_point


class MazeFamily(ImageOrVectorFamily):
    """``env.name: maze`` — the 20x20 downstream maze of layout seed 0, image states, 2000-step episodes.

    The start and goal default to a pair 40 BFS cells apart; given cells must
    be free cells of the layout (checked when the config loads).
    """

    name: Literal["maze"] = "maze"
    state: Literal["image", "state"] = Field(
        "image", description="'image' = 2 stacked 32x32 local views, uint8 (2, 32, 32) (paper); 'state' = (x, y, vx, vy)"
    )
    size: PositiveInt = Field(20, description="interior cells per side of the downstream maze (paper: 20)")
    layout_seed: int = Field(0, description="seed of the downstream layout (and default start/goal)")
    start_cell: tuple[int, int] | None = Field(None, description="(row, col) start cell; None = far-apart pair")
    goal_cell: tuple[int, int] | None = Field(None, description="(row, col) goal cell; None = far-apart pair")
    goal_distance: PositiveInt = Field(40, description="longest BFS distance (cells) of the default start/goal pair")
    max_episode_steps: PositiveInt = Field(2000, description="episode length in env steps")

    state_in_info: ClassVar[bool] = True
    factory: ClassVar[str] = "spirl_ray.envs.maze:make_maze_env"
    collector: ClassVar[str] = "spirl_ray.data.collect_maze:collect_maze_dataset"
    episode_metrics: ClassVar[tuple[EpisodeMetric, ...]] = (EpisodeMetric("success", "success_mean"),)

    @model_validator(mode="after")
    def _cells_are_free(self) -> "MazeFamily":
        """Start/goal cells must be free cells of the downstream layout (checked before anything runs)."""
        from spirl_ray.envs.maze_layout import generate_layout

        layout = generate_layout(self.size, self.layout_seed)  # ValueError naming the size when it cannot fit
        for key in ("start_cell", "goal_cell"):
            cell = getattr(self, key)
            if cell is not None and not layout.is_free(cell):
                raise ValueError(
                    f"{key}={list(cell)} is not a free cell of the {self.size}x{self.size} maze of layout_seed "
                    f"{self.layout_seed} (grid {layout.shape[0]}x{layout.shape[1]} with its border; row 0 = north)"
                )
        if self.start_cell is not None and self.start_cell == self.goal_cell:
            raise ValueError(f"start_cell and goal_cell must differ, both are {list(self.start_cell)}")
        return self

    @property
    def image_states(self) -> bool:
        return self.state == "image"

    def env_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "size": self.size,
            "layout_seed": self.layout_seed,
            "state": self.state,
            "max_episode_steps": self.max_episode_steps,
            "goal_distance": self.goal_distance,
        }
        if self.start_cell is not None:
            kw["start_cell"] = tuple(self.start_cell)
        if self.goal_cell is not None:
            kw["goal_cell"] = tuple(self.goal_cell)
        return kw

    def check_experiment(self, data: Any, offline_model: str | None) -> None:
        super().check_experiment(data, offline_model)
        if data.collect.random_action_fraction:
            raise ValueError("data.collect.random_action_fraction: the maze planner collector has no random-action "
                             "episodes (kitchen only)")

    def collection_banner(self, collect: Any) -> str:
        return f"collecting {collect.episodes} planner maze episodes ({self.state} observations)"

    def collect(self, collect: Any, path: Path, show_progress: bool = True) -> str:
        summary = load_entry_point(self.collector)(
            path, num_episodes=collect.episodes, seed=collect.seed, num_workers=collect.num_workers,
            state=self.state, show_progress=show_progress,
        )
        return (f"planner success {summary['planner_success_rate']:.3f}, {summary['total_steps']} env steps, "
                f"mean episode length {summary['episode_length']['mean']:.0f} env steps, "
                f"{summary['wall_time_s']:.0f} s")

    def prior_rollout_summary(self, r: dict[str, Any]) -> str:
        return (f"success rate {r['success_rate']:.2f}, free cells visited {r['mean_coverage']:.2f} per episode, "
                f"mean return {r['mean_return']:.1f}")
