"""``env.name: gymnasium`` bad input (issue 13 §2/§4): refused by the CLI before Ray starts, exit 2, nothing written.

Like ``test_cli_bad_input.py``: ``ray.init`` is patched to fail the test, and
the tmp ``storage_path`` must not exist afterwards.
"""

from __future__ import annotations

import pytest
import ray

from spirl_ray.run import main

GYM = """
name: bad
storage_path: {storage}
env: {{name: gymnasium, id: '{env_id}'{extra}}}
data: {{collect: {{policy: 'toy_gym_envs:toward_goal', episodes: 4}}}}
rl: {{seeds: [0]}}
"""


@pytest.fixture
def no_ray(monkeypatch):
    def _refuse(*a, **k):
        raise AssertionError("ray.init was called: the bad input should have been refused before Ray starts")

    monkeypatch.setattr(ray, "init", _refuse)


def _refused(tmp_path, capsys, env_id, extra="", text=GYM) -> str:
    storage = tmp_path / "runs"
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text.format(storage=storage, env_id=env_id, extra=extra))
    code = main(["--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err
    assert not storage.exists()
    return err[err.index("error:"):]


def test_unregistered_id(tmp_path, capsys, no_ray):
    msg = _refused(tmp_path, capsys, "NoSuchEnv-v0")
    assert "env (env.name 'gymnasium'): gymnasium id 'NoSuchEnv-v0' is not registered" in msg
    assert "NameNotFound" in msg


def test_module_of_the_id_does_not_import(tmp_path, capsys, no_ray):
    msg = _refused(tmp_path, capsys, "no_such_package_zz:Reach-v0")
    assert "cannot import module 'no_such_package_zz' of gymnasium id 'no_such_package_zz:Reach-v0'" in msg


def test_discrete_actions(tmp_path, capsys, no_ray):
    msg = _refused(tmp_path, capsys, "CartPole-v1")
    assert "gymnasium env 'CartPole-v1': its action space is Discrete(2), not a Box" in msg


def test_unsupported_observation_space(tmp_path, capsys, no_ray):
    msg = _refused(tmp_path, capsys, "toy_gym_envs:TupleObsEnv", ", max_episode_steps: 10")
    assert "its observation space Tuple(Discrete(3), Discrete(2)) is not supported" in msg


def test_obs_key_not_in_the_dict(tmp_path, capsys, no_ray):
    msg = _refused(tmp_path, capsys, "toy_gym_envs:DictReachEnv", ", obs_keys: [pos, velocity]")
    assert "observation keys ['velocity'] are not in its Dict observation space (keys: ['camera', 'goal', 'pos'])" in msg


def test_env_without_time_limit(tmp_path, capsys, no_ray):
    msg = _refused(tmp_path, capsys, "toy_gym_envs:DictReachEnv")
    assert "has no time limit: set env.max_episode_steps" in msg


def test_policy_that_does_not_import(tmp_path, capsys, no_ray):
    text = GYM.replace("toy_gym_envs:toward_goal", "toy_gym_envs:no_such_policy")
    msg = _refused(tmp_path, capsys, "toy_gym_envs:DictReachEnv", ", max_episode_steps: 10", text=text)
    assert "data.collect.policy: module 'toy_gym_envs' has no attribute 'no_such_policy'" in msg


def test_no_data_source_at_config_load(tmp_path, capsys, no_ray):
    text = GYM.replace("data: {{collect: {{policy: 'toy_gym_envs:toward_goal', episodes: 4}}}}\n", "")
    msg = _refused(tmp_path, capsys, "toy_gym_envs:DictReachEnv", ", max_episode_steps: 10", text=text)
    assert "env.name 'gymnasium' has no scripted expert: set data.path" in msg


def test_a_good_config_reaches_ray(tmp_path, monkeypatch):
    """Control: the same config with a usable env passes every check (so the refusals above can fail)."""
    started = []

    def _stop_here(*a, **k):
        started.append(k)
        raise KeyboardInterrupt

    monkeypatch.setattr(ray, "init", _stop_here)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(GYM.format(storage=tmp_path / "runs", env_id="toy_gym_envs:DictReachEnv",
                              extra=", max_episode_steps: 10, obs_keys: [pos, goal]"))
    with pytest.raises(KeyboardInterrupt):
        main(["--config", str(cfg), "--no-dashboard"])
    assert started


def test_dataset_of_another_shape(tmp_path, capsys, no_ray):
    """data.path vs the env's spaces after obs_keys: [pos, goal] is 4-d; a 3-d state file is refused."""
    import numpy as np

    from conftest import write_d4rl

    data = tmp_path / "d.hdf5"
    write_d4rl(data, [(np.zeros((10, 3), np.float32), np.zeros((10, 2), np.float32))])
    text = GYM.replace("{{collect: {{policy: 'toy_gym_envs:toward_goal', episodes: 4}}}}", f"{{{{path: {data}}}}}")
    msg = _refused(tmp_path, capsys, "toy_gym_envs:DictReachEnv", ", max_episode_steps: 10, obs_keys: [pos, goal]",
                   text=text)
    assert f"data.path {data} does not fit env 'gymnasium'" in msg
    assert "key 'observations' has dim 3 (after the state layout), the env's observations are 4-d" in msg
