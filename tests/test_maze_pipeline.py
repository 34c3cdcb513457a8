"""Maze in the pipeline (issue 5): image reader and crops, the env config section, prior reuse, a tiny CLI run."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from spirl_ray.data.collect_maze import collect_maze_dataset
from spirl_ray.data.readers import DatasetError, EpisodeData, read_d4rl_hdf5, read_dataset
from spirl_ray.data.sequence_dataset import SequenceDataset, to_torch
from spirl_ray.experiments.config import ConfigError, ExperimentConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("maze") / "maze_image.hdf5"
    collect_maze_dataset(path, num_episodes=3, seed=5, num_workers=1, state="image", show_progress=False)
    return path


def test_image_reader_round_trip(image_file):
    with h5py.File(image_file, "r") as f:
        images, obs = f["images"][()], f["observations"][()]
        lengths = f["metadata/episode_lengths"][()]
    eps = read_d4rl_hdf5(image_file)
    assert [len(e) for e in eps] == lengths.tolist()
    for e in eps:  # split at the same bounds as the observations, stored uint8 (2, 32, 32)
        assert e.images.dtype == np.uint8 and e.images.shape == (len(e), 2, 32, 32)
        # each stored step is [previous, current]: the previous frame of step t is the current one of t-1
        np.testing.assert_array_equal(e.images[1:, 0], e.images[:-1, 1])
        np.testing.assert_array_equal(e.images[0, 0], e.images[0, 1])  # reset: the reset frame twice
    np.testing.assert_array_equal(np.concatenate([e.images for e in eps]), images)
    np.testing.assert_array_equal(np.concatenate([e.observations for e in eps]), obs)
    assert all(e.images is None for e in read_dataset(image_file, read_images=False))


def test_image_reader_errors_name_file_and_key(image_file, tmp_path):
    state_file = tmp_path / "maze_state.hdf5"
    collect_maze_dataset(state_file, num_episodes=1, seed=1, num_workers=1, show_progress=False)
    assert read_d4rl_hdf5(state_file)[0].images is None  # no images key: None unless required
    with pytest.raises(DatasetError, match=r"maze_state\.hdf5.*'images'"):
        read_d4rl_hdf5(state_file, read_images=True)
    bad = tmp_path / "bad.hdf5"
    with h5py.File(image_file, "r") as src, h5py.File(bad, "w") as f:
        for k in ("observations", "actions", "terminals", "timeouts"):
            f[k] = src[k][()]
        f["images"] = src["images"][()].astype(np.float32)
    with pytest.raises(DatasetError, match=r"bad\.hdf5.*'images'.*float32.*uint8"):
        read_d4rl_hdf5(bad)
    with h5py.File(bad, "a") as f:
        del f["images"]
        f["images"] = np.zeros((3, 2, 32, 32), np.uint8)
    with pytest.raises(DatasetError, match=r"bad\.hdf5.*'images' has 3 rows"):
        read_d4rl_hdf5(bad)


def test_sequence_dataset_image_crops(image_file):
    eps = read_d4rl_hdf5(image_file)
    h = 4
    ds = SequenceDataset(eps, h, val_fraction=0.0, obs_key="images")
    assert ds.obs_shape == (2, 32, 32) and ds.obs_dim == 2048 and ds.act_dim == 2
    batch = ds.sample(16, rng=np.random.default_rng(0))
    assert batch["states"].shape == (16, h + 1, 2, 32, 32) and batch["states"].dtype == np.uint8
    assert batch["actions"].shape == (16, h, 2) and batch["actions"].dtype == np.float32
    # a crop's image t is the state action t was taken in: find each crop in the episodes
    all_img = np.concatenate([e.images for e in eps])
    all_act = np.concatenate([e.actions for e in eps])
    for states, actions in zip(batch["states"], batch["actions"]):
        s = int(np.flatnonzero((all_act[:, 0] == actions[0, 0]) & (all_act[:, 1] == actions[0, 1]))[0])
        np.testing.assert_array_equal(states, all_img[s : s + h + 1])
        np.testing.assert_array_equal(actions, all_act[s : s + h])
    t = to_torch(batch)
    assert str(t["states"].dtype) == "torch.uint8" and str(t["actions"].dtype) == "torch.float32"
    # vector crops of the same episodes are unchanged float32 (x, y, vx, vy)
    assert SequenceDataset(eps, h, val_fraction=0.0).sample(2)["states"].shape == (2, h + 1, 4)
    with pytest.raises(DatasetError, match="no 'images'"):
        SequenceDataset([EpisodeData(e.observations, e.actions) for e in eps], h, obs_key="images")


def test_maze_env_section_defaults_and_errors(tmp_path):
    cfg = ExperimentConfig(name="m", env={"name": "maze"})
    env = cfg.env
    assert (env.state, env.size, env.max_episode_steps, env.goal_distance) == ("image", 20, 2000, 40)
    assert env.image_states and not hasattr(env, "state_layout") and not hasattr(env, "scoring")
    assert env.reader_kwargs() == {"state_layout": None}
    assert cfg.dataset_path.name == "scripted_maze_600ep_seed0_image.hdf5"
    dumped = cfg.model_dump(mode="json")["env"]
    assert "scoring" not in dumped and ExperimentConfig(**cfg.model_dump(mode="json")).env == env
    # the kitchen section dumps exactly its own fields, as before the maze existed
    kitchen = ExperimentConfig(name="k").model_dump(mode="json")["env"]
    assert set(kitchen) == {"name", "tasks_to_complete", "state_layout", "scoring", "max_episode_steps"}
    for env_yaml, match in (
        ("{name: maze, scoring: ordered}", "env.scoring: does not apply to env.name 'maze' \\(a field of env.name "
         "'kitchen'\\)"),
        ("{name: kitchen, goal_cell: [1, 1]}", "env.goal_cell: does not apply to env.name 'kitchen'"),
        ("{name: maze, goal_cell: [0, 0]}", r"goal_cell=\[0, 0\] is not a free cell"),
    ):
        p = tmp_path / "c.yaml"
        p.write_text(f"name: x\nenv: {env_yaml}\n")
        with pytest.raises(ConfigError, match=match):
            load_config(p)
    p.write_text("name: x\nenv: {name: maze}\nskill_model: {decoder_state_conditioned: true}\n")
    with pytest.raises(ConfigError, match="decoder_state_conditioned needs state vectors"):
        load_config(p)
    p.write_text("name: x\nenv: {name: maze}\nskill_model: {decoder: closed_loop}\n")  # closed loop reads images
    assert load_config(p).skill_model["decoder"] == "closed_loop"


def test_maze_configs_follow_the_paper():
    cfg = load_config(CONFIGS / "maze.yaml")
    mc = cfg.skill_model_config(2048, 2, image_shape=(2, 32, 32))
    assert (mc.horizon, mc.latent_dim, mc.beta, mc.conv_channels, mc.conv_kernel) == (10, 10, 1e-2, (8, 16, 32), 3)
    assert cfg.env.image_states and cfg.env.max_episode_steps == 2000 and cfg.env.size == 20
    rl = cfg.rl
    assert (rl.target_divergence, rl.critic_layers, rl.critic_hidden, rl.updates_per_step) == (1.0, 2, 256, 1.0)
    assert (rl.batch_size, rl.lr, rl.gamma, rl.tau, rl.warmup_env_steps) == (256, 3e-4, 0.99, 5e-3, 5000)
    quick = load_config(CONFIGS / "maze_quick.yaml")
    assert quick.env.name == "maze" and quick.skill_model["beta"] == 1e-2 and quick.rl.target_divergence == 1.0


def test_prior_reuse_arms_share_one_prior_and_differ_only_in_the_goal(tmp_path):
    from spirl_ray.experiments.pipeline import sweep_param_space
    from spirl_ray.experiments.trainable import OVERRIDES_KEY, VARIANT_KEY

    cfg = load_config(CONFIGS / "maze_prior_reuse.yaml")
    arms = cfg.variant_configs()
    assert len(arms) == 3
    goals = {tuple(c.env.goal_cell) for _, c in arms}
    assert len(goals) == 3
    # same dataset and skill model for all: the prior cache key is the same, so it trains once
    assert len({c.dataset_path for _, c in arms}) == 1
    assert len({json.dumps(c.skill_model, sort_keys=True) for _, c in arms}) == 1
    # ... and the same as maze.yaml's: after that run, the reuse experiment trains no prior at all
    paper = load_config(CONFIGS / "maze.yaml")
    name, arm = arms[0]
    assert (arm.dataset_path, arm.skill_model_config(2048, 2, (2, 32, 32)), arm.prior_training, arm.data) == (
        paper.dataset_path, paper.skill_model_config(2048, 2, (2, 32, 32)), paper.prior_training, paper.data)
    fake_prior = tmp_path / "skills.pt"  # not read: the param space only names it
    space = sweep_param_space([(n, c, fake_prior) for n, c in arms])
    assert space[VARIANT_KEY]["grid_search"] == [n for n, _ in arms]
    for name, over in space[OVERRIDES_KEY].items():
        assert set(over) <= {"env_config"}, (name, over)


TINY = """
name: tiny_maze
storage_path: {storage}
env: {{name: maze, state: image, size: 8, max_episode_steps: 100, goal_distance: 6}}
data: {{collect: {{episodes: 6, seed: 1, num_workers: 1}}}}
skill_model: {{horizon: 5, latent_dim: 4, lstm_hidden: 16, prior_hidden: 16, prior_layers: 3, beta: 1.0e-2}}
prior_training: {{num_steps: 20, batch_size: 8, val_every: 20, val_batches: 2}}
rl:
  env_steps: 500
  seeds: [0]
  target_divergence: 1.0
  warmup_env_steps: 100
  batch_size: 8
  replay_capacity: 1000
  critic_hidden: 16
  critic_layers: 2
  num_env_runners: 1
  num_cpus_per_env_runner: 0.5
  min_sample_timesteps_per_iteration: 20
  checkpoint_every: 5
prior_rollouts: {{episodes: 1}}
"""


def test_tiny_maze_cli_run_end_to_end(tmp_path, capsys):
    from spirl_ray.experiments.plot import read_results
    from spirl_ray.rl.callbacks import read_xy_traces
    from spirl_ray.run import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(storage=tmp_path / "runs"))
    assert main(["--config", str(cfg), "--num-cpus", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "planner maze episodes (image observations)" in out and "success rate" in out
    assert (tmp_path / "runs" / "datasets" / "scripted_maze_6ep_seed1_image.hdf5").is_file()
    rollouts = json.loads((tmp_path / "runs" / "tiny_maze" / "prior_rollouts.json").read_text())
    for sampler in ("prior", "normal"):
        assert 0.0 <= rollouts[sampler]["success_rate"] <= 1.0 and 0.0 < rollouts[sampler]["mean_coverage"] <= 1.0
    trials = list((tmp_path / "runs" / "tiny_maze" / "tune" / "spirl").glob("maze_spirl_seed0_*"))
    assert len(trials) == 1
    df = read_results(trials[0] / "result.json")
    assert df["env_runners/env_steps_lifetime"].iloc[-1] >= 500
    assert df["env_runners/success_mean"].notna().any()  # success = goal reached, logged per episode
    assert df["learners/default_policy/kl_to_prior"].notna().any()
    assert not any("xy_traces" in c for c in df.columns)  # traces go to their own file, not the results
    traces = read_xy_traces(trials[0])
    assert traces and all(t["xy"].shape[1] == 2 and len(t["xy"]) == 11 for t in traces)  # 100 steps, one per 10
