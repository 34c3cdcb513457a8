"""Prior-quality record: how good is a skill prior before any RL (issue: kitchen results, §3).

``python -m spirl_ray.prior_report --config tune_configs/kitchen_cl.yaml --out results/kitchen/prior_closed_loop``

Reads the experiment's dataset and its cached skill model (the prior stage
must have run: ``python -m spirl_ray.run --config ... --offline-only``) and
writes ``<out>/README.md`` + ``<out>/prior.json`` with:

* the decoder's validation reconstruction MSE (per action element) and the
  validation prior loss KL(q(z|a) ‖ p(z|s)) (nats per latent dim): the KL of
  a *demonstrated* skill to the prior, the natural scale for the target
  divergence δ on the same per-dim scale;
* the prior's log σ over the validation states (smallest, 1st/50th
  percentile; per latent dim means): how narrow p(z|s) gets;
* prior rollouts (``prior_rollouts.json`` of the experiment, three samplers
  executed through the policy's squash z = 2·tanh(u/s): sampled prior skills,
  the prior's mean skill, u ~ N(0, I));
* the scripted data's mean episode length in env steps against the RL
  episode limit (``env.max_episode_steps``) and the subtasks per episode.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spirl_ray.experiments.config import ConfigError, ExperimentConfig, load_config
from spirl_ray.utils import atomic_path, file_sha256


def prior_log_sigma_stats(model, states: np.ndarray, chunk: int = 1024) -> dict[str, Any]:
    """log σ of p(z|s) over ``states``: (N, S) float or (N, C, H, W) uint8 images (kept uint8: the conv
    encoder converts them; ``chunk`` rows at a time); smallest, percentiles and per-dim means (log units)."""
    x = torch.as_tensor(states) if states.dtype == np.uint8 else torch.as_tensor(states, dtype=torch.float32)
    locs, log_scales = [], []
    with torch.no_grad():
        for i in range(0, len(x), chunk):
            d = model.prior.dist(x[i:i + chunk])
            locs.append(d.loc.numpy())
            log_scales.append(d.scale.log().numpy())
    ls = np.concatenate(log_scales)  # (N, Z)
    mu = np.concatenate(locs)
    return {
        "states": int(len(states)),
        "min_log_sigma": float(ls.min()),
        "p01_log_sigma": float(np.percentile(ls, 1)),
        "median_log_sigma": float(np.median(ls)),
        "mean_log_sigma_per_dim": [round(float(v), 3) for v in ls.mean(0)],
        "mean_abs_mu": float(np.abs(mu).mean()),
        "frac_abs_mu_below_1": float((np.abs(mu) < 1).mean()),
    }


def build_prior_report(cfg: ExperimentConfig, rollouts_out: Path | None = None) -> dict[str, Any]:
    """Collect the numbers of the record for ``cfg`` (dataset + cached prior of its first arm).

    Prior rollouts: the experiment's own ``prior_rollouts.json`` when it was made for
    this prior file with ``prior_rollouts.episodes`` episodes per sampler; otherwise
    (e.g. ``--set prior_rollouts.episodes=60`` for a tighter estimate) they are run
    here and cached in ``rollouts_out`` (the record's ``prior_rollouts.json``).

    Raises:
        FileNotFoundError: the dataset or the cached prior does not exist yet (the message says which command makes it).
    """
    from spirl_ray.data.readers import read_dataset
    from spirl_ray.data.sequence_dataset import SequenceDataset
    from spirl_ray.experiments.pipeline import prior_rollout_stage, prior_stage
    from spirl_ray.skills.checkpoint import load_skill_model

    path = cfg.dataset_path
    if not path.exists():
        raise FileNotFoundError(f"{path}: no dataset yet; run `python -m spirl_ray.run --config <file> --offline-only`")
    if cfg.prior_training.num_steps and not any(Path(cfg.prior_cache_dir).glob("*/skill_model.pt")):
        raise FileNotFoundError(f"{cfg.prior_cache_dir}: no cached prior; run the --offline-only stage first")
    result = prior_stage(cfg, path, show_progress=False)  # a cache hit (never trains when cached)
    if not result.cached:
        print("[spirl-ray] note: the prior was not cached and has just been trained", file=sys.stderr)
    model = load_skill_model(result.path)
    images = cfg.env.image_states
    episodes = read_dataset(path, fmt=cfg.data.format, read_images=images, **cfg.env.reader_kwargs())
    ds = SequenceDataset(episodes, model.config.horizon, cfg.data.val_fraction, cfg.data.split_seed, source=str(path),
                         obs_key="images" if images else "observations")
    states = np.concatenate([b["states"][:, 0] for b in ds.iterate_val(1024, max_windows=20_000)])
    model.eval()
    lengths = np.array([len(e.actions) for e in episodes])
    summary_path = Path(str(path) + ".summary.json")
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    candidates = [cfg.root / "prior_rollouts.json", *sorted((cfg.root / "prior_rollouts").glob("*.json"))]
    rollouts = None
    for c in candidates:  # the report made for this very prior file (a sweep writes one per arm)
        if c.is_file():
            r = json.loads(c.read_text())
            if r.get("prior_sha256") == file_sha256(result.path) and r.get("episodes") == cfg.prior_rollouts.episodes:
                rollouts = r
                break
    if rollouts is None and rollouts_out is not None and cfg.prior_rollouts.episodes:
        rollouts = prior_rollout_stage(cfg, result.path, out=rollouts_out)
    metrics = result.metrics
    return {
        "config": cfg.name,
        "prior_path": str(result.path),
        "cache_key": result.path.parent.name,
        "decoder": model.config.decoder,
        "prior_training_steps": int(metrics.get("steps", cfg.prior_training.num_steps)),
        "val_mse": metrics.get("val_mse"),
        "val_prior_kl_per_dim": metrics.get("val_prior_loss"),
        "val_posterior_kl_per_dim": metrics.get("val_kl"),
        "prior_wall_time_s": metrics.get("wall_time_s"),
        "log_sigma": prior_log_sigma_stats(model, states),
        "data": {
            "path": str(path),
            "episodes": int(len(episodes)),
            "mean_episode_env_steps": float(lengths.mean()),
            "subtasks_per_episode": summary.get("subtasks_per_episode"),
            "rl_episode_limit_env_steps": cfg.env.max_episode_steps,
            "versions": summary.get("versions"),
        },
        "prior_rollouts": None if rollouts is None else {
            k: {"mean_subtasks": rollouts[k]["mean_subtasks"], "mean_any_subtasks": rollouts[k]["mean_any_subtasks"],
                "sem_subtasks": _sem(rollouts[k].get("subtasks")),
                **({"mean_stacked_blocks": rollouts[k]["mean_stacked_blocks"],
                    "sem_stacked_blocks": _sem(rollouts[k].get("stacked_blocks")),
                    "mean_max_stacked_blocks": rollouts[k].get("mean_max_stacked_blocks")}
                   if "mean_stacked_blocks" in rollouts[k] else {}),
                "mean_return": rollouts[k].get("mean_return"),
                "episodes": rollouts[k]["episodes"], "squash": rollouts[k].get("squash")}
            for k in ("prior", "prior_mean", "normal") if k in rollouts
        },
        "scoring": getattr(cfg.env, "scoring", None),
        "tasks": list(getattr(cfg.env, "tasks_to_complete", []) or []),
    }


def _sem(values: list[float] | None) -> float | None:
    """Standard error of the mean of per-episode values (None for fewer than 2)."""
    if not values or len(values) < 2:
        return None
    return float(np.std(np.asarray(values, dtype=float), ddof=1) / np.sqrt(len(values)))


def render(rep: dict[str, Any]) -> str:
    """The record's README.md."""
    ls, d = rep["log_sigma"], rep["data"]
    lines = [
        f"# Skill prior quality: {rep['decoder']} decoder, {rep['prior_training_steps']:,} steps",
        "",
        f"Config `{rep['config']}`, prior cache key `{rep['cache_key']}`.",
        f"Regenerate: `{rep.get('command') or 'python -m spirl_ray.prior_report --config <that config> --out <this folder>'}`.",
        "",
        "| quantity | value |",
        "|---|---|",
        f"| decoder validation MSE (per action element) | {rep['val_mse']:.4f} |",
        f"| validation KL(q(z\\|a) ‖ p(z\\|s)), nats per latent dim | {rep['val_prior_kl_per_dim']:.3f} |",
        f"| validation KL(q(z\\|a) ‖ N(0, I)), nats per latent dim | {rep['val_posterior_kl_per_dim']:.3f} |",
        f"| prior log σ: smallest / 1st percentile / median | {ls['min_log_sigma']:.2f} / {ls['p01_log_sigma']:.2f} / {ls['median_log_sigma']:.2f} |",
        f"| prior mean: mean \\|μ\\|, fraction with \\|μ\\| < 1 | {ls['mean_abs_mu']:.2f}, {ls['frac_abs_mu_below_1']:.2f} |",
        f"| scripted data: mean episode length / RL episode limit (env steps) | {d['mean_episode_env_steps']:.0f} / {d['rl_episode_limit_env_steps']} |",
        f"| prior training wall time | {rep['prior_wall_time_s'] or 0:.0f} s |",
    ]
    names = {"prior": "u ~ p(z|s) (sampled skills)", "prior_mean": "u = mean of p(z|s)", "normal": "u ~ N(0, I)"}
    rolls = rep["prior_rollouts"] or {}
    if rolls and all("mean_stacked_blocks" in r for r in rolls.values()):  # block stacking
        lines += ["", "Prior rollouts on the downstream task, executed through the policy's squash:", "",
                  "| sampler | stacked blocks at the episode end (± s.e.m.) | highest tower during the episode "
                  "| return | episodes |", "|---|---|---|---|---|"]
        for k, r in rolls.items():
            sem = "" if r.get("sem_stacked_blocks") is None else f" ± {r['sem_stacked_blocks']:.2f}"
            lines.append(f"| {names.get(k, k)} | {r['mean_stacked_blocks']:.2f}{sem} | "
                         f"{r['mean_max_stacked_blocks']:.2f} | {r['mean_return']:.0f} | {r['episodes']} |")
    elif rolls:
        lines += ["", f"Prior rollouts on {rep['tasks']} (`{rep['scoring']}` scoring), executed through the policy's squash:", "",
                  "| sampler | subtasks per episode (± s.e.m.) | any of 7 | episodes |", "|---|---|---|---|"]
        for k, r in rolls.items():
            sem = "" if r.get("sem_subtasks") is None else f" ± {r['sem_subtasks']:.2f}"
            lines.append(f"| {names.get(k, k)} | {r['mean_subtasks']:.2f}{sem} | {r['mean_any_subtasks']:.2f} | {r['episodes']} |")
        lines += ["", "The kitchen reset is deterministic up to ~1e-3 rad of noise, so the mean-skill rows are "
                  "close to one repeated episode; their s.e.m. understates how much a different prior could change them."]
    lines += ["", f"Per-dim mean log σ: {ls['mean_log_sigma_per_dim']}", ""]
    if d.get("versions"):
        lines.append(f"Simulator versions of the data: {d['versions']}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m spirl_ray.prior_report", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="experiment YAML whose dataset and prior to report")
    p.add_argument("--out", required=True, help="record folder, e.g. results/kitchen/prior_closed_loop")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv_list)
    import yaml

    try:
        cfg = load_config(args.config, {k: yaml.safe_load(v) for k, v in (i.split("=", 1) for i in args.overrides)})
        rep = build_prior_report(cfg, rollouts_out=Path(args.out) / "prior_rollouts.json")
        rep["command"] = " ".join(["python -m spirl_ray.prior_report", *(shlex.quote(a) for a in argv_list)])
    except (ConfigError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "prior.json") as tmp:
        tmp.write_text(json.dumps(rep, indent=2) + "\n")
    with atomic_path(out / "README.md") as tmp:
        tmp.write_text(render(rep))
    print(render(rep))
    return 0
