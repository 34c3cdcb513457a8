"""``python -m spirl_ray.run --config tune_configs/kitchen.yaml``: the whole SPiRL pipeline.

Stages (each skipped when its output exists): scripted data collection →
skill-prior training → prior rollouts → SPiRL under Ray Tune, one trial per
seed. Without ``--address`` an embedded local Ray is started, with the Ray
dashboard unless ``--no-dashboard``; with it the run joins an existing cluster
(``--address auto`` on a cluster node).

Bad input is refused before Ray starts, with one message and exit code 2:
config errors (unknown keys, YAML syntax with its line, unknown kitchen
subtasks), a dataset that does not fit the env, a missing tracker package,
and ``--resume`` after a config change (:mod:`spirl_ray.experiments.preflight`).
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import sys

import yaml


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m spirl_ray.run", description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="experiment YAML (see tune_configs/)")
    p.add_argument("--address", default=None, help="Ray cluster address to join (e.g. 'auto'); default: local Ray")
    p.add_argument("--resume", action="store_true", help="continue unfinished Tune trials from their last checkpoint")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray (default: all)")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override a config field, e.g. --set rl.env_steps=20000 (value parsed as YAML); repeatable",
    )
    p.add_argument(
        "--offline-only", action="store_true",
        help="run the data, skill-prior and prior-rollout stages and stop before RL (e.g. to train a prior "
        "in the background while the RL code changes)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars (CI logs)")
    p.add_argument(
        "--no-dashboard", action="store_true",
        help="start the embedded local Ray without its dashboard (saves its processes' memory; not with --address)",
    )
    args = p.parse_args(argv)
    if args.no_dashboard and args.address:
        p.error("--no-dashboard applies to the embedded local Ray; a cluster joined with --address runs its own "
                "dashboard (started with `ray start --include-dashboard`)")
    return args


def monitoring_lines(dashboard_url: str | None, joined_cluster: bool, tune_dir: os.PathLike | str,
                     disabled: bool = False, token_auth: bool = False) -> list[str]:
    """What to watch a run with: the Ray dashboard (or why there is none) and TensorBoard.

    Args:
        dashboard_url: ``host:port`` from ``ray.init(...).dashboard_url``; empty or None
            when the dashboard is not running.
        joined_cluster: the run joined an existing cluster (``--address``); its
            dashboard address is then the head's, reachable from elsewhere through
            ``ray dashboard <cluster yaml>`` (forwarded to http://localhost:8265).
        tune_dir: the run's Tune directory (TensorBoard reads it).
        disabled: the dashboard was turned off (``--no-dashboard``).
        token_auth: the Ray cluster requires its auth token (Ray >= 2.60 turns token
            authentication on for a new local cluster: ``RAY_AUTH_MODE=token`` after
            ``ray.init``); the dashboard then asks for the token that
            ``ray get-auth-token`` prints.
    Returns:
        Lines to print, one per tool.
    """
    if dashboard_url:
        url = dashboard_url if "://" in dashboard_url else f"http://{dashboard_url}"
        dash = f"Ray dashboard: {url}"
        if joined_cluster:
            dash += " (from your machine: `ray dashboard <cluster yaml>`, then http://localhost:8265)"
        if token_auth:
            dash += " (it asks for the token that `ray get-auth-token` prints)"
    elif disabled:
        dash = "Ray dashboard: off (--no-dashboard)"
    elif importlib.util.find_spec("aiohttp") is None:
        dash = ('Ray dashboard: not running (it needs `pip install "ray[default]"` of the same Ray version); '
                "Tune's progress table and TensorBoard work without it")
    else:
        dash = "Ray dashboard: not running"
    return [dash, f"TensorBoard: tensorboard --logdir {tune_dir}"]


def unfinished_trials(results, env_steps_budget: int) -> list:
    """Trials without an error that stopped short of ``env_steps_budget`` low-level env steps (e.g. Ctrl-C).

    ``results``: Tune ``Result`` objects (``.error``, nested ``.metrics``).
    """
    from spirl_ray.experiments.pipeline import ENV_STEPS_METRIC  # Tune's stop criterion

    group, key = ENV_STEPS_METRIC.split("/")
    short = []
    for r in results:
        if r.error:
            continue
        steps = ((r.metrics or {}).get(group) or {}).get(key, 0)
        if steps < env_steps_budget:
            short.append(r)
    return short


def git_commit(cwd: os.PathLike | str | None = None) -> str:
    """``git rev-parse HEAD`` of the code being run (``+dirty`` when tracked files differ), or "unknown"."""
    import subprocess

    here = cwd or os.path.dirname(os.path.abspath(__file__))
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_run_info(root, argv: list[str], **fields) -> None:
    """Record how a run was started in ``<root>/run_info.json`` (read by ``python -m spirl_ray.report``).

    Keys: ``command`` (as typed, argv joined), ``commit``, ``cpus``, ``hostname``,
    ``started`` / ``finished`` (ISO time, UTC) and anything in ``fields``.
    A resumed run keeps the first ``started``, ``command`` and ``commit`` and appends
    ``{"at", "command", "commit"}`` to ``resumed``; finishing adds ``finished`` only.
    """
    import datetime
    import json
    import shlex
    import socket
    from pathlib import Path

    from spirl_ray.utils import atomic_path

    path = Path(root) / "run_info.json"
    info = json.loads(path.read_text()) if path.is_file() else {}
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    finishing = "finished" in fields
    if finishing:
        finished = fields.pop("finished")
        info["finished"] = now if finished is True else finished
    elif "started" in info:
        info.setdefault("resumed", []).append(now)
    else:
        info["started"] = now
    command = "python -m spirl_ray.run " + " ".join(shlex.quote(a) for a in argv)
    if "commit" not in info:  # the code that started the run; a resume or the finish line keeps it
        info.update(command=command, commit=git_commit(), cpus=os.cpu_count(), hostname=socket.gethostname())
    elif not finishing and info.get("resumed"):
        info["resumed"][-1] = {"at": info["resumed"][-1], "command": command, "commit": git_commit()}
    info.update(fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(info, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    raw_argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from spirl_ray.experiments.config import ConfigError, load_config, yaml_error_message
    from spirl_ray.experiments.preflight import preflight

    overrides = {}
    for item in args.overrides:
        if "=" not in item:
            print(f"error: --set expects KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        key, value = item.split("=", 1)
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            print(f"error: {yaml_error_message(e, f'--set {item}')}", file=sys.stderr)
            return 2
    try:
        cfg = load_config(args.config, overrides)
        # everything that can be checked without Ray, before any stage writes anything
        preflight(cfg, resume=args.resume and not args.offline_only)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    import ray

    from spirl_ray.experiments.pipeline import offline_stages, run_pipeline, say, write_resolved_config

    if args.address:
        ctx = ray.init(address=args.address)
    else:
        # address="local": always a new embedded Ray, never an unrelated one found on this machine.
        # include_dashboard=None: Ray starts the dashboard when ray[default] is installed (a dependency).
        ctx = ray.init(address="local", num_cpus=args.num_cpus, object_store_memory=10**9,
                       include_dashboard=False if args.no_dashboard else None)
    for line in monitoring_lines(getattr(ctx, "dashboard_url", None), bool(args.address), cfg.root / "tune",
                                 disabled=args.no_dashboard, token_auth=os.environ.get("RAY_AUTH_MODE") == "token"):
        say(line)
    try:
        if args.offline_only:
            cfg.root.mkdir(parents=True, exist_ok=True)
            write_resolved_config(cfg)
            arms, _ = offline_stages(cfg, show_progress=not args.no_progress)
            say(f"offline stages done ({len(arms)} arm(s)); RL skipped (--offline-only)")
            return 0
        from spirl_ray.experiments.pipeline import check_trials_fit_before_offline_stages

        check_trials_fit_before_offline_stages(cfg, args.resume)  # needs the cluster's resources; before any write
        cfg.root.mkdir(parents=True, exist_ok=True)
        write_run_info(cfg.root, raw_argv)
        out = run_pipeline(cfg, resume=args.resume, show_progress=not args.no_progress)
        write_run_info(cfg.root, raw_argv, finished=True)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        ray.shutdown()
    results = out["results"]
    errors = [r for r in results if r.error]
    short = unfinished_trials(results, cfg.rl.env_steps)
    say(f"done: {len(results)} trials, {len(errors)} errored, {len(short)} stopped before rl.env_steps="
        f"{cfg.rl.env_steps}; results in {cfg.root / 'tune'}")
    if short:
        say("continue the stopped trials with the same command plus --resume")
    return 1 if errors or short else 0


if __name__ == "__main__":
    sys.exit(main())
