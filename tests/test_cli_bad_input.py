"""Issue 13 §4: every bad input is refused by the CLI before any stage, with one clear error.

Each case runs ``spirl_ray.run.main`` in-process on the bad input and asserts
exit code 2, the message (file / field named) and that nothing was written
under the tmp ``storage_path`` (no dataset, prior or Tune folder). Cases that
need no Ray patch ``ray.init`` to fail the test, so they also show the check
runs before Ray starts.
"""

from __future__ import annotations

import importlib.util

import h5py
import numpy as np
import pytest
import ray

from conftest import write_d4rl
from spirl_ray.experiments.config import load_config
from spirl_ray.experiments.pipeline import write_resolved_config
from spirl_ray.experiments.preflight import TUNE_CONFIG_SNAPSHOT, check_resume, tune_experiment_dir
from spirl_ray.run import main

KITCHEN = """
name: bad
storage_path: {storage}
env: {{name: kitchen, tasks_to_complete: [microwave, kettle, light switch]}}
data: {{collect: {{episodes: 600, num_workers: 1}}}}
skill_model: {{horizon: 5, latent_dim: 4, lstm_hidden: 32, prior_hidden: 32, prior_layers: 3}}
prior_training: {{num_steps: 30, batch_size: 16}}
rl: {{env_steps: 400, seeds: [0], num_env_runners: 1, num_cpus_per_env_runner: 0.5}}
"""


def _tree(root) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with (size, mtime_ns): equal before and after = nothing written."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def no_ray(monkeypatch):
    def _refuse(*a, **k):
        raise AssertionError("ray.init was called: the bad input should have been refused before Ray starts")

    monkeypatch.setattr(ray, "init", _refuse)


@pytest.fixture
def storage(tmp_path):
    return tmp_path / "runs"


def _config(tmp_path, storage, text=KITCHEN, **fmt):
    path = tmp_path / "c.yaml"
    path.write_text(text.format(storage=storage, **fmt))
    return path


def _refused(argv, capsys) -> str:
    """Run the CLI; assert exit code 2 and a single ``error:`` message on stderr; return that message."""
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    return err[err.index("error:"):]


def test_unknown_kitchen_subtask(tmp_path, storage, capsys, no_ray):
    cfg = _config(tmp_path, storage, KITCHEN.replace("light switch", "light swich"))
    msg = _refused(["--config", str(cfg)], capsys)
    assert "c.yaml" in msg and "env.tasks_to_complete: unknown subtask 'light swich'" in msg
    assert "did you mean 'light switch'?" in msg
    assert not storage.exists()


def test_yaml_syntax_error_names_file_and_line(tmp_path, storage, capsys, no_ray):
    cfg = _config(tmp_path, storage, KITCHEN + "variants:\n  - name: a\n   set: {{}}\n")
    msg = _refused(["--config", str(cfg)], capsys)
    assert msg.startswith(f"error: config file {str(cfg)!r}, line 11, column 4: not valid YAML")
    assert not storage.exists()


def test_bad_yaml_in_set_is_one_error(tmp_path, storage, capsys, no_ray):
    msg = _refused(["--config", str(_config(tmp_path, storage)), "--set", "rl.seeds=[1, 2"], capsys)
    assert msg.startswith("error: --set rl.seeds=[1, 2, line 1, column 6: not valid YAML")
    assert not storage.exists()


def test_d4rl_actions_of_another_robot(tmp_path, storage, capsys, no_ray):
    """The issue's case: 7-d actions given as data.path to the (9-d action) kitchen."""
    data = tmp_path / "other_robot.hdf5"
    write_d4rl(data, [(np.zeros((50, 60), np.float32), np.zeros((50, 7), np.float32))] * 3)
    msg = _refused(["--config", str(_config(tmp_path, storage)), "--set", f"data.path={data}"], capsys)
    assert f"data.path {data} does not fit env 'kitchen'" in msg
    assert "key 'actions' has dim 7, the env's actions are 9-d" in msg
    assert not storage.exists()


def test_minari_observations_of_another_layout(tmp_path, storage, capsys, no_ray):
    """A Minari dataset whose 40-d observations no kitchen state layout can read (and 7-d actions)."""
    ds = tmp_path / "minari" / "data" / "main_data.hdf5"
    ds.parent.mkdir(parents=True)
    with h5py.File(ds, "w") as f:
        for i in range(2):
            g = f.create_group(f"episode_{i}")
            g["observations"] = np.zeros((6, 40), np.float32)
            g["actions"] = np.zeros((5, 7), np.float32)
    msg = _refused(["--config", str(_config(tmp_path, storage)), "--set", f"data.path={ds.parents[1]}"], capsys)
    assert f"data.path: {ds}: key 'episode_0/observations' has dim 40; state_layout 'd4rl30' expects" in msg
    assert not storage.exists()


def test_maze_images_of_another_shape(tmp_path, storage, capsys, no_ray):
    """Image states: the maze observes (2, 32, 32) uint8; a file with 3-channel images is refused."""
    data = tmp_path / "rgb.hdf5"
    write_d4rl(data, [(np.zeros((20, 4), np.float32), np.zeros((20, 2), np.float32))])
    with h5py.File(data, "a") as f:
        f["images"] = np.zeros((20, 3, 32, 32), np.uint8)
    cfg = _config(tmp_path, storage, "name: bad\nstorage_path: {storage}\nenv: {{name: maze}}\n"
                  "data: {{path: {data}}}\nrl: {{seeds: [0]}}\n", data=data)
    msg = _refused(["--config", str(cfg)], capsys)
    assert f"data.path {data} does not fit env 'maze'" in msg
    assert "key 'images' holds (3, 32, 32) images per step, the env observes (2, 32, 32)" in msg
    assert not storage.exists()


def test_vector_state_file_for_an_image_env(tmp_path, storage, capsys, no_ray):
    data = tmp_path / "states_only.hdf5"
    write_d4rl(data, [(np.zeros((20, 4), np.float32), np.zeros((20, 2), np.float32))])
    cfg = _config(tmp_path, storage, "name: bad\nstorage_path: {storage}\nenv: {{name: maze}}\n"
                  "data: {{path: {data}}}\nrl: {{seeds: [0]}}\n", data=data)
    msg = _refused(["--config", str(cfg)], capsys)
    assert f"data.path: {data}: missing key 'images'" in msg and "env.state 'image' trains on image states" in msg
    assert not storage.exists()


def test_block_stacking_images_of_another_dtype(tmp_path, storage, capsys, no_ray):
    data = tmp_path / "float_images.hdf5"
    write_d4rl(data, [(np.zeros((20, 25), np.float32), np.zeros((20, 3), np.float32))])
    with h5py.File(data, "a") as f:
        f["images"] = np.zeros((20, 6, 32, 32), np.float32)
    cfg = _config(tmp_path, storage, "name: bad\nstorage_path: {storage}\nenv: {{name: block_stacking}}\n"
                  "data: {{path: {data}}}\nrl: {{seeds: [0]}}\n", data=data)
    msg = _refused(["--config", str(cfg)], capsys)
    assert f"data.path: {data}: key 'images' has dtype float32, expected uint8" in msg
    assert not storage.exists()


def test_state_dim_checked_for_every_sweep_arm_that_reads_data(tmp_path, storage, capsys, no_ray):
    """Block stacking with vector states (25-d in the 5-block env): a 24-d file, used by arm 'spirl' only."""
    data = tmp_path / "short_state.hdf5"
    write_d4rl(data, [(np.zeros((20, 24), np.float32), np.zeros((20, 3), np.float32))])
    cfg = _config(tmp_path, storage, "name: bad\nstorage_path: {storage}\n"
                  "env: {{name: block_stacking, state: state, task: data_collection}}\n"
                  "data: {{path: {data}}}\nrl: {{seeds: [0]}}\n"
                  "variants:\n  - {{name: sac, set: {{rl.method: sac}}}}\n  - {{name: spirl, set: {{}}}}\n", data=data)
    msg = _refused(["--config", str(cfg)], capsys)
    assert f"sweep arm 'spirl': data.path {data} does not fit env 'block_stacking'" in msg
    assert "key 'observations' has dim 24 (after the state layout), the env's observations are 25-d" in msg
    assert not storage.exists()


def test_missing_data_path(tmp_path, storage, capsys, no_ray):
    msg = _refused(["--config", str(_config(tmp_path, storage)), "--set", f"data.path={tmp_path / 'nope.hdf5'}"],
                   capsys)
    assert f"data.path '{tmp_path / 'nope.hdf5'}' does not exist" in msg
    assert not storage.exists()


@pytest.mark.skipif(importlib.util.find_spec("mlflow") is not None, reason="mlflow is installed here")
def test_tracker_without_its_package(tmp_path, storage, capsys, no_ray):
    msg = _refused(["--config", str(_config(tmp_path, storage)),
                    "--set", "tracking.mlflow_tracking_uri=http://localhost:5000"], capsys)
    assert "tracking.mlflow_tracking_uri is set but mlflow is not installed" in msg
    assert not storage.exists()


def _started_experiment(tmp_path, storage, legacy: bool = False):
    """An experiment whose Tune folder is restorable (Tune's own test: ``tuner.pkl`` exists) with its config."""
    cfg_path = _config(tmp_path, storage)
    cfg = load_config(cfg_path)
    exp_dir = tune_experiment_dir(cfg)
    exp_dir.mkdir(parents=True)
    (exp_dir / "tuner.pkl").write_bytes(b"stand-in: only its existence is read before Tune restores")
    write_resolved_config(cfg)
    if not legacy:
        write_resolved_config(cfg, exp_dir / TUNE_CONFIG_SNAPSHOT)
    return cfg_path, cfg


@pytest.mark.parametrize("legacy", [False, True], ids=["tune_snapshot", "root_config_only"])
def test_resume_after_a_change_of_dataset_horizon_latent_or_method(tmp_path, storage, capsys, no_ray, legacy):
    cfg_path, cfg = _started_experiment(tmp_path, storage, legacy)
    assert check_resume(cfg) is not None  # the unchanged config resumes (so the refusal below is the change's)
    # fields that do not reach the resumed trials may change; a skill-model default spelled out is no change
    assert check_resume(load_config(cfg_path, {"prior_rollouts.episodes": 3, "data.collect.num_workers": 2}))
    from spirl_ray.skills.models import SkillModelConfig

    assert check_resume(load_config(cfg_path, {"skill_model.beta": SkillModelConfig.model_fields["beta"].default}))
    before = _tree(storage)
    msg = _refused(["--config", str(cfg_path), "--resume", "--set", "data.collect.episodes=50",
                    "--set", "skill_model.horizon=10", "--set", "skill_model.latent_dim=10",
                    "--set", "rl.method=ssp"], capsys)
    assert msg.startswith(f"error: --resume: the config differs from the one the Tune experiment in "
                          f"{tune_experiment_dir(cfg)} was started with")
    for line in ("data.collect.episodes: 600 -> 50", "skill_model.horizon: 5 -> 10",
                 "skill_model.latent_dim: 4 -> 10", 'rl.method: "spirl" -> "ssp"'):
        assert f"\n  {line}" in msg
    assert "prior_rollouts" not in msg
    assert _tree(storage) == before  # config.resolved.yaml not overwritten; no dataset, prior or trial written
    assert not (storage / "datasets").exists() and not (storage / "prior_cache").exists()


def test_resume_without_a_tune_experiment_is_not_compared(tmp_path, storage):
    """Nothing to resume (e.g. the driver died during the prior): the run starts the trials from this config."""
    cfg_path = _config(tmp_path, storage)
    cfg = load_config(cfg_path)
    write_resolved_config(cfg)
    assert check_resume(load_config(cfg_path, {"skill_model.horizon": 10})) is None


def test_trial_larger_than_the_cluster_is_refused_before_any_stage(tmp_path, storage, capsys):
    """Resources need the cluster, so this one starts Ray (2 CPUs, no dashboard), then refuses before writing."""
    msg = _refused(["--config", str(_config(tmp_path, storage)), "--num-cpus", "2", "--no-dashboard",
                    "--no-progress", "--set", "rl.num_env_runners=4", "--set", "rl.num_cpus_per_env_runner=1"],
                   capsys)
    assert "one trial needs 5 CPU but the Ray cluster has 2" in msg and "rl.num_env_runners" in msg
    assert not storage.exists()
    assert not ray.is_initialized()


def test_no_dashboard_with_address_is_an_argument_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--config", "x.yaml", "--address", "auto", "--no-dashboard"])
    assert e.value.code == 2 and "--no-dashboard applies to the embedded local Ray" in capsys.readouterr().err


def test_ray_is_only_started_after_the_checks(tmp_path, storage, monkeypatch):
    """Control for the ``no_ray`` fixture: a good config does reach ray.init (so the cases above can fail)."""
    started = []

    def _stop_here(*a, **k):
        started.append(k)
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", _stop_here)
    with pytest.raises(KeyboardInterrupt):
        main(["--config", str(_config(tmp_path, storage)), "--no-dashboard"])
    assert started and started[0]["include_dashboard"] is False and started[0]["address"] == "local"


def test_a_trials_resources_do_not_depend_on_its_method(tmp_path, storage):
    """Why the early resource check may size every arm as ``sac`` (no offline model file yet)."""
    from toy_skill_env import save_toy_skill_model

    from spirl_ray.experiments.pipeline import sweep_param_space
    from spirl_ray.experiments.trainable import VARIANT_KEY, SPiRLTrial

    model = save_toy_skill_model(tmp_path / "toy.pt")
    cfg = load_config(_config(tmp_path, storage), {"rl.num_env_runners": 3, "evaluation.num_env_runners": 1})

    def need(method, path):
        arm = cfg.model_copy(update={"rl": cfg.rl.model_copy(update={"method": method})})
        space = sweep_param_space([(method, arm, path)])
        return SPiRLTrial.default_resource_request({**space, VARIANT_KEY: method, "seed": 0}).required_resources

    assert need("spirl", model) == need("flat_prior", model) == need("sac", None) == {"CPU": 1 + 3 * 0.5 + 1 * 0.5}
