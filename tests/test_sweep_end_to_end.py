"""Every method (and the closed-loop model) as a trial of one Tune sweep on the real kitchen, then the plot."""

import pytest

from spirl_ray.experiments.plot import main as plot_main
from spirl_ray.experiments.plot import read_results
from spirl_ray.run import main

SWEEP = """
name: sweep
storage_path: {storage}
env: {{name: kitchen, max_episode_steps: 40}}
data: {{collect: {{episodes: 3, seed: 2, num_workers: 2}}}}
skill_model: {{horizon: 4, latent_dim: 3, lstm_hidden: 16, prior_hidden: 16, prior_layers: 3, decoder_hidden: 16, decoder_layers: 2}}
prior_training: {{num_steps: 20, batch_size: 16, val_every: 20, val_batches: 1}}
rl:
  env_steps: 160
  seeds: [0]
  warmup_env_steps: 40
  batch_size: 8
  replay_capacity: 1000
  critic_hidden: 16
  critic_layers: 2
  num_env_runners: 0
  min_sample_timesteps_per_iteration: 20
  checkpoint_every: 100
  prior_sampling_env_steps: [80, 40]
prior_rollouts: {{episodes: 0}}
variants:
  - {{name: spirl}}
  - {{name: spirl_cl, set: {{skill_model.decoder: closed_loop}}}}
  - {{name: spirl_no_prior_init, set: {{rl.method: spirl_no_prior_init}}}}
  - {{name: ssp, set: {{rl.method: ssp}}}}
  - {{name: prior_init_sac, set: {{rl.method: prior_init_sac}}}}
  - {{name: sac, set: {{rl.method: sac}}}}
  - {{name: bc_sac, set: {{rl.method: bc_sac}}}}
  - {{name: flat_prior, set: {{rl.method: flat_prior}}}}
"""


def test_sweep_runs_every_method_as_a_trial_and_plots(tmp_path):
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(SWEEP.format(storage=tmp_path / "runs"))
    assert main(["--config", str(cfg), "--num-cpus", "2", "--no-progress"]) == 0
    root = tmp_path / "runs" / "sweep"
    # one offline model per distinct (dataset, model config): open loop, closed loop, flat
    assert len(list((tmp_path / "runs" / "prior_cache").glob("*/skill_model.pt"))) == 3
    trials = {d.name.split("_seed")[0].removeprefix("kitchen_"): d for d in (root / "tune" / "spirl").glob("kitchen_*")}
    assert sorted(trials) == sorted(["spirl", "spirl_cl", "spirl_no_prior_init", "ssp", "prior_init_sac", "sac",
                                     "bc_sac", "flat_prior"])
    for name, d in trials.items():
        df = read_results(d / "result.json")
        assert df["env_runners/env_steps_lifetime"].iloc[-1] >= 160, name
        learner = "learners/default_policy/"
        uses_prior = name in ("spirl", "spirl_cl", "spirl_no_prior_init", "flat_prior")
        col = learner + ("kl_to_prior" if uses_prior else "logps")
        assert col in df and df[col].notna().any(), (name, col)
        delta = df[learner + "target_divergence"].dropna().iloc[-1]
        z = 9 if name in ("sac", "bc_sac", "flat_prior") else 3  # primitive actions vs skills
        assert delta == (5.0 if uses_prior else float(z)), (name, delta)  # δ, or -target entropy = |A| / |Z|
        # flat methods take one env step per high-level step, skill methods H = 4
        hl = df["env_runners/num_env_steps_sampled_lifetime"].iloc[-1]
        env_steps = df["env_runners/env_steps_lifetime"].iloc[-1]
        assert env_steps / hl == pytest.approx(1.0 if z == 9 else 4.0, rel=0.25), name
    # ω schedule: 1 during the hold, then annealed towards 0
    omega = read_results(trials["spirl_no_prior_init"] / "result.json")["prior_sample_prob"].dropna()
    assert omega.iloc[0] == 1.0 and omega.iloc[-1] < 1.0
    assert plot_main([str(root / "tune" / "spirl"), "--out", str(tmp_path / "fig.png")]) == 0
    table = (tmp_path / "fig.md").read_text()
    assert all(f"| {n} | 1 |" in table for n in trials)
