"""Issue 13 §3: ``run`` starts the Ray dashboard with its embedded local Ray and prints its URL.

A tiny run of the real CLI in a subprocess (kitchen, method ``sac``: no
offline stage, so Tune starts within seconds). Over HTTP on localhost, at the
URL the run printed, the dashboard lists the run's driver job, its Tune trial
actor (``SPiRLTrial``) and its EnvRunner actor (``SingleAgentEnvRunner``),
both ALIVE and of that job. Ray 2.60 turns token authentication on for a new
local cluster; the test sends the token ``ray get-auth-token`` prints, as a
user pastes it into the dashboard.
Everything is polled with a deadline (no timing assertion); once both actors
were seen the run is stopped with SIGINT (Tune stops gracefully and the CLI
shuts its Ray down).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("aiohttp", reason="the dashboard needs ray[default]")

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 600  # generous: 2 busy cores; the test ends as soon as it has seen what it polls for
WANTED = {"SPiRLTrial", "SingleAgentEnvRunner"}

CONFIG = """
name: dash
storage_path: {storage}
env: {{name: kitchen, max_episode_steps: 60}}
rl:
  method: sac
  env_steps: 100000  # far more than the test waits for: it stops the run once it has seen the actors
  seeds: [0]
  warmup_env_steps: 100
  batch_size: 16
  replay_capacity: 1000
  critic_hidden: 32
  critic_layers: 2
  num_env_runners: 1
  num_cpus_per_env_runner: 0.5
  min_sample_timesteps_per_iteration: 50
  checkpoint_every: 1000
evaluation: {{every_env_steps: 0}}
prior_rollouts: {{episodes: 0}}
"""


def _auth_token() -> str | None:
    """The Ray auth token as a user gets it (``ray get-auth-token``); None when token auth is off."""
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
        return None
    out = subprocess.run([sys.executable, "-m", "ray.scripts.scripts", "get-auth-token"], capture_output=True,
                         text=True, timeout=120)
    token = out.stdout.strip().splitlines()[-1] if out.returncode == 0 and out.stdout.strip() else None
    return token


def _get_json(url: str, token: str | None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_dashboard_lists_the_runs_trial_and_env_runner_actors(tmp_path):
    cfg = tmp_path / "dash.yaml"
    cfg.write_text(CONFIG.format(storage=tmp_path / "runs"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "spirl_ray.run", "--config", str(cfg), "--num-cpus", "2", "--no-progress"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    seen: dict[str, dict] = {}
    job = None
    try:
        url = None
        deadline = time.monotonic() + DEADLINE_S
        while time.monotonic() < deadline and proc.poll() is None:
            if url is None:
                line = next((ln for ln in list(lines) if "[spirl-ray] Ray dashboard:" in ln), None)
                if line is None:
                    time.sleep(0.5)
                    continue
                m = re.search(r"Ray dashboard: (http://\S+)", line)
                if m is None:
                    break  # the run says the dashboard is not running: fail now, not at the deadline
                url, token = m.group(1), _auth_token()
                assert "127.0.0.1" in url or "localhost" in url, url
            try:
                jobs = _get_json(f"{url}/api/jobs/", token)
                job = next((j for j in jobs if (j.get("driver_info") or {}).get("pid") == str(proc.pid)), job)
                actors = _get_json(f"{url}/api/v0/actors?limit=1000", token)["data"]["result"]["result"]
            except (urllib.error.URLError, OSError, KeyError, ValueError):
                actors = []  # dashboard still starting
            for a in actors:  # ALIVE: created and running (listed from PENDING_CREATION on)
                if (a["class_name"] in WANTED and a["state"] == "ALIVE" and job is not None
                        and a["job_id"] == job["job_id"]):
                    seen.setdefault(a["class_name"], a)
            if set(seen) == WANTED:
                break
            time.sleep(0.5)
        waited = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Tune stops the trial; the CLI shuts its Ray down
            try:
                proc.wait(timeout=300)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the session this test started (driver and its Ray)
                proc.wait(timeout=60)
        reader.join(timeout=10)
    out = "".join(lines)
    assert url is not None, f"the run printed no dashboard URL:\n{out[-3000:]}"
    assert job is not None and job["type"] == "DRIVER", f"no driver job with pid {proc.pid} at {url}"
    assert set(seen) == WANTED, f"dashboard listed {sorted(seen)} of {sorted(WANTED)} at {url}:\n{out[-3000:]}"
    print(f"\ndashboard {url}: driver job {job['job_id']} (pid {proc.pid}); "
          + "; ".join(f"{name} actor {a['actor_id'][:12]} {a['state']} pid {a['pid']}" for name, a in sorted(seen.items()))
          + f"; seen {waited:.0f} s after the CLI started; exit code after SIGINT {proc.returncode}")
    assert "TensorBoard: tensorboard --logdir" in out


def test_no_dashboard_flag_prints_that_it_is_off():
    from spirl_ray.run import monitoring_lines

    lines = monitoring_lines("", False, "runs/x/tune", disabled=True)
    assert lines[0] == "Ray dashboard: off (--no-dashboard)" and lines[1] == "TensorBoard: tensorboard --logdir runs/x/tune"
    url_line = monitoring_lines("127.0.0.1:8265", False, "t", token_auth=True)[0]
    assert url_line.startswith("Ray dashboard: http://127.0.0.1:8265") and "ray get-auth-token" in url_line
