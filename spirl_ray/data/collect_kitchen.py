"""Parallel collection of scripted FrankaKitchen demonstrations into a D4RL-layout hdf5.

Each episode chains 4 scripted subtasks, never the paper's whole target sequence
microwave -> kettle -> bottom burner -> light switch: in a random order
(``subtask_order="random"``), or as D4RL's kitchen-mixed does, in the human demos'
fixed relative order with never all four targets in one episode (``"rpl"``); see
:func:`spirl_ray.data.scripted.kitchen_primitives.sample_subtask_order`.
Episodes run as Ray tasks (``num_cpus=1``), in chunks; episode ``i`` is seeded
from ``(seed, i)`` only, so the file does not depend on the number of workers.

File layout (one flat array per key, episodes concatenated):

``observations`` (N, obs_dim) float32 -- obs at the *start* of each step
``actions`` (N, 9) float32, ``rewards`` (N,) float32 (number of the episode's
scripted subtasks newly completed at the step), ``terminals`` (N,) bool (all
False), ``timeouts`` (N,) bool (True at the last step of every episode),
``infos/subtasks_completed`` (N, 7) bool (cumulative, KITCHEN_SUBTASKS order,
after the step), ``infos/episode_id`` (N,) int32, ``metadata/*``.

CLI: ``python -m spirl_ray.data.collect_kitchen --out PATH --episodes 600 --seed 0``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import h5py
import numpy as np

from spirl_ray.data.scripted.kitchen_primitives import (
    SCRIPTED_SUBTASKS,
    SUBTASK_ORDERS,
    SUBTASKS_PER_EPISODE,
    NoiseConfig,
    kettle_final_pose_ok,
    run_episode,
)
from spirl_ray.envs.kitchen import KITCHEN_SUBTASKS, STATE_LAYOUTS, KitchenEnv
from spirl_ray.data.parallel import collect_in_parallel
from spirl_ray.utils import atomic_path

DEFAULT_ACTION_NOISE = 0.03
#: the collector's own episode cap (env steps); 4 scripted subtasks take ~300
MAX_EPISODE_STEPS = 700


def episode_seed(seed: int, index: int) -> int:
    """Seed of episode ``index`` of a collection with base ``seed`` (worker-independent)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def random_episode_mask(num_episodes: int, fraction: float, seed: int) -> np.ndarray:
    """Which episodes use uniform random actions (exactly round(fraction * n) of them)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"random_action_fraction must be in [0, 1], got {fraction}")
    mask = np.zeros(num_episodes, dtype=bool)
    k = int(round(fraction * num_episodes))
    if k:
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5EED]))
        mask[rng.permutation(num_episodes)[:k]] = True
    return mask


def collect_episodes(
    indices, seed: int, state_layout: str, action_noise: float, random_mask, include_hinge_cabinet: bool = False,
    subtask_order: str = "random",
) -> list[dict]:
    """Run the episodes ``indices`` in this process (the body of one Ray task)."""
    env = KitchenEnv(state_layout=state_layout, max_episode_steps=None, terminate_on_tasks_completed=False)
    noise = NoiseConfig(action_noise=action_noise)
    out = []
    for i, rand in zip(indices, random_mask):
        ep = run_episode(
            env, episode_seed(seed, i), noise=noise, max_steps=MAX_EPISODE_STEPS, random_actions=bool(rand),
            include_hinge_cabinet=include_hinge_cabinet, subtask_order=subtask_order,
        )
        ep["index"] = int(i)
        ep["random"] = bool(rand)
        ep["kettle_final_ok"] = kettle_final_pose_ok(ep["final_qpos"])
        out.append(ep)
    env.close()
    return out


def _summary(episodes: list[dict], wall: float, num_workers: int) -> dict:
    attempts = {t: 0 for t in KITCHEN_SUBTASKS}
    successes = {t: 0 for t in KITCHEN_SUBTASKS}
    steps_per = {t: [] for t in KITCHEN_SUBTASKS}
    kettle_final = []
    scripted = [e for e in episodes if not e["random"]]
    for e in scripted:
        for t in e["order"]:
            attempts[t] += 1
            successes[t] += int(e["success"][t])
            steps_per[t].append(e["segment_lengths"].get(t, 0))
        if "kettle" in e["order"]:
            kettle_final.append(bool(e["kettle_final_ok"]))
    lengths = np.array([len(e["actions"]) for e in episodes])
    s_lengths = np.array([len(e["actions"]) for e in scripted]) if scripted else np.zeros(0)
    total = int(lengths.sum())
    n_sub = sum(len(e["order"]) for e in scripted)
    return {
        "episodes": len(episodes),
        "scripted_episodes": len(scripted),
        "random_episodes": len(episodes) - len(scripted),
        "total_steps": total,
        "mean_episode_length": float(lengths.mean()) if len(lengths) else 0.0,
        "mean_scripted_episode_length": float(s_lengths.mean()) if len(s_lengths) else 0.0,
        "max_episode_length": int(lengths.max()) if len(lengths) else 0,
        "mean_env_steps_per_subtask": float(s_lengths.sum() / max(n_sub, 1)),
        "episodes_all_4_succeeded": int(sum(all(e["success"].values()) for e in scripted)),
        "per_subtask": {
            t: {
                "attempts": attempts[t],
                "successes": successes[t],
                "success_rate": (successes[t] / attempts[t]) if attempts[t] else None,
                "mean_steps": float(np.mean(steps_per[t])) if steps_per[t] else None,
            }
            for t in KITCHEN_SUBTASKS
        },
        "kettle_final_pose_success_rate": float(np.mean(kettle_final)) if kettle_final else None,
        "wall_time_s": wall,
        "env_steps_per_s": total / wall if wall > 0 else None,
        "num_workers": num_workers,
        # The simulation's bits depend on these: a different MuJoCo build gives a different dataset
        # (and so a different prior cache key) from the same seed.
        "versions": simulator_versions(),
    }


def simulator_versions() -> dict[str, str]:
    """Versions of the packages whose numerics decide the collected bytes (mujoco, gymnasium-robotics, numpy)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("mujoco", "gymnasium-robotics", "gymnasium", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _write_hdf5(path, episodes: list[dict], meta: dict) -> None:
    obs = np.concatenate([e["observations"] for e in episodes]).astype(np.float32)
    act = np.concatenate([e["actions"] for e in episodes]).astype(np.float32)
    rew = np.concatenate([e["rewards"] for e in episodes]).astype(np.float32)
    flags = np.concatenate([e["subtasks_completed"] for e in episodes]).astype(bool)
    ep_id = np.concatenate([np.full(len(e["actions"]), e["index"], dtype=np.int32) for e in episodes])
    timeouts = np.zeros(len(act), dtype=bool)
    timeouts[np.cumsum([len(e["actions"]) for e in episodes]) - 1] = True
    order_idx = np.full((len(episodes), SUBTASKS_PER_EPISODE), -1, dtype=np.int64)
    for k, e in enumerate(episodes):
        if not e["random"]:
            order_idx[k] = [KITCHEN_SUBTASKS.index(t) for t in e["order"]]
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("observations", data=obs, compression="gzip", compression_opts=4)
            f.create_dataset("actions", data=act, compression="gzip", compression_opts=4)
            f.create_dataset("rewards", data=rew)
            f.create_dataset("terminals", data=np.zeros(len(act), dtype=bool))
            f.create_dataset("timeouts", data=timeouts)
            f.create_dataset("infos/subtasks_completed", data=flags)
            f.create_dataset("infos/episode_id", data=ep_id)
            m = f.create_group("metadata")
            m.create_dataset("subtask_names", data=np.array(KITCHEN_SUBTASKS, dtype=h5py.string_dtype()))
            m.create_dataset("subtask_order", data=order_idx)
            m.create_dataset("random_episode", data=np.array([e["random"] for e in episodes], dtype=bool))
            m.create_dataset("episode_lengths", data=np.array([len(e["actions"]) for e in episodes], dtype=np.int64))
            m.create_dataset("episode_seeds", data=np.array([e["seed"] for e in episodes], dtype=np.uint64))
            for k, v in meta.items():
                m.attrs[k] = v


def collect_kitchen_dataset(
    path,
    num_episodes: int = 600,
    seed: int = 0,
    num_workers: int | None = None,
    state_layout: str = "d4rl30",
    action_noise: float = DEFAULT_ACTION_NOISE,
    show_progress: bool = True,
    random_action_fraction: float = 0.0,
    chunk_size: int | None = None,
    include_hinge_cabinet: bool = False,
    subtask_order: str = "random",
) -> dict:
    """Collect ``num_episodes`` scripted kitchen episodes into ``path`` (hdf5); return the summary.

    Also writes ``<path>.summary.json``. ``random_action_fraction`` of the
    episodes (chosen by ``seed``) use uniform random actions instead of the
    script (for data-quality ablations). ``include_hinge_cabinet`` lets the
    slow (~220-step) hinge-cabinet primitive into the episode orders; off by
    default (see ``kitchen_primitives.HINGE_CABINET_NOTES``). ``subtask_order``:
    ``"random"`` (any order of any set, never the exact target order) or ``"rpl"``
    (D4RL kitchen-mixed's structure: sets without the whole target, performed in the
    human demos' fixed relative order; see ``kitchen_primitives.sample_subtask_order``).

    Raises:
        ValueError: unknown ``state_layout`` or ``subtask_order``, or ``num_episodes`` < 1
            (before any episode runs).
    """
    if state_layout not in STATE_LAYOUTS:
        raise ValueError(f"state_layout={state_layout!r}; valid values: {list(STATE_LAYOUTS)}")
    if num_episodes <= 0:
        raise ValueError("num_episodes must be positive")
    if subtask_order not in SUBTASK_ORDERS:
        raise ValueError(f"subtask_order={subtask_order!r}; valid values: {list(SUBTASK_ORDERS)}")
    random_mask = random_episode_mask(num_episodes, random_action_fraction, seed)
    t0 = time.time()
    episodes, num_workers = collect_in_parallel(
        collect_episodes, lambda c: (seed, state_layout, action_noise, random_mask[c], include_hinge_cabinet, subtask_order),
        num_episodes, num_workers, chunk_size, 25, "kitchen episodes", show_progress,
    )
    wall = time.time() - t0
    summary = _summary(episodes, wall, num_workers)
    summary.update(
        path=str(path), seed=int(seed), state_layout=state_layout, action_noise=float(action_noise),
        random_action_fraction=float(random_action_fraction), include_hinge_cabinet=bool(include_hinge_cabinet),
        subtask_order=subtask_order, scripted_subtasks=list(SCRIPTED_SUBTASKS) + (["hinge cabinet"] if include_hinge_cabinet else []),
    )
    meta = {
        "state_layout": state_layout,
        "obs_dim": STATE_LAYOUTS[state_layout],
        "seed": int(seed),
        "num_episodes": int(num_episodes),
        "action_noise": float(action_noise),
        "random_action_fraction": float(random_action_fraction),
        "source": "spirl_ray scripted kitchen expert",
        "scripted_subtasks": json.dumps(summary["scripted_subtasks"]),
        "include_hinge_cabinet": bool(include_hinge_cabinet),
        "subtask_order_rule": subtask_order,
    }
    _write_hdf5(path, episodes, meta)
    with atomic_path(f"{path}.summary.json") as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=2))
    return summary


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="output hdf5 path")
    p.add_argument("--episodes", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--state-layout", default="d4rl30", choices=list(STATE_LAYOUTS))
    p.add_argument("--action-noise", type=float, default=DEFAULT_ACTION_NOISE)
    p.add_argument("--random-action-fraction", type=float, default=0.0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--include-hinge-cabinet", action="store_true", help="let the slow hinge-cabinet primitive into the orders")
    p.add_argument("--subtask-order", default="random", choices=list(SUBTASK_ORDERS),
                   help="random: any order; rpl: D4RL kitchen-mixed's demo order, never the whole target")
    a = p.parse_args(argv)
    summary = collect_kitchen_dataset(
        a.out, num_episodes=a.episodes, seed=a.seed, num_workers=a.workers, state_layout=a.state_layout,
        action_noise=a.action_noise, show_progress=not a.no_progress, random_action_fraction=a.random_action_fraction,
        include_hinge_cabinet=a.include_hinge_cabinet, subtask_order=a.subtask_order,
    )
    print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    main()
