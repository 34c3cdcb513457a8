"""Maze pictures: exploration maps with coverage per sampler, training trajectories, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spirl_ray.envs.maze_layout import cell_coverage, generate_layout, visited_cells
from spirl_ray.experiments.viz import SAMPLERS, exploration_rollouts, main

TINY = """
name: viz_tiny
storage_path: {storage}
env: {{name: maze, state: image, size: 8, max_episode_steps: 150, goal_distance: 8}}
data: {{collect: {{episodes: 6, seed: 1, num_workers: 1}}}}
skill_model: {{horizon: 5, latent_dim: 4, lstm_hidden: 16, prior_hidden: 16, prior_layers: 3, beta: 1.0e-2}}
prior_training: {{num_steps: 20, batch_size: 8, val_every: 20, val_batches: 2}}
"""


def test_coverage_counts_free_cells_once():
    layout = generate_layout(5, 0)
    free = layout.free_cells()
    centres = layout.cell_to_xy(free)
    assert cell_coverage(layout, centres) == 1.0
    assert cell_coverage(layout, np.repeat(centres[:1], 50, axis=0)) == pytest.approx(1 / len(free))
    assert cell_coverage(layout, np.array([[100.0, 100.0]])) == 0.0  # off the grid: ignored
    assert visited_cells(layout, centres[:3]).sum() == 3


def test_exploration_cli_writes_png_and_coverages(tmp_path, capsys):
    cfg = tmp_path / "viz.yaml"
    cfg.write_text(TINY.format(storage=tmp_path / "runs"))
    out = tmp_path / "explore.png"
    assert main(["exploration", "--config", str(cfg), "--env-steps", "300", "--out", str(out), "--no-progress"]) == 0
    assert out.is_file() and out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["coverage"]) == set(SAMPLERS)
    assert all(0.0 < c <= 1.0 for c in report["coverage"].values())
    assert report["env_steps"] == 300 and {"skills", "flat"} <= set(report["models"])
    printed = capsys.readouterr().out
    assert "coverage" in printed and str(out) in printed


def test_exploration_rollouts_budget_and_positions():
    kw = {"size": 8, "max_episode_steps": 120, "goal_distance": 8, "state": "state"}
    xy = exploration_rollouts(kw, "random", 250, seed=3)
    # one reset position per episode (3 episodes of <= 120 steps) + one per env step
    assert xy.shape == (250 + 3, 2)
    layout = generate_layout(8, 0)
    cells = layout.xy_to_cell(xy)
    assert not layout.walls[cells[:, 0], cells[:, 1]].any()  # the ball's centre is never inside a wall
    with pytest.raises(ValueError, match="needs a skill_model"):
        exploration_rollouts(kw, "prior", 10)


def test_trajectories_from_recorded_traces(tmp_path):
    trial = tmp_path / "exp" / "maze_goal_a_seed0_abc_00000"
    trial.mkdir(parents=True)
    env_kwargs = {"size": 8, "layout_seed": 0, "state": "state", "max_episode_steps": 100, "goal_distance": 8}
    params = {"env_config": {"env": "maze", "env_kwargs": {}}, "spirl_variant": "goal_a",
              "spirl_variant_overrides": {"goal_a": {"env_config": {"env": "maze", "env_kwargs": env_kwargs}}}}
    (trial / "params.json").write_text(json.dumps(params))
    rng = np.random.default_rng(0)
    with open(trial / "xy_traces.jsonl", "w") as f:
        for it in range(1, 4):
            eps = [np.cumsum(rng.normal(0, 0.1, (11, 2)), axis=0).round(3).tolist() for _ in range(2)]
            f.write(json.dumps({"iteration": it, "env_steps": 100 * it, "episodes": eps}) + "\n")
    out = tmp_path / "traj.png"
    assert main(["trajectories", str(tmp_path / "exp"), "--out", str(out)]) == 0
    assert out.is_file() and out.read_bytes()[:4] == b"\x89PNG"


def test_cli_errors_are_one_line(tmp_path, capsys):
    kitchen = tmp_path / "k.yaml"
    kitchen.write_text("name: k\n")
    assert main(["exploration", "--config", str(kitchen), "--samplers", "random"]) == 2
    assert "env.name 'maze'" in capsys.readouterr().err
    assert main(["exploration", "--config", str(kitchen), "--samplers", "prior,bogus"]) == 2
    assert "bogus" in capsys.readouterr().err
    assert main(["trajectories", str(tmp_path)]) == 2
    assert "xy_traces.jsonl" in capsys.readouterr().err
