"""Parallel collection of scripted block-stacking episodes into a D4RL-layout hdf5 (SPiRL appendix C).

Each episode resets the 5-block data-collection env (blocks randomly stacked
or scattered) and runs the noisy hand-coded policy of
:mod:`spirl_ray.data.scripted.stacking_policy` (1-3 consecutive stacks with
pseudo-random subgoals). A ``random_action_fraction`` of the episodes (chosen
by the seed) use uniform random actions instead, 150-299 steps long (the
scripted episodes average ~215 steps): appendix G's mixed-quality data uses
0.5 and 0.75. Episodes end when the script is done, or after
``max_episode_steps`` (default 400) env steps of 0.04 s.

Episodes run as Ray tasks (``num_cpus=1``) in chunks; episode ``i`` is seeded
from ``(seed, i)`` only, so the file does not depend on the number of workers
or the chunking. Results are streamed to disk in episode order with at most
``2 x num_workers`` chunks in flight, so the paper's 37,000 episodes (~8M
steps; ~50 GB of raw (6, 32, 32) image observations) never sit in memory at once. The file is
written under a temporary name and renamed when complete.

File layout (one flat array per key, episodes concatenated, N steps):

``observations`` (N, 25) float32 -- state before each step (layout:
``spirl_ray.envs.block_stacking`` module docstring); ``actions`` (N, 3)
float32 (dx, dz, opening); ``rewards`` (N,) float32 (dense reward of the
step); ``terminals`` (N,) bool (all False); ``timeouts`` (N,) bool (True at
the last step of every episode); ``images`` (N, 6, 32, 32) uint8 when
``images=True``: the image observation before each step, channel-first --
front views t-1 (channels 0-2) and t (3-5), t = 0 repeating frame 0 -- the
same bytes the ``obs_mode="image"`` env gives the policy in RL (the readers'
(N, C, H, W) image states); ``infos/stacked_blocks`` (N,)
int16 (after the step); ``infos/episode_id`` (N,) int32; ``metadata/*``
per-episode arrays and attributes.

CLI: ``python -m spirl_ray.data.collect_block_stacking --out PATH --episodes 37000 --seed 0 [--images]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

from spirl_ray.data.scripted.stacking_policy import MAX_STACKS, StackingNoise, run_episode
from spirl_ray.envs.block_stacking import DATA_COLLECTION_KWARGS, make_data_collection_env
from spirl_ray.utils import atomic_path

#: the paper's dataset size (section 4.3: "37 000 training sequences")
PAPER_NUM_EPISODES = 37_000
#: the collector's episode cap (env steps); scripted episodes take ~150-300
MAX_EPISODE_STEPS = 400
#: appendix G's fractions of random-action episodes
MIXED_QUALITY_FRACTIONS = (0.0, 0.5, 0.75)


def episode_seed(seed: int, index: int) -> int:
    """Seed of episode ``index`` of a collection with base ``seed`` (worker-independent)."""
    return int(np.random.SeedSequence([int(seed), int(index), 0xB10C]).generate_state(1)[0])


def random_episode_mask(num_episodes: int, fraction: float, seed: int) -> np.ndarray:
    """(num_episodes,) bool: which episodes use random actions (exactly ``round(fraction * n)``).

    Raises:
        ValueError: ``fraction`` outside [0, 1].
    """
    if not 0.0 <= float(fraction) <= 1.0:
        raise ValueError(f"random_action_fraction must be in [0, 1], got {fraction}")
    mask = np.zeros(num_episodes, dtype=bool)
    k = int(round(float(fraction) * num_episodes))
    if k:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED, 0xB10C]))
        mask[rng.permutation(num_episodes)[:k]] = True
    return mask


def collect_episodes(indices, seed: int, random_mask, images: bool, noise: dict, max_steps: int) -> list[dict]:
    """Run the episodes ``indices`` in this process (the body of one Ray task)."""
    env = make_data_collection_env()
    cfg = StackingNoise(**noise)
    out = []
    for i, rand in zip(indices, random_mask):
        ep = run_episode(env, episode_seed(seed, i), noise=cfg, max_steps=max_steps, random_actions=bool(rand),
                         render_images=images)
        ep["index"] = int(i)
        ep["random"] = bool(rand)
        out.append(ep)
    env.close()
    return out


class _EpisodeWriter:
    """Appends episodes (in order) to resizable datasets of an open hdf5 file; per-episode metadata at close."""

    def __init__(self, f: h5py.File, obs_dim: int, image_size: int | None):
        self.f = f
        gz = {"compression": "gzip", "compression_opts": 4}
        self.ds = {
            "observations": f.create_dataset("observations", (0, obs_dim), np.float32, maxshape=(None, obs_dim),
                                             chunks=(4096, obs_dim), **gz),
            "actions": f.create_dataset("actions", (0, 3), np.float32, maxshape=(None, 3), chunks=(4096, 3), **gz),
            "rewards": f.create_dataset("rewards", (0,), np.float32, maxshape=(None,), chunks=(16384,)),
            "terminals": f.create_dataset("terminals", (0,), bool, maxshape=(None,), chunks=(16384,)),
            "timeouts": f.create_dataset("timeouts", (0,), bool, maxshape=(None,), chunks=(16384,)),
            "infos/stacked_blocks": f.create_dataset("infos/stacked_blocks", (0,), np.int16, maxshape=(None,),
                                                     chunks=(16384,)),
            "infos/episode_id": f.create_dataset("infos/episode_id", (0,), np.int32, maxshape=(None,), chunks=(16384,)),
        }
        if image_size is not None:
            s = int(image_size)
            self.ds["images"] = f.create_dataset("images", (0, 6, s, s), np.uint8, maxshape=(None, 6, s, s),
                                                 chunks=(256, 6, s, s), **gz)
        self.n = 0
        self.meta: dict[str, list] = {k: [] for k in (
            "episode_lengths", "episode_seeds", "random_episode", "planned_stacks", "stack_attempts",
            "successful_stacks", "grasp_failures", "initial_stacked", "final_stacked", "max_stacked")}

    def append(self, ep: dict) -> None:
        t = len(ep["actions"])
        timeouts = np.zeros(t, dtype=bool)
        timeouts[-1] = True
        cols = {
            "observations": ep["observations"], "actions": ep["actions"], "rewards": ep["rewards"],
            "terminals": np.zeros(t, dtype=bool), "timeouts": timeouts,
            "infos/stacked_blocks": ep["stacked_blocks"], "infos/episode_id": np.full(t, ep["index"], np.int32),
        }
        if "images" in self.ds:
            cols["images"] = ep["images"]
        for k, v in cols.items():
            d = self.ds[k]
            d.resize(self.n + t, axis=0)
            d[self.n:self.n + t] = v
        self.n += t
        st = ep["stats"]
        for k, v in (("episode_lengths", t), ("episode_seeds", ep["seed"]), ("random_episode", ep["random"]),
                     ("planned_stacks", st["planned"]), ("stack_attempts", st["attempts"]),
                     ("successful_stacks", st["successes"]), ("grasp_failures", st["grasp_failures"]),
                     ("initial_stacked", ep["initial_stacked"]), ("final_stacked", ep["final_stacked"]),
                     ("max_stacked", ep["max_stacked"])):
            self.meta[k].append(v)

    def close(self, attrs: dict) -> None:
        m = self.f.create_group("metadata")
        dtypes = {"episode_seeds": np.uint64, "random_episode": bool}
        for k, v in self.meta.items():
            m.create_dataset(k, data=np.asarray(v, dtype=dtypes.get(k, np.int64)))
        for k, v in attrs.items():
            m.attrs[k] = v


def _summary(meta: dict[str, list], total_steps: int, wall: float, num_workers: int) -> dict:
    rand = np.asarray(meta["random_episode"], dtype=bool)
    lengths = np.asarray(meta["episode_lengths"])
    sc = ~rand
    succ = np.asarray(meta["successful_stacks"])[sc]
    att = np.asarray(meta["stack_attempts"])[sc]
    mx = np.asarray(meta["max_stacked"])
    fin = np.asarray(meta["final_stacked"])
    init = np.asarray(meta["initial_stacked"])

    def mean(a):
        return float(a.mean()) if a.size else None

    return {
        "episodes": int(len(lengths)),
        "scripted_episodes": int(sc.sum()),
        "random_episodes": int(rand.sum()),
        "total_steps": int(total_steps),
        "mean_episode_length": mean(lengths),
        "mean_scripted_episode_length": mean(lengths[sc]),
        "max_episode_length": int(lengths.max()) if lengths.size else 0,
        "stacks_per_episode": {  # scripted episodes: successful stacking manipulations
            "mean": mean(succ),
            "histogram": {str(k): int((succ == k).sum()) for k in range(MAX_STACKS + 1)},
            "rate_at_least_2": mean(succ >= 2),
            "success_per_attempt": float(succ.sum() / att.sum()) if att.sum() else None,
            "grasp_failures": int(np.asarray(meta["grasp_failures"])[sc].sum()),
        },
        "stacked_blocks": {  # highest tower, paper's "# blocks stacked"
            "scripted_initial_mean": mean(init[sc]),
            "scripted_final_mean": mean(fin[sc]),
            "scripted_max_mean": mean(mx[sc]),
            "scripted_max_histogram": {str(k): int((mx[sc] == k).sum()) for k in range(int(mx.max(initial=0)) + 1)},
            "random_max_mean": mean(mx[rand]),
        },
        "wall_time_s": wall,
        "env_steps_per_s": total_steps / wall if wall > 0 else None,
        "episodes_per_s": len(lengths) / wall if wall > 0 else None,
        "num_workers": num_workers,
    }


def collect_block_stacking_dataset(
    path,
    num_episodes: int = PAPER_NUM_EPISODES,
    seed: int = 0,
    num_workers: int | None = None,
    images: bool = False,
    random_action_fraction: float = 0.0,
    show_progress: bool = True,
    chunk_size: int | None = None,
    noise: StackingNoise | None = None,
    max_episode_steps: int = MAX_EPISODE_STEPS,
    ray_address: str | None = None,
) -> dict:
    """Collect ``num_episodes`` block-stacking episodes into ``path`` (hdf5); return the summary.

    Also writes ``<path>.summary.json`` (stacks per episode, tower heights,
    lengths, throughput). File layout: module docstring.

    Args:
        path: output hdf5 path (written atomically).
        num_episodes: episodes to collect (paper: 37,000).
        seed: base seed; episode ``i`` depends only on ``(seed, i)``.
        num_workers: parallel Ray tasks (default: the CPUs Ray has).
        images: also store the image observation of every step (``images``,
            (N, 6, 32, 32) uint8: two stacked RGB front views, channel-first).
        random_action_fraction: fraction of uniform-random-action episodes
            (appendix G: 0, 0.5, 0.75).
        show_progress: tqdm progress bar over episodes.
        chunk_size: episodes per Ray task (default: ~4 chunks per worker, <= 25).
        noise: policy randomisation (default :class:`StackingNoise`).
        max_episode_steps: cap on an episode's env steps.
        ray_address: Ray cluster to join when Ray is not initialised yet
            (default: start a local instance with ``num_workers`` CPUs, shut down at the end).

    Raises:
        ValueError: non-positive ``num_episodes``/``num_workers``/``chunk_size``/
            ``max_episode_steps``, or ``random_action_fraction`` outside [0, 1].
    """
    import ray

    if int(num_episodes) <= 0:
        raise ValueError(f"num_episodes must be a positive integer, got {num_episodes}")
    if num_workers is not None and int(num_workers) <= 0:
        raise ValueError(f"num_workers must be a positive integer or None, got {num_workers}")
    if chunk_size is not None and int(chunk_size) <= 0:
        raise ValueError(f"chunk_size must be a positive integer or None, got {chunk_size}")
    if int(max_episode_steps) <= 0:
        raise ValueError(f"max_episode_steps must be a positive integer, got {max_episode_steps}")
    num_episodes = int(num_episodes)
    noise = StackingNoise() if noise is None else noise
    random_mask = random_episode_mask(num_episodes, random_action_fraction, seed)
    probe = make_data_collection_env()
    obs_dim, image_size = probe.observation_space.shape[0], probe.image_size
    probe.close()

    started_ray = False
    if not ray.is_initialized():
        if ray_address is None:  # a fresh local instance, never another job's cluster on this machine
            ray.init(address="local", num_cpus=num_workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=ray_address, log_to_driver=False)
        started_ray = True
    if num_workers is None:
        num_workers = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)))
    if chunk_size is None:
        chunk_size = max(1, min(25, int(np.ceil(num_episodes / (4 * num_workers)))))
    chunks = [list(range(s, min(s + chunk_size, num_episodes))) for s in range(0, num_episodes, chunk_size)]
    remote = ray.remote(num_cpus=1)(collect_episodes)
    noise_kw = asdict(noise)
    max_in_flight = 2 * num_workers

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=num_episodes, desc="block-stacking episodes", unit="ep")
    t0 = time.time()
    try:
        with atomic_path(path) as tmp:
            with h5py.File(tmp, "w") as f:
                writer = _EpisodeWriter(f, obs_dim, image_size if images else None)
                pending: dict = {}  # ref -> chunk number
                ready: dict[int, list[dict]] = {}  # finished chunks waiting for their predecessors
                next_submit = next_write = 0
                while next_write < len(chunks):
                    while next_submit < len(chunks) and len(pending) + len(ready) < max_in_flight:
                        c = chunks[next_submit]
                        ref = remote.remote(c, seed, random_mask[c], bool(images), noise_kw, int(max_episode_steps))
                        pending[ref] = next_submit
                        next_submit += 1
                    done, _ = ray.wait(list(pending), num_returns=1)
                    for ref in done:
                        eps = ray.get(ref)
                        ready[pending.pop(ref)] = eps
                        if bar is not None:
                            bar.update(len(eps))
                    while next_write in ready:
                        for ep in ready.pop(next_write):
                            writer.append(ep)
                        next_write += 1
                wall = time.time() - t0
                summary = _summary(writer.meta, writer.n, wall, num_workers)
                summary.update(
                    path=str(path), seed=int(seed), images=bool(images),
                    random_action_fraction=float(random_action_fraction),
                    max_episode_steps=int(max_episode_steps), noise=noise_kw, env=dict(DATA_COLLECTION_KWARGS),
                )
                writer.close({
                    "source": "spirl_ray scripted block stacking (SPiRL appendix C)",
                    "env": "block_stacking", "num_blocks": int(DATA_COLLECTION_KWARGS["num_blocks"]),
                    "obs_dim": int(obs_dim), "act_dim": 3, "seed": int(seed), "num_episodes": num_episodes,
                    "images": bool(images), "image_size": int(image_size),
                    "random_action_fraction": float(random_action_fraction),
                    "max_episode_steps": int(max_episode_steps), "noise": json.dumps(noise_kw),
                })
    finally:
        if bar is not None:
            bar.close()
        if started_ray:
            ray.shutdown()
    with atomic_path(f"{path}.summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> dict:
    """CLI: collect a block-stacking dataset and print its summary."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output hdf5 path")
    p.add_argument("--episodes", type=int, default=PAPER_NUM_EPISODES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--images", action="store_true", help="also store the (6, 32, 32) image observations")
    p.add_argument("--random-action-fraction", type=float, default=0.0,
                   help=f"fraction of random-action episodes (appendix G: {MIXED_QUALITY_FRACTIONS})")
    p.add_argument("--max-episode-steps", type=int, default=MAX_EPISODE_STEPS)
    p.add_argument("--action-noise", type=float, default=StackingNoise.action_noise)
    p.add_argument("--address", default=None, help="Ray cluster to join (default: start a local one)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    summary = collect_block_stacking_dataset(
        a.out, num_episodes=a.episodes, seed=a.seed, num_workers=a.workers, images=a.images,
        random_action_fraction=a.random_action_fraction, show_progress=not a.no_progress,
        noise=StackingNoise(action_noise=a.action_noise), max_episode_steps=a.max_episode_steps,
        ray_address=a.address,
    )
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
