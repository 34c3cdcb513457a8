"""Fault tolerance: a killed EnvRunner, a killed driver (``--resume``), damaged or mismatched files.

Each test prints its before/after numbers (``pytest -s`` shows them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import ray
import torch
from ray.rllib.core import DEFAULT_MODULE_ID

from spirl_ray.rl.spirl import SPiRLConfig
from spirl_ray.skills.checkpoint import (
    SkillModelError,
    SkillModelMismatchError,
    check_skill_model_config,
    load_skill_model,
    save_skill_model,
)
from spirl_ray.skills.models import SkillModel, SkillModelConfig

import fault_toy
from toy_skill_env import OBS, Z, save_toy_skill_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray_session():
    ray.init(num_cpus=2, object_store_memory=10**9, include_dashboard=False)
    fault_toy.register()
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    return save_toy_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt")


def _steps(result) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


# ---- a. an EnvRunner killed mid-training --------------------------------------------------
def test_killed_env_runner_is_restarted_and_training_continues(ray_session, skill_model_path):
    config = fault_toy.spirl_config(skill_model_path, cpus_per_runner=0.5, fragment=5, probe_timeout_s=2.0)
    algo = config.build_algo()
    try:
        for _ in range(2):
            result = algo.train()
        steps_before = _steps(result)
        runners_before = fault_toy.remote_runner_stats(algo)
        assert sorted(runners_before) == [1, 2]
        assert result["fault_tolerance"]["num_remote_worker_restarts"] == 0

        # Kill runner 1's process the way a crash would (Ray may restart the actor).
        handles = dict(
            algo.env_runner_group.foreach_env_runner(
                lambda r: (r.worker_index, ray.get_runtime_context().current_actor), local_env_runner=False
            )
        )
        ray.kill(handles[1], no_restart=False)

        history = []
        for _ in range(8):
            result = algo.train()  # must not raise
            history.append((_steps(result), algo.env_runner_group.num_healthy_remote_workers()))
            if history[-1][1] == 2 and len(history) >= 3:
                break
        runners_after = fault_toy.remote_runner_stats(algo)
        restarts = result["fault_tolerance"]["num_remote_worker_restarts"]
        print(
            f"\n[fault a] env runner killed: high-level steps before {steps_before} -> after {[s for s, _ in history]}; "
            f"healthy runners per iteration {[h for _, h in history]}; restarts {restarts}; "
            f"runner 1 pid {runners_before[1]['pid']} -> {runners_after.get(1, {}).get('pid')}, "
            f"steps of the restarted runner {runners_after.get(1, {}).get('steps')}"
        )
        steps = [steps_before] + [s for s, _ in history]
        assert all(b > a for a, b in zip(steps, steps[1:])), steps  # sampling never stalled
        assert restarts == 1
        assert sorted(runners_after) == [1, 2]
        assert runners_after[1]["pid"] != runners_before[1]["pid"]  # a new process ...
        assert runners_after[2]["pid"] == runners_before[2]["pid"]  # ... only for the killed runner
        assert runners_after[1]["steps"] > 0  # the restarted runner samples again
        # The restarted runner gets the learner's current policy, not a fresh init. A runner that
        # RLlib brings back into service in the middle of a training step has missed that step's
        # (fire-and-forget) weight sync; a later step's sync reaches it (on a loaded machine the
        # runner can come back one step later still, so up to three steps are allowed).
        def runner_has_learner_weights() -> bool:
            learner_pi = next(iter(algo.learner_group.foreach_learner(
                lambda l: l.module[DEFAULT_MODULE_ID].pi.state_dict()))).get()
            runner_pi = algo.env_runner_group.foreach_env_runner(
                lambda r: r.module.pi.state_dict(), local_env_runner=False, remote_worker_ids=[1]
            )[0]
            return all(torch.equal(torch.as_tensor(runner_pi[k]), torch.as_tensor(v)) for k, v in learner_pi.items())

        synced = []
        for _ in range(3):
            algo.train()
            synced.append(runner_has_learner_weights())
            if synced[-1]:
                break
        assert synced[-1], f"runner 1 never received the learner's weights after {len(synced)} training steps"
    finally:
        algo.stop()


# ---- b. the driver killed mid-experiment, then --resume -----------------------------------
RESUME_CONFIG = """
name: resume
storage_path: {storage}
env: {{name: kitchen, max_episode_steps: 60}}
data: {{collect: {{episodes: 4, seed: 1, num_workers: 1}}}}
skill_model: {{horizon: 5, latent_dim: 4, lstm_hidden: 32, prior_hidden: 32, prior_layers: 3}}
prior_training: {{num_steps: 30, batch_size: 16, val_every: 30, val_batches: 2}}
rl:
  env_steps: 1500
  seeds: [0]
  warmup_env_steps: 100
  batch_size: 16
  lr: 0.003
  replay_capacity: 2000
  critic_hidden: 32
  critic_layers: 2
  num_env_runners: 1
  num_cpus_per_env_runner: 0.5
  min_sample_timesteps_per_iteration: 20
  checkpoint_every: 2
prior_rollouts: {{episodes: 0}}
"""

ENV_STEPS = "env_steps_lifetime"


def _rows(result_json: Path) -> list[dict]:
    if not result_json.is_file():
        return []
    rows = []
    for line in result_json.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written
            break
    return rows


def _alpha(row: dict) -> float:
    return float(row["learners"][DEFAULT_MODULE_ID]["alpha_value"])


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (from /proc), so leftovers can be ended one by one."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_driver_killed_after_a_checkpoint_then_resume_continues_from_it(tmp_path):
    cfg_path = tmp_path / "resume.yaml"
    cfg_path.write_text(RESUME_CONFIG.format(storage=tmp_path / "runs"))
    cmd = [sys.executable, "-m", "spirl_ray.run", "--config", str(cfg_path), "--num-cpus", "2", "--no-progress"]
    exp_dir = tmp_path / "runs" / "resume" / "tune" / "spirl"
    log1 = open(tmp_path / "run1.log", "w")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=log1, stderr=subprocess.STDOUT)
    leftovers: list[int] = []
    try:
        # Kill once a checkpoint exists and the run has gone past it (the checkpoint is complete).
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, f"run ended before the kill (rc {proc.returncode}); see {log1.name}"
            assert time.monotonic() < deadline, "no checkpoint within 600 s"
            ckpts = list(exp_dir.glob("*/checkpoint_*"))
            rows = _rows(next(iter(exp_dir.glob("*/result.json")), Path("/nonexistent")))
            if ckpts and len(rows) >= 4 and list(exp_dir.glob("experiment_state-*.json")):
                break
            time.sleep(0.2)
        leftovers = _descendants(proc.pid)
        proc.send_signal(signal.SIGKILL)  # the driver only, by its pid
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
        log1.close()
    # Ray's head processes share the driver's fate; end any that did not, one pid at a time.
    time.sleep(5)
    for pid in leftovers:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)

    result_json = next(exp_dir.glob("*/result.json"))
    before = _rows(result_json)
    n_before = len(before)
    last_before = before[-1]
    steps_at_kill = last_before["env_runners"][ENV_STEPS]
    assert steps_at_kill < 1500  # killed mid-experiment

    run2 = subprocess.run(cmd + ["--resume"], cwd=REPO, capture_output=True, text=True, timeout=900)
    (tmp_path / "run2.log").write_text(run2.stdout + run2.stderr)
    assert run2.returncode == 0, run2.stdout[-3000:] + run2.stderr[-3000:]
    assert "rl: resuming unfinished trials" in run2.stdout
    assert "data: using" in run2.stdout and "prior: cached" in run2.stdout
    assert "Ray dashboard: " in run2.stdout and f"TensorBoard: tensorboard --logdir {exp_dir.parent}" in run2.stdout

    rows = _rows(result_json)
    resumed = rows[n_before:]
    assert resumed, "the resumed run appended no results"
    first = resumed[0]
    ckpt_iter = first["training_iteration"] - 1
    # Restored from a checkpoint (every `checkpoint_every`=2 iterations), not from scratch.
    assert ckpt_iter >= 2 and ckpt_iter % 2 == 0, first["training_iteration"]
    at_ckpt = next(r for r in before if r["training_iteration"] == ckpt_iter)
    steps_ckpt = at_ckpt["env_runners"][ENV_STEPS]
    alpha_ckpt, alpha_resumed = _alpha(at_ckpt), _alpha(first)
    # What one iteration can move alpha: updates x lr (Adam steps are ~lr in log space).
    one_iter = first["num_gradient_updates"] * 0.003 * 1.5 + 1e-6
    print(
        f"\n[fault b] driver killed at iteration {last_before['training_iteration']} ({steps_at_kill} env steps); "
        f"resumed from the checkpoint of iteration {ckpt_iter} ({steps_ckpt} env steps, alpha {alpha_ckpt:.4f}); "
        f"first resumed iteration {first['training_iteration']}: {first['env_runners'][ENV_STEPS]} env steps, "
        f"alpha {alpha_resumed:.4f}; final {rows[-1]['env_runners'][ENV_STEPS]} env steps at iteration "
        f"{rows[-1]['training_iteration']}"
    )
    assert first["env_runners"][ENV_STEPS] >= steps_ckpt
    assert abs(np.log(alpha_resumed) - np.log(alpha_ckpt)) <= one_iter
    # A fresh learner starts at alpha = 1 and cannot get this far from it in one iteration.
    assert abs(np.log(alpha_resumed)) > one_iter
    assert rows[-1]["env_runners"][ENV_STEPS] >= 1500
    env_steps = [r["env_runners"][ENV_STEPS] for r in resumed]
    assert env_steps == sorted(env_steps)


# ---- d. truncated files: clear errors, no unverified cache entry ----------------------------
def test_cache_entry_without_checksum_is_not_trusted(tmp_path):
    from spirl_ray.data.sequence_dataset import make_sequence_dataset
    from spirl_ray.skills.train import PriorTrainingConfig, cached_skill_prior

    from conftest import structured_episodes, write_d4rl

    data = tmp_path / "d.hdf5"
    write_d4rl(data, structured_episodes(n_episodes=6, length=20))
    ds = make_sequence_dataset(data, horizon=5, seed=0)
    mc = SkillModelConfig(obs_dim=4, action_dim=2, horizon=5, latent_dim=3, lstm_hidden=16, prior_hidden=16, prior_layers=2)
    tc = PriorTrainingConfig(num_steps=2, batch_size=8, val_every=2, val_batches=1)
    first = cached_skill_prior(data, ds, {}, mc, tc, tmp_path / "cache", show_progress=False)
    sidecar = first.path.with_name(first.path.name + ".sha256")
    sidecar.unlink()  # e.g. the driver died between writing the model and its checksum
    again = cached_skill_prior(data, ds, {}, mc, tc, tmp_path / "cache", show_progress=False)
    assert not again.cached and sidecar.is_file()


def test_truncated_prior_is_named_when_the_rl_config_is_validated(tmp_path):
    path = Path(save_toy_skill_model(tmp_path / "prior.pt"))
    path.write_bytes(path.read_bytes()[:500])
    config = SPiRLConfig().environment("unused").training(skill_model_path=str(path))
    with pytest.raises(SkillModelError, match=r"prior\.pt.*checksum"):
        config.validate()
    path.with_name("prior.pt.sha256").unlink()  # no sidecar: the damaged bytes are still caught
    with pytest.raises(SkillModelError, match=r"prior\.pt.*unreadable"):
        config.validate()


def test_truncated_prior_is_named_when_an_env_runner_builds_its_env(tmp_path):
    from spirl_ray.rl.envs import make_rl_env

    path = Path(save_toy_skill_model(tmp_path / "runner_prior.pt"))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SkillModelError, match=r"runner_prior\.pt.*checksum"):
        make_rl_env({"env": "kitchen", "skill_model_path": str(path)})


# ---- e. a skill model made for another H / |Z| / env --------------------------------------
def _model(tmp_path, name, **kw):
    torch.manual_seed(0)
    cfg = SkillModelConfig(**{"obs_dim": OBS, "action_dim": 3, "horizon": 10, "latent_dim": Z, **kw})
    return save_skill_model(tmp_path / name, SkillModel(cfg).eval())


def test_skill_model_with_other_horizon_or_latent_dim_is_rejected_naming_both(tmp_path):
    path = _model(tmp_path, "h5z6.pt", horizon=5, latent_dim=6)
    with pytest.raises(SkillModelMismatchError) as err:
        load_skill_model(path, expect={"horizon": 10, "latent_dim": 6, "obs_dim": OBS})
    msg = str(err.value)
    print(f"\n[fault e] {msg}")
    assert "h5z6.pt" in msg and "H (horizon): file has 5, config expects 10" in msg
    assert "latent_dim" not in err.value.mismatches  # only what differs is named
    with pytest.raises(SkillModelMismatchError, match=r"\|Z\| \(latent_dim\): file has 6, config expects 4"):
        load_skill_model(path, expect={"horizon": 5, "latent_dim": 4})
    # another env: the state dim differs (kitchen d4rl30 vs the toy env's 8-d states)
    with pytest.raises(SkillModelMismatchError, match=r"state dim \(obs_dim\): file has 8, config expects 30"):
        load_skill_model(path, expect={"obs_dim": 30})
    model = load_skill_model(path, expect={"horizon": 5, "latent_dim": 6, "obs_dim": OBS, "action_dim": 3})
    assert (model.config.horizon, model.config.latent_dim) == (5, 6)
    # tuples from the file match lists from YAML
    check_skill_model_config(model.config, {"conv_channels": [8, 16, 32]})
    with pytest.raises(ValueError, match="unknown skill-model fields"):
        check_skill_model_config(model.config, {"horizn": 5})


def _restore_cfg(env: str, path: str) -> SPiRLConfig:
    return (
        SPiRLConfig()
        .environment(env)
        .env_runners(num_env_runners=0)
        .training(skill_model_path=path, warmup_env_steps=20, train_batch_size_per_learner=16)
        .rl_module(model_config={"critic_hidden": 32, "critic_layers": 2})
        .reporting(min_sample_timesteps_per_iteration=5, min_time_s_per_iteration=0)
        .debugging(seed=0)
    )


@pytest.mark.slow
def test_rl_checkpoint_with_other_skill_horizon_is_refused(ray_session, tmp_path):
    h10 = str(_model(tmp_path, "h10.pt", horizon=10))
    h5 = str(_model(tmp_path, "h5.pt", horizon=5))
    algo = _restore_cfg(fault_toy.ENV_NAME, h10).build_algo()
    try:
        algo.train()
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    other = _restore_cfg(fault_toy.ENV_NAME, h5).build_algo()
    try:
        with pytest.raises(Exception, match=r"H \(horizon\)"):
            other.restore_from_path(ckpt)
    finally:
        other.stop()


# ---- f. the replay buffer survives a checkpoint -------------------------------------------
def test_resumed_algorithm_keeps_its_replay_buffer(ray_session, tmp_path):
    """A restored trial learns from the buffer it had, not from an empty one (RLlib 2.60's new-stack
    checkpoints leave the replay out; SPiRL.get_state adds it)."""
    path = str(_model(tmp_path, "h10.pt", horizon=10))
    algo = _restore_cfg(fault_toy.ENV_NAME, path).build_algo()
    try:
        for _ in range(3):
            algo.train()
        saved = algo.local_replay_buffer.get_state()
        ckpt = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    assert saved["size"] >= 15  # three iterations of >= 5 high-level steps each

    fresh = _restore_cfg(fault_toy.ENV_NAME, path).build_algo()
    try:
        assert len(fresh.local_replay_buffer) == 0
        fresh.restore_from_path(ckpt)
        restored = fresh.local_replay_buffer.get_state()
        print(f"\n[fault f] replay rows saved {saved['size']}, restored {restored['size']}")
        assert (restored["size"], restored["next"]) == (saved["size"], saved["next"])
        assert saved["data"].keys() == restored["data"].keys()
        for key, rows in saved["data"].items():
            np.testing.assert_array_equal(restored["data"][key], rows, err_msg=key)
        fresh.train()  # the next transitions go after the restored ones
        assert len(fresh.local_replay_buffer) > saved["size"]
    finally:
        fresh.stop()

    off = _restore_cfg(fault_toy.ENV_NAME, path)
    off.store_buffer_in_checkpoints = False
    algo = off.build_algo()
    try:
        algo.train()
        assert "local_replay_buffer" not in algo.get_state()
    finally:
        algo.stop()
