"""(3) SPiRL EnvRunner sampling with 1 and 2 runners (learner idle) and (7) the end-to-end loop.

Both use the real kitchen skill env (FrankaKitchen-v1 + open-loop decoder,
paper sizes, random weights) through the project's env factory, i.e. exactly
what a Tune trial runs. Rates are low-level env steps/s, read from the
``env_runners/env_steps_lifetime`` metric of :class:`SPiRLMetricsCallback`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict

from benchmarks.common import HORIZON, loadavg


def _config(model_path: str, num_env_runners: int, cpus_per_runner: float, warmup_env_steps: int,
            min_sample_timesteps: int, extra_training: Dict[str, Any] | None = None):
    from spirl_ray.envs.kitchen import PAPER_TARGET_TASKS
    from spirl_ray.rl.callbacks import SPiRLMetricsCallback
    from spirl_ray.rl.envs import RL_ENV_NAME
    from spirl_ray.rl.spirl import SPiRLConfig

    env_kwargs = {"tasks_to_complete": list(PAPER_TARGET_TASKS), "state_layout": "d4rl30", "max_episode_steps": 280}
    return (
        SPiRLConfig()
        .environment(RL_ENV_NAME, env_config={"env": "kitchen", "env_kwargs": env_kwargs, "skill_model_path": model_path})
        .env_runners(num_env_runners=num_env_runners, num_cpus_per_env_runner=cpus_per_runner)
        .training(skill_model_path=model_path, skill_horizon=HORIZON, warmup_env_steps=warmup_env_steps,
                  **(extra_training or {}))
        .reporting(min_sample_timesteps_per_iteration=min_sample_timesteps, min_time_s_per_iteration=0)
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=0)
    )


def _env_steps(result: Dict[str, Any]) -> int:
    return int(result.get("env_runners", {}).get("env_steps_lifetime", 0))


def _measure(algo, seconds: float) -> Dict[str, float]:
    """Train for ``seconds``: low-level env steps/s, high-level steps/s and updates/s over that window."""
    r0 = algo.train()
    e0, h0 = _env_steps(r0), r0["env_runners"].get("num_env_steps_sampled_lifetime", 0)
    u0 = r0.get("num_gradient_updates_lifetime", 0)
    t0 = time.perf_counter()
    while True:
        r = algo.train()
        dt = time.perf_counter() - t0
        if dt >= seconds:
            break
    return {
        "env_steps_per_s": (_env_steps(r) - e0) / dt,
        "high_level_steps_per_s": (r["env_runners"].get("num_env_steps_sampled_lifetime", 0) - h0) / dt,
        "updates_per_s": (r.get("num_gradient_updates_lifetime", 0) - u0) / dt,
        "seconds": dt,
    }


def sampling(model_path: str, quick: bool = False) -> Dict[str, Any]:
    """EnvRunner sampling with 1 and with 2 runners, warm-up never reached (the learner stays idle).

    Both algorithms are built up front (0.5 CPU per runner, so three runners fit
    a 2-CPU Ray) and measured in alternation, so drifts of a shared machine hit
    both alike. An idle algorithm's runners do no work.
    """
    rounds, seconds = (1, 8.0) if quick else (2, 15.0)
    algos = {}
    try:
        for n in (1, 2):
            algos[n] = _config(model_path, n, 0.5, warmup_env_steps=10**9, min_sample_timesteps=20).build_algo()
            algos[n].train()  # first iteration: env resets, first torch calls
        samples = {1: [], 2: []}
        for _ in range(rounds):
            for n, algo in algos.items():
                samples[n].append(_measure(algo, seconds))
        out: Dict[str, Any] = {"load_avg_1min": loadavg()}
        for n, runs in samples.items():
            rates = sorted(r["env_steps_per_s"] for r in runs)
            out[f"runners_{n}"] = {"env_steps_per_s": rates[len(rates) // 2], "rounds": runs}
        out["ratio_2_vs_1"] = out["runners_2"]["env_steps_per_s"] / out["runners_1"]["env_steps_per_s"]
        return out
    finally:
        for algo in algos.values():
            algo.stop()


def end_to_end(model_path: str, quick: bool = False, num_env_runners: int = 1) -> Dict[str, Any]:
    """SPiRL training after warm-up on the kitchen skill env: the rates that set a run's wall time."""
    seconds = 20.0 if quick else 60.0
    cfg = _config(model_path, num_env_runners, 1.0 if num_env_runners == 1 else 0.5,
                  warmup_env_steps=20 * HORIZON, min_sample_timesteps=20)
    algo = cfg.build_algo()
    try:
        t0 = time.perf_counter()
        while algo.train().get("num_gradient_updates_lifetime", 0) == 0:  # warm-up
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("end-to-end benchmark: learning did not start within 120 s")
        out = _measure(algo, seconds)
        out["num_env_runners"] = num_env_runners
        paper_env_steps = 1_500_000
        out["paper_budget_env_steps"] = paper_env_steps
        out["paper_budget_hours"] = paper_env_steps / max(out["env_steps_per_s"], 1e-9) / 3600
        return out
    finally:
        algo.stop()
