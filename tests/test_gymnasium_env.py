"""``env.name: gymnasium`` (issue 13 §2): the observation adapter, success, and the policy collector's D4RL file."""

from __future__ import annotations

import numpy as np
import pytest
from spirl_ray.data.collect_policy import _write_hdf5, collect_episodes
from spirl_ray.data.readers import read_dataset
from spirl_ray.envs.families import get_family
from spirl_ray.envs.gymnasium_adapter import make_gymnasium_env, success_of
from spirl_ray.experiments.config import ExperimentConfig

TOY = "toy_gym_envs:DictReachEnv"


def test_dict_observations_flatten_in_the_given_order_and_success_is_reported():
    env = make_gymnasium_env(TOY, {"goal": [0.5, -0.5]}, max_episode_steps=3, obs_keys=["pos", "goal"])
    obs, _ = env.reset(seed=1)
    assert env.observation_space.shape == (4,) and obs.dtype == np.float32
    pos = obs[:2].copy()
    np.testing.assert_array_equal(obs[2:], [0.5, -0.5])  # goal second, as asked
    obs, _, _, truncated, info = env.step(np.array([1.0, 0.0], np.float32))
    np.testing.assert_allclose(obs[:2], pos + [0.1, 0.0], atol=1e-6)
    assert info["success"] is False and not truncated
    env.step(np.zeros(2, np.float32))
    assert env.step(np.zeros(2, np.float32))[3]  # the time limit of max_episode_steps
    default = make_gymnasium_env(TOY, max_episode_steps=3)  # all entries, sorted: camera, goal, pos
    assert default.observation_space.shape == (8 * 8 * 3 + 4,)
    assert success_of({"is_success": np.float32(1.0)}) is True and success_of({"reward": 1}) is None


def test_image_key_gives_channels_first_uint8_images():
    env = make_gymnasium_env(TOY, max_episode_steps=3, image_key="camera")
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (3, 8, 8) and obs.shape == (3, 8, 8) and obs.dtype == np.uint8
    assert obs[0].max() > 0 and obs[1:].max() == 0  # channel 0 holds the distance picture
    family = ExperimentConfig(name="x", env={"name": "gymnasium", "id": TOY, "image_key": "camera"},
                              data={"path": "/x.hdf5"}).env
    assert family.image_states and family.missing_images_hint().startswith("env.image_key 'camera'")


def test_collected_episodes_do_not_depend_on_the_chunking_and_read_back(tmp_path):
    """The Ray tasks' unit, without Ray: episode i is seeded from (seed, i) only; the file reads back.

    (``collect_policy_dataset`` around it, with Ray, runs in ``test_example_fetch_reach.py``.)
    """
    kwargs = {"env_id": TOY, "kwargs": {}, "max_episode_steps": 8, "obs_keys": ["pos", "goal"], "image_key": None}
    policy = "toy_gym_envs:toward_goal"
    whole = collect_episodes([0, 1, 2, 3, 4], 7, kwargs, policy, [False] * 5)
    chunked = (collect_episodes([0, 1], 7, kwargs, policy, [False, True])
               + collect_episodes([2, 3, 4], 7, kwargs, policy, [False, False, True]))
    for i in (0, 2, 3):
        np.testing.assert_array_equal(whole[i]["observations"], chunked[i]["observations"])
        np.testing.assert_array_equal(whole[i]["actions"], chunked[i]["actions"])
    assert not np.allclose(whole[1]["actions"], chunked[1]["actions"])  # the random-action episode
    assert all(e["success"][-1] for e in whole)  # the scripted policy reaches the goal in 8 steps of 0.1
    _write_hdf5(tmp_path / "a.hdf5", whole, {"policy": policy})
    eps = read_dataset(tmp_path / "a.hdf5")
    assert [len(e) for e in eps] == [8] * 5 and eps[0].observations.shape == (8, 4)
    np.testing.assert_array_equal(eps[0].observations[:, 2:], np.tile([0.5, -0.5], (8, 1)))  # goal second
    np.testing.assert_allclose(np.diff(eps[0].observations[:, :2], axis=0), 0.1 * eps[0].actions[:-1], atol=1e-6)
    with_images = collect_episodes([0], 7, {**kwargs, "obs_keys": None, "image_key": "camera"}, policy, [False])
    _write_hdf5(tmp_path / "c.hdf5", with_images, {})
    img = read_dataset(tmp_path / "c.hdf5", read_images=True)
    assert img[0].images.shape == (8, 3, 8, 8) and img[0].images.dtype == np.uint8
    assert img[0].observations.shape == (8, 4)  # the vector entries beside the image (goal, pos)


def test_collected_file_name_follows_env_and_policy(tmp_path):
    def path(**env):
        return ExperimentConfig(name="x", storage_path=str(tmp_path), env={"name": "gymnasium", "id": TOY, **env},
                                data={"collect": {"policy": "toy_gym_envs:toward_goal"}}).dataset_path.name

    base = path()
    assert base.startswith("scripted_gymnasium_600ep_seed0_DictReachEnv_") and base.endswith(".hdf5")
    assert path(kwargs={"goal": [0, 1]}) != base and path(max_episode_steps=9) != base
    other_policy = ExperimentConfig(name="x", storage_path=str(tmp_path), env={"name": "gymnasium", "id": TOY},
                                    data={"collect": {"policy": "toy_gym_envs:other"}}).dataset_path.name
    assert other_policy != base
    assert get_family("gymnasium")(id="gymnasium_robotics:FetchReach-v4").label == "FetchReach-v4"


def test_data_settings_of_the_prior_follow_obs_keys():
    from spirl_ray.experiments.pipeline import prior_data_settings

    def settings(**env):
        return prior_data_settings(ExperimentConfig(name="x", env={"name": "gymnasium", "id": TOY, **env},
                                                    data={"path": "/d.hdf5"}))

    assert settings(obs_keys=["pos"])["dict_keys"] == ["pos"]
    assert settings(obs_keys=["pos"]) != settings(obs_keys=["goal", "pos"])
    with pytest.raises(Exception, match="id"):
        ExperimentConfig(name="x", env={"name": "gymnasium"}, data={"path": "/d.hdf5"})
