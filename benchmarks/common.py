"""Shared pieces of the benchmark suite: paper-size models, a zero-cost skill env, timing, RSS."""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Tuple

import gymnasium as gym
import numpy as np

#: kitchen sizes (paper appendix B): D4RL 30-d state, 9-d action, H = 10, |Z| = 10.
OBS_DIM, ACT_DIM, HORIZON, LATENT_DIM = 30, 9, 10, 10
#: SAC batch (paper).
BATCH = 256

#: how every Ray session of the suite starts (2-core machine, shared).
RAY_INIT_KWARGS = dict(num_cpus=2, object_store_memory=10**9, include_dashboard=False, log_to_driver=False)
#: Ray starts its workers at niceness 15 (below the driver, which hosts the local learner, and
#: equal to other users' Ray workers). The suite runs them at 0: the learner and the EnvRunners
#: then share the cores as they do in a Tune trial (all Ray workers there), and other users'
#: niced jobs cannot distort the 1-vs-2-runner comparison.
RAY_WORKER_ENV = {"RAY_worker_niceness": "0"}

FREE_ENV_NAME = "spirl_bench_free_skill_env"


# ---- models ---------------------------------------------------------------------------------
def make_skill_model(decoder: str = "open_loop", seed: int = 0):
    """A randomly initialised skill model with the paper's kitchen sizes (timing only)."""
    import torch

    from spirl_ray.skills.models import SkillModel, SkillModelConfig

    torch.manual_seed(seed)
    cfg = SkillModelConfig(obs_dim=OBS_DIM, action_dim=ACT_DIM, horizon=HORIZON, latent_dim=LATENT_DIM, decoder=decoder)
    return SkillModel(cfg).eval()


def save_skill_model_file(out_dir: Path, decoder: str = "open_loop") -> str:
    from spirl_ray.skills.checkpoint import save_skill_model

    out_dir.mkdir(parents=True, exist_ok=True)
    return str(save_skill_model(out_dir / f"skill_model_{decoder}.pt", make_skill_model(decoder)))


# ---- a skill env that costs nothing ---------------------------------------------------------
class FreeSkillEnv(gym.Env):
    """Skill-env stand-in with the kitchen skill env's spaces and (almost) zero step cost.

    30-d observations from a precomputed pool, Box(-2, 2, (10,)) skills, 28
    high-level steps per episode (kitchen: 280 env steps / H), ``info["env_steps"] = H``.
    Used where only learner / framework cost should be timed.
    """

    def __init__(self, config: Optional[dict] = None):
        config = config or {}
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (int(config.get("act_dim", LATENT_DIM)),), np.float32)
        self._pool = np.random.default_rng(0).normal(size=(4096, OBS_DIM)).astype(np.float32)
        self._i = 0
        self._t = 0
        self._len = int(config.get("episode_len", 28))

    def _obs(self) -> np.ndarray:
        self._i = (self._i + 1) % len(self._pool)
        return self._pool[self._i]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {"env_steps": 0}

    def step(self, action):
        self._t += 1
        return self._obs(), 0.0, False, self._t >= self._len, {"env_steps": HORIZON}


def register_envs() -> None:
    """Register the project's env factory and :class:`FreeSkillEnv` with Tune (idempotent)."""
    from ray.tune.registry import register_env

    from spirl_ray.rl.envs import register_envs as register_project_envs

    register_project_envs()
    register_env(FREE_ENV_NAME, lambda cfg: FreeSkillEnv(cfg))


# ---- Ray --------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session() -> Iterator[None]:
    import ray

    os.environ.update(RAY_WORKER_ENV)
    ray.init(**RAY_INIT_KWARGS)
    try:
        register_envs()
        yield
    finally:
        ray.shutdown()
        gc.collect()


# ---- timing -----------------------------------------------------------------------------------
def run_for(step: Callable[[], int], seconds: float, min_calls: int = 1) -> Tuple[int, float]:
    """Call ``step()`` (returns items done) until ``seconds`` passed and ``min_calls`` made: (items, elapsed)."""
    n = calls = 0
    t0 = time.perf_counter()
    while True:
        n += step()
        calls += 1
        dt = time.perf_counter() - t0
        if dt >= seconds and calls >= min_calls:
            return n, dt


def interleaved_rates(steps: Dict[str, Callable[[], int]], rounds: int, seconds: float,
                      min_calls: int = 1) -> Dict[str, dict]:
    """Rates (items/s) of several workloads measured in alternation, ``rounds`` times each.

    Alternating A, B, C, A, B, C, ... spreads slow drifts of a shared machine
    (other jobs, CPU frequency) evenly over the workloads compared; the median
    round is reported, min/max show the spread, and ``samples`` holds the
    per-round rates (round i of every workload ran back to back, so
    per-round ratios pair them).
    """
    samples: Dict[str, List[float]] = {k: [] for k in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            n, dt = run_for(fn, seconds, min_calls)
            samples[name].append(n / dt)
    return {
        k: {"rate": statistics.median(v), "min": min(v), "max": max(v), "rounds": len(v), "samples": v}
        for k, v in samples.items()
    }


# ---- memory -----------------------------------------------------------------------------------
def _proc_status(pid: int) -> Dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, val = line.split(":", 1)
                    out[key] = int(val.split()[0]) * 1024
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return out


def _children(pid: int) -> List[int]:
    kids: List[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    kids.extend(int(x) for x in f.read().split())
            except FileNotFoundError:
                pass
    except FileNotFoundError:
        pass
    return kids


def process_tree(pid: int) -> List[int]:
    """``pid`` and all its descendants (Ray's raylet, GCS and worker processes of a session it started)."""
    seen, stack = [], [pid]
    while stack:
        p = stack.pop()
        if p in seen:
            continue
        seen.append(p)
        stack.extend(_children(p))
    return seen


def rss_bytes(pids: List[int]) -> Tuple[int, int]:
    """(current RSS sum, sum of per-process peak RSS) of ``pids``."""
    cur = hwm = 0
    for p in pids:
        s = _proc_status(p)
        cur += s.get("VmRSS", 0)
        hwm += s.get("VmHWM", 0)
    return cur, hwm


def loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


# ---- CPU contention ---------------------------------------------------------------------------
def _cpu_jiffies() -> Tuple[int, int]:
    """(busy jiffies at normal priority, niced jiffies) summed over all CPUs (/proc/stat)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (parts + [0] * 8)[:8]
    return user + system + irq + softirq + steal, nice


def _tree_jiffies(pids: List[int]) -> Dict[int, int]:
    out = {}
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            out[p] = int(fields[11]) + int(fields[12])  # utime + stime
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            pass
    return out


class CpuMonitor:
    """Samples, in a background thread, how many cores this process tree and everything else use.

    ``foreign_cores``: CPU used by other processes (other jobs on a shared
    machine), averaged over the monitored span; ``niced_cores``: CPU time at
    positive niceness (other users' Ray workers, which yield to ours, as the
    suite runs its own Ray workers at niceness 0); ``own_cores``: this process
    and its descendants (Ray workers included). A benchmark comparing 1
    with 2 busy processes on a 2-core machine is only meaningful when
    ``foreign_cores`` is small.
    """

    def __init__(self, interval: float = 0.5):
        import threading

        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._hz = os.sysconf("SC_CLK_TCK")
        self.own = self.foreign = self.niced = 0.0
        self.seconds = 0.0

    def _run(self) -> None:
        busy0, nice0 = _cpu_jiffies()
        own0 = _tree_jiffies(process_tree(os.getpid()))
        t0 = time.perf_counter()
        while not self._stop.wait(self.interval):
            busy1, nice1 = _cpu_jiffies()
            own1 = _tree_jiffies(process_tree(os.getpid()))
            t1 = time.perf_counter()
            own = sum(v - own0[p] for p, v in own1.items() if p in own0 and v >= own0[p])
            self.own += own / self._hz
            self.foreign += max(0, (busy1 - busy0) + (nice1 - nice0) - own) / self._hz
            self.niced += (nice1 - nice0) / self._hz
            self.seconds += t1 - t0
            busy0, nice0, own0, t0 = busy1, nice1, own1, t1

    def __enter__(self) -> "CpuMonitor":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def result(self) -> Dict[str, float]:
        s = max(self.seconds, 1e-9)
        return {"own_cores": self.own / s, "foreign_cores": self.foreign / s, "niced_cores": self.niced / s,
                "seconds": self.seconds}
