"""(6) peak RSS of a SPiRL run with a full 1M-transition replay buffer, the learner and 2 EnvRunners.

The run happens in a child process (``python -m benchmarks.bench_memory``)
with its own Ray session on the kitchen skill env: the replay buffer is filled
with 10^6 synthetic transitions (kitchen sizes: 30-d states, 10-d skills),
then SPiRL trains (sampling + updates) for a while and saves a checkpoint.
The parent polls the RSS summed over the child's whole process tree (driver
with learner and replay, EnvRunner workers, raylet, GCS, other Ray workers)
and keeps the peak; the child also reports the sum of per-process peaks
(``VmHWM``), an upper bound of the concurrent peak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict

import numpy as np

from benchmarks.common import HORIZON, LATENT_DIM, OBS_DIM, RAY_INIT_KWARGS, RAY_WORKER_ENV, process_tree, rss_bytes

CAPACITY = 1_000_000
GIB = 1024**3


def _child(model_path: str, seconds: float) -> Dict[str, Any]:
    import ray

    from benchmarks.bench_sampling import _config
    from benchmarks.common import register_envs

    os.environ.update(RAY_WORKER_ENV)
    ray.init(**RAY_INIT_KWARGS)
    try:
        register_envs()
        cfg = _config(model_path, 2, 0.5, warmup_env_steps=10 * HORIZON, min_sample_timesteps=10)
        cfg.training(replay_buffer_config={"type": "EpisodeReplayBuffer", "capacity": CAPACITY})
        algo = cfg.build_algo()
        t_fill = time.perf_counter()
        rng = np.random.default_rng(0)
        block = 100_000
        for _ in range(CAPACITY // block):
            algo.local_replay_buffer.add(
                obs=rng.normal(size=(block, OBS_DIM)).astype(np.float32),
                actions=rng.uniform(-1, 1, size=(block, LATENT_DIM)).astype(np.float32),
                rewards=np.zeros(block, np.float32),
                next_obs=rng.normal(size=(block, OBS_DIM)).astype(np.float32),
                terminateds=np.zeros(block, np.float32),
            )
        t_fill = time.perf_counter() - t_fill
        t0 = time.perf_counter()
        iters = updates = 0
        while time.perf_counter() - t0 < seconds:
            r = algo.train()
            iters += 1
            updates = r.get("num_gradient_updates_lifetime", 0)
        with tempfile.TemporaryDirectory() as tmp:
            algo.save_to_path(tmp)
        cur, hwm = rss_bytes(process_tree(os.getpid()))
        driver_hwm = rss_bytes([os.getpid()])[1]
        out = {
            "replay_size": len(algo.local_replay_buffer),
            "replay_fill_s": t_fill,
            "train_iterations": iters,
            "updates": updates,
            "tree_rss_at_end_bytes": cur,
            "tree_sum_of_peaks_bytes": hwm,
            "driver_peak_bytes": driver_hwm,
            "num_processes": len(process_tree(os.getpid())),
        }
        algo.stop()
        return out
    finally:
        ray.shutdown()


def run(model_path: str, quick: bool = False) -> Dict[str, Any]:
    seconds = 15.0 if quick else 40.0
    cmd = [sys.executable, "-m", "benchmarks.bench_memory", "--model", model_path, "--seconds", str(seconds)]
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, rss_bytes(process_tree(proc.pid))[0])
        time.sleep(0.25)
    stdout = proc.stdout.read()
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed (exit {proc.returncode}): {stdout[-2000:]}")
    child = json.loads(stdout.strip().splitlines()[-1])
    child["tree_peak_polled_bytes"] = peak
    child["peak_gib"] = max(peak, child["tree_rss_at_end_bytes"]) / GIB
    child["sum_of_peaks_gib"] = child["tree_sum_of_peaks_bytes"] / GIB
    child["replay_capacity"] = CAPACITY
    return child


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--seconds", type=float, default=40.0)
    a = p.parse_args()
    res = _child(a.model, a.seconds)
    print(json.dumps(res))
