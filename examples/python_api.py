"""SPiRL from your own training script: ``SPiRLConfig`` under ``tune.Tuner``, without the YAML pipeline.

You bring a trained skill model (``skill_model.pt``, e.g. from the prior
stage of ``python -m spirl_ray.run --offline-only``, or from
:func:`spirl_ray.skills.train.train_skill_prior`) and a gymnasium env; this
builds the RLlib config and runs it as a Tune experiment::

    python -m examples.python_api --skill-model runs/prior_cache/<key>/skill_model.pt \\
        --env-id gymnasium_robotics:FetchReach-v4 --obs-keys observation achieved_goal desired_goal \\
        --env-steps 20000

The env is built on every EnvRunner by the registered creator
(:func:`spirl_ray.rl.envs.make_rl_env`) from ``env_config``: ``env`` is the
env family (``"gymnasium"``), ``env_kwargs`` its factory's arguments
(:func:`spirl_ray.envs.gymnasium_adapter.make_gymnasium_env`), and
``skill_model_path`` wraps it in the skill env (one action = one skill of H
env steps). Results: ``env_runners/env_steps_lifetime`` (low-level env
steps), ``env_runners/success_mean``, ``env_runners/episode_return_mean``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ray import tune

from spirl_ray.rl.callbacks import SPiRLMetricsCallback
from spirl_ray.rl.envs import RL_ENV_NAME, register_envs
from spirl_ray.rl.spirl import SPiRL, SPiRLConfig


def build_config(skill_model_path: str, env_id: str, obs_keys: list[str] | None = None,
                 target_divergence: float = 1.0, warmup_env_steps: int = 1000, seed: int = 0) -> SPiRLConfig:
    """The ``SPiRLConfig`` of SPiRL on ``env_id`` with the skill prior in ``skill_model_path``.

    ``target_divergence``: δ (mean KL per latent dim); ``warmup_env_steps``: low-level env
    steps sampled from the prior before the first update.
    """
    register_envs()  # the creator every EnvRunner builds its env with (RL_ENV_NAME)
    env_kwargs = {"env_id": env_id, "obs_keys": obs_keys}
    return (
        SPiRLConfig()
        .environment(RL_ENV_NAME, env_config={"env": "gymnasium", "env_kwargs": env_kwargs,
                                              "skill_model_path": skill_model_path})
        .env_runners(num_env_runners=1, num_cpus_per_env_runner=0.5)
        .training(skill_model_path=skill_model_path, target_divergence=target_divergence,
                  warmup_env_steps=warmup_env_steps, train_batch_size_per_learner=128,
                  critic_hidden=128, critic_layers=2)
        .reporting(min_sample_timesteps_per_iteration=20)
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=seed)
    )


def run(skill_model_path: str, env_id: str, obs_keys: list[str] | None, env_steps: int,
        storage_path: str = "runs/python_api") -> tune.ResultGrid:
    """Fit one trial until ``env_steps`` low-level env steps; returns Tune's ``ResultGrid``."""
    config = build_config(skill_model_path, env_id, obs_keys)
    tuner = tune.Tuner(
        SPiRL,
        param_space=config,
        run_config=tune.RunConfig(name="spirl", storage_path=str(Path(storage_path).resolve()),
                                  stop={"env_runners/env_steps_lifetime": env_steps}, verbose=1),
    )
    return tuner.fit()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--skill-model", required=True, help="skill_model.pt of a trained skill prior")
    p.add_argument("--env-id", default="gymnasium_robotics:FetchReach-v4")
    p.add_argument("--obs-keys", nargs="*", default=["observation", "achieved_goal", "desired_goal"])
    p.add_argument("--env-steps", type=int, default=20000)
    p.add_argument("--storage-path", default="runs/python_api")
    a = p.parse_args(argv)
    import ray

    ray.init(num_cpus=2, include_dashboard=False)
    try:
        results = run(a.skill_model, a.env_id, a.obs_keys or None, a.env_steps, a.storage_path)
    finally:
        ray.shutdown()
    best = results[0].metrics.get("env_runners", {})
    print(f"env steps {best.get('env_steps_lifetime')}, success {best.get('success_mean')}, "
          f"return {best.get('episode_return_mean')}")
    return 1 if results.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
