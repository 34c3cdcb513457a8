"""(8) SPiRL learner updates/s on image observations, batch 256: today's forward vs the faster variants.

    python -m benchmarks.bench_image_learner            # ~6 min on 2 cores
    python -m benchmarks.bench_image_learner --quick    # ~3 min, noisier
    python -m benchmarks.run --only image_learner       # the same, as a section of the suite

Workloads (per image shape: maze 2 x 32 x 32, block stacking 6 x 32 x 32,
uint8; paper sizes otherwise: prior conv (8, 16, 32) kernel 3 + MLP 6 x 128
with BatchNorm, |Z| = 10, critics 2 x 256 as in ``maze.yaml`` /
``block_stacking.yaml``). Every learner is built from the same seed and runs
``learner.update`` on the SAME fixed batch of K x 256 replay rows with
``minibatch_size=256`` (the fast path ``SPiRL.training_step`` uses; K = 4
gradient steps per call), one torch thread (what a Tune trial's learner gets):

* ``today``: ``model_config["fused_image_forward"] = False``, i.e. RLlib's
  generic SAC forward, the code path of the learner before the fused image
  forward existed (10 conv-encoder passes per step: policy, 2 critics, the 2
  critics again for ``q_curr``, 2 target critics, policy and prior at s').
* ``fused``: the default; same math (``tests/test_image_prior.py`` checks
  outputs and gradients agree bitwise), 8 conv passes, uint8 -> float once.
* ``fused+shared``: ``shared_image_encoder`` (one critic conv, one target conv).
* ``fused+frozen_pi``: ``freeze_policy_encoder`` (no policy conv backward;
  the policy reuses the frozen prior's conv features).
* ``fused+shared+frozen_pi``: both options.
* ``fused+cached``, ``fused+shared+frozen_pi+cached``: the same learners
  with ``cache_prior_features``: the batch carries the frozen prior's conv
  features of obs / next_obs (computed once, by the learner's
  ``prior_features``, as the replay does when a transition is added; not
  timed, as their cost is one conv forward per transition instead of one per
  replay), so the prior's conv (and the frozen policy's) does not run per
  step. Same numbers bit for bit as without the cache
  (``tests/test_prior_feature_cache.py``).
* ``fused+prior_critic+frozen_pi+cached``: ``critic_prior_encoder`` as well:
  the critics and their targets read the frozen prior's (cached) conv
  features, so no conv and no uint8 -> float conversion runs per step; only
  MLPs. A different learner (the critics cannot learn features of their own).
* ``fused+state_critic+frozen_pi+cached``: the asymmetric critic
  (``critic_state_dim``, ``rl.asymmetric_critic``) with the frozen policy
  encoder and the cache: the critics and their targets are MLPs on the env's
  low-dimensional state (maze 4, block stacking 5 + 4 x 11 = 49 floats, the
  batch's ``critic_state`` columns) and the skill; again no conv runs per
  step. The reference SPiRL's critic on its image tasks; a different learner
  from ``today`` (the critic sees the simulator state, not the images).

The learners alternate call by call (:func:`paired_rates`; the order rotates
every round), so on a shared machine a stall of this process hits all of them
alike. Each call is timed twice: wall clock and this process's CPU time
(``time.process_time``; with one torch thread that is the time the update
computed, not the time it waited for a core while other jobs ran). Reported:
the median rate of each, and the median over rounds of the ratio to
``today`` in the same round. Besides, conv-level rows for the choices the
variants rest on: channels-last vs channels-first, one conv call over
cat([obs, next_obs]) vs two calls, and 1 vs 2 torch threads (wall clock).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np

from benchmarks.common import BATCH, LATENT_DIM, run_for

#: (name, image shape, low-level action dim, dim of the env's info["state"]) of the image families.
SHAPES = (("maze", (2, 32, 32), 2, 4), ("blocks", (6, 32, 32), 3, 5 + 4 * 11))
#: gradient steps per learner call.
K = 4
#: variant name -> model_config overrides.
VARIANTS: Dict[str, Dict[str, bool]] = {
    "today": {"fused_image_forward": False},
    "fused": {},
    "fused+shared": {"shared_image_encoder": True},
    "fused+frozen_pi": {"freeze_policy_encoder": True},
    "fused+shared+frozen_pi": {"shared_image_encoder": True, "freeze_policy_encoder": True},
    "fused+cached": {"cache_prior_features": True},
    "fused+shared+frozen_pi+cached": {"shared_image_encoder": True, "freeze_policy_encoder": True,
                                      "cache_prior_features": True},
    "fused+prior_critic+frozen_pi+cached": {"critic_prior_encoder": True, "freeze_policy_encoder": True,
                                            "cache_prior_features": True},
    "fused+state_critic+frozen_pi+cached": {"asymmetric_critic": True, "freeze_policy_encoder": True,
                                            "cache_prior_features": True},
}


def _skill_model_file(out_dir: Path, shape, action_dim: int) -> str:
    import torch

    from spirl_ray.skills.checkpoint import save_skill_model
    from spirl_ray.skills.models import SkillModel, SkillModelConfig

    torch.manual_seed(0)
    cfg = SkillModelConfig(obs_dim=int(np.prod(shape)), action_dim=action_dim, horizon=10, latent_dim=LATENT_DIM,
                           image_shape=shape, beta=1e-2)
    return str(save_skill_model(out_dir / f"skills_{'x'.join(map(str, shape))}.pt", SkillModel(cfg).eval()))


def _learner(model_path: str, shape, overrides: Dict[str, bool], state_dim: int):
    import gymnasium as gym
    import torch

    from spirl_ray.rl.spirl import SPiRLConfig

    obs_space = gym.spaces.Box(0, 255, shape, np.uint8)
    act_space = gym.spaces.Box(-2.0, 2.0, (LATENT_DIM,), np.float32)

    class _Spaces(gym.Env):
        observation_space, action_space = obs_space, act_space

    config = (
        SPiRLConfig()
        .environment(observation_space=obs_space, action_space=act_space)
        .training(skill_model_path=model_path, train_batch_size_per_learner=BATCH, critic_layers=2, critic_hidden=256,
                  target_divergence=1.0, warmup_env_steps=0,
                  shared_image_encoder=overrides.get("shared_image_encoder", False),
                  freeze_policy_encoder=overrides.get("freeze_policy_encoder", False),
                  cache_prior_features=overrides.get("cache_prior_features", False),
                  critic_prior_encoder=overrides.get("critic_prior_encoder", False),
                  critic_state_dim=state_dim if overrides.get("asymmetric_critic") else None)
        .rl_module(model_config={k: v for k, v in overrides.items() if k == "fused_image_forward"})
    )
    torch.manual_seed(0)
    return config.build_learner(env=_Spaces())


def _batch(shape, state_dim: int, seed: int = 0):
    """K x 256 random replay rows: uint8 images, skills, rewards, 1 % terminal, and the (n, state_dim) critic states."""
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    from spirl_ray.rl.spirl.rl_module import CRITIC_STATE, CRITIC_STATE_NEXT

    rng = np.random.default_rng(seed)
    n = K * BATCH
    data = {
        Columns.OBS: rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        Columns.NEXT_OBS: rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        Columns.ACTIONS: rng.uniform(-2, 2, (n, LATENT_DIM)).astype(np.float32),
        Columns.REWARDS: rng.normal(size=n).astype(np.float32),
        Columns.TERMINATEDS: (rng.random(n) < 0.01).astype(np.float32),
        CRITIC_STATE: rng.normal(size=(n, state_dim)).astype(np.float32),
        CRITIC_STATE_NEXT: rng.normal(size=(n, state_dim)).astype(np.float32),
    }
    return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=n)


def _with_prior_features(learner, batch):
    """``batch`` + the columns the replay's feature cache adds (the learner's frozen prior conv features)."""
    import torch
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.core.columns import Columns
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    from spirl_ray.rl.spirl.rl_module import PRIOR_FEATURES, PRIOR_FEATURES_NEXT

    module = learner.module[DEFAULT_MODULE_ID]
    data = dict(batch.policy_batches[DEFAULT_MODULE_ID])
    data[PRIOR_FEATURES] = module.prior_features(torch.from_numpy(data[Columns.OBS])).numpy()
    data[PRIOR_FEATURES_NEXT] = module.prior_features(torch.from_numpy(data[Columns.NEXT_OBS])).numpy()
    return MultiAgentBatch({DEFAULT_MODULE_ID: SampleBatch(data)}, env_steps=batch.env_steps())


def _update_fn(learner, batch) -> Callable[[], int]:
    timesteps = {"num_env_steps_sampled_lifetime": 10**6}

    def step() -> int:
        learner.update(batch=batch, minibatch_size=BATCH, num_epochs=1, timesteps=timesteps)
        return K

    return step


def paired_rates(steps: Dict[str, Callable[[], int]], rounds: int) -> Dict[str, Dict[str, Any]]:
    """Items/s of several workloads called in alternation, one call each per round (order rotated per round).

    Returns per workload: ``wall`` / ``cpu`` (median rate by wall clock / by process CPU time),
    ``wall_min`` / ``wall_max``, the per-round ``wall_samples`` / ``cpu_samples``, and, for every
    workload, ``ratio_wall`` / ``ratio_cpu``: the median over rounds of its rate over the FIRST
    workload's rate in the same round.
    """
    names = list(steps)
    wall = {k: [] for k in names}
    cpu = {k: [] for k in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t0, c0 = time.perf_counter(), time.process_time()
            n = steps[name]()
            wall[name].append(n / (time.perf_counter() - t0))
            cpu[name].append(n / max(time.process_time() - c0, 1e-9))
    ref = names[0]
    return {
        k: {
            "wall": statistics.median(wall[k]), "cpu": statistics.median(cpu[k]),
            "wall_min": min(wall[k]), "wall_max": max(wall[k]),
            "ratio_wall": statistics.median(a / b for a, b in zip(wall[k], wall[ref])),
            "ratio_cpu": statistics.median(a / b for a, b in zip(cpu[k], cpu[ref])),
            "wall_samples": wall[k], "cpu_samples": cpu[k], "rounds": rounds,
        }
        for k in names
    }


def _conv_rows(shape, rounds: int) -> Dict[str, Any]:
    """Conv-level choices at batch 256: layout, cat vs two calls, threads (updates = encoder passes)."""
    import torch

    from spirl_ray.skills.models import ConvEncoder

    torch.manual_seed(0)
    enc = ConvEncoder(shape)
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.integers(0, 256, (BATCH, *shape), dtype=np.uint8))
    x2 = torch.from_numpy(rng.integers(0, 256, (BATCH, *shape), dtype=np.uint8))
    cf = x.float() * (1.0 / 255.0)
    cl = ConvEncoder.prepare(x)
    p, p2 = ConvEncoder.prepare(x), ConvEncoder.prepare(x2)

    def fwd_bwd(inp):
        def f() -> int:
            enc.zero_grad(set_to_none=True)
            enc.net(inp).flatten(1).sum().backward()
            return 1
        return f

    def no_grad(fn):
        def f() -> int:
            with torch.no_grad():
                fn()
            return 1
        return f

    steps = {
        "fwd_bwd_channels_first": fwd_bwd(cf),
        "fwd_bwd_channels_last": fwd_bwd(cl),
        "fwd_channels_first": no_grad(lambda: enc.net(cf).flatten(1)),
        "fwd_channels_last": no_grad(lambda: enc.net(cl).flatten(1)),
        # two images per call in both: obs and next_obs through one network (the prior / the policy at s')
        "obs_next_two_calls": no_grad(lambda: (enc.features(p), enc.features(p2))),
        "obs_next_one_cat_call": no_grad(lambda: enc.features(torch.cat([p, p2]))),
    }
    def ten(fn):
        def f() -> int:
            for _ in range(10):
                fn()
            return 10
        return f

    return paired_rates({k: ten(fn) for k, fn in steps.items()}, rounds)


def run(quick: bool = False) -> Dict[str, Any]:
    import torch

    seconds = 2.0 if quick else 4.0
    calls = 12 if quick else 30
    out: Dict[str, Any] = {"unit": f"gradient updates/s (batch {BATCH}, K={K} per learner call)", "shapes": {}}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spirl_bench_img_") as tmp:
        for name, shape, action_dim, state_dim in SHAPES:
            path = _skill_model_file(Path(tmp), shape, action_dim)
            batch = _batch(shape, state_dim)  # the critic-state columns are read only by the state_critic learner
            learners = {v: _learner(path, shape, ov, state_dim) for v, ov in VARIANTS.items()}
            torch.set_num_threads(1)  # after the builds (a learner sets its threads when built)
            steps = {v: _update_fn(lrn, _with_prior_features(lrn, batch) if VARIANTS[v].get("cache_prior_features")
                                   else batch) for v, lrn in learners.items()}
            for fn in steps.values():  # warm-up
                fn()
            res: Dict[str, Any] = {"image_shape": list(shape), "rates": paired_rates(steps, calls)}
            # Threads: the default (fused) learner with 2 intra-op threads vs 1.
            torch.set_num_threads(2)
            n, dt = run_for(steps["fused"], seconds, 2)
            torch.set_num_threads(1)
            n1, dt1 = run_for(steps["fused"], seconds, 2)
            res["fused_threads"] = {"1": n1 / dt1, "2": n / dt}
            res["conv"] = _conv_rows(shape, calls)
            out["shapes"][name] = res
            del learners, steps
    out["seconds"] = time.perf_counter() - t0
    return out


def rows(res: Dict[str, Any]):
    """(measurement rows (name, value, unit), ratio rows (name, value, floor)) for the suite's table."""
    table, ratios = [], []
    for name, r in res["shapes"].items():
        shape = "x".join(map(str, r["image_shape"]))
        for v, rate in r["rates"].items():
            table.append((f"(8) {name} {shape} learner, {v}", f"{rate['cpu']:.1f} / {rate['wall']:.1f}",
                          f"updates/s by CPU time / wall clock (wall {rate['wall_min']:.1f}-{rate['wall_max']:.1f})"))
        for v, rate in r["rates"].items():
            if v != "today":
                ratios.append((f"{name} image learner {v} / today, CPU time", rate["ratio_cpu"], 3.0))
                ratios.append((f"{name} image learner {v} / today, wall clock", rate["ratio_wall"], 3.0))
        t = r["fused_threads"]
        table.append((f"(8) {name} fused, 1 / 2 torch threads", f"{t['1']:.1f} / {t['2']:.1f}", "updates/s"))
        c = r["conv"]
        for k in ("fwd_bwd_channels_first", "fwd_bwd_channels_last", "fwd_channels_first", "fwd_channels_last",
                  "obs_next_two_calls", "obs_next_one_cat_call"):
            table.append((f"    {name} conv {k}", f"{c[k]['cpu']:.0f} / {c[k]['wall']:.0f}", "calls/s by CPU time / wall"))
    return table, ratios


def print_rows(res: Dict[str, Any]) -> None:
    table, ratios = rows(res)
    w = max(len(r[0]) for r in table + ratios)
    for n, v, u in table:
        print(f"{n:<{w}}  {v:>12}  {u}")
    print("-" * (w + 30))
    for n, v, floor in ratios:
        print(f"{n:<{w}}  {v:>12.2f}  >= {floor:g}  {'MET' if v >= floor else 'MISSED'}")


def main(argv=None) -> None:
    import datetime as dt

    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_image_learner", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer / shorter rounds (noisier)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="directory of the JSON file")
    a = p.parse_args(argv)
    res = run(a.quick)
    print_rows(res)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"image-learner-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}{'-quick' if a.quick else ''}.json"
    path.write_text(json.dumps(res, indent=2, default=float))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
