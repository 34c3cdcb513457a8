"""A tiny run of the real CLI on the real kitchen: data → prior → prior rollouts → SPiRL under Tune."""

import json

import pytest

from spirl_ray.experiments.plot import read_results
from spirl_ray.run import main

TINY = """
name: tiny
storage_path: {storage}
env: {{name: kitchen, max_episode_steps: 60}}
data: {{collect: {{episodes: 4, seed: 1, num_workers: 2}}}}
skill_model: {{horizon: 5, latent_dim: 4, lstm_hidden: 32, prior_hidden: 32, prior_layers: 3}}
prior_training: {{num_steps: 30, batch_size: 16, val_every: 30, val_batches: 2}}
rl:
  env_steps: 400
  seeds: [0]
  warmup_env_steps: 100
  batch_size: 16
  replay_capacity: 1000
  critic_hidden: 32
  critic_layers: 2
  num_env_runners: 1
  num_cpus_per_env_runner: 0.5
  min_sample_timesteps_per_iteration: 20
  checkpoint_every: 2
prior_rollouts: {{episodes: 1}}
evaluation: {{every_env_steps: 300, episodes: 1}}
"""


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY.format(storage=tmp_path / "runs"))
    return path


def test_cli_runs_the_whole_pipeline_and_resume_skips_finished(tiny_config, tmp_path, capsys):
    assert main(["--config", str(tiny_config), "--num-cpus", "2", "--no-progress"]) == 0
    root = tmp_path / "runs" / "tiny"
    assert (tmp_path / "runs" / "datasets" / "scripted_kitchen_4ep_seed1_d4rl30.hdf5").is_file()
    assert (root / "config.resolved.yaml").is_file()
    rollouts = json.loads((root / "prior_rollouts.json").read_text())
    assert rollouts["prior"]["episodes"] == 1 and rollouts["normal"]["env_steps"] > 0
    assert len(list((tmp_path / "runs" / "prior_cache").glob("*/skill_model.pt"))) == 1
    results = list((root / "tune" / "spirl").glob("*/result.json"))
    assert len(results) == 1
    df = read_results(results[0])
    env_steps = df["env_runners/env_steps_lifetime"]
    assert env_steps.iloc[-1] >= 400 and env_steps.is_monotonic_increasing
    # the learner trained after warm-up: alpha and the KL to the prior are logged
    assert df["learners/default_policy/kl_to_prior"].notna().any()
    assert df["learners/default_policy/alpha_value"].dropna().nunique() > 1
    out = capsys.readouterr().out
    assert "tensorboard --logdir" in out
    # deterministic evaluation: after the first iteration, then once 300 env steps are crossed
    evals = df[df["evaluation/evaluated_at_env_steps"].notna()]
    first_x = df["env_runners/env_steps_lifetime"].iloc[0]
    assert evals["evaluation/evaluated_at_env_steps"].iloc[0] == first_x
    assert len(evals) >= 2 and evals["evaluation/env_runners/num_episodes"].eq(1).all()
    assert "prior_mean" in rollouts and rollouts["prior"]["squash"] == "z = 2*tanh(u/2)"
    info = json.loads((root / "run_info.json").read_text())
    assert info["command"].startswith("python -m spirl_ray.run --config") and "finished" in info and info["commit"]

    # the records: a prior-quality record and a results record, regenerated from the run's folders
    from spirl_ray.experiments.prior_report import main as prior_report_main
    from spirl_ray.experiments.report import main as report_main

    assert prior_report_main(["--config", str(tiny_config), "--out", str(tmp_path / "results" / "prior")]) == 0
    prior_rec = json.loads((tmp_path / "results" / "prior" / "prior.json").read_text())
    assert prior_rec["val_mse"] > 0 and prior_rec["log_sigma"]["min_log_sigma"] < 0
    assert set(prior_rec["prior_rollouts"]) == {"prior", "prior_mean", "normal"}
    assert not (tmp_path / "results" / "prior" / "prior_rollouts.json").exists()  # the run's own were reused
    n_run = prior_rec["prior_rollouts"]["prior"]["episodes"]
    # another episode count: rollouts are run for the record (not the run's), with their s.e.m.
    assert prior_report_main(["--config", str(tiny_config), "--out", str(tmp_path / "results" / "prior3"),
                              "--set", f"prior_rollouts.episodes={n_run + 1}"]) == 0
    prior3 = json.loads((tmp_path / "results" / "prior3" / "prior.json").read_text())
    assert {r["episodes"] for r in prior3["prior_rollouts"].values()} == {n_run + 1}
    assert json.loads((tmp_path / "results" / "prior3" / "prior_rollouts.json").read_text())["episodes"] == n_run + 1
    assert prior3["prior_rollouts"]["prior"]["sem_subtasks"] is not None
    assert f"--set prior_rollouts.episodes={n_run + 1}`" in (tmp_path / "results" / "prior3" / "README.md").read_text()
    assert report_main([str(root / "tune" / "spirl"), "--out", str(tmp_path / "results" / "tiny")]) == 0
    record = tmp_path / "results" / "tiny"
    assert (record / "curve.png").is_file() and (record / "seed0_spirl.csv").is_file()
    assert info["commit"] in (record / "README.md").read_text()
    assert "tiny" in (tmp_path / "results" / "README.md").read_text()

    # second run: every stage is skipped, the finished trial is not rerun
    assert main(["--config", str(tiny_config), "--num-cpus", "2", "--no-progress", "--resume"]) == 0
    out = capsys.readouterr().out
    assert "data: using" in out and "prior: cached" in out and "prior rollouts: cached" in out
    assert len(read_results(results[0])) == len(df)

    # resuming with another H is refused before Ray starts (Tune would keep the old prior); nothing is rewritten
    assert (root / "tune" / "spirl" / "config.resolved.yaml").is_file()  # what the trials were started with
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    stamps = [p.stat().st_mtime_ns for p in files]
    assert main(["--config", str(tiny_config), "--num-cpus", "2", "--no-progress", "--resume",
                 "--set", "skill_model.horizon=4"]) == 2
    err = capsys.readouterr().err
    assert "--resume: the config differs" in err and "\n  skill_model.horizon: 5 -> 4\n" in err
    assert sorted(p for p in tmp_path.rglob("*") if p.is_file()) == files
    assert [p.stat().st_mtime_ns for p in files] == stamps


def test_cli_rejects_unknown_key_with_valid_keys(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nrl:\n  seedz: [1]\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "rl.seedz: unknown key" in err and "seeds" in err


def test_trials_stopped_before_the_budget_are_reported_as_unfinished():
    """A Ctrl-C'd sweep must not look done: trials short of rl.env_steps are listed (the CLI then exits 1)."""
    from types import SimpleNamespace as R

    from spirl_ray.run import unfinished_trials

    results = [R(error=None, metrics={"env_runners": {"env_steps_lifetime": 1000}}),
               R(error=None, metrics={"env_runners": {"env_steps_lifetime": 400}}),
               R(error=RuntimeError("x"), metrics={}),
               R(error=None, metrics=None)]
    assert unfinished_trials(results, 1000) == [results[1], results[3]]
