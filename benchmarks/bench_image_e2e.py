"""(9) SPiRL end to end on the maze with image states: env steps/s, today's learner forward vs the new ones.

    python -m benchmarks.bench_image_e2e [--seconds 60] [--rounds 2]

One process, no remote EnvRunners (``num_env_runners=0``: the driver samples
and learns in turn, so the rate is env time + learner time per high-level
step, and nothing else competes for this process's core), a local Ray
instance of its own (``address="local"``, one CPU). The maze of
``tune_configs/maze.yaml`` (20 x 20, 2 x 32 x 32 uint8 image states, 2000-step
episodes) through the skill env with a random open-loop skill model of the
paper's sizes (H = 10, |Z| = 10, conv prior 6 x 128), critics 2 x 256,
batch 256, one gradient step per high-level step (paper). Every variant is
built up front and warmed up (replay filled past ``warmup_env_steps``); then
they train in alternation, ``--seconds / --rounds`` per turn, and the median
turn's low-level env steps/s is reported (wall clock, and by this process's
CPU time: the learner and the env run in this process with one torch thread).
The ``+cached`` variant (``cache_prior_features``) pays its prior conv
forward per new transition inside the measured time (when the transition is
added to the replay).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

VARIANTS = {
    "today": ({"fused_image_forward": False}, {}),
    "fused": ({}, {}),
    "fused+shared+frozen_pi": ({}, {"shared_image_encoder": True, "freeze_policy_encoder": True}),
    "fused+shared+frozen_pi+cached": ({}, {"shared_image_encoder": True, "freeze_policy_encoder": True,
                                           "cache_prior_features": True}),
}


def _skill_model(out_dir: Path) -> str:
    import torch

    from spirl_ray.skills.checkpoint import save_skill_model
    from spirl_ray.skills.models import SkillModel, SkillModelConfig

    torch.manual_seed(0)
    cfg = SkillModelConfig(obs_dim=2 * 32 * 32, action_dim=2, horizon=10, latent_dim=10, image_shape=(2, 32, 32),
                           beta=1e-2)
    return str(save_skill_model(out_dir / "maze_skills.pt", SkillModel(cfg).eval()))


def _algo(model_path: str, model_config: Dict[str, Any], training: Dict[str, Any]):
    from spirl_ray.experiments.config import load_config
    from spirl_ray.rl.callbacks import SPiRLMetricsCallback
    from spirl_ray.rl.envs import RL_ENV_NAME
    from spirl_ray.rl.spirl import SPiRLConfig

    root = Path(__file__).resolve().parents[1]
    env_kwargs = load_config(root / "tune_configs" / "maze.yaml").env.env_kwargs()
    cfg = (
        SPiRLConfig()
        .environment(RL_ENV_NAME, env_config={"env": "maze", "env_kwargs": env_kwargs, "skill_model_path": model_path})
        .env_runners(num_env_runners=0)
        .training(skill_model_path=model_path, skill_horizon=10, warmup_env_steps=300 * 10, critic_layers=2,
                  critic_hidden=256, target_divergence=1.0, replay_buffer_config={"type": "EpisodeReplayBuffer",
                                                                                  "capacity": 100_000},
                  **training)
        .rl_module(model_config=model_config)
        .reporting(min_sample_timesteps_per_iteration=10, min_time_s_per_iteration=0)
        .callbacks(SPiRLMetricsCallback)
        .debugging(seed=0)
    )
    return cfg.build_algo()


def _env_steps(result: Dict[str, Any]) -> int:
    return int(result.get("env_runners", {}).get("env_steps_lifetime", 0))


def _turn(algo, seconds: float) -> Dict[str, float]:
    r = algo.train()
    e0, u0 = _env_steps(r), r.get("num_gradient_updates_lifetime", 0)
    t0, c0 = time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        r = algo.train()
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    de = _env_steps(r) - e0
    return {"wall": de / dt, "cpu": de / max(dc, 1e-9), "updates_per_s": (r.get("num_gradient_updates_lifetime", 0) - u0) / dt}


def run(seconds: float = 60.0, rounds: int = 2) -> Dict[str, Any]:
    import ray
    import torch

    from benchmarks.common import register_envs

    ray.init(address="local", num_cpus=1, object_store_memory=5 * 10**8, include_dashboard=False, log_to_driver=False)
    algos = {}
    try:
        register_envs()
        with tempfile.TemporaryDirectory(prefix="spirl_bench_e2e_") as tmp:
            path = _skill_model(Path(tmp))
            for name, (mc, tr) in VARIANTS.items():
                algos[name] = _algo(path, mc, tr)
                torch.set_num_threads(1)
                t0 = time.perf_counter()
                while algos[name].train().get("num_gradient_updates_lifetime", 0) == 0:  # warm-up
                    if time.perf_counter() - t0 > 600:
                        raise RuntimeError("learning did not start within 600 s")
            turns: Dict[str, list] = {k: [] for k in algos}
            for _ in range(rounds):
                for name, algo in algos.items():
                    turns[name].append(_turn(algo, seconds / rounds))
        out: Dict[str, Any] = {"unit": "low-level env steps/s", "turns": turns}
        for name, ts in turns.items():
            out[name] = {k: statistics.median(t[k] for t in ts) for k in ("wall", "cpu", "updates_per_s")}
        for name in algos:
            out[name]["ratio_wall"] = statistics.median(a["wall"] / b["wall"] for a, b in zip(turns[name], turns["today"]))
            out[name]["ratio_cpu"] = statistics.median(a["cpu"] / b["cpu"] for a, b in zip(turns[name], turns["today"]))
        return out
    finally:
        for algo in algos.values():
            algo.stop()
        ray.shutdown()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_image_e2e", description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=60.0, help="training seconds per variant, split into --rounds turns")
    p.add_argument("--rounds", type=int, default=2)
    a = p.parse_args(argv)
    res = run(a.seconds, a.rounds)
    for name in VARIANTS:
        r = res[name]
        print(f"(9) maze image e2e, {name:<24} {r['cpu']:8.1f} / {r['wall']:8.1f} env steps/s (CPU time / wall)  "
              f"{r['updates_per_s']:6.2f} updates/s  ratio to today {r['ratio_cpu']:.2f} (CPU) / {r['ratio_wall']:.2f} (wall)")
    print(json.dumps({k: v for k, v in res.items() if k != "turns"}, default=float))


if __name__ == "__main__":
    main()
