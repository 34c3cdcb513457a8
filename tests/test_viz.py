"""Maze pictures: exploration maps with coverage per sampler, training trajectories, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spirl_ray.envs.maze_layout import cell_coverage, generate_layout, visited_cells
from spirl_ray.experiments.viz import DEFAULT_SAMPLERS, SAMPLERS, exploration_rollouts, main

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
    assert set(report["coverage"]) == set(DEFAULT_SAMPLERS)
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


def _saturated_policy(prior_path, obs_space, latent_dim):
    """A SPiRL policy whose every skill is z = +2 in each dim: pre-squash mean +10, sigma e^-10."""
    import gymnasium as gym
    import torch

    from spirl_ray.rl.spirl import SPiRLTorchRLModule

    module = SPiRLTorchRLModule(observation_space=obs_space,
                                action_space=gym.spaces.Box(-2, 2, (latent_dim,), np.float32),
                                inference_only=True, model_config={"skill_model_path": prior_path})
    last = [m for m in module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.cat([torch.full((latent_dim,), 10.0), torch.full((latent_dim,), -10.0)]))
    return module


def test_policy_panel_runs_the_trials_checkpoint_in_the_skill_envs_range(tmp_path, monkeypatch, capsys):
    from spirl_ray.experiments.config import load_config
    from spirl_ray.experiments.viz import exploration
    from spirl_ray.rl.skill_env import SkillEnv
    from spirl_ray.skills.checkpoint import load_skill_model

    cfg = tmp_path / "viz.yaml"
    cfg.write_text(TINY.format(storage=tmp_path / "runs"))
    assert main(["exploration", "--config", str(cfg), "--env-steps", "50", "--out", str(tmp_path / "p.png"),
                 "--samplers", "prior", "--no-progress"]) == 0
    prior_path = json.loads((tmp_path / "p.json").read_text())["models"]["skills"]
    model = load_skill_model(prior_path)
    env_kwargs = {"size": 8, "max_episode_steps": 150, "goal_distance": 8, "state": "image"}
    from spirl_ray.envs.maze import make_maze_env

    obs_space = make_maze_env(**env_kwargs).observation_space
    module = _saturated_policy(prior_path, obs_space, model.config.latent_dim)

    # wiring: the module's [-1, 1] sample is mapped to the skill env's [-2, 2] box, as RLlib's EnvRunner does
    skills = []
    step = SkillEnv.step
    monkeypatch.setattr(SkillEnv, "step", lambda self, z: (skills.append(np.array(z)), step(self, z))[1])
    exploration_rollouts(env_kwargs, "policy", 30, model, policy_module=module)
    assert skills and np.allclose(np.stack(skills), 2.0, atol=1e-3)
    monkeypatch.undo()

    # the CLI: --trial adds the panel from the trial's latest checkpoint and its skill model
    trial = tmp_path / "exp" / "maze_spirl_seed0_abc_00000"
    module.save_to_path(str(trial / "checkpoint_000003" / "learner_group/learner/rl_module/default_policy"))
    cfg_env = load_config(cfg).env.env_kwargs()
    params = {"env_config": {"env": "maze", "env_kwargs": cfg_env}, "skill_model_path": prior_path}
    (trial / "params.json").write_text(json.dumps(params))
    out = tmp_path / "policy.png"
    assert main(["exploration", "--config", str(cfg), "--env-steps", "60", "--out", str(out), "--samplers", "prior",
                 "--trial", str(trial), "--no-progress"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert set(report["coverage"]) == {"prior", "policy"} and report["models"]["policy"].endswith("checkpoint_000003")

    # a trial of another maze is refused, naming the trial
    params["env_config"]["env_kwargs"] = {**cfg_env, "goal_distance": 3}
    (trial / "params.json").write_text(json.dumps(params))
    assert main(["exploration", "--config", str(cfg), "--samplers", "random", "--trial", str(trial)]) == 2
    assert "ran on env" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs a trial"):
        exploration(cfg, 10, samplers=["policy"])
