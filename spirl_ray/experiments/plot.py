"""Learning curves and summary tables from Tune results (paper Fig. 4 style).

``python -m spirl_ray.plot EXPERIMENT_DIR [EXPERIMENT_DIR ...] [--metric KEY] [--out FILE.png]``

Every trial folder below the given directories is one curve, read from Tune's
``result.json`` (one JSON result per line, flattened to ``a/b/c`` keys; Tune's
``progress.csv`` fixes its columns at the first result, so metrics that start
after warm-up — alpha, KL, Q — are missing there); curves are grouped by
sweep arm (the trial's ``spirl_variant`` in ``params.json``: a method, or an
ablation value such as ``H3``; else a ``method`` tag; else the experiment
folder's name) — one line per method (Fig. 4) or per ablation value
(Fig. 6) — resampled on a common env-step
grid, and drawn as mean ± std over seeds. A markdown table gives, per method,
the final value (mean over the last 10 % of the grid) and the normalised area
under the curve.
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


@dataclass
class Curve:
    method: str
    trial: str
    x: np.ndarray
    y: np.ndarray


def _method_of(trial_dir: Path) -> str:
    params = trial_dir / "params.json"
    if params.is_file():
        try:
            params_d = json.loads(params.read_text())
            tag = params_d.get("spirl_variant") or params_d.get("method")
            if tag:
                return str(tag)
        except json.JSONDecodeError:
            pass
    return trial_dir.parent.name


def read_results(path: str | Path) -> pd.DataFrame:
    """A trial's ``result.json`` (JSON lines) as a DataFrame with ``/``-joined nested keys; ``config`` dropped.

    The last line of a running trial's file may be half written: it is skipped,
    so a running experiment can be plotted.

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
        rows.append(row)
    return pd.json_normalize(rows, sep="/")


def load_curves(exp_dirs: list[str | Path], metric: str = DEFAULT_METRIC, x_key: str = ENV_STEPS_KEY) -> list[Curve]:
    """One :class:`Curve` per trial below ``exp_dirs`` that logged both ``x_key`` and ``metric``.

    Raises:
        FileNotFoundError: no ``result.json`` below any of the directories.
        KeyError: trials exist but none logged ``metric`` (the message lists the numeric columns seen).
    """
    curves: list[Curve] = []
    seen: set[str] = set()
    files = [p for d in exp_dirs for p in sorted(Path(d).rglob("result.json"))]
    if not files:
        raise FileNotFoundError(f"no Tune trial (result.json) found below {[str(d) for d in exp_dirs]}")
    for f in files:
        if f.stat().st_size == 0:
            continue
        df = read_results(f)
        seen.update(c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]))
        if metric not in df or x_key not in df:  # e.g. alpha before warm-up ends: rows without it are dropped below
            continue
        d = df[[x_key, metric]].apply(pd.to_numeric, errors="coerce").dropna()
        if d.empty:
            continue
        curves.append(Curve(_method_of(f.parent), f.parent.name, d[x_key].to_numpy(float), d[metric].to_numpy(float)))
    if not curves:
        candidates = sorted(c for c in seen if "subtask" in c or "return" in c or "success" in c)
        raise KeyError(f"no trial logged both {x_key!r} and {metric!r}; metrics seen include {candidates[:20]}")
    return curves


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
    return Curve(curve.method, curve.trial, curve.x, y)


def aggregate(curves: list[Curve], n_points: int = 100, smoothing: int = 1) -> dict[str, dict[str, np.ndarray]]:
    """Per method: common grid ``x`` (0 .. shortest trial's last x), ``mean``, ``std``, ``n`` seeds.

    ``smoothing``: trailing mean over that many results per trial first (see :func:`smooth`).
    """
    out: dict[str, dict[str, np.ndarray]] = {}
    curves = [smooth(c, smoothing) for c in curves]
    for method in sorted({c.method for c in curves}):
        cs = [c for c in curves if c.method == method]
        x_max = min(c.x[-1] for c in cs)
        grid = np.linspace(0.0, x_max, n_points)
        ys = np.stack([np.interp(grid, c.x, c.y, left=c.y[0]) for c in cs])
        out[method] = {"x": grid, "mean": ys.mean(0), "std": ys.std(0), "n": np.array(len(cs))}
    return out


def summary_table(agg: dict[str, dict[str, np.ndarray]], metric: str) -> str:
    """Markdown table: method, seeds, env steps, final value (last 10 %), normalised AUC."""
    rows = [f"| method | seeds | env steps | final {metric} | AUC (mean over steps) |", "|---|---|---|---|---|"]
    for method, a in agg.items():
        k = max(1, len(a["x"]) // 10)
        final_m, final_s = a["mean"][-k:].mean(), a["std"][-k:].mean()
        span = a["x"][-1] - a["x"][0]
        auc = float(np.trapezoid(a["mean"], a["x"]) / span) if span > 0 else float(a["mean"].mean())
        rows.append(f"| {method} | {int(a['n'])} | {a['x'][-1]:,.0f} | {final_m:.3f} ± {final_s:.3f} | {auc:.3f} |")
    return "\n".join(rows)


def plot(agg: dict[str, dict[str, np.ndarray]], metric: str, out: str | Path, title: str = "") -> Path:
    """Mean ± std curves vs env steps, one line per method, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for method, a in agg.items():
        ax.plot(a["x"], a["mean"], label=f"{method} (n={int(a['n'])})")
        ax.fill_between(a["x"], a["mean"] - a["std"], a["mean"] + a["std"], alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(metric.split("/")[-1])
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spirl_ray.plot", description="Fig. 4-style curves from Tune results")
    p.add_argument("exp_dirs", nargs="+", help="Tune experiment directories (e.g. runs/kitchen/tune/spirl)")
    p.add_argument("--metric", default=DEFAULT_METRIC)
    p.add_argument("--x", default=ENV_STEPS_KEY, help="x-axis column (default: env steps)")
    p.add_argument("--out", default=None, help="PNG path (default: <first dir>/curve.png)")
    p.add_argument("--smooth", type=int, default=1, help="trailing mean over N results per trial (default 1: raw)")
    args = p.parse_args(argv)
    curves = load_curves(args.exp_dirs, args.metric, args.x)
    agg = aggregate(curves, smoothing=args.smooth)
    out = plot(agg, args.metric, args.out or Path(args.exp_dirs[0]) / "curve.png", title=Path(args.exp_dirs[0]).name)
    table = summary_table(agg, args.metric)
    out.with_suffix(".md").write_text(table + "\n")
    print(table)
    print(f"\nplot: {out}")
    return 0
