"""Maze pictures: exploration maps (paper Fig. 5) and training trajectories (paper Fig. 13).

``python -m spirl_ray.viz exploration --config tune_configs/maze_quick.yaml [--env-steps N] [--out FILE] [--trial DIR]``

Top-down maps of the downstream maze with the agent's position after every env
step of exploration rollouts from the task's start, one panel per sampler:

* ``prior``  — skills z ~ p(z | s) of the learned skill prior (SPiRL's exploration);
* ``normal`` — skills z ~ N(0, I) through the same decoder ("SSP w/o prior");
* ``flat``   — single-step actions a = tanh(u), u ~ p(u | s) of the flat action
  prior (the "Flat Prior" baseline's model, ``decoder='flat'``);
* ``random`` — uniform random actions a ~ U[-1, 1]^2;
* ``policy`` — skills sampled from a trained RL policy π(z | s), read from a
  trial's latest checkpoint (``--trial``; its RLModule, the same squashed
  sample the trial's EnvRunners draw), for the trained policy's map beside the
  prior's.

Skills are clipped to [-2, 2] (the policy's range). Each sampler runs
``--env-steps`` env steps in episodes of ``env.max_episode_steps`` (the
paper's picture uses 1M). The map marks the start (green) and goal (red);
every panel's title and the printed table give the **coverage**: the fraction
of the maze's free cells visited at least once. The priors come from the
pipeline's stages (cached in ``<storage>/prior_cache``; trained when missing).
A JSON with the numbers is written next to the PNG.

``python -m spirl_ray.viz trajectories EXPERIMENT_DIR [--out FILE]``

The training rollouts each trial recorded (``xy_traces.jsonl``, written by
:class:`~spirl_ray.rl.callbacks.SPiRLMetricsCallback`) over its maze, one
panel per trial, coloured by training time (env steps; darker = later, as in
Fig. 13), with the trial's start and goal.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: samplers of the exploration map, in panel order, with their legend labels.
SAMPLERS: dict[str, str] = {
    "prior": "SPiRL: skills from the prior",
    "normal": "skills from N(0, I) (SSP w/o prior)",
    "flat": "flat action prior",
    "random": "uniform random actions",
    "policy": "trained policy: skills from π(z | s)",
}


#: the samplers drawn when none are named (``policy`` needs a trial)
DEFAULT_SAMPLERS: tuple[str, ...] = ("prior", "normal", "flat", "random")
#: where the policy's RLModule sits inside an RLlib algorithm checkpoint
MODULE_IN_CHECKPOINT = "learner_group/learner/rl_module/default_policy"


def load_policy_module(trial: str | Path):
    """The trained policy of a Tune trial: its RLModule from the latest ``checkpoint_*`` below ``trial``.

    Args:
        trial: a trial directory (``runs/<name>/tune/spirl/<trial>``) or one of its checkpoint directories.

    Returns:
        ``(module, checkpoint_dir)``: the RLModule (torch, eval mode) and the checkpoint it came from.

    Raises:
        FileNotFoundError: no RLlib checkpoint with an RLModule below ``trial``.
    """
    from ray.rllib.core.rl_module.rl_module import RLModule

    root = Path(trial).resolve()
    ckpts = [root] if (root / "learner_group").is_dir() else sorted(root.glob("checkpoint_*"))
    ckpts = [c for c in ckpts if (c / MODULE_IN_CHECKPOINT).is_dir()]
    if not ckpts:
        raise FileNotFoundError(f"{trial}: no checkpoint_*/{MODULE_IN_CHECKPOINT} (not a Tune trial with checkpoints)")
    module = RLModule.from_checkpoint(str(ckpts[-1] / MODULE_IN_CHECKPOINT))
    module.eval()
    return module, ckpts[-1]


# ---- rollouts -----------------------------------------------------------------------------
def exploration_rollouts(
    env_kwargs: dict[str, Any],
    sampler: str,
    env_steps: int,
    skill_model=None,
    flat_model=None,
    seed: int = 0,
    z_bound: float = 2.0,
    policy_module=None,
) -> np.ndarray:
    """Agent positions (N, 2) in metres over ``env_steps`` env steps of exploration on the maze.

    Episodes start from the task's start (``reset(seed=seed + episode)``) and
    run until the env's time limit or the budget; the positions are the reset
    position of each episode plus the position after every env step.

    Args:
        env_kwargs: :func:`spirl_ray.envs.maze.make_maze_env` arguments.
        sampler: one of :data:`SAMPLERS`.
        env_steps: budget in low-level env steps (> 0).
        skill_model: a skill :class:`~spirl_ray.skills.models.SkillModel`
            (``prior`` and ``normal``).
        flat_model: a flat action model (``decoder='flat'``; ``flat``).
        seed: episode seeds and sampling seed.
        z_bound: skills are clipped to [-z_bound, z_bound] (``prior``, ``normal``).
        policy_module: the trained policy's RLModule (``policy``; :func:`load_policy_module`); its
            skill env uses the module's skill model, and its sampled action is mapped to the
            skill env's action space as RLlib's EnvRunner does (``unsquash_action``).

    Raises:
        ValueError: unknown sampler, ``env_steps < 1``, or the model the sampler needs is missing.
    """
    import torch

    from spirl_ray.rl.envs import make_low_level_env
    from spirl_ray.rl.skill_env import SkillEnv

    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; expected one of {list(SAMPLERS)}")
    if int(env_steps) < 1:
        raise ValueError(f"env_steps must be >= 1, got {env_steps}")
    if sampler in ("prior", "normal") and skill_model is None:
        raise ValueError(f"sampler {sampler!r} needs a skill_model")
    if sampler == "flat" and flat_model is None:
        raise ValueError("sampler 'flat' needs a flat_model (decoder='flat')")
    if sampler == "policy" and (policy_module is None or skill_model is None):
        raise ValueError("sampler 'policy' needs a policy_module and the skill_model its trial ran with")
    env = make_low_level_env("maze", env_kwargs)
    skills = sampler in ("prior", "normal", "policy")
    if skills:
        env = SkillEnv(env, skill_model, z_bound=z_bound)
    if sampler == "policy":
        from ray.rllib.utils.spaces.space_utils import unsquash_action

        torch.manual_seed(seed)  # the RLModule's distribution samples from torch's global generator
        dist_cls = policy_module.get_exploration_action_dist_cls()
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    points: list[np.ndarray] = []
    done_steps, episode = 0, 0
    with torch.inference_mode():
        while done_steps < env_steps:
            obs, info = env.reset(seed=seed + episode)
            episode += 1
            points.append(np.asarray(info["xy"], np.float32).reshape(1, 2))
            over = False
            while not over and done_steps < env_steps:
                x = torch.as_tensor(np.asarray(obs), dtype=torch.float32)[None]
                if sampler == "prior":
                    d = skill_model.prior.dist(x)
                    a = (d.loc + d.scale * torch.randn(d.loc.shape, generator=gen)).clamp(-z_bound, z_bound)[0].numpy()
                elif sampler == "normal":
                    a = torch.randn((1, skill_model.config.latent_dim), generator=gen).clamp(-z_bound, z_bound)[0].numpy()
                elif sampler == "policy":
                    out = policy_module.forward_exploration({"obs": x})
                    u = dist_cls.from_logits(out["action_dist_inputs"]).sample()[0].numpy()
                    a = unsquash_action(u, env.action_space).astype(np.float32)
                elif sampler == "flat":
                    d = flat_model.prior.dist(x)
                    a = torch.tanh(d.loc + d.scale * torch.randn(d.loc.shape, generator=gen))[0].numpy()
                else:
                    a = rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
                obs, _, term, trunc, info = env.step(a)
                if skills:
                    points.append(np.asarray(info["xy_trace"], np.float32).reshape(-1, 2))
                    done_steps += int(info["env_steps"])
                else:
                    points.append(np.asarray(info["xy"], np.float32).reshape(1, 2))
                    done_steps += 1
                over = term or trunc
    env.close()
    return np.concatenate(points)


# ---- drawing ------------------------------------------------------------------------------
def _draw_maze(ax, layout) -> None:
    """Walls in grey over the world frame (x right, y up, metres; row 0 of the grid at the top)."""
    R, C = layout.shape
    ax.imshow(layout.walls, cmap="Greys", vmin=0, vmax=1.6, extent=(-C / 2, C / 2, -R / 2, R / 2),
              origin="upper", interpolation="nearest", zorder=0)
    ax.set_xlim(-C / 2, C / 2)
    ax.set_ylim(-R / 2, R / 2)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_aspect("equal")


def _task(env_kwargs: dict[str, Any]):
    """(layout, start_xy, goal_xy) of the maze task ``env_kwargs`` describes."""
    from spirl_ray.envs.maze import make_maze_env

    env = make_maze_env(**env_kwargs)
    try:
        return env.layout, env.layout.cell_to_xy(env.start_cell), env.goal_xy
    finally:
        env.close()


def plot_exploration(env_kwargs: dict[str, Any], positions: dict[str, np.ndarray], coverage: dict[str, float],
                     out: str | Path, env_steps: int) -> Path:
    """One panel per sampler: visited positions (blue) on the maze, start and goal marked; PNG to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layout, start, goal = _task(env_kwargs)
    n = len(positions)
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.9), squeeze=False)
    for ax, (name, xy) in zip(axes[0], positions.items()):
        _draw_maze(ax, layout)
        ax.scatter(xy[:, 0], xy[:, 1], s=0.4, c="tab:blue", alpha=0.25, linewidths=0, rasterized=True, zorder=2)
        _draw_maze_markers(ax, start, goal)
        ax.set_title(f"{SAMPLERS[name]}\ncoverage {coverage[name]:.2f}", fontsize=9)
    axes[0][0].legend(loc="lower left", fontsize=7, framealpha=0.8)
    fig.suptitle(f"exploration: {env_steps:,} env steps per sampler (coverage = fraction of free cells visited)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return out


def _draw_maze_markers(ax, start, goal) -> None:
    """Start (green circle) and goal (red star) at world positions in metres."""
    ax.plot(*start, marker="o", ms=9, color="limegreen", mec="black", zorder=5, label="start")
    ax.plot(*goal, marker="*", ms=14, color="red", mec="black", zorder=5, label="goal")


# ---- exploration command ------------------------------------------------------------------
def exploration(config: str | Path, env_steps: int = 100_000, out: str | Path | None = None,
                samplers: Sequence[str] = DEFAULT_SAMPLERS, seed: int = 0, variant: str | None = None,
                show_progress: bool = True, overrides: dict[str, Any] | None = None,
                trial: str | Path | None = None) -> dict[str, Any]:
    """Exploration map and coverage per sampler for a maze experiment config (paper Fig. 5).

    Uses the config's dataset, skill prior and flat action prior (cached
    pipeline stages; collected / trained when missing) and its downstream maze.

    Args:
        config: experiment YAML with ``env.name: maze``.
        env_steps: env steps per sampler.
        out: PNG path (default ``<storage>/<name>/exploration.png``); the numbers
            go to the same path with ``.json``.
        samplers: subset of :data:`SAMPLERS`; ``policy`` is added when ``trial`` is given.
        seed: rollout seed.
        variant: the sweep arm whose env and models to use (default: the first).
        overrides: dotted config overrides (as ``run --set``).
        trial: a Tune trial directory of this config's maze (``runs/<name>/tune/spirl/<trial>``): the
            ``policy`` panel samples its latest checkpoint's policy with the skill model it ran with.

    Returns:
        ``{"png", "json", "env_steps", "coverage": {sampler: fraction of free cells}, "models": {...}}``.

    Raises:
        ConfigError: invalid config. ValueError: not a maze config, unknown
            sampler or variant, ``policy`` without ``trial``, or a trial run on another maze.
        FileNotFoundError: ``trial`` has no checkpoint.
    """
    from spirl_ray.experiments.config import load_config
    from spirl_ray.experiments.pipeline import data_stage, prior_stage, say
    from spirl_ray.skills.checkpoint import load_skill_model

    samplers = list(samplers) + (["policy"] if trial is not None and "policy" not in samplers else [])
    bad = [s for s in samplers if s not in SAMPLERS]
    if bad:
        raise ValueError(f"unknown sampler(s) {bad}; expected some of {list(SAMPLERS)}")
    if "policy" in samplers and trial is None:
        raise ValueError("sampler 'policy' needs a trial directory (--trial runs/<name>/tune/spirl/<trial>)")
    cfg = load_config(config, overrides)
    import torch

    # batch-1 forwards: one thread is fastest, and a second one waits on busy cores (benchmarks/)
    torch.set_num_threads(1)
    arms = dict(cfg.variant_configs())
    if variant is not None and variant not in arms:
        raise ValueError(f"variant {variant!r} not in the config's arms {sorted(arms)}")
    vcfg = arms[variant] if variant is not None else next(iter(arms.values()))
    if vcfg.env.name != "maze":
        raise ValueError(f"{config}: exploration maps need env.name 'maze', got {vcfg.env.name!r}")
    models: dict[str, Any] = {}
    paths: dict[str, str] = {}
    if {"prior", "normal", "flat"} & set(samplers):
        dataset = data_stage(vcfg, show_progress)
        if {"prior", "normal"} & set(samplers):
            p = prior_stage(vcfg, dataset, show_progress).path
            models["skills"], paths["skills"] = load_skill_model(p), str(p)
        if "flat" in samplers:
            p = prior_stage(vcfg, dataset, show_progress, flat=True).path
            models["flat"], paths["flat"] = load_skill_model(p), str(p)
    env_kwargs = vcfg.env.env_kwargs()
    if trial is not None:
        trial_dir = Path(trial)
        if trial_dir.name.startswith("checkpoint_"):
            trial_dir = trial_dir.parent
        trial_env = _trial_env_kwargs(trial_dir)
        if json.loads(json.dumps(trial_env)) != json.loads(json.dumps(env_kwargs)):
            raise ValueError(f"{trial_dir}: the trial ran on env {trial_env}, the config describes {env_kwargs}")
        models["policy"], ckpt = load_policy_module(trial)
        skill_path = json.loads((trial_dir / "params.json").read_text()).get("skill_model_path")
        if not skill_path:
            raise ValueError(f"{trial_dir / 'params.json'}: no skill_model_path (not a skill-based trial)")
        models["policy_skills"], paths["policy"] = load_skill_model(skill_path), str(ckpt)
    from spirl_ray.envs.maze_layout import cell_coverage

    layout = _task(env_kwargs)[0]
    positions, coverage = {}, {}
    for name in samplers:
        skill_model = models.get("policy_skills") if name == "policy" else models.get("skills")
        xy = exploration_rollouts(env_kwargs, name, env_steps, skill_model, models.get("flat"), seed=seed,
                                  policy_module=models.get("policy"))
        positions[name], coverage[name] = xy, cell_coverage(layout, xy)
        say(f"exploration: {name:6s} coverage {coverage[name]:.3f} of free cells ({env_steps} env steps)")
    out = Path(out) if out is not None else cfg.root / "exploration.png"
    png = plot_exploration(env_kwargs, positions, coverage, out, env_steps)
    report = {"png": str(png), "json": str(png.with_suffix(".json")), "env_steps": int(env_steps), "seed": seed,
              "env_kwargs": json.loads(json.dumps(env_kwargs)), "coverage": coverage, "models": paths,
              "free_cells": int((~layout.walls).sum())}
    Path(report["json"]).write_text(json.dumps(report, indent=2))
    say(f"exploration map: {png}")
    return report


# ---- trajectories command -----------------------------------------------------------------
def _trial_env_kwargs(trial_dir: Path) -> dict[str, Any]:
    """The maze kwargs a trial ran with, from its ``params.json`` (sweep-arm overrides applied)."""
    from spirl_ray.experiments.trainable import resolve_variant

    params = trial_dir / "params.json"
    if not params.is_file():
        raise ValueError(f"{trial_dir}: no params.json (not a Tune trial directory)")
    cfg = resolve_variant(json.loads(params.read_text()))
    env_config = cfg.get("env_config") or {}
    if env_config.get("env") != "maze":
        raise ValueError(f"{params}: env_config.env is {env_config.get('env')!r}, not 'maze'")
    return dict(env_config.get("env_kwargs") or {})


def trajectories(experiment_dir: str | Path, out: str | Path | None = None) -> dict[str, Any]:
    """Training rollouts over the maze, one panel per trial, darker = later (paper Fig. 13).

    Args:
        experiment_dir: a Tune experiment directory (``runs/<name>/tune/spirl``)
            or one trial directory.
        out: PNG path (default ``<experiment_dir>/trajectories.png``).

    Returns:
        ``{"png", "trials": {trial name: {"episodes", "env_steps"}}}``.

    Raises:
        FileNotFoundError: no trial below ``experiment_dir`` recorded ``xy_traces.jsonl``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    from spirl_ray.rl.callbacks import XY_TRACES_FILE, read_xy_traces

    root = Path(experiment_dir)
    trials = sorted({p.parent for p in root.rglob(XY_TRACES_FILE)})
    if not trials:
        raise FileNotFoundError(f"{root}: no trial has {XY_TRACES_FILE} (recorded by maze runs only)")
    fig, axes = plt.subplots(1, len(trials), figsize=(4.2 * len(trials), 4.4), squeeze=False)
    summary: dict[str, Any] = {}
    cmap = plt.get_cmap("Blues")
    for ax, trial in zip(axes[0], trials):
        layout, start, goal = _task(_trial_env_kwargs(trial))
        traces = read_xy_traces(trial)
        _draw_maze(ax, layout)
        steps = np.array([t["env_steps"] for t in traces], dtype=np.float64)
        lo, hi = (steps.min(), steps.max()) if len(steps) else (0.0, 1.0)
        for t in traces:
            frac = 0.0 if hi <= lo else (t["env_steps"] - lo) / (hi - lo)
            seg = np.stack([t["xy"][:-1], t["xy"][1:]], axis=1)
            ax.add_collection(LineCollection(seg, colors=[cmap(0.25 + 0.75 * frac)], linewidths=0.8, alpha=0.6,
                                             zorder=2 + frac))
        _draw_maze_markers(ax, start, goal)
        m = re.match(r"^(.*?_seed\d+)", trial.name)
        name = m.group(1) if m else trial.name
        ax.set_title(f"{name}\n{len(traces)} episodes, {int(lo):,}-{int(hi):,} env steps", fontsize=9)
        summary[trial.name] = {"episodes": len(traces), "env_steps": [int(lo), int(hi)]}
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(0, 1))
    fig.colorbar(sm, ax=axes[0].tolist(), fraction=0.02, pad=0.01, label="training time (first → last episode)")
    out = Path(out) if out is not None else root / "trajectories.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=130, bbox_inches="tight")
    plt.close(fig)
    print(f"[spirl-ray] trajectories: {len(trials)} trial(s) -> {out}", flush=True)
    return {"png": str(out), "trials": summary}


# ---- CLI ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    """``python -m spirl_ray.viz {exploration,trajectories} ...``; 0 on success, 2 on bad input."""
    p = argparse.ArgumentParser(prog="python -m spirl_ray.viz", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("exploration", help="exploration map + coverage per sampler (Fig. 5)")
    e.add_argument("--config", required=True, help="maze experiment YAML")
    e.add_argument("--env-steps", type=int, default=100_000, help="env steps per sampler (paper: 1M)")
    e.add_argument("--out", default=None, help="PNG path (default <storage>/<name>/exploration.png)")
    e.add_argument("--samplers", default=",".join(DEFAULT_SAMPLERS),
                   help=f"comma-separated subset of {','.join(SAMPLERS)} ('policy' needs --trial)")
    e.add_argument("--trial", default=None, help="a trial dir of this config (runs/<name>/tune/spirl/<trial>): adds "
                   "the 'policy' panel, its latest checkpoint's policy sampling skills")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--variant", default=None, help="sweep arm of the config (default: the first)")
    e.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config field (value parsed as YAML); repeatable")
    e.add_argument("--no-progress", action="store_true")
    t = sub.add_parser("trajectories", help="training rollouts coloured by training time (Fig. 13)")
    t.add_argument("experiment_dir", help="Tune experiment dir, e.g. runs/maze_prior_reuse/tune/spirl")
    t.add_argument("--out", default=None, help="PNG path (default <experiment_dir>/trajectories.png)")
    args = p.parse_args(argv)

    import yaml

    from spirl_ray.experiments.config import ConfigError

    try:
        if args.cmd == "exploration":
            overrides = {}
            for item in args.overrides:
                if "=" not in item:
                    raise ValueError(f"--set expects KEY=VALUE, got {item!r}")
                k, v = item.split("=", 1)
                overrides[k] = yaml.safe_load(v)
            samplers = [s.strip() for s in args.samplers.split(",") if s.strip()]
            report = exploration(args.config, args.env_steps, args.out, samplers, args.seed, args.variant,
                                 show_progress=not args.no_progress, overrides=overrides, trial=args.trial)
            print(json.dumps({"png": report["png"], "env_steps": report["env_steps"], "coverage": report["coverage"]},
                             indent=2))
        else:
            trajectories(args.experiment_dir, args.out)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
