"""Shared by the fault-tolerance and two-node tests: a toy skill env that counts the steps it ran,
and the per-EnvRunner facts the tests assert on (node, pid, steps sampled by that runner)."""

from __future__ import annotations

import os

import ray
from ray import cloudpickle
from ray.tune.registry import register_env

import toy_skill_env
from toy_skill_env import ToySkillEnv

ENV_NAME = "fault_toy_skill_env"


class CountingToySkillEnv(ToySkillEnv):
    """:class:`ToySkillEnv` that counts every high-level step it executes (``total_steps``)."""

    def __init__(self, config=None):
        super().__init__(config)
        self.total_steps = 0

    def step(self, action):
        self.total_steps += 1
        return super().step(action)


def register() -> None:
    """Register the env with Tune and ship this module and the toy env by value to Ray workers
    (EnvRunner processes cannot import the tests folder)."""
    import sys

    cloudpickle.register_pickle_by_value(toy_skill_env)
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    register_env(ENV_NAME, lambda cfg: CountingToySkillEnv(cfg))


def spirl_config(skill_model_path: str, *, cpus_per_runner: float, fragment: int, probe_timeout_s: float):
    """SPiRL on the counting toy env with two restartable remote EnvRunners (the settings both files share)."""
    from spirl_ray.rl.callbacks import SPiRLMetricsCallback
    from spirl_ray.rl.spirl import SPiRLConfig

    return (
        SPiRLConfig()
        .environment(ENV_NAME)
        .env_runners(num_env_runners=2, num_cpus_per_env_runner=cpus_per_runner, rollout_fragment_length=fragment)
        .training(skill_model_path=skill_model_path, warmup_env_steps=100, train_batch_size_per_learner=64)
        .rl_module(model_config={"critic_hidden": 64, "critic_layers": 3})
        .reporting(min_sample_timesteps_per_iteration=30, min_time_s_per_iteration=0)
        .fault_tolerance(
            restart_failed_env_runners=True,
            delay_between_env_runner_restarts_s=0.0,
            env_runner_health_probe_timeout_s=probe_timeout_s,
        )
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=0)
    )


def runner_stats(env_runner) -> dict:
    """Run on an EnvRunner: its index, node id, process id and the high-level steps its envs ran."""
    envs = env_runner.env.unwrapped.envs
    return {
        "index": env_runner.worker_index,
        "node": ray.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
        "steps": int(sum(e.unwrapped.total_steps for e in envs)),
    }


def remote_runner_stats(algo) -> dict[int, dict]:
    """``runner_stats`` of every healthy remote EnvRunner of ``algo``, keyed by worker index."""
    stats = algo.env_runner_group.foreach_env_runner(runner_stats, local_env_runner=False)
    return {s["index"]: s for s in stats}
