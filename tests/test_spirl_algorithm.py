"""End-to-end SPiRL on a synthetic skill env: training, update ratio, metrics, checkpoints, Tune."""

import numpy as np
import pytest
import ray
import torch
from ray import cloudpickle, tune
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.tune.registry import register_env

from spirl_ray.rl.callbacks import SPiRLMetricsCallback
from spirl_ray.rl.spirl import SPiRL, SPiRLConfig

import toy_skill_env
from toy_skill_env import H, OBS, T, Z, ToySkillEnv, save_toy_skill_model

WARMUP_ENV_STEPS = 100  # = 10 high-level steps

# EnvRunner processes cannot import the tests folder: ship the toy env by value.
cloudpickle.register_pickle_by_value(toy_skill_env)


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, object_store_memory=10**9, include_dashboard=False)
    register_env("toy_skill_env", lambda cfg: ToySkillEnv(cfg))
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    return save_toy_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt")


def _config(path, num_env_runners=1):
    return (
        SPiRLConfig()
        .environment("toy_skill_env")
        .env_runners(num_env_runners=num_env_runners, num_cpus_per_env_runner=0.5 if num_env_runners else 1)
        .training(skill_model_path=path, warmup_env_steps=WARMUP_ENV_STEPS, train_batch_size_per_learner=64)
        .rl_module(model_config={"critic_hidden": 64, "critic_layers": 3})
        .reporting(min_sample_timesteps_per_iteration=30, min_time_s_per_iteration=0)
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=0)
    )


def _on_learner(algo, fn):
    """fn(learner) on the (first) learner, local or remote."""
    return next(iter(algo.learner_group.foreach_learner(fn))).get()


def _log_alpha(algo):
    return _on_learner(algo, lambda l: l.curr_log_alpha[DEFAULT_MODULE_ID].item())


def test_two_iterations_train_with_exact_update_ratio_and_env_step_metrics(ray_session, skill_model_path):
    algo = _config(skill_model_path).build_algo()
    try:
        assert algo.config.num_steps_sampled_before_learning_starts == WARMUP_ENV_STEPS // H
        # Env runners carry no prior (inference-only module).
        has_prior = algo.env_runner_group.foreach_env_runner(
            lambda er: getattr(er.module, "skill_prior", None) is not None, local_env_runner=False
        )
        assert has_prior == [False]
        alpha0 = _log_alpha(algo)
        for _ in range(2):
            result = algo.train()
        runners, learner = result["env_runners"], result["learners"][DEFAULT_MODULE_ID]
        for key in ("policy_loss", "qf_loss", "qf_twin_loss", "alpha_loss", "alpha_value", "kl_to_prior", "qf_mean"):
            assert np.isfinite(learner[key]), key
        assert _log_alpha(algo) != alpha0
        # Low-level env steps = H x high-level steps.
        hl_steps = runners["num_env_steps_sampled_lifetime"]
        assert hl_steps >= 60
        assert runners["env_steps_lifetime"] == H * hl_steps
        assert runners["episode_env_steps_mean"] == H * T
        assert runners["num_subtasks_completed_mean"] == T // 2
        assert runners["success_mean"] == 1.0
        assert runners["episode_len_mean"] == T
        # One gradient step per high-level step after the warm-up.
        updates = result["num_gradient_updates_lifetime"]
        learning_starts = algo.config.num_steps_sampled_before_learning_starts
        assert abs(updates - (hl_steps - learning_starts)) <= 2, (updates, hl_steps)
        assert result["learners"]["__all_modules__"]["num_env_steps_trained_lifetime"] == updates * 64
        assert set(result["throughput"]) == {"env_steps_per_s", "high_level_steps_per_s", "updates_per_s"}
    finally:
        algo.stop()


def test_checkpoint_restores_alpha_and_policy(ray_session, skill_model_path, tmp_path):
    config = _config(skill_model_path, num_env_runners=0)
    algo = config.build_algo()
    try:
        algo.train()
        _on_learner(algo, lambda l: l.curr_log_alpha[DEFAULT_MODULE_ID].data.fill_(-0.4321))
        pi_state = algo.get_module().pi.state_dict()
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    fresh = config.build_algo()
    try:
        assert _log_alpha(fresh) == pytest.approx(0.0)
        fresh.restore_from_path(ckpt)
        assert _log_alpha(fresh) == pytest.approx(-0.4321)
        restored = _on_learner(fresh, lambda l: l.module[DEFAULT_MODULE_ID].pi.state_dict())
        for k, v in pi_state.items():
            torch.testing.assert_close(torch.as_tensor(restored[k]), torch.as_tensor(v), msg=k)
        # Also pushed to the (local) EnvRunner's inference module.
        runner_pi = fresh.get_module().pi.state_dict()
        for k, v in pi_state.items():
            torch.testing.assert_close(torch.as_tensor(runner_pi[k]), torch.as_tensor(v), msg=k)
        fresh.train()  # training continues after the restore
        assert np.isfinite(_log_alpha(fresh))
    finally:
        fresh.stop()


def test_tune_run_one_trial_two_iterations(ray_session, skill_model_path, tmp_path):
    tuner = tune.Tuner(
        SPiRL,
        param_space=_config(skill_model_path, num_env_runners=0),
        run_config=tune.RunConfig(
            stop={"training_iteration": 2}, storage_path=str(tmp_path / "tune"), name="spirl_test", verbose=0
        ),
    )
    results = tuner.fit()
    assert not results.errors
    res = results[0]
    assert res.metrics["training_iteration"] == 2
    assert res.metrics["env_runners"]["env_steps_lifetime"] == H * res.metrics["env_runners"]["num_env_steps_sampled_lifetime"]


def test_transition_buffer_aligns_obs_next_obs_across_episode_chunks():
    from ray.rllib.core.columns import Columns
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    from spirl_ray.rl.spirl import TransitionReplayBuffer

    ep = SingleAgentEpisode()
    ep.add_env_reset(observation=np.full(2, 0.0, np.float32))
    for t in range(1, 4):
        ep.add_env_step(observation=np.full(2, t, np.float32), action=np.full(1, t, np.float32), reward=float(t))
    cont = ep.cut()
    for t in range(4, 6):
        cont.add_env_step(
            observation=np.full(2, t, np.float32), action=np.full(1, t, np.float32), reward=float(t), terminated=t == 5
        )
    buf = TransitionReplayBuffer(capacity=4, seed=0)
    assert buf.add_episodes([ep.to_numpy(), cont.to_numpy()]) == 5
    assert len(buf) == 4  # FIFO: transition 1 overwritten
    data = buf.sample(200)
    obs, nxt = data[Columns.OBS][:, 0], data[Columns.NEXT_OBS][:, 0]
    np.testing.assert_array_equal(nxt, obs + 1)
    np.testing.assert_array_equal(data[Columns.ACTIONS][:, 0], obs + 1)
    np.testing.assert_array_equal(data[Columns.REWARDS], obs + 1)
    np.testing.assert_array_equal(data[Columns.TERMINATEDS], (nxt == 5).astype(np.float32))
    assert set(obs.tolist()) == {1.0, 2.0, 3.0, 4.0}
    # State round trip.
    buf2 = TransitionReplayBuffer(capacity=4)
    buf2.set_state(buf.get_state())
    assert len(buf2) == 4 and set(buf2.sample(100)[Columns.OBS][:, 0].tolist()) == {1.0, 2.0, 3.0, 4.0}
