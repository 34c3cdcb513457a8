"""Metrics callback for skill-env runs: low-level env steps (the paper's x-axis), task progress, throughput.

With a skill env every RLlib counter counts high-level steps (one skill = up
to H env steps). The skill env reports ``info["env_steps"]`` (low-level steps
executed in that high-level step). Which other ``info`` keys of an episode's
last step are logged, and as what, is declared by the env family
(``episode_metrics`` in :mod:`spirl_ray.envs.families`, chosen by
``env_config["env"]``): kitchen ``num_subtasks_completed`` (cumulative within
the episode) and ``success``; maze and gymnasium ``success``; block stacking
``stacked_blocks`` and ``max_stacked_blocks``. The episode return is RLlib's
own ``env_runners/episode_return_mean`` for every env.

Result-dict keys (after RLlib's aggregation over EnvRunners):

* ``env_runners/env_steps_lifetime`` — low-level env steps sampled so far
  (sum of ``info["env_steps"]`` over every sampled high-level step).
* ``env_runners/env_steps_sampled`` — low-level env steps sampled in this iteration.
* ``env_runners/episode_env_steps_mean`` — low-level length of finished episodes.
* ``env_runners/num_subtasks_completed_mean`` — last ``num_subtasks_completed``
  of finished episodes (only if the env reports it).
* ``env_runners/success_mean`` — fraction of finished episodes whose last
  step reported ``success`` (only if the env reports it).
* ``env_runners/stacked_blocks_mean`` — block stacking: ``stacked_blocks``
  of finished episodes' last step, i.e. blocks on top of the base of the
  highest tower at the episode's end (the paper's "# blocks stacked", Fig. 4
  middle); ``env_runners/max_stacked_blocks_mean`` — the episode's highest
  tower at any step (only if the env reports them).
* ``throughput/env_steps_per_s``, ``throughput/high_level_steps_per_s``,
  ``throughput/updates_per_s`` — this iteration's counts (``env_steps_sampled``,
  ``num_env_steps_sampled``, ``num_gradient_updates``) over the wall clock
  since the previous result (the first iteration counts from algorithm init).

Episode means use the window ``metrics_num_episodes_for_smoothing`` like
RLlib's own episode stats.

Training trajectories (paper Fig. 13, envs reporting ``info["xy"]``, i.e. the
maze): every finished episode's agent positions, subsampled to one every
:data:`XY_TRACE_EVERY` env steps, travel from the EnvRunners as an
``item_series`` metric and are taken out of the result by the driver (they
never reach ``result.json``, ``progress.csv`` or TensorBoard) and appended to
``<trial dir>/xy_traces.jsonl`` (:data:`XY_TRACES_FILE`), one JSON line per
training iteration that finished episodes::

    {"iteration": 12, "env_steps": 48210, "episodes": [[[x, y], ...], ...]}

(positions in metres, 3 decimals; ``env_steps`` = ``env_steps_lifetime`` at
the end of that iteration). Read them with :func:`read_xy_traces`. Only the
local filesystem storage Tune uses by default is written to directly; with
remote storage the file goes to the trial's working directory
(``algorithm.logdir``), persisted by Tune only with ``sync_artifacts``.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback

from spirl_ray.envs.families import episode_metrics

ENV_STEPS_LIFETIME = "env_steps_lifetime"
ENV_STEPS = "env_steps_sampled"
EPISODE_ENV_STEPS = "episode_env_steps_mean"
THROUGHPUT = "throughput"
#: EnvRunner metric carrying the subsampled (K, 2) xy trace of each finished episode.
XY_TRACES = "xy_traces"
#: env steps between two stored positions of a training trajectory.
XY_TRACE_EVERY = 10
#: file of the training trajectories in a trial directory.
XY_TRACES_FILE = "xy_traces.jsonl"

logger = logging.getLogger(__name__)


def _step_infos(chunk: Any) -> List[Dict[str, Any]]:
    """Infos of the steps of one episode chunk (index 0 is the reset / previous chunk's last info)."""
    infos = chunk.get_infos()
    return list(infos[1:]) if len(infos) > 1 else []


def _env_steps(infos: Iterable[Dict[str, Any]]) -> int:
    return int(sum(int(i.get("env_steps", 1)) if isinstance(i, dict) else 1 for i in infos))


def _xy_trace(first_info: Any, infos: List[Dict[str, Any]]) -> Optional[np.ndarray]:
    """(K, 2) float32 positions of one episode, one every XY_TRACE_EVERY env steps (start included).

    Reads ``xy_trace`` (skill envs: every low-level step) or ``xy`` (flat envs) of
    each step's info; ``first_info`` is the reset info. None when no info has a position.
    """
    pts: List[np.ndarray] = []
    if isinstance(first_info, dict) and "xy" in first_info:
        pts.append(np.asarray(first_info["xy"], np.float32).reshape(1, 2))
    for i in infos:
        if not isinstance(i, dict):
            continue
        if "xy_trace" in i:
            pts.append(np.asarray(i["xy_trace"], np.float32).reshape(-1, 2))
        elif "xy" in i:
            pts.append(np.asarray(i["xy"], np.float32).reshape(1, 2))
    if not pts:
        return None
    xy = np.concatenate(pts)
    keep = xy[::XY_TRACE_EVERY]
    if (len(xy) - 1) % XY_TRACE_EVERY:
        keep = np.concatenate([keep, xy[-1:]])  # always end where the episode ended
    return keep


def _trajectory_dir(algorithm: Any) -> Optional[Path]:
    """Directory for ``xy_traces.jsonl``: the trial dir on local storage, else the working dir (or None)."""
    storage = getattr(algorithm, "_storage", None)
    if storage is None:
        return None
    try:
        import pyarrow.fs

        if isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
            return Path(storage.trial_fs_path)
    except Exception:  # noqa: BLE001 - any storage oddity: fall back to the working dir
        pass
    logdir = getattr(algorithm, "logdir", None)
    return Path(logdir) if logdir else None


def read_xy_traces(trial_dir: str | Path) -> List[Dict[str, Any]]:
    """Training trajectories of one trial: ``[{"iteration", "env_steps", "xy": (K, 2) array}]`` per episode.

    Sorted by ``env_steps``; an iteration logged twice (a resumed trial repeats
    the iterations after its last checkpoint) keeps its last record.

    Raises:
        FileNotFoundError: the trial directory has no ``xy_traces.jsonl``.
        ValueError: a line is not valid JSON (names the file and line).
    """
    path = Path(trial_dir) / XY_TRACES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no training trajectories (only envs reporting info['xy'] record them)")
    by_iter: Dict[int, Dict[str, Any]] = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {n} is not valid JSON ({e})") from None
            by_iter[int(rec["iteration"])] = rec
    out = []
    for rec in sorted(by_iter.values(), key=lambda r: (r["env_steps"], r["iteration"])):
        for xy in rec["episodes"]:
            out.append({"iteration": rec["iteration"], "env_steps": rec["env_steps"],
                        "xy": np.asarray(xy, np.float32).reshape(-1, 2)})
    return out


class SPiRLMetricsCallback(RLlibCallback):
    """Logs low-level env steps, subtasks, success, throughput and xy traces (see the module docstring)."""

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
        """Per finished episode: low-level length, the env family's episode metrics of the last step, xy trace."""
        if metrics_logger is None:
            return
        chunks = list(prev_episode_chunks or []) + [episode]
        infos = [i for c in chunks for i in _step_infos(c)]
        n_runners = getattr(getattr(env_runner, "config", None), "num_env_runners", 1) or 1
        smoothing = getattr(getattr(env_runner, "config", None), "metrics_num_episodes_for_smoothing", 100)
        win = max(1, math.ceil(smoothing / n_runners))
        metrics_logger.log_value(EPISODE_ENV_STEPS, _env_steps(infos), window=win)
        last = infos[-1] if infos and isinstance(infos[-1], dict) else {}
        env_config = getattr(getattr(env_runner, "config", None), "env_config", None) or {}
        for info_key, result_key in episode_metrics(env_config.get("env")):
            if info_key in last:
                metrics_logger.log_value(result_key, float(last[info_key]), window=win)
        first = chunks[0].get_infos()
        trace = _xy_trace(first[0] if len(first) else None, infos)
        if trace is not None:
            metrics_logger.log_value(XY_TRACES, trace, reduce="item_series")

    # ---- driver side ------------------------------------------------------------------------
    def on_algorithm_init(self, *, algorithm=None, metrics_logger=None, **kwargs) -> None:
        self._last_time = time.perf_counter()

    def on_train_result(self, *, algorithm=None, metrics_logger=None, result: dict, **kwargs) -> None:
        """Add ``throughput/{env_steps,high_level_steps,updates}_per_s``; move xy traces to their file."""
        now = time.perf_counter()
        runners = result.get("env_runners", {}) or {}
        traces = runners.pop(XY_TRACES, None) if isinstance(runners, dict) else None
        eval_runners = (result.get("evaluation") or {}).get("env_runners")
        if isinstance(eval_runners, dict):  # evaluation episodes' traces are not training trajectories
            eval_runners.pop(XY_TRACES, None)
        if isinstance(traces, np.ndarray):  # RLlib compiles a one-item series to the item itself
            traces = [traces] if traces.ndim == 2 else list(traces)
        if isinstance(traces, (list, tuple)) and traces:
            self._write_traces(algorithm, result, runners, traces)
        counts = {
            "env_steps": runners.get(ENV_STEPS, 0),
            "high_level_steps": runners.get("num_env_steps_sampled", 0),
            "updates": result.get("num_gradient_updates", 0),
        }
        if self._last_time is not None:
            dt = max(now - self._last_time, 1e-9)
            result[THROUGHPUT] = {f"{k}_per_s": float(v) / dt for k, v in counts.items()}
        self._last_time = now

    def _write_traces(self, algorithm: Any, result: dict, runners: dict, traces: List[Any]) -> None:
        """Append this iteration's episode traces to ``<trial dir>/xy_traces.jsonl``."""
        out_dir = _trajectory_dir(algorithm)
        if out_dir is None:
            return
        rec = {
            "iteration": int(result.get("training_iteration", getattr(algorithm, "iteration", 0)) or 0),
            "env_steps": int(runners.get(ENV_STEPS_LIFETIME, 0) or 0),
            "episodes": [np.round(np.asarray(t, np.float64), 3).tolist() for t in traces],
        }
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            with open(out_dir / XY_TRACES_FILE, "a") as f:
                f.write(json.dumps(rec) + "\n")
        except OSError as e:  # never fail a training iteration over a picture
            logger.warning("could not write %s: %s", out_dir / XY_TRACES_FILE, e)
