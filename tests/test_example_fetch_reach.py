"""The FetchReach example (issue 13 §2) at toy size: scripted data -> prior -> prior rollouts -> SPiRL -> plot.

Runs the real CLI on ``examples/fetch_reach/fetch_reach.yaml`` with its numbers
shrunk by ``--set`` (16 episodes, 60 prior steps, 600 RL env steps), from the
repository root as the README says (the policy is imported as
``examples.fetch_reach.reach_policy``, in the driver and in Ray's workers).
Then the Python-API example's config builds the same env for an EnvRunner.

About two minutes (Ray, a Tune trial): marked ``slow``, and run by CI on its own
line of ``.ci/run``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spirl_ray.experiments.plot import main as plot_main
from spirl_ray.experiments.plot import read_results
from spirl_ray.run import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "fetch_reach" / "fetch_reach.yaml"
TOY = ["data.collect.episodes=16", "data.collect.num_workers=2", "prior_training.num_steps=60",
       "prior_training.val_every=60", "prior_training.val_batches=2", "prior_training.batch_size=16",
       "rl.env_steps=600", "rl.warmup_env_steps=100", "rl.batch_size=16", "rl.replay_capacity=1000",
       "rl.critic_hidden=32", "rl.num_cpus_per_env_runner=0.5", "rl.min_sample_timesteps_per_iteration=10",
       "prior_rollouts.episodes=2", "evaluation.every_env_steps=300", "evaluation.episodes=2"]


@pytest.mark.slow
def test_fetch_reach_example_runs_end_to_end_at_toy_size(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    monkeypatch.syspath_prepend(str(ROOT))
    storage = tmp_path / "runs"
    argv = ["--config", str(CONFIG), "--num-cpus", "2", "--no-progress", "--no-dashboard",
            "--set", f"storage_path={storage}"]
    for item in TOY:
        argv += ["--set", item]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "with policy examples.fetch_reach.reach_policy:reach" in out and "success 1.00" in out
    assert "D4RL hdf5 file, read with h5py" in out
    [dataset] = (storage / "datasets").glob("scripted_gymnasium_16ep_seed0_FetchReach-v4_*.hdf5")
    summary = json.loads(Path(f"{dataset}.summary.json").read_text())
    assert summary["total_steps"] == 16 * 50 and summary["success_rate"] == 1.0
    root = storage / "fetch_reach"
    rollouts = json.loads((root / "prior_rollouts.json").read_text())
    for sampler in ("prior", "prior_mean", "normal"):
        assert rollouts[sampler]["env_steps"] == 2 * 50 and "success_rate" in rollouts[sampler]
    [result] = (root / "tune" / "spirl").glob("FetchReach-v4_spirl_seed0_*/result.json")
    df = read_results(result)
    assert df["env_runners/env_steps_lifetime"].iloc[-1] >= 600
    assert df["env_runners/success_mean"].notna().any() and df["env_runners/episode_return_mean"].notna().any()
    assert df["learners/default_policy/kl_to_prior"].notna().any()
    assert plot_main([str(root / "tune" / "spirl"), "--metric", "env_runners/success_mean"]) == 0
    assert (root / "tune" / "spirl" / "curve.png").stat().st_size > 0

    # the Python-API example: its config builds this env, wrapped as a skill env, for an EnvRunner
    from examples.python_api import build_config
    from spirl_ray.rl.envs import make_rl_env

    [prior] = (storage / "prior_cache").glob("*/skill_model.pt")
    config = build_config(str(prior), "gymnasium_robotics:FetchReach-v4",
                          ["observation", "achieved_goal", "desired_goal"])
    config.validate()
    env = make_rl_env(config.env_config)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (16,) and env.action_space.shape == (4,)  # |Z| = 4 skills, 16-d states
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["env_steps"] == 10 and "success" in info
    env.close()


@pytest.mark.parametrize("bad", ["env.obs_keys=[observation, velocity]"])
def test_the_example_config_refuses_a_wrong_key_before_ray(bad, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["--config", str(CONFIG), "--set", f"storage_path={tmp_path / 'runs'}", "--set", bad]) == 2
    assert "observation keys ['velocity'] are not in its Dict observation space" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
