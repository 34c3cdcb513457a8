"""Metrics callback for skill-env runs: low-level env steps (the paper's x-axis), task progress, throughput.

With a skill env every RLlib counter counts high-level steps (one skill = up
to H env steps). The skill env reports ``info["env_steps"]`` (low-level steps
executed in that high-level step); the kitchen env also reports
``info["num_subtasks_completed"]`` (cumulative within the episode) and
``info["success"]``.

Result-dict keys (after RLlib's aggregation over EnvRunners):

* ``env_runners/env_steps_lifetime`` — low-level env steps sampled so far
  (sum of ``info["env_steps"]`` over every sampled high-level step).
* ``env_runners/env_steps_sampled`` — low-level env steps sampled in this iteration.
* ``env_runners/episode_env_steps_mean`` — low-level length of finished episodes.
* ``env_runners/num_subtasks_completed_mean`` — last ``num_subtasks_completed``
  of finished episodes (only if the env reports it).
* ``env_runners/success_mean`` — fraction of finished episodes whose last
  step reported ``success`` (only if the env reports it).
* ``throughput/env_steps_per_s``, ``throughput/high_level_steps_per_s``,
  ``throughput/updates_per_s`` — this iteration's counts (``env_steps_sampled``,
  ``num_env_steps_sampled``, ``num_gradient_updates``) over the wall clock
  since the previous result (the first iteration counts from algorithm init).

Episode means use the window ``metrics_num_episodes_for_smoothing`` like
RLlib's own episode stats.
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, Iterable, List, Optional

from ray.rllib.callbacks.callbacks import RLlibCallback

ENV_STEPS_LIFETIME = "env_steps_lifetime"
ENV_STEPS = "env_steps_sampled"
EPISODE_ENV_STEPS = "episode_env_steps_mean"
NUM_SUBTASKS = "num_subtasks_completed_mean"
SUCCESS = "success_mean"
THROUGHPUT = "throughput"


def _step_infos(chunk: Any) -> List[Dict[str, Any]]:
    """Infos of the steps of one episode chunk (index 0 is the reset / previous chunk's last info)."""
    infos = chunk.get_infos()
    return list(infos[1:]) if len(infos) > 1 else []


def _env_steps(infos: Iterable[Dict[str, Any]]) -> int:
    return int(sum(int(i.get("env_steps", 1)) if isinstance(i, dict) else 1 for i in infos))


class SPiRLMetricsCallback(RLlibCallback):
    """Logs low-level env steps, subtasks, success and throughput (keys in the module docstring)."""

    def __init__(self):
        super().__init__()
        self._last_time: Optional[float] = None

    # ---- EnvRunner side ---------------------------------------------------------------------
    def on_sample_end(self, *, env_runner=None, metrics_logger=None, samples=None, **kwargs) -> None:
        """Add the low-level steps of every high-level step sampled in this call (done and ongoing chunks)."""
        if metrics_logger is None or samples is None:
            return
        n = sum(_env_steps(_step_infos(ep)) for ep in samples)
        metrics_logger.log_value(ENV_STEPS_LIFETIME, n, reduce="lifetime_sum")
        metrics_logger.log_value(ENV_STEPS, n, reduce="sum")

    def on_episode_end(self, *, episode, prev_episode_chunks=None, env_runner=None, metrics_logger=None, **kwargs) -> None:
        """Per finished episode: low-level length, last ``num_subtasks_completed``, last ``success``."""
        if metrics_logger is None:
            return
        infos = [i for c in list(prev_episode_chunks or []) + [episode] for i in _step_infos(c)]
        n_runners = getattr(getattr(env_runner, "config", None), "num_env_runners", 1) or 1
        smoothing = getattr(getattr(env_runner, "config", None), "metrics_num_episodes_for_smoothing", 100)
        win = max(1, math.ceil(smoothing / n_runners))
        metrics_logger.log_value(EPISODE_ENV_STEPS, _env_steps(infos), window=win)
        last = infos[-1] if infos and isinstance(infos[-1], dict) else {}
        if "num_subtasks_completed" in last:
            metrics_logger.log_value(NUM_SUBTASKS, float(last["num_subtasks_completed"]), window=win)
        if "success" in last:
            metrics_logger.log_value(SUCCESS, float(bool(last["success"])), window=win)

    # ---- driver side ------------------------------------------------------------------------
    def on_algorithm_init(self, *, algorithm=None, metrics_logger=None, **kwargs) -> None:
        self._last_time = time.perf_counter()

    def on_train_result(self, *, algorithm=None, metrics_logger=None, result: dict, **kwargs) -> None:
        """Add ``throughput/{env_steps,high_level_steps,updates}_per_s`` for this iteration."""
        now = time.perf_counter()
        runners = result.get("env_runners", {}) or {}
        counts = {
            "env_steps": runners.get(ENV_STEPS, 0),
            "high_level_steps": runners.get("num_env_steps_sampled", 0),
            "updates": result.get("num_gradient_updates", 0),
        }
        if self._last_time is not None:
            dt = max(now - self._last_time, 1e-9)
            result[THROUGHPUT] = {f"{k}_per_s": float(v) / dt for k, v in counts.items()}
        self._last_time = now
