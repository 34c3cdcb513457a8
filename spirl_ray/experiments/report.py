"""A committed results record of one Tune experiment: text, CSV and one small PNG, regenerable from the run.

``python -m spirl_ray.report runs/<name>/tune/spirl --out results/kitchen/<name>
[--paper KEY | --paper ARM=KEY ...] [--smooth N] [--command "..."] [--at 100000,200000,...]``

Writes (atomically: into a temporary folder beside ``--out``, then renamed onto
it, so a failure never leaves a half-written record)::

    README.md             title, command, commit, wall time, machine, the table, the plot, the file list
    config.resolved.yaml  copy of runs/<name>/config.resolved.yaml (when present)
    seed<S>_<arm>.csv     one per trial: a row per Tune iteration (see CSV_COLUMNS)
    curve.png             mean ± std over seeds per arm vs env steps: evaluation solid, training dashed
    table.md              per arm and checkpoint: evaluation, training and the paper's number

and, when ``--out`` lies below a folder named ``results``, adds or replaces this
record's line in ``<results>/README.md``.

All env steps are low-level environment steps (``env_runners/env_steps_lifetime``,
the paper's x axis; one skill = H of them). Table statistics, per arm and
checkpoint env step t:

- eval: each seed's deterministic evaluation nearest at or before t (the last
  evaluating iteration with env steps <= t);
- train: each seed's mean of the training-episode metric over its result rows
  with env steps in (t − 20,000, t] (the last row at or before t when that
  window holds none);
- then mean ± std over the seeds that reached t (population std, ddof 0, as the plot).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from typing import Any
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from spirl_ray.experiments.plot import (
    DEFAULT_METRIC,
    ENV_STEPS_KEY,
    Curve,
    aggregate,
    arm_of,
    column,
    curve_of,
    default_metric,
    default_title,
    experiment_info,
    metric_key,
    metric_words,
    plot,
    read_params,
    read_results,
    result_files,
    y_label,
)
from spirl_ray.experiments.preflight import flatten_config

#: learner statistics copied into the CSVs (column name -> result key).
LEARNER_KEYS = {
    "alpha": "learners/default_policy/alpha_value",
    "kl_to_prior": "learners/default_policy/kl_to_prior",
    "qf_mean": "learners/default_policy/qf_mean",
    "qf_target_mean": "learners/default_policy/qf_target_mean",
}
#: default spacing of the table's checkpoints (env steps).
CHECKPOINT_EVERY = 100_000
#: training values in the table: mean over the rows of this many trailing env steps.
TRAIN_WINDOW_ENV_STEPS = 20_000

_FIG4 = "read off Pertsch et al. 2020 (SPiRL, CoRL), Fig. 4 (approximate)"
#: The paper's numbers, read off its plots: ``points`` maps env steps (low-level) to the value
#: (mean over the paper's seeds); between points linear interpolation, outside them none.
PAPER_NUMBERS: dict[str, dict] = {
    "kitchen_spirl": {"points": {1_300_000: 2.65},
                      "note": f"SPiRL (open-loop skill decoder), kitchen, ordered subtasks completed of 4; {_FIG4}"},
    "kitchen_spirl_cl": {"points": {200_000: 2.5, 1_300_000: 2.95},
                         "note": f"SPiRL closed-loop decoder, kitchen, ordered subtasks completed of 4; {_FIG4}"},
    "kitchen_ssp": {"points": {1_300_000: 0.9},
                    "note": f"SSP w/o prior, kitchen, ordered subtasks completed of 4; {_FIG4}"},
    "kitchen_sac": {"points": {1_300_000: 0.2}, "note": f"SAC, kitchen, ordered subtasks completed of 4; {_FIG4}"},
    "kitchen_flat_prior": {"points": {1_300_000: 1.1},
                           "note": f"Flat Prior, kitchen, ordered subtasks completed of 4; {_FIG4}"},
    "kitchen_bc_sac": {"points": {1_300_000: 0.6},
                       "note": f"BC + SAC, kitchen, ordered subtasks completed of 4; {_FIG4}"},
    "maze_spirl": {"points": {1_400_000: 1.0}, "note": f"SPiRL, maze navigation, success rate; {_FIG4}"},
    "maze_ssp": {"points": {1_400_000: 0.0}, "note": f"SSP w/o prior, maze navigation, success rate; {_FIG4}"},
    "maze_sac": {"points": {1_400_000: 0.0}, "note": f"SAC, maze navigation, success rate; {_FIG4}"},
    "block_stacking_spirl": {"points": {600_000: 3.5},
                             "note": f"SPiRL, block stacking, stacked blocks at episode end; {_FIG4}"},
    "block_stacking_ssp": {"points": {600_000: 0.2},
                           "note": f"SSP w/o prior, block stacking, stacked blocks at episode end (0.1-0.3); {_FIG4}"},
}


@dataclass
class Trial:
    """One Tune trial: its folder, seed and sweep arm (from ``params.json``) and its results (a row per iteration)."""

    path: Path
    seed: str
    arm: str
    df: pd.DataFrame

    @property
    def x(self) -> pd.Series:
        """Env steps (low-level) of every row; NaN where a row lacks them."""
        return column(self.df, ENV_STEPS_KEY)

    @property
    def last_x(self) -> float:
        """The trial's last logged env steps (NaN when it logged none)."""
        return float(self.x.max())


def load_trials(tune_dir: str | Path) -> list[Trial]:
    """Every trial below a Tune experiment folder, with seed (``params["seed"]``, else ``"?"``) and arm
    (``spirl_variant``, else ``rl.method``, else the experiment folder's name; see :func:`~spirl_ray.experiments.plot.arm_of`).

    Raises:
        FileNotFoundError: no ``result.json`` below ``tune_dir`` (names it).
    """
    trials = []
    for f in result_files([tune_dir]):
        params = read_params(f.parent)
        trials.append(Trial(f.parent, str(params.get("seed", "?")), arm_of(params, f.parent), read_results(f)))
    if not trials:
        raise FileNotFoundError(f"no Tune trial with results found below {str(tune_dir)!r} (all result.json empty)")
    return trials


def short_name(metric: str) -> str:
    """Last component of a result key (``env_runners/success_mean`` -> ``success_mean``)."""
    return metric.split("/")[-1]


def trial_csv(trial: Trial, metric: str = DEFAULT_METRIC) -> pd.DataFrame:
    """A trial's per-iteration table, one row per Tune result row, columns
    ``env_steps, train_<m>, eval_<m>, alpha, kl_to_prior, qf_mean, qf_target_mean, time_total_s,
    training_iteration`` (``<m>`` = :func:`short_name` of ``metric``); NaN (an empty CSV cell) where a
    row lacks the value — ``eval_<m>`` is filled only on the rows of evaluating iterations,
    ``kl_to_prior`` is absent for entropy-regularised methods."""
    m = short_name(metric)
    cols = {"env_steps": column(trial.df, ENV_STEPS_KEY),
            f"train_{m}": column(trial.df, metric),
            f"eval_{m}": column(trial.df, metric_key(metric, "eval"))}
    cols.update({name: column(trial.df, key) for name, key in LEARNER_KEYS.items()})
    cols["time_total_s"] = column(trial.df, "time_total_s")
    cols["training_iteration"] = column(trial.df, "training_iteration")
    out = pd.DataFrame(cols)
    for c in ("env_steps", "training_iteration"):
        v = out[c]
        if v.notna().any() and (v.dropna() == v.dropna().round()).all():
            out[c] = v.astype("Int64")
    return out


def paper_value(key: str, env_steps: float) -> tuple[float | None, str]:
    """The paper's number of ``PAPER_NUMBERS[key]`` at ``env_steps`` (low-level):
    ``(value, "read off")`` at a read-off point, ``(value, "interpolated")`` linearly between two,
    ``(None, "n/a")`` outside them.

    Raises:
        KeyError: unknown ``key`` (lists the known ones).
    """
    if key not in PAPER_NUMBERS:
        raise KeyError(f"unknown paper key {key!r}; known: {sorted(PAPER_NUMBERS)}")
    xs = sorted(PAPER_NUMBERS[key]["points"])
    ys = [PAPER_NUMBERS[key]["points"][x] for x in xs]
    if env_steps in PAPER_NUMBERS[key]["points"]:
        return float(PAPER_NUMBERS[key]["points"][env_steps]), "read off"
    if env_steps < xs[0] or env_steps > xs[-1]:
        return None, "n/a"
    return float(np.interp(env_steps, xs, ys)), "interpolated"


def paper_cell(key: str | None, env_steps: float) -> str:
    """Table cell of :func:`paper_value`: ``"2.95 (key)"``, ``"≈ 2.73 (interpolated; key)"`` or ``"n/a"``."""
    if key is None:
        return "n/a"
    value, kind = paper_value(key, env_steps)
    if value is None:
        return "n/a"
    if kind == "interpolated":
        return f"≈ {value:.2f} (interpolated; {key})"
    return f"{value:.2f} ({key})"


def checkpoints(last_x: float, every: int = CHECKPOINT_EVERY) -> list[int]:
    """Env steps ``every, 2·every, ... <= last_x`` plus ``last_x`` itself (sorted, unique)."""
    pts = list(range(every, int(last_x) + 1, every)) if every > 0 else []
    if not pts or pts[-1] != int(last_x):
        pts.append(int(last_x))
    return pts


def eval_at(trial: Trial, metric: str, env_steps: float) -> float:
    """The trial's evaluation value of ``metric`` at the last evaluating row with env steps <= ``env_steps``; NaN if none."""
    x, y = curve_of(trial.df, metric_key(metric, "eval"))
    keep = x <= env_steps
    return float(y[keep][-1]) if keep.any() else float("nan")


def train_at(trial: Trial, metric: str, env_steps: float, window: int = TRAIN_WINDOW_ENV_STEPS) -> float:
    """Mean of the trial's training ``metric`` over rows with env steps in ``(env_steps - window, env_steps]``;
    the last row at or before ``env_steps`` when that window is empty; NaN if there is none."""
    x, y = curve_of(trial.df, metric)
    keep = (x > env_steps - window) & (x <= env_steps)
    if keep.any():
        return float(y[keep].mean())
    before = x <= env_steps
    return float(y[before][-1]) if before.any() else float("nan")


def _mean_std(values: list[float], n_seeds: int) -> str:
    v = np.array([x for x in values if np.isfinite(x)])
    if not len(v):
        return "—"
    cell = f"{v.mean():.3f} ± {v.std():.3f}"
    return cell + (f" (n={len(v)})" if len(v) != n_seeds else "")


def _last(trial: Trial, key: str) -> float:
    v = column(trial.df, key).dropna()
    return float(v.iloc[-1]) if len(v) else float("nan")


def results_table(trials: list[Trial], metric: str = DEFAULT_METRIC, paper: dict[str, str] | None = None,
                  at: list[int] | None = None, every: int = CHECKPOINT_EVERY, scoring: str | None = None) -> str:
    """The record's ``table.md``: per arm and checkpoint env step, seeds n, evaluation and training
    mean ± std over seeds and the paper's number; then per arm the final α and KL to the prior.

    ``paper``: arm -> :data:`PAPER_NUMBERS` key (arms without one get ``n/a``); ``at``: checkpoints
    (env steps) for every arm, default :func:`checkpoints` of each arm's shortest trial. A seed counts
    at a checkpoint when its last logged env steps reach it. See the module docstring for the statistics.
    """
    paper = paper or {}
    m = short_name(metric)
    arms = sorted({t.arm for t in trials})
    lines = [
        f"Metric: {metric_words(metric, scoring)} (`{metric}`); env steps are low-level environment steps.",
        "",
        f"- eval: deterministic evaluation (`{metric_key(metric, 'eval')}`), each seed's evaluation at the last "
        "evaluating iteration at or before the env steps;",
        f"- train: training episodes (`{metric}`), each seed's mean over its result rows of the last "
        f"{TRAIN_WINDOW_ENV_STEPS:,} env steps up to the env steps;",
        "- mean ± std over the seeds that reached the env steps (population std); `(n=k)`: only k seeds had a value.",
        "",
        f"| arm | env steps | seeds | eval {m} (deterministic evaluation) | train {m} (training episodes) | paper |",
        "|---|---|---|---|---|---|",
    ]
    for arm in arms:
        ts = [t for t in trials if t.arm == arm]
        points = at if at else checkpoints(min(t.last_x for t in ts), every)
        for step in points:
            reached = [t for t in ts if t.last_x >= step]
            ev = _mean_std([eval_at(t, metric, step) for t in reached], len(reached))
            tr = _mean_std([train_at(t, metric, step) for t in reached], len(reached))
            lines.append(f"| {arm} | {step:,} | {len(reached)} | {ev} | {tr} | {paper_cell(paper.get(arm), step)} |")
    used = sorted(set(paper.values()))
    if used:
        lines += ["", "Paper numbers (values between read-off points linearly interpolated, marked ≈; "
                  "outside them n/a):"]
        lines += [f"- `{k}`: {PAPER_NUMBERS[k]['note']}; read-off points (env steps: value) "
                  + ", ".join(f"{x:,}: {y}" for x, y in sorted(PAPER_NUMBERS[k]["points"].items())) for k in used]
    lines += ["", "Final learner state per arm (each seed's last logged value, mean over seeds; "
              "KL(π‖p) on the run's `rl.kl_reduction` scale: per latent dim for `mean` (default), nats of the full KL for `sum`; n/a for entropy-regularised methods):", "",
              "| arm | seeds | final env steps | final α | final KL to prior |", "|---|---|---|---|---|"]
    for arm in arms:
        ts = [t for t in trials if t.arm == arm]
        cells = []
        for key in (LEARNER_KEYS["alpha"], LEARNER_KEYS["kl_to_prior"]):
            v = [x for x in (_last(t, key) for t in ts) if np.isfinite(x)]
            cells.append(f"{np.mean(v):.4g}" if v else "n/a")
        lines.append(f"| {arm} | {len(ts)} | {min(t.last_x for t in ts):,.0f} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def parse_paper(specs: list[str] | None, arms: list[str]) -> dict[str, str]:
    """``--paper`` values -> arm -> paper key. A bare ``KEY`` applies to every arm; ``ARM=KEY`` to one
    (and wins over a bare key).

    Raises:
        ValueError: unknown paper key or arm (lists the known ones).
    """
    out: dict[str, str] = {}
    bare = [s for s in specs or [] if "=" not in s]
    pairs = [s.split("=", 1) for s in specs or [] if "=" in s]
    for key in bare + [k for _, k in pairs]:
        if key not in PAPER_NUMBERS:
            raise ValueError(f"--paper: unknown key {key!r}; known: {', '.join(sorted(PAPER_NUMBERS))}")
    if len(bare) > 1:
        raise ValueError(f"--paper: give one bare KEY for all arms, or ARM=KEY per arm; got {bare}")
    if bare:
        out = {arm: bare[0] for arm in arms}
    for arm, key in pairs:
        if arm not in arms:
            raise ValueError(f"--paper {arm}={key}: no arm {arm!r} in this experiment; arms: {', '.join(arms)}")
        out[arm] = key
    return out


def _parse_time(v) -> datetime.datetime | None:
    try:
        if isinstance(v, (int, float)):
            return datetime.datetime.fromtimestamp(v, datetime.timezone.utc)
        return datetime.datetime.fromisoformat(str(v))
    except (TypeError, ValueError, OSError):
        return None


def _hms(seconds: float) -> str:
    if not np.isfinite(seconds):
        return "unknown"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _csv_names(trials: list[Trial]) -> list[str]:
    names: list[str] = []
    for t in trials:
        base = re.sub(r"[^A-Za-z0-9_.=-]+", "-", f"seed{t.seed}_{t.arm}")
        name, k = f"{base}.csv", 2
        while name in names:
            name, k = f"{base}_{k}.csv", k + 1
        names.append(name)
    return names


def results_root(out: str | Path) -> Path | None:
    """The nearest folder named ``results`` that contains ``out`` (None when there is none)."""
    for p in Path(out).resolve().parents:
        if p.name == "results":
            return p
    return None


def index_line(rel: str, title: str, arms: list[str], n_seeds: int, final_env_steps: float) -> str:
    """One line of ``results/README.md`` for the record at ``rel`` (relative to the results root)."""
    return (f"- [{rel}]({rel}/README.md): {title}, {' / '.join(arms)}, {n_seeds} seed{'s' if n_seeds != 1 else ''}, "
            f"{final_env_steps:,.0f} env steps")


def update_index(out: str | Path, line_fields: dict) -> Path | None:
    """Add or replace this record's line in ``<results root>/README.md`` (created with a header if missing).

    ``line_fields``: the arguments of :func:`index_line` except ``rel``. Returns the index path, or None
    when ``out`` is not below a ``results`` folder. The line for the same relative path is replaced
    in place, never duplicated.
    """
    from spirl_ray.utils import atomic_path

    root = results_root(out)
    if root is None:
        return None
    rel = Path(out).resolve().relative_to(root).as_posix()
    index = root / "README.md"
    line = index_line(rel, **line_fields)
    lines = index.read_text().splitlines() if index.is_file() else [
        "# Results", "",
        "One line per results record; each folder is written by `python -m spirl_ray.report` "
        "(see its README.md for the command that produced the run).", ""]
    prefix = f"- [{rel}]("
    hits = [i for i, x in enumerate(lines) if x.startswith(prefix)]
    if hits:
        lines[hits[0]] = line
        lines = [x for i, x in enumerate(lines) if i not in hits[1:]]
    else:
        while lines and not lines[-1].strip():
            lines.pop()
        if lines and not lines[-1].startswith("- ["):
            lines.append("")  # a blank line between the header text and the list
        lines.append(line)
    with atomic_path(index) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return index


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished folder ``tmp`` onto ``out``; an old ``out`` is removed only after the move."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(tmp, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _resume_words(entry: str | dict) -> str:
    """One ``run_info.json`` resume: a time, or ``{"at", "command", "commit"}`` -> "<at> (commit <c>)"."""
    if isinstance(entry, dict):
        return f"{entry.get('at', 'unknown')} (commit `{entry.get('commit', 'unknown')}`)"
    return str(entry)


def _run_lines(tune_dir: Path, run_info: dict | None, command: str | None, indent: str = "") -> list[str]:
    """The "What was run" bullets of one Tune experiment (its run_info.json, else ``command``)."""
    info = run_info or {}
    cmd = info.get("command") or command or "unknown"
    lines = [f"{indent}- command: `{cmd}`" + ("" if info.get("command") or not command else " (given to the report)"),
             f"{indent}- commit: `{info.get('commit', 'unknown')}`"
             + (f" ({info['commit_note']})" if info.get("commit_note") else "")]
    if run_info:
        start, end = _parse_time(info.get("started")), _parse_time(info.get("finished"))
        span = _hms((end - start).total_seconds()) if start and end else "unknown (not finished)"
        lines.append(f"{indent}- started {info.get('started', 'unknown')}, finished {info.get('finished', 'not recorded')}: "
                     f"{span} wall time" + (f" (resumed at {', '.join(map(_resume_words, info['resumed']))})"
                                            if info.get("resumed") else ""))
        lines.append(f"{indent}- machine: {info.get('hostname', 'unknown host')}, "
                     f"{info.get('cpus', os.cpu_count())} CPU cores")
    else:
        lines.append(f"{indent}- machine: unknown (no run_info.json); the machine writing this record has "
                     f"{os.cpu_count()} CPU cores")
    return lines


def _readme(title: str, runs: list[tuple[Path, dict | None]], command: str | None, trials: list[Trial],
            names: list[str], table: str, files: list[str], report_command: str | None = None) -> str:
    regen = (f"Regenerate it (same flags) with `{report_command}`." if report_command
             else "Rerun it on the same folder to regenerate this record.")
    if len(runs) == 1:
        lines = [f"# {title}", "",
                 f"Results record of the Tune experiment `{runs[0][0]}`, written by `python -m spirl_ray.report`. "
                 + regen, "", "## What was run", ""]
        lines += _run_lines(runs[0][0], runs[0][1], command)
    else:
        lines = [f"# {title}", "",
                 f"Results record of {len(runs)} Tune experiments of one config (seeds added in later runs), "
                 f"written by `python -m spirl_ray.report`. " + regen, "", "## What was run", ""]
        for tune_dir, run_info in runs:
            lines.append(f"- `{tune_dir}`:")
            lines += _run_lines(tune_dir, run_info, None, indent="  ")
    lines.append("- trials (wall time = last `time_total_s`; env steps = last logged):")
    for t, name in zip(trials, names):
        lines.append(f"  - `{t.path.name}`: arm {t.arm}, seed {t.seed}, {_hms(_last(t, 'time_total_s'))}, "
                     f"{t.last_x:,.0f} env steps → `{name}`")
    lines += ["", "## Results", "", table, "![learning curves](curve.png)", "",
              "Curves: mean ± std over seeds per arm vs env steps; deterministic evaluation solid, "
              "training episodes dashed, one colour per arm.", "", "## Files", ""]
    lines += [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"


def _read_run_info(run_dir: Path) -> dict | None:
    if (run_dir / "run_info.json").is_file():
        try:
            return json.loads((run_dir / "run_info.json").read_text())
        except json.JSONDecodeError:
            return None
    return None


POOL_IGNORED_KEYS = ("name", "rl.seeds", "prior_rollouts.", "prior_training.num_threads", "prior_training.device")
"""Resolved-config keys (prefixes) that may differ between pooled folders: the run's name and seeds, the
prior-rollout stage (before RL, not part of the curves) and where/how fast the prior trains (not what it is)."""


def _check_same_experiment(dirs: list[Path], trials: list[Trial]) -> None:
    """Several Tune folders in one record must be one config run with other seeds (resolved configs compared
    leaf by leaf, as ``--resume`` compares them).

    Raises:
        ValueError: an (arm, seed) in two folders, or resolved configs that differ in anything but
            :data:`POOL_IGNORED_KEYS` (names the folders and the keys).
    """
    seen: dict[tuple[str, str], Path] = {}
    for t in trials:
        key, where = (t.arm, t.seed), t.path.parent
        if key in seen and seen[key] != where:
            raise ValueError(f"arm {t.arm!r} seed {t.seed} is in both {str(seen[key])!r} and {str(where)!r}; "
                             "a record's folders must hold different seeds")
        seen[key] = where

    def flat(d: Path) -> dict[str, Any] | None:
        f = d.resolve().parent.parent / "config.resolved.yaml"
        if not f.is_file():
            return None
        leaves = flatten_config(yaml.safe_load(f.read_text()) or {})
        return {k: v for k, v in leaves if not k.startswith(POOL_IGNORED_KEYS)}

    base = flat(dirs[0])
    for d in dirs[1:]:
        other = flat(d)
        if base is None or other is None:
            continue
        diff = sorted(k for k in base.keys() | other.keys() if base.get(k) != other.get(k))
        if diff:
            raise ValueError(f"{str(d)!r} is not the config of {str(dirs[0])!r} with other seeds: "
                             f"config.resolved.yaml differs in {', '.join(diff[:10])}")


def write_record(tune_dir: str | Path | list[str | Path], out: str | Path, metric: str = DEFAULT_METRIC,
                 paper_specs: list[str] | None = None, smoothing: int = 1, command: str | None = None,
                 at: list[int] | None = None, every: int = CHECKPOINT_EVERY,
                 report_command: str | None = None) -> Path:
    """Write the results record of the Tune experiment ``tune_dir`` to the folder ``out`` (replacing it
    atomically) and update the results index; returns ``out``.

    ``tune_dir`` may be a list of folders: one config run several times with other seeds (e.g.
    seeds 2-5 added after seeds 0-1); their trials are pooled, the title, scoring and
    ``config.resolved.yaml`` are the first folder's, and the README lists every run.

    ``metric``: training result key (evaluation: ``evaluation/`` + it); ``paper_specs``: ``--paper`` values
    (see :func:`parse_paper`); ``smoothing``: trailing mean over that many results per trial for the
    plot only; ``command``: shown when ``runs/<name>/run_info.json`` is missing; ``at``/``every``:
    table checkpoints in env steps (see :func:`results_table`); ``report_command``: the report
    command line that wrote the record, quoted in its README so that it can be regenerated as is.

    Raises:
        FileNotFoundError: no trials below ``tune_dir``.
        ValueError: several folders that are not one config with other seeds (see :func:`_check_same_experiment`).
        KeyError: no trial logged the metric (training or evaluation) with env steps (names path and keys).
        ValueError: bad ``--paper`` value or smoothing window.
    """
    dirs = [Path(d) for d in tune_dir] if isinstance(tune_dir, (list, tuple)) else [Path(tune_dir)]
    tune_dir, out = dirs[0], Path(out)
    trials = [t for d in dirs for t in load_trials(d)]
    if len(dirs) > 1:
        _check_same_experiment(dirs, trials)
    eval_key = metric_key(metric, "eval")
    train_curves = [Curve(t.arm, t.path.name, *curve_of(t.df, metric), "train") for t in trials]
    eval_curves = [Curve(t.arm, t.path.name, *curve_of(t.df, eval_key), "eval") for t in trials]
    train_curves = [c for c in train_curves if len(c.x)]
    eval_curves = [c for c in eval_curves if len(c.x)]
    if not train_curves and not eval_curves:
        seen = sorted({c for t in trials for c in t.df.columns if "env_runners/" in c})
        raise KeyError(f"no trial below {str(tune_dir)!r} logged {metric!r} or {eval_key!r} together with "
                       f"{ENV_STEPS_KEY!r}; env_runners metrics seen include {seen[:20]}")
    trials = [t for t in trials if np.isfinite(t.last_x)]
    arms = sorted({t.arm for t in trials})
    paper = parse_paper(paper_specs, arms)
    info = experiment_info(tune_dir)
    scoring = info and info["scoring"]
    title = default_title(tune_dir)
    run_dir = tune_dir.resolve().parent.parent
    runs = [(d, _read_run_info(d.resolve().parent.parent)) for d in dirs]

    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} exists and is not a folder")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        names = _csv_names(trials)
        for t, name in zip(trials, names):
            trial_csv(t, metric).to_csv(tmp / name, index=False)
        files = ["README.md", "table.md", "curve.png"]
        if (run_dir / "config.resolved.yaml").is_file():
            shutil.copyfile(run_dir / "config.resolved.yaml", tmp / "config.resolved.yaml")
            files.append("config.resolved.yaml")
        files += names
        train_agg = aggregate(train_curves, smoothing=smoothing) if train_curves else {}
        eval_agg = aggregate(eval_curves, smoothing=smoothing, from_first=True) if eval_curves else {}
        if eval_agg:
            plot(eval_agg, eval_key, tmp / "curve.png", title=title, ylabel=metric_words(metric, scoring),
                 dashed=train_agg, labels=("eval", "train"))
        else:
            plot(train_agg, metric, tmp / "curve.png", title=title, ylabel=y_label(metric, "train", scoring))
        table = results_table(trials, metric, paper, at=at, every=every, scoring=scoring)
        (tmp / "table.md").write_text(table)
        (tmp / "README.md").write_text(_readme(title, runs, command, trials, names, table, files, report_command))
        _replace_dir(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    update_index(out, {"title": title, "arms": arms, "n_seeds": len({t.seed for t in trials}),
                       "final_env_steps": min(t.last_x for t in trials)})
    return out


def _steps_list(text: str) -> list[int]:
    try:
        return sorted({int(float(s.strip().replace("_", ""))) for s in text.split(",") if s.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated env steps, got {text!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spirl_ray.report",
                                description="Write a results record (README, CSV, PNG, table) of a Tune experiment")
    p.add_argument("tune_dir", nargs="+", help="Tune experiment folder, e.g. runs/<name>/tune/spirl; several folders "
                   "= one config run again with other seeds (trials pooled; refused when the configs differ)")
    p.add_argument("--out", required=True, help="record folder, e.g. results/kitchen/<name> (replaced atomically)")
    p.add_argument("--metric", default=None, help="training result key (default: the env's task metric from the "
                   f"run's config.resolved.yaml: {DEFAULT_METRIC} for kitchen, success for the maze, "
                   "stacked blocks for block stacking)")
    p.add_argument("--paper", action="append", default=None, metavar="KEY|ARM=KEY",
                   help=f"paper numbers to compare with: one KEY for all arms or ARM=KEY per arm; "
                        f"keys: {', '.join(PAPER_NUMBERS)}")
    p.add_argument("--smooth", type=int, default=1, help="plot: trailing mean over N results per trial (default 1)")
    p.add_argument("--command", default=None, help="the run's command, shown when run_info.json is missing")
    p.add_argument("--at", type=_steps_list, default=None,
                   help="table checkpoints, comma-separated env steps "
                        "(default: every --every up to each arm's shortest trial, plus its end)")
    p.add_argument("--every", type=int, default=CHECKPOINT_EVERY,
                   help=f"table checkpoint spacing in env steps (default {CHECKPOINT_EVERY:,})")
    args = p.parse_args(argv)
    if args.metric is None:
        args.metric = default_metric(args.tune_dir[0])
    try:
        report_command = shlex.join(["python", "-m", "spirl_ray.report",
                                     *(sys.argv[1:] if argv is None else argv)])
        out = write_record(args.tune_dir if len(args.tune_dir) > 1 else args.tune_dir[0], args.out, args.metric, args.paper, args.smooth, args.command,
                           at=args.at, every=args.every, report_command=report_command)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"python -m spirl_ray.report: error: {e.args[0] if e.args else e}") from None
    print((out / "table.md").read_text())
    print(f"record: {out}")
    return 0
