"""(1) raw kitchen env steps/s, (2) skill env wrapper low-level steps/s with the real decoder.

Everything runs in this process with one torch thread (what an EnvRunner uses).
The workloads are timed in alternation (see :func:`interleaved_rates`).
Besides the plain rates, the wrapper's own cost is measured directly: the time
spent inside the wrapped env's ``step`` is subtracted from the wrapper's wall
time, so the overhead fraction does not depend on how fast the simulator
happens to be for the decoded actions (MuJoCo step time depends on the state).
"""

from __future__ import annotations

import time
from typing import Any, Dict

import numpy as np

from benchmarks.common import ACT_DIM, LATENT_DIM, interleaved_rates, make_skill_model


class _TimedEnv:
    """Wraps ``env.step`` (the bound method) and accumulates the seconds spent in it."""

    def __init__(self, env):
        self._step = env.step
        self.seconds = 0.0

    def step(self, action):
        t = time.perf_counter()
        out = self._step(action)
        self.seconds += time.perf_counter() - t
        return out


def run(quick: bool = False) -> Dict[str, Any]:
    import torch

    from spirl_ray.envs.kitchen import make_kitchen_env
    from spirl_ray.rl.skill_env import SkillEnv

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    rounds, seconds = (2, 1.5) if quick else (3, 5.0)

    raw = make_kitchen_env()
    raw.reset(seed=0)
    low, high = raw.action_space.low, raw.action_space.high

    def raw_step() -> int:
        _, _, term, trunc, _ = raw.step(rng.uniform(low, high).astype(np.float32))
        if term or trunc:
            raw.reset()
        return 1

    steps = {"raw_env_random_actions": raw_step}
    wrappers = {}
    for decoder in ("open_loop", "closed_loop"):
        env = SkillEnv(make_kitchen_env(), make_skill_model(decoder))
        timed = _TimedEnv(env.env)
        env.env.step = timed.step  # the wrapper calls self.env.step; count the time spent there
        env.reset(seed=0)
        wrappers[decoder] = (env, timed)

        def skill_step(env=env) -> int:
            z = rng.uniform(-2.0, 2.0, LATENT_DIM).astype(np.float32)
            _, _, term, trunc, info = env.step(z)
            if term or trunc:
                env.reset()
            return int(info["env_steps"])

        steps[f"skill_env_{decoder}"] = skill_step

    # warm-up (first torch calls, MuJoCo caches)
    for fn in steps.values():
        for _ in range(5):
            fn()
    for _, timed in wrappers.values():
        timed.seconds = 0.0
    t_wall = {k: 0.0 for k in wrappers}
    n_steps = {k: 0 for k in wrappers}

    def counting(decoder, fn):
        def step():
            t = time.perf_counter()
            n = fn()
            t_wall[decoder] += time.perf_counter() - t
            n_steps[decoder] += n
            return n
        return step

    for decoder in wrappers:
        steps[f"skill_env_{decoder}"] = counting(decoder, steps[f"skill_env_{decoder}"])

    rates = interleaved_rates(steps, rounds, seconds)
    out: Dict[str, Any] = {"rates": rates, "unit": "low-level env steps/s", "action_dim": ACT_DIM}
    raw_rate = rates["raw_env_random_actions"]["rate"]
    for decoder, (_, timed) in wrappers.items():
        overhead = max(0.0, 1.0 - timed.seconds / t_wall[decoder])
        out[f"{decoder}_overhead_fraction"] = overhead
        out[f"{decoder}_ratio_vs_raw"] = rates[f"skill_env_{decoder}"]["rate"] / raw_rate
        # rate the wrapper would have if the simulator ran at the raw random-action speed
        out[f"{decoder}_ratio_overhead_only"] = 1.0 - overhead
        out[f"{decoder}_inner_env_steps_per_s"] = n_steps[decoder] / timed.seconds
    return out
