"""Peak RSS of SPiRL's transition replay filled with image observations, uint8 vs float32.

``python -m benchmarks.bench_image_replay [--shape 2,32,32] [--capacity 1000000] [--dtype uint8]``

Fills a :class:`~spirl_ray.rl.spirl.spirl.TransitionReplayBuffer` to capacity
with random images (obs and next_obs, as the buffer stores both), samples one
batch of 256, and prints the process's peak RSS (``ru_maxrss``). Run one
configuration per process: the peak is per process. Measured on the project's
2-core machine (2026-11-30): maze images (2, 32, 32) x 1M: 4.34 GiB as uint8
(float32: ~15.3 GiB of observations alone); block-stacking images (6, 32, 32)
x 1M: 12.2 GiB as uint8, so ~650k transitions fit under 8 GiB.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from spirl_ray.rl.spirl.spirl import TransitionReplayBuffer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_image_replay", description=__doc__.splitlines()[0])
    p.add_argument("--shape", default="2,32,32", help="image observation shape C,H,W (maze 2,32,32; blocks 6,32,32)")
    p.add_argument("--capacity", type=int, default=1_000_000, help="transitions")
    p.add_argument("--dtype", choices=("uint8", "float32"), default="uint8")
    args = p.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    dtype = np.uint8 if args.dtype == "uint8" else np.float32
    buf = TransitionReplayBuffer(args.capacity, seed=0)
    block = min(50_000, args.capacity)
    obs = np.random.default_rng(0).integers(0, 256, size=(block + 1,) + shape).astype(dtype)
    t0 = time.perf_counter()
    for _ in range(args.capacity // block):
        buf.add(obs=obs[:-1], actions=np.zeros((block, 10), np.float32), rewards=np.zeros(block, np.float32),
                next_obs=obs[1:], terminateds=np.zeros(block, np.float32))
    buf.sample(256)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"{args.dtype} images {shape} x {args.capacity:,} transitions: peak RSS {peak_gib:.2f} GiB "
          f"(obs + next_obs arrays {2 * buf._data['obs'].nbytes / 1024**3:.2f} GiB), fill {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
