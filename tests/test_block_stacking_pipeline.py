"""Block stacking in the pipeline (issue 7): env config section, configs, a tiny CLI run logging stacked blocks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spirl_ray.experiments.config import ConfigError, ExperimentConfig, load_config

CONFIGS = Path(__file__).resolve().parents[1] / "tune_configs"


def test_block_stacking_env_section_defaults_variants_and_errors(tmp_path):
    cfg = ExperimentConfig(name="b", env={"name": "block_stacking"})
    env = cfg.env
    assert (env.state, env.task, env.reward, env.max_episode_steps) == ("image", "downstream", "dense", 1000)
    assert env.image_states and not hasattr(env, "state_layout") and not hasattr(env, "size")
    assert env.reader_kwargs() == {"state_layout": None}
    assert env.env_kwargs() == {"num_blocks": 11, "initial_layout": "row", "max_episode_steps": 1000,
                                "obs_mode": "image", "reward_type": "dense"}
    assert cfg.dataset_path.name == "scripted_block_stacking_600ep_seed0_image.hdf5"
    assert set(cfg.model_dump(mode="json")["env"]) == {"name", "state", "task", "reward", "max_episode_steps"}
    assert ExperimentConfig(**cfg.model_dump(mode="json")).env == env
    # the 5-block data-collection env, state vectors, sparse reward, mixed-quality data
    five = ExperimentConfig(name="b", env={"name": "block_stacking", "state": "state", "task": "data_collection",
                                          "reward": "sparse"}, data={"collect": {"random_action_fraction": 0.5}})
    kw = five.env.env_kwargs()
    assert (kw["num_blocks"], kw["initial_layout"], kw["obs_mode"], kw["reward_type"]) == (5, "random", "state", "sparse")
    assert five.dataset_path.name == "scripted_block_stacking_600ep_seed0_state_random0.5.hdf5"
    for env_yaml, match in (
        ("{name: block_stacking, size: 8}", "env.size: does not apply to env.name 'block_stacking' \\(a field of "
         "env.name 'maze'\\); valid keys here: max_episode_steps, name, reward, state, task"),
        ("{name: kitchen, task: downstream}", "env.task: does not apply to env.name 'kitchen'"),
        ("{name: block_stacking, state: state}", "49-d"),  # 5-block state prior vs 11-block env
    ):
        p = tmp_path / "c.yaml"
        p.write_text(f"name: x\nenv: {env_yaml}\n")
        with pytest.raises(ConfigError, match=match):
            load_config(p)
    # flat SAC needs no prior, so it may run on the 11-block state vectors
    assert ExperimentConfig(name="s", env={"name": "block_stacking", "state": "state"}, rl={"method": "sac"})


def test_block_stacking_configs_follow_the_paper():
    cfg = load_config(CONFIGS / "block_stacking.yaml")
    mc = cfg.skill_model_config(6 * 32 * 32, 3, image_shape=(6, 32, 32))
    assert (mc.horizon, mc.latent_dim, mc.beta, mc.decoder, mc.conv_channels) == (10, 10, 1e-2, "open_loop", (8, 16, 32))
    assert cfg.env.image_states and cfg.env.task == "downstream" and cfg.env.max_episode_steps == 1000
    assert cfg.data.collect.episodes == 5000  # paper 37000: memory, see the config
    rl = cfg.rl
    assert (rl.target_divergence, rl.batch_size, rl.lr, rl.gamma, rl.tau, rl.warmup_env_steps) == (
        5.0, 256, 3e-4, 0.99, 5e-3, 5000)
    quick = load_config(CONFIGS / "block_stacking_quick.yaml")
    assert quick.env.name == "block_stacking" and quick.env.image_states and quick.skill_model["beta"] == 1e-2
    dq = load_config(CONFIGS / "block_stacking_data_quality.yaml")
    arms = dq.variant_configs()
    assert [c.data.collect.random_action_fraction for _, c in arms] == [0.0, 0.5, 0.75]
    assert len({c.dataset_path for _, c in arms}) == 3


TINY = """
name: tiny_blocks
storage_path: {storage}
env: {{name: block_stacking, state: image, task: downstream, reward: dense, max_episode_steps: 60}}
data: {{collect: {{episodes: 3, seed: 1, num_workers: 2}}}}
skill_model: {{horizon: 5, latent_dim: 4, lstm_hidden: 16, prior_hidden: 16, prior_layers: 3, beta: 1.0e-2}}
prior_training: {{num_steps: 20, batch_size: 8, val_every: 20, val_batches: 2}}
rl:
  env_steps: 300
  seeds: [0]
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


def test_tiny_block_stacking_cli_run_logs_stacked_blocks(tmp_path, capsys):
    from spirl_ray.data.readers import read_dataset
    from spirl_ray.experiments.plot import read_results
    from spirl_ray.run import main

    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(TINY.format(storage=tmp_path / "runs"))
    assert main(["--config", str(cfg), "--num-cpus", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "scripted block-stacking episodes (5 blocks, image observations" in out and "stacked blocks" in out
    data = tmp_path / "runs" / "datasets" / "scripted_block_stacking_3ep_seed1_image.hdf5"
    eps = read_dataset(data, read_images=True)
    assert len(eps) == 3 and all(e.images.shape == (len(e), 6, 32, 32) and e.images.dtype == np.uint8 for e in eps)
    rollouts = json.loads((tmp_path / "runs" / "tiny_blocks" / "prior_rollouts.json").read_text())
    for sampler in ("prior", "normal"):
        r = rollouts[sampler]
        assert len(r["stacked_blocks"]) == 1 and 0 <= r["mean_stacked_blocks"] <= r["mean_max_stacked_blocks"] <= 10
    trials = list((tmp_path / "runs" / "tiny_blocks" / "tune" / "spirl").glob("block_stacking_spirl_seed0_*"))
    assert len(trials) == 1
    df = read_results(trials[0] / "result.json")
    assert df["env_runners/env_steps_lifetime"].iloc[-1] >= 300
    stacked = df["env_runners/stacked_blocks_mean"].dropna()  # the paper's metric, per finished episode
    assert len(stacked) and stacked.between(0, 10).all()
    assert df["env_runners/max_stacked_blocks_mean"].notna().any()
    assert df["learners/default_policy/kl_to_prior"].notna().any()

    # the prior-quality record reads the image states and reports the rollouts in stacked blocks
    from spirl_ray.experiments.prior_report import main as prior_report_main

    out_dir = tmp_path / "results" / "prior"
    assert prior_report_main(["--config", str(cfg), "--out", str(out_dir)]) == 0
    rec = json.loads((out_dir / "prior.json").read_text())
    assert rec["log_sigma"]["states"] > 0 and len(rec["log_sigma"]["mean_log_sigma_per_dim"]) == 4
    assert rec["prior_rollouts"]["prior"]["mean_stacked_blocks"] == rollouts["prior"]["mean_stacked_blocks"]
    readme = (out_dir / "README.md").read_text()
    assert "stacked blocks at the episode end" in readme and "subtasks per episode" not in readme
