"""Parallel collection of planner-driven maze episodes into a D4RL-layout hdf5 (paper appendix C).

Every episode gets a new random layout (:func:`spirl_ray.envs.maze_layout.generate_layout`,
10x10 cells by default), a random start cell and a random goal cell 2-15 BFS
cells away, and is driven by the scripted planner
(:mod:`spirl_ray.data.scripted.maze_planner`) in gymnasium-robotics' PointMaze
until the ball is within 0.45 m of the goal or 500 env steps have passed.
Episode ``i`` is seeded from ``(seed, i)`` only, so the file does not depend
on the number of workers. With ``num_workers > 1`` the episodes run as Ray
tasks (``num_cpus=1``) in chunks; with ``num_workers=1`` they run in this
process (no Ray start-up). Chunks are written as they arrive, in episode
order, so memory stays bounded for large image datasets.

File layout (one flat array per key, episodes concatenated, N steps):

``observations`` (N, 4) float32 -- ``(x, y, vx, vy)`` (m, m/s) at the *start* of each step;
``actions`` (N, 2) float32 -- executed force commands in [-1, 1];
``rewards`` (N,) float32 -- the env's sparse reward (1 on the step that reaches the goal);
``terminals`` (N,) bool -- True at the last step of episodes that reached the goal;
``timeouts`` (N,) bool -- True at the last step of episodes cut at ``max_steps``;
``images`` (N, 2, 32, 32) uint8 -- only with ``state="image"``: the env's image
observation at the start of each step (``[previous, current]`` frame, 255 = wall),
produced by the same :class:`~spirl_ray.envs.maze.MazeEnv` code as in RL;
``infos/episode_id`` (N,) int32 (= layout id, index into ``metadata/layouts``);
``infos/goal`` (N, 2) float32 goal position (m);
``metadata/layouts`` (E, R, C) uint8 wall grids (1 = wall, PointMaze ``maze_map``);
``metadata/start_cells``, ``metadata/goal_cells`` (E, 2) int16; ``metadata/episode_lengths``,
``metadata/success``, ``metadata/collision_steps``, ``metadata/episode_seeds``; attributes.

CLI: ``python -m spirl_ray.data.collect_maze --out PATH --episodes 1000 --seed 0 [--state image]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import h5py
import numpy as np

from spirl_ray.data.scripted.maze_planner import (
    MAX_EPISODE_STEPS,
    MAX_GOAL_DISTANCE,
    MIN_EPISODE_STEPS,
    MIN_GOAL_DISTANCE,
    PlannerNoise,
    run_planner_episode,
)
from spirl_ray.envs.maze import GOAL_THRESHOLD, STATE_VARIANTS, MazeEnv
from spirl_ray.envs.maze_layout import TRAIN_MAZE_SIZE, bfs_distances, generate_layout
from spirl_ray.envs.maze_render import FRAME_STACK, IMAGE_SIZE, VIEW_CELLS
from spirl_ray.utils import atomic_path

_DEFAULT_NOISE = PlannerNoise()


def episode_seed(seed: int, index: int) -> int:
    """Seed of episode ``index`` of a collection with base ``seed`` (worker-independent)."""
    return int(np.random.SeedSequence([int(seed), int(index), 0x3A2E]).generate_state(1)[0])


def default_dataset_name(num_episodes: int, seed: int, state: str = "state") -> str:
    """File name naming the collection settings, e.g. ``scripted_maze_1000ep_seed0_state.hdf5``."""
    return f"scripted_maze_{int(num_episodes)}ep_seed{int(seed)}_{state}.hdf5"


def collect_episodes(indices, seed: int, state: str, noise: PlannerNoise, max_steps: int, maze_size,
                     min_goal_distance: int, max_goal_distance: int | None) -> list[dict]:
    """Run the episodes ``indices`` in this process (the body of one Ray task); one new layout each."""
    env = None
    out = []
    for i in indices:
        s = episode_seed(seed, i)
        rng = np.random.default_rng(s)
        layout = generate_layout(maze_size, rng)
        if env is None:
            env = MazeEnv(layout, state=state, max_episode_steps=None, task_seed=0)
        ep = run_planner_episode(env, rng, noise, layout=layout, max_steps=max_steps,
                                 min_goal_distance=min_goal_distance, max_goal_distance=max_goal_distance)
        ep["index"] = int(i)
        ep["seed"] = s
        ep["goal_distance"] = int(bfs_distances(ep["walls"], ep["start_cell"])[ep["goal_cell"]])
        out.append(ep)
    if env is not None:
        env.close()
    return out


class _Hdf5Writer:
    """Appends episodes (in index order) to resizable D4RL-layout datasets of an open file."""

    def __init__(self, f: h5py.File, images: bool, image_size: int):
        self.f = f
        gz = dict(compression="gzip", compression_opts=4)
        self.d = {
            "observations": f.create_dataset("observations", (0, 4), np.float32, maxshape=(None, 4),
                                             chunks=(4096, 4), **gz),
            "actions": f.create_dataset("actions", (0, 2), np.float32, maxshape=(None, 2), chunks=(4096, 2), **gz),
            "rewards": f.create_dataset("rewards", (0,), np.float32, maxshape=(None,), chunks=(8192,)),
            "terminals": f.create_dataset("terminals", (0,), bool, maxshape=(None,), chunks=(8192,)),
            "timeouts": f.create_dataset("timeouts", (0,), bool, maxshape=(None,), chunks=(8192,)),
            "infos/episode_id": f.create_dataset("infos/episode_id", (0,), np.int32, maxshape=(None,), chunks=(8192,)),
            "infos/goal": f.create_dataset("infos/goal", (0, 2), np.float32, maxshape=(None, 2), chunks=(4096, 2)),
        }
        if images:
            shape = (FRAME_STACK, image_size, image_size)
            self.d["images"] = f.create_dataset("images", (0, *shape), np.uint8, maxshape=(None, *shape),
                                                chunks=(256, *shape), **gz)
        self.n = 0

    def append(self, episodes: list[dict]) -> None:
        if not episodes:
            return
        lengths = [e["length"] for e in episodes]
        total = int(sum(lengths))
        ends = np.cumsum(lengths) - 1
        success = np.array([e["success"] for e in episodes], dtype=bool)
        term = np.zeros(total, dtype=bool)
        tout = np.zeros(total, dtype=bool)
        term[ends[success]] = True
        tout[ends[~success]] = True
        cols = {
            "observations": np.concatenate([e["observations"] for e in episodes]),
            "actions": np.concatenate([e["actions"] for e in episodes]),
            "rewards": np.concatenate([e["rewards"] for e in episodes]),
            "terminals": term,
            "timeouts": tout,
            "infos/episode_id": np.concatenate([np.full(n, e["index"], np.int32) for n, e in zip(lengths, episodes)]),
            "infos/goal": np.concatenate([np.tile(np.asarray(e["goal_xy"], np.float32), (n, 1))
                                          for n, e in zip(lengths, episodes)]),
        }
        if "images" in self.d:
            cols["images"] = np.concatenate([e["images"] for e in episodes])
        for k, v in cols.items():
            ds = self.d[k]
            ds.resize(self.n + total, axis=0)
            ds[self.n : self.n + total] = v
        self.n += total


def _summary(stats: list[dict], wall: float, num_workers: int) -> dict:
    lengths = np.array([s["length"] for s in stats])
    success = np.array([s["success"] for s in stats], dtype=bool)
    coll = np.array([s["collision_steps"] for s in stats])
    dist = np.array([s["goal_distance"] for s in stats])
    ok_len = lengths[success]
    total = int(lengths.sum())

    def q(a, p):
        return float(np.percentile(a, p)) if len(a) else None

    return {
        "episodes": len(stats),
        "total_steps": total,
        "planner_success_rate": float(success.mean()) if len(stats) else None,
        "episode_length": {
            "mean": float(lengths.mean()) if len(stats) else 0.0, "min": int(lengths.min()) if len(stats) else 0,
            "median": q(lengths, 50), "p90": q(lengths, 90), "max": int(lengths.max()) if len(stats) else 0,
        },
        "successful_episode_length_mean": float(ok_len.mean()) if len(ok_len) else None,
        "episodes_shorter_than_min": int((lengths < MIN_EPISODE_STEPS).sum()),
        "goal_distance_cells": {"mean": float(dist.mean()) if len(dist) else None,
                                "min": int(dist.min()) if len(dist) else None,
                                "max": int(dist.max()) if len(dist) else None},
        "env_steps_per_goal_cell": float(ok_len.sum() / max(dist[success].sum(), 1)) if len(ok_len) else None,
        "episodes_with_wall_contact": int((coll > 0).sum()),
        "wall_contact_steps": int(coll.sum()),
        "wall_time_s": wall,
        "env_steps_per_s": total / wall if wall > 0 else None,
        "episodes_per_s": len(stats) / wall if wall > 0 else None,
        "num_workers": num_workers,
    }


def collect_maze_dataset(
    path,
    num_episodes: int = 1000,
    seed: int = 0,
    num_workers: int | None = None,
    state: str = "state",
    show_progress: bool = True,
    maze_size=TRAIN_MAZE_SIZE,
    noise: PlannerNoise = _DEFAULT_NOISE,
    max_steps: int = MAX_EPISODE_STEPS,
    min_goal_distance: int = MIN_GOAL_DISTANCE,
    max_goal_distance: int | None = MAX_GOAL_DISTANCE,
    chunk_size: int | None = None,
) -> dict:
    """Collect ``num_episodes`` planner episodes into ``path`` (D4RL-layout hdf5); return the summary.

    Args:
        path: output file; written atomically (a crash leaves no partial file).
            ``<path>.summary.json`` gets the summary too.
        num_episodes: episodes (one new layout each).
        seed: base seed; episode ``i`` uses ``episode_seed(seed, i)``.
        num_workers: Ray tasks in parallel (None = the CPUs Ray sees; 1 = run in
            this process without Ray).
        state: ``"state"`` (observations only) or ``"image"`` (plus ``images``).
        maze_size: interior size of the layouts in cells (int or (rows, cols)).
        noise: planner noise (action noise, waypoint jitter, speed range).
        max_steps: episode cap in env steps (500).
        min_goal_distance, max_goal_distance: BFS cell-distance range of goals.
        chunk_size: episodes per Ray task (default: ~4 chunks per worker, <= 25).

    Returns:
        summary dict: planner success rate, episode length stats, goal
        distances, wall contacts, wall time, env steps/s, episodes/s.

    Raises:
        ValueError: ``state`` not in ``("state", "image")``, ``num_episodes < 1``,
            ``num_workers < 1``, ``max_steps < MIN_EPISODE_STEPS`` or a bad ``maze_size``.
    """
    if state not in STATE_VARIANTS:
        raise ValueError(f"state={state!r}; expected one of {list(STATE_VARIANTS)}")
    if int(num_episodes) < 1:
        raise ValueError(f"num_episodes must be >= 1, got {num_episodes}")
    if num_workers is not None and int(num_workers) < 1:
        raise ValueError(f"num_workers must be >= 1 or None, got {num_workers}")
    if int(max_steps) < MIN_EPISODE_STEPS:
        raise ValueError(f"max_steps must be >= {MIN_EPISODE_STEPS} env steps, got {max_steps}")
    generate_layout(maze_size, 0)  # validates maze_size (ValueError naming it)
    num_episodes, max_steps = int(num_episodes), int(max_steps)
    args = (seed, state, noise, max_steps, maze_size, min_goal_distance, max_goal_distance)

    in_process = num_workers is not None and int(num_workers) == 1
    started_ray = False
    ray = None
    if not in_process:
        import ray

        if not ray.is_initialized():
            # address="local": an embedded instance even when another Ray runs on this machine
            ray.init(address="local", num_cpus=num_workers, include_dashboard=False, log_to_driver=False)
            started_ray = True
        if num_workers is None:
            num_workers = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)))
    num_workers = int(num_workers)
    if chunk_size is None:
        chunk_size = max(1, min(25, int(np.ceil(num_episodes / (4 * num_workers)))))
    chunks = [list(range(s, min(s + chunk_size, num_episodes))) for s in range(0, num_episodes, chunk_size)]

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=num_episodes, desc="maze episodes", unit="ep")
    stats: list[dict] = []
    per_episode: dict[str, list] = {k: [] for k in
                                    ("walls", "start_cell", "goal_cell", "length", "success", "collision_steps", "seed")}
    t0 = time.time()
    try:
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
            writer = _Hdf5Writer(f, images=state == "image", image_size=IMAGE_SIZE)

            def consume(episodes: list[dict]) -> None:
                writer.append(episodes)
                for e in episodes:
                    stats.append({k: e[k] for k in ("length", "success", "collision_steps", "goal_distance")})
                    for k in per_episode:
                        per_episode[k].append(e[k])
                if bar is not None:
                    bar.update(len(episodes))

            if in_process:
                for c in chunks:
                    consume(collect_episodes(c, *args))
            else:
                remote = ray.remote(num_cpus=1)(collect_episodes)
                pending = {remote.remote(c, *args): k for k, c in enumerate(chunks)}
                done_chunks: dict[int, list[dict]] = {}
                next_chunk = 0
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        done_chunks[pending.pop(ref)] = ray.get(ref)
                    while next_chunk in done_chunks:  # write in episode order
                        consume(done_chunks.pop(next_chunk))
                        next_chunk += 1
            wall = time.time() - t0
            summary = _summary(stats, wall, num_workers)
            summary.update(
                path=str(path), seed=int(seed), state=state, maze_size=list(np.broadcast_to(maze_size, 2).tolist()),
                max_steps=max_steps, min_goal_distance=int(min_goal_distance),
                max_goal_distance=None if max_goal_distance is None else int(max_goal_distance),
                action_noise=noise.action_noise, waypoint_jitter=noise.waypoint_jitter,
                speed_range=list(noise.speed_range),
            )
            m = f.create_group("metadata")
            m.create_dataset("layouts", data=np.stack(per_episode["walls"]).astype(np.uint8), compression="gzip")
            m.create_dataset("start_cells", data=np.array(per_episode["start_cell"], dtype=np.int16))
            m.create_dataset("goal_cells", data=np.array(per_episode["goal_cell"], dtype=np.int16))
            m.create_dataset("episode_lengths", data=np.array(per_episode["length"], dtype=np.int64))
            m.create_dataset("success", data=np.array(per_episode["success"], dtype=bool))
            m.create_dataset("collision_steps", data=np.array(per_episode["collision_steps"], dtype=np.int64))
            m.create_dataset("episode_seeds", data=np.array(per_episode["seed"], dtype=np.uint64))
            attrs = {
                "source": "spirl_ray scripted maze planner (BFS + waypoint controller) in gymnasium-robotics PointMaze",
                "state": state, "obs_dim": 4, "act_dim": 2, "seed": int(seed), "num_episodes": num_episodes,
                "max_steps": max_steps, "goal_threshold_m": GOAL_THRESHOLD, "dt_s": 0.01,
                "action_noise": float(noise.action_noise), "waypoint_jitter_m": float(noise.waypoint_jitter),
                "speed_range_m_per_s": json.dumps(list(noise.speed_range)),
                "maze_size": json.dumps(summary["maze_size"]),
                "image_size": IMAGE_SIZE if state == "image" else 0, "view_cells": VIEW_CELLS,
                "planner_success_rate": summary["planner_success_rate"],
            }
            for k, v in attrs.items():
                m.attrs[k] = v
    finally:
        if bar is not None:
            bar.close()
        if started_ray:
            ray.shutdown()
    with atomic_path(f"{path}.summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output hdf5 path")
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="parallel Ray tasks (1 = in this process)")
    p.add_argument("--state", default="state", choices=list(STATE_VARIANTS))
    p.add_argument("--maze-size", type=int, default=TRAIN_MAZE_SIZE, help="interior cells per side")
    p.add_argument("--action-noise", type=float, default=_DEFAULT_NOISE.action_noise)
    p.add_argument("--waypoint-jitter", type=float, default=_DEFAULT_NOISE.waypoint_jitter)
    p.add_argument("--max-steps", type=int, default=MAX_EPISODE_STEPS)
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    noise = PlannerNoise(action_noise=a.action_noise, waypoint_jitter=a.waypoint_jitter)
    summary = collect_maze_dataset(
        a.out, num_episodes=a.episodes, seed=a.seed, num_workers=a.workers, state=a.state,
        show_progress=not a.no_progress, maze_size=a.maze_size, noise=noise, max_steps=a.max_steps,
    )
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
