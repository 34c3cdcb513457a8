"""Deterministic evaluation on an env-step schedule (issue: kitchen results, §1 evaluation protocol).

Pins: evaluation runs after the first iteration and then whenever the training
env-step counter crosses the next multiple of ``every_env_steps``; it runs the
configured number of episodes; its actions are the policy's mean skill squashed
exactly like a training sample (z = 2·tanh(μ/s)), not RLlib's unsquashed mean.
"""

import numpy as np
import pytest
import ray
import torch
from ray import cloudpickle
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.tune.registry import register_env

import toy_skill_env
from spirl_ray.rl.callbacks import SPiRLMetricsCallback
from spirl_ray.rl.spirl import SPiRLConfig
from toy_skill_env import H, Z, ToySkillEnv, save_toy_skill_model

cloudpickle.register_pickle_by_value(toy_skill_env)

HL_STEPS_PER_ITER = 30  # = 300 env steps per training iteration


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, object_store_memory=10**9, include_dashboard=False)
    register_env("toy_skill_env", lambda cfg: ToySkillEnv(cfg))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    return save_toy_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt")


def _config(path, every_env_steps, episodes=3):
    return (
        SPiRLConfig()
        .environment("toy_skill_env")
        .env_runners(num_env_runners=0)
        .training(skill_model_path=path, warmup_env_steps=100, train_batch_size_per_learner=32)
        .rl_module(model_config={"critic_hidden": 32, "critic_layers": 2})
        .evaluation(evaluation_every_env_steps=every_env_steps, evaluation_duration=episodes)
        .reporting(min_sample_timesteps_per_iteration=HL_STEPS_PER_ITER, min_time_s_per_iteration=0)
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=0)
    )


def test_evaluation_runs_on_the_env_step_schedule_with_the_configured_episodes(ray_session, skill_model_path):
    algo = _config(skill_model_path, every_env_steps=1000).build_algo()
    try:
        evaluated, steps = [], []
        for _ in range(4):
            r = algo.train()
            steps.append(r["env_runners"]["env_steps_lifetime"])
            evaluated.append("evaluation" in r)
            if evaluated[-1]:
                ev = r["evaluation"]["env_runners"]
                assert ev["num_episodes"] == 3
                assert ev["episode_env_steps_mean"] == 5 * H
                assert r["evaluation"]["evaluated_at_env_steps"] == steps[-1]
        # The evaluation episodes are not counted on the training env-step axis.
        assert steps == [300, 600, 900, 1200]
        # First iteration (the prior-initialised policy), then once 1000 is crossed.
        assert evaluated == [True, False, False, True]
    finally:
        algo.stop()


def test_schedule_off_never_evaluates(ray_session, skill_model_path):
    algo = _config(skill_model_path, every_env_steps=None).build_algo()
    try:
        assert algo.eval_env_runner_group is None
        assert "evaluation" not in algo.train()
    finally:
        algo.stop()


def test_evaluation_acts_the_squashed_mean_skill(ray_session, skill_model_path):
    algo = _config(skill_model_path, every_env_steps=1000, episodes=1).build_algo()
    try:
        algo.train()
        runner = algo.eval_env_runner_group.local_env_runner
        # Spread the policy's means over the squash's non-linear range (the toy prior's are ~0).
        last = [m for m in runner.module.pi.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.bias[:Z].copy_(torch.linspace(-3.0, 3.0, Z))
        episodes = runner.sample(num_episodes=1, explore=False)
        module = runner.module
        s = module.squash_scale
        assert s == 2.0
        obs = torch.as_tensor(np.asarray(episodes[0].get_observations()[:-1]), dtype=torch.float32)
        acts = np.asarray(episodes[0].get_actions())  # normalised to [-1, 1] (RLlib's action connector)
        with torch.no_grad():
            out = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        v_mu = out[:, : acts.shape[1]].numpy()  # μ/s, the squash-space mean
        np.testing.assert_allclose(acts, np.tanh(v_mu), atol=1e-5)
        # Not RLlib's default deterministic action (the unsquashed mean, clipped).
        assert not np.allclose(acts, np.clip(v_mu, -1, 1), atol=1e-3)
    finally:
        algo.stop()


def test_schedule_survives_rllib_dict_round_trip(skill_model_path):
    """Tune and sweeps rebuild the config from a dict (``update_from_dict``): the schedule must come back."""
    cfg = _config(skill_model_path, every_env_steps=20_000, episodes=7)
    again = SPiRLConfig().update_from_dict(cfg.to_dict())
    assert again.evaluation_every_env_steps == 20_000
    assert again.evaluation_duration == 7 and again.evaluation_interval == 1
    assert again.evaluation_config["explore"] is False


@pytest.mark.parametrize("flag", [False, True])
def test_timeout_as_terminal_reaches_the_replay(ray_session, skill_model_path, flag):
    algo = _config(skill_model_path, every_env_steps=None).training(timeout_as_terminal=flag).build_algo()
    try:
        assert algo.local_replay_buffer.timeout_as_terminal is flag
        algo.train()  # ToySkillEnv truncates every episode after T high-level steps
        n = len(algo.local_replay_buffer)
        term = algo.local_replay_buffer._data["terminateds"][:n]
        assert bool(term.sum() > 0) == flag  # every 5th transition ends an episode by the time limit
        if flag:
            np.testing.assert_array_equal(np.flatnonzero(term) % 5, 4)
    finally:
        algo.stop()


def test_pipeline_passes_timeout_as_terminal(tmp_path):
    from spirl_ray.experiments.config import load_config
    from spirl_ray.experiments.pipeline import build_algo_config

    path = tmp_path / "c.yaml"
    path.write_text("name: x\nenv: {name: kitchen}\nrl: {method: sac}\n")
    for flag in (False, True):
        cfg = load_config(path, {"rl.timeout_as_terminal": flag})
        assert build_algo_config(cfg, None).timeout_as_terminal == flag
