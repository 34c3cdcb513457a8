"""Parallel episode collection on Ray: chunks of episode indices as tasks, gathered as they finish."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np


def gather_episodes(pending: list, total: int, desc: str, show_progress: bool = True) -> list[dict[str, Any]]:
    """Wait for every Ray task in ``pending`` (each returns a list of episode dicts) and concatenate them.

    Args:
        pending: Ray object refs of collection tasks.
        total: episodes expected in all (the progress bar's length).
        desc: progress-bar label.
        show_progress: draw a tqdm bar that advances as tasks finish.

    Returns:
        The episodes in task-completion order; sort them by their ``index`` to
        make the result independent of scheduling.
    """
    import ray

    bar = None
    if show_progress:
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="ep")
    episodes: list[dict[str, Any]] = []
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                got = ray.get(ref)
                episodes.extend(got)
                if bar is not None:
                    bar.update(len(got))
    finally:
        if bar is not None:
            bar.close()
    return episodes


def collect_in_parallel(
    task: Callable[..., list[dict[str, Any]]],
    task_args: Callable[[list[int]], tuple],
    num_episodes: int,
    num_workers: int | None,
    chunk_size: int | None,
    max_chunk: int,
    desc: str,
    show_progress: bool = True,
) -> tuple[list[dict[str, Any]], int]:
    """Run ``task(chunk, *task_args(chunk))`` for chunks of episode indices as Ray tasks (1 CPU each).

    Starts a local Ray (and shuts it down afterwards) when none is running.
    ``chunk_size`` None: ~4 chunks per worker, at most ``max_chunk`` episodes each
    (small overhead, a progress bar that moves). Each episode dict must carry its
    ``index``; the result is sorted by it, so it does not depend on scheduling.

    Returns:
        ``(episodes, num_workers)``: the episodes in index order and the worker
        count used (Ray's CPUs when ``num_workers`` is None).
    """
    import ray

    started_ray = not ray.is_initialized()
    if started_ray:
        ray.init(address="local", num_cpus=num_workers, include_dashboard=False, log_to_driver=False)
    try:
        if num_workers is None:
            num_workers = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)))
        if chunk_size is None:
            chunk_size = max(1, min(max_chunk, int(np.ceil(num_episodes / (4 * num_workers)))))
        remote = ray.remote(num_cpus=1)(task)
        chunks = [list(range(s, min(s + chunk_size, num_episodes))) for s in range(0, num_episodes, chunk_size)]
        pending = [remote.remote(c, *task_args(c)) for c in chunks]
        episodes = gather_episodes(pending, num_episodes, desc, show_progress)
    finally:
        if started_ray:
            ray.shutdown()
    episodes.sort(key=lambda e: e["index"])
    return episodes, num_workers
