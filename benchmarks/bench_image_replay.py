"""Peak RSS of SPiRL's transition replay filled with image observations, uint8 vs float32.

``python -m benchmarks.bench_image_replay [--shape 2,32,32] [--capacity 1000000] [--dtype uint8] [--features 512]``

Fills a :class:`~spirl_ray.rl.spirl.spirl.TransitionReplayBuffer` to capacity
with random images (obs and next_obs, as the buffer stores both), samples one
batch of 256, and prints the process's peak RSS (``ru_maxrss``). Run one
configuration per process: the peak is per process. Measured on the project's
2-core machine (2026-11-30): maze images (2, 32, 32) x 1M: 4.34 GiB as uint8
(float32: ~15.3 GiB of observations alone); block-stacking images (6, 32, 32)
x 1M: 12.2 GiB as uint8, so ~650k transitions fit under 8 GiB.

``--features F`` adds the prior-feature cache (``cache_prior_features``):
2 x F float32 per transition (the paper's conv: F = 512, 4 KiB), filled with
constant stand-in features (the encoder's cost is not what is measured).
Measured 2026-11-30 with F = 512: maze 1M 8.25 GiB (4.34 without the cache:
not under 8 GiB any more); maze 100k 1.35 GiB; block stacking 100k 2.30
GiB (1.82 without). The random images are drawn as uint8: an int64 draw
of the 50k-image block (up to 2.3 GiB, freed at once) set the peak of
small replays (not of the 1M figures above).
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
    p.add_argument("--features", type=int, default=0, help="prior-feature cache width F (0: no cache; paper conv: 512)")
    args = p.parse_args(argv)
    shape = tuple(int(x) for x in args.shape.split(","))
    dtype = np.uint8 if args.dtype == "uint8" else np.float32
    block = min(50_000, args.capacity)
    feats = np.ones((block, args.features), np.float32) if args.features else None
    encoder = (lambda images: (np.ones((len(images), args.features), np.float32), "bench")) if args.features else None
    buf = TransitionReplayBuffer(args.capacity, seed=0, prior_features=encoder)
    # drawn as uint8: an int64 draw of a 50k block (0.8-2.4 GB) would set the peak of a small replay
    obs = np.random.default_rng(0).integers(0, 256, size=(block + 1,) + shape, dtype=np.uint8).astype(dtype, copy=False)
    t0 = time.perf_counter()
    for _ in range(args.capacity // block):
        buf.add(obs=obs[:-1], actions=np.zeros((block, 10), np.float32), rewards=np.zeros(block, np.float32),
                next_obs=obs[1:], terminateds=np.zeros(block, np.float32), prior_features=feats,
                prior_features_next=feats)
    buf.sample(256)
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    cache = sum(buf._data[k].nbytes for k in ("prior_features", "prior_features_next") if k in buf._data)
    print(f"{args.dtype} images {shape} x {args.capacity:,} transitions, feature cache F={args.features}: "
          f"peak RSS {peak_gib:.2f} GiB (obs + next_obs arrays {2 * buf._data['obs'].nbytes / 1024**3:.2f} GiB, "
          f"feature arrays {cache / 1024**3:.2f} GiB), fill {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
