"""Gather the episodes of parallel collection tasks (Ray) as they finish, with an optional progress bar."""

from __future__ import annotations

from typing import Any


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
