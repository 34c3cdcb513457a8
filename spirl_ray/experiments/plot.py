"""Learning curves and summary tables from Tune results (paper Fig. 4 style).

``python -m spirl_ray.plot EXPERIMENT_DIR [EXPERIMENT_DIR ...] [--metric KEY] [--source train|eval|auto]
[--title TEXT] [--smooth N] [--out FILE.png]``

Every trial folder below the given directories is one curve, read from Tune's
``result.json`` (one JSON result per line, flattened to ``a/b/c`` keys; Tune's
``progress.csv`` fixes its columns at the first result, so metrics that start
after warm-up — alpha, KL, Q — are missing there); curves are grouped by
sweep arm (the trial's ``spirl_variant`` in ``params.json``: a method, or an
ablation value such as ``H3``; else a ``method`` tag; else ``rl.method``; else
the experiment folder's name) — one line per method (Fig. 4) or per ablation
value (Fig. 6) — resampled on a common env-step grid, and drawn as mean ± std
over seeds. A markdown table gives, per method, the final value (mean over the
last 10 % of the grid) and the normalised area under the curve.

Two sources of episode metrics (``--source``): ``train`` reads the training
episodes' key (``--metric``, e.g. ``env_runners/num_subtasks_completed_mean``);
``eval`` reads the deterministic evaluation of the same name
(``evaluation/`` + ``--metric``), present only in the rows of iterations that
evaluated; ``auto`` (default) takes ``eval`` when any trial has such rows. The
x value of an evaluation row is that row's training env-step counter.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

#: x axis: low-level env steps (the paper's), logged by the SPiRL metrics callback.
ENV_STEPS_KEY = "env_runners/env_steps_lifetime"
#: default y: subtasks completed per episode (kitchen), under the env's scoring.
DEFAULT_METRIC = "env_runners/num_subtasks_completed_mean"
#: prefix RLlib puts before a metric of the evaluation EnvRunners (deterministic actions).
EVAL_PREFIX = "evaluation/"
#: ``--source`` values; ``auto`` resolves to ``eval`` or ``train`` (see :func:`resolve_source`).
SOURCES = ("train", "eval", "auto")
#: how each resolved source is named on axes and in tables.
SOURCE_WORDS = {"train": "training episodes", "eval": "deterministic evaluation"}
#: axis words per metric (last key component); kitchen's gets the env's scoring appended.
METRIC_WORDS = {
    "num_subtasks_completed_mean": "subtasks completed per episode",
    "success_mean": "success rate",
    "stacked_blocks_mean": "stacked blocks at episode end",
    "episode_return_mean": "episode return",
}
#: x-axis words for :data:`ENV_STEPS_KEY`.
ENV_STEPS_LABEL = "environment steps (low-level)"


@dataclass
class Curve:
    """One trial's metric: ``x`` (n,) env steps (low-level), ``y`` (n,) values, sorted as logged.

    ``source``: ``"train"`` (training episodes) or ``"eval"`` (deterministic evaluation rows only).
    """

    method: str
    trial: str
    x: np.ndarray
    y: np.ndarray
    source: str = "train"


def arm_of(params: dict, trial_dir: Path) -> str:
    """A trial's sweep arm: ``params["spirl_variant"]``, else ``params["method"]``, else
    ``params["rl"]["method"]``, else the experiment folder's name (the trial folder's parent)."""
    tag = params.get("spirl_variant") or params.get("method")
    if not tag and isinstance(params.get("rl"), dict):
        tag = params["rl"].get("method")
    return str(tag) if tag else Path(trial_dir).parent.name


def read_params(trial_dir: Path) -> dict:
    """The trial's ``params.json`` as a dict (``{}`` when missing or not JSON)."""
    params = Path(trial_dir) / "params.json"
    if params.is_file():
        try:
            d = json.loads(params.read_text())
            return d if isinstance(d, dict) else {}
        except json.JSONDecodeError:
            pass
    return {}


def _method_of(trial_dir: Path) -> str:
    return arm_of(read_params(trial_dir), trial_dir)


def read_results(path: str | Path) -> pd.DataFrame:
    """A trial's ``result.json`` (JSON lines) as a DataFrame with ``/``-joined nested keys; ``config`` dropped.

    The last line of a running trial's file may be half written: it is skipped,
    so a running experiment can be plotted. A trial restored from a checkpoint
    (``--resume``, a Tune retry) repeats the iterations after that checkpoint;
    the repeated rows replace the abandoned ones (the rows kept are the history
    of the trial's final state).

    Raises:
        ValueError: a line other than the last is not JSON (names the file and line).
    """
    rows = []
    with open(path) as f:
        lines = [line.strip() for line in f]
    lines = [line for line in lines if line]
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if i == len(lines) - 1:
                break  # a result still being written
            raise ValueError(f"{path}: line {i + 1} is not a JSON result row ({e})") from None
        row.pop("config", None)
        it = row.get("training_iteration")
        while it is not None and rows and rows[-1].get("training_iteration", -1) >= it:
            rows.pop()  # abandoned by a restore from an earlier checkpoint
        rows.append(row)
    return pd.json_normalize(rows, sep="/")


def result_files(exp_dirs: list[str | Path]) -> list[Path]:
    """Every non-empty ``result.json`` below ``exp_dirs`` (one per Tune trial), sorted per directory.

    Raises:
        FileNotFoundError: no ``result.json`` below any of the directories (names them).
    """
    files = [p for d in exp_dirs for p in sorted(Path(d).rglob("result.json"))]
    if not files:
        raise FileNotFoundError(f"no Tune trial (result.json) found below {[str(d) for d in exp_dirs]}")
    return [f for f in files if f.stat().st_size > 0]


def metric_key(metric: str, source: str) -> str:
    """The result key read for ``metric`` (a training key) under ``source`` ``"train"`` or ``"eval"``."""
    if source == "eval" and not metric.startswith(EVAL_PREFIX):
        return EVAL_PREFIX + metric
    return metric


def column(df: pd.DataFrame, key: str) -> pd.Series:
    """``df[key]`` as floats (NaN where a row lacks it); all NaN when no row has the key."""
    if key not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[key], errors="coerce").astype(float)


def has_eval(df: pd.DataFrame, metric: str) -> bool:
    """Whether any row of a trial's results holds an evaluation value of ``metric`` (a training key)."""
    return bool(column(df, metric_key(metric, "eval")).notna().any())


def resolve_source(frames: list[pd.DataFrame], metric: str, source: str = "auto") -> str:
    """``source`` with ``"auto"`` resolved: ``"eval"`` when any frame has evaluation rows of ``metric``, else ``"train"``.

    Raises:
        ValueError: ``source`` is not one of :data:`SOURCES`.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if source != "auto":
        return source
    return "eval" if any(has_eval(df, metric) for df in frames) else "train"


def curve_of(df: pd.DataFrame, key: str, x_key: str = ENV_STEPS_KEY) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` float arrays (n,) of the rows of ``df`` that hold both ``x_key`` and ``key``."""
    d = pd.DataFrame({"x": column(df, x_key), "y": column(df, key)}).dropna()
    return d["x"].to_numpy(float), d["y"].to_numpy(float)


def load_curves(exp_dirs: list[str | Path], metric: str = DEFAULT_METRIC, x_key: str = ENV_STEPS_KEY,
                source: str = "train") -> list[Curve]:
    """One :class:`Curve` per trial below ``exp_dirs`` that logged both ``x_key`` and ``metric``.

    ``metric`` names the training key; ``source`` ``"eval"`` reads ``evaluation/`` + ``metric``
    (rows of evaluating iterations only), ``"auto"`` picks ``"eval"`` when any trial has
    such rows (see :func:`resolve_source`); every returned curve carries the resolved source.

    Raises:
        FileNotFoundError: no ``result.json`` below any of the directories.
        KeyError: trials exist but none logged the key (the message names the directories
            and lists the numeric columns seen).
        ValueError: unknown ``source``.
    """
    frames = [(f, read_results(f)) for f in result_files(exp_dirs)]
    source = resolve_source([df for _, df in frames], metric, source)
    key = metric_key(metric, source)
    curves: list[Curve] = []
    seen: set[str] = set()
    for f, df in frames:
        seen.update(c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]))
        x, y = curve_of(df, key, x_key)  # e.g. alpha before warm-up ends: rows without it are dropped
        if len(x):
            curves.append(Curve(_method_of(f.parent), f.parent.name, x, y, source))
    if not curves:
        candidates = sorted(c for c in seen if "subtask" in c or "return" in c or "success" in c or "stacked" in c)
        raise KeyError(f"no trial logged both {x_key!r} and {key!r} below {[str(d) for d in exp_dirs]}; "
                       f"metrics seen include {candidates[:20]}")
    return curves


def experiment_info(tune_dir: str | Path) -> dict | None:
    """``{"name", "env", "scoring"}`` from ``config.resolved.yaml`` two levels above a Tune dir
    (``runs/<name>/config.resolved.yaml`` for ``runs/<name>/tune/spirl``); ``env`` is ``env.id`` when the
    section has one (``env.name: gymnasium``), else ``env.name``; ``scoring`` may be None.
    None when the file is missing or unreadable."""
    import yaml

    path = Path(tune_dir).resolve().parent.parent / "config.resolved.yaml"
    if not path.is_file():
        return None
    try:
        cfg = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return None
    env = cfg.get("env") or {}
    return {"name": cfg.get("name") or Path(tune_dir).resolve().parent.parent.name,
            "env": env.get("id") or env.get("name"), "scoring": env.get("scoring")}


#: the task metric of each env family (training result key); other envs: the episode return
TASK_METRICS: dict[str, str] = {
    "kitchen": DEFAULT_METRIC,
    "maze": "env_runners/success_mean",
    "block_stacking": "env_runners/stacked_blocks_mean",
}


def default_metric(tune_dir: str | Path) -> str:
    """The env's task metric (:data:`TASK_METRICS`) from :func:`experiment_info`: kitchen subtasks, maze
    success, stacked blocks; ``env_runners/episode_return_mean`` for other envs; kitchen's when the
    config is missing."""
    info = experiment_info(tune_dir)
    if info is None:
        return DEFAULT_METRIC
    return TASK_METRICS.get(str(info["env"]), "env_runners/episode_return_mean")


def default_title(tune_dir: str | Path) -> str:
    """``"<experiment name> — <env name>, <scoring>"`` (see :func:`experiment_info`); else the folder's name."""
    info = experiment_info(tune_dir)
    if info is None:
        return Path(tune_dir).resolve().name
    env = ", ".join(str(v) for v in (info["env"], info["scoring"]) if v)
    return f"{info['name']} — {env}" if env else str(info["name"])


def metric_words(metric: str, scoring: str | None = None) -> str:
    """Plain words for a metric key (``"subtasks completed per episode (ordered)"``); else the key itself."""
    short = metric.split("/")[-1]
    words = METRIC_WORDS.get(short)
    if words is None:
        return metric
    if short == "num_subtasks_completed_mean" and scoring:
        words += f" ({scoring})"
    return words


def y_label(metric: str, source: str, scoring: str | None = None) -> str:
    """Axis label: :func:`metric_words` plus ``(deterministic evaluation)`` / ``(training episodes)``
    for episode metrics (keys under ``env_runners/``); other keys (learner stats) as they are."""
    words = metric_words(metric, scoring)
    if metric.startswith(EVAL_PREFIX):
        source = "eval"
    if metric.removeprefix(EVAL_PREFIX).startswith("env_runners/") and source in SOURCE_WORDS:
        words += f" ({SOURCE_WORDS[source]})"
    return words


def smooth(curve: Curve, window: int) -> Curve:
    """``curve`` with y replaced by its trailing mean over ``window`` results (1 = unchanged).

    Episode metrics of one training iteration average only the few episodes
    that ended in it, so per-iteration values of short runs are noisy.

    Raises:
        ValueError: ``window`` < 1.
    """
    if window < 1:
        raise ValueError(f"smoothing window must be >= 1 results, got {window}")
    if window == 1:
        return curve
    y = pd.Series(curve.y).rolling(window, min_periods=1).mean().to_numpy()
    return Curve(curve.method, curve.trial, curve.x, y, curve.source)


def aggregate(curves: list[Curve], n_points: int = 100, smoothing: int = 1,
              from_first: bool = False) -> dict[str, dict[str, np.ndarray]]:
    """Per method: common grid ``x`` (n_points,) env steps (0 .. shortest trial's last x), ``mean``, ``std``
    (n_points,) over seeds (population std), ``n`` seeds.

    Before a trial's first logged point its first value is held; ``from_first`` starts the grid at
    the latest first point of the method's trials instead of 0 (evaluation curves, whose first
    evaluation comes late, are not drawn before it).
    ``smoothing``: trailing mean over that many results per trial first (see :func:`smooth`).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    curves = [smooth(c, smoothing) for c in curves]
    for method in sorted({c.method for c in curves}):
        cs = [c for c in curves if c.method == method]
        x_max = min(c.x[-1] for c in cs)
        x_min = min(max(c.x[0] for c in cs), x_max) if from_first else 0.0
        grid = np.linspace(x_min, x_max, n_points)
        ys = np.stack([np.interp(grid, c.x, c.y, left=c.y[0]) for c in cs])
        out[method] = {"x": grid, "mean": ys.mean(0), "std": ys.std(0), "n": np.array(len(cs))}
    return out


def summary_table(agg: dict[str, dict[str, np.ndarray]], metric: str, source: str | None = None) -> str:
    """Markdown table: method, seeds, env steps, final value (last 10 %), normalised AUC.

    ``source`` (``"train"``/``"eval"``) is named in the header when given.
    """
    what = metric if source is None else f"{metric} ({SOURCE_WORDS.get(source, source)})"
    rows = [f"| method | seeds | env steps | final {what} | AUC (mean over steps) |", "|---|---|---|---|---|"]
    for method, a in agg.items():
        k = max(1, len(a["x"]) // 10)
        final_m, final_s = a["mean"][-k:].mean(), a["std"][-k:].mean()
        span = a["x"][-1] - a["x"][0]
        auc = float(np.trapezoid(a["mean"], a["x"]) / span) if span > 0 else float(a["mean"].mean())
        rows.append(f"| {method} | {int(a['n'])} | {a['x'][-1]:,.0f} | {final_m:.3f} ± {final_s:.3f} | {auc:.3f} |")
    return "\n".join(rows)


def plot(agg: dict[str, dict[str, np.ndarray]], metric: str, out: str | Path, title: str = "",
         ylabel: str | None = None, xlabel: str = ENV_STEPS_LABEL,
         dashed: dict[str, dict[str, np.ndarray]] | None = None, labels: tuple[str, str] = ("", "")) -> Path:
    """Mean ± std curves vs env steps, one colour per method, saved as PNG; returns the path.

    ``dashed``: a second aggregate (e.g. training curves under evaluation ones) drawn dashed in
    each method's colour; ``labels``: legend suffixes for ``agg`` and ``dashed`` (e.g. ``("eval", "train")``).
    ``ylabel`` defaults to the metric's last key component.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    methods = sorted(set(agg) | set(dashed or {}))
    colours = {m: f"C{i % 10}" for i, m in enumerate(methods)}
    for layer, style, suffix in ((agg, "-", labels[0]), (dashed or {}, "--", labels[1])):
        for method, a in layer.items():
            name = f"{method} {suffix}".strip()
            ax.plot(a["x"], a["mean"], style, color=colours[method], label=f"{name} (n={int(a['n'])})")
            ax.fill_between(a["x"], a["mean"] - a["std"], a["mean"] + a["std"], color=colours[method],
                            alpha=0.2 if style == "-" else 0.1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel if ylabel is not None else metric.split("/")[-1])
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spirl_ray.plot", description="Fig. 4-style curves from Tune results")
    p.add_argument("exp_dirs", nargs="+", help="Tune experiment directories (e.g. runs/kitchen/tune/spirl)")
    p.add_argument("--metric", default=None,
                   help="training result key (default: the env's task metric, e.g. "
                        f"{DEFAULT_METRIC} for kitchen, {TASK_METRICS['maze']} for the maze); "
                        f"--source eval reads {EVAL_PREFIX}<metric>")
    p.add_argument("--source", choices=SOURCES, default="auto",
                   help="train: training episodes; eval: deterministic evaluation rows; "
                        "auto (default): eval when any trial evaluated, else train")
    p.add_argument("--x", default=ENV_STEPS_KEY, help="x-axis column (default: env steps)")
    p.add_argument("--title", default=None,
                   help="plot title (default: '<experiment> — <env>, <scoring>' from config.resolved.yaml "
                        "two levels above the first dir; else its folder name)")
    p.add_argument("--out", default=None, help="PNG path (default: <first dir>/curve.png)")
    p.add_argument("--smooth", type=int, default=1, help="trailing mean over N results per trial (default 1: raw)")
    args = p.parse_args(argv)
    if args.metric is None:
        args.metric = default_metric(args.exp_dirs[0])
    try:
        curves = load_curves(args.exp_dirs, args.metric, args.x, source=args.source)
        agg = aggregate(curves, smoothing=args.smooth, from_first=curves[0].source == "eval")
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise SystemExit(f"python -m spirl_ray.plot: error: {e.args[0] if e.args else e}") from None
    source = curves[0].source
    info = experiment_info(args.exp_dirs[0])
    title = args.title if args.title is not None else default_title(args.exp_dirs[0])
    out = plot(agg, metric_key(args.metric, source), args.out or Path(args.exp_dirs[0]) / "curve.png", title=title,
               ylabel=y_label(args.metric, source, info and info["scoring"]),
               xlabel=ENV_STEPS_LABEL if args.x == ENV_STEPS_KEY else args.x)
    table = summary_table(agg, args.metric, source)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nplot: {out}")
    return 0
