"""Behaviour tests of the kitchen wrapper, the controller and the target primitives."""

from __future__ import annotations

import gymnasium as gym
import mujoco
import numpy as np
import pytest

from spirl_ray.data.scripted.kitchen_controller import EEController, frame
from spirl_ray.data.scripted.kitchen_primitives import kettle_final_pose_ok, run_episode
from spirl_ray.envs.kitchen import (
    ENV_ID,
    KITCHEN_SUBTASKS,
    OBS_ELEMENT_GOALS,
    OBS_ELEMENT_INDICES,
    PAPER_TARGET_TASKS,
    KitchenEnv,
    make_kitchen_env,
)


@pytest.fixture(scope="module")
def env30():
    env = KitchenEnv()
    yield env
    env.close()


def _set_object(env, task, value):
    env.data.qpos[OBS_ELEMENT_INDICES[task]] = value
    env.data.qvel[:] = 0.0
    mujoco.mj_forward(env.model, env.data)


def test_layouts_are_slices_of_the_59d_observation(env30):
    obs, _ = env30.reset(seed=3)
    full = env30.last_obs59
    assert obs.shape == (30,) and obs.dtype == np.float32
    np.testing.assert_allclose(obs, np.concatenate([full[0:9], full[18:39]]).astype(np.float32))
    assert env30.observation_space.shape == (30,)
    env59 = KitchenEnv(state_layout="full59")
    o59, _ = env59.reset(seed=3)
    assert o59.shape == (59,)
    np.testing.assert_allclose(o59, env59.last_obs59.astype(np.float32))
    # object qpos part equals the simulator state up to the tiny observation noise
    np.testing.assert_allclose(o59[18:39], env59.data.qpos[9:30], atol=5e-3)
    assert env59.action_space.shape == (9,)
    assert np.all(env59.action_space.low == -1) and np.all(env59.action_space.high == 1)
    env59.close()


def test_observations_are_copies(env30):
    obs0, _ = env30.reset(seed=0)
    keep = obs0.copy()
    obs0[:] = 123.0
    obs1, *_ = env30.step(np.zeros(9))
    assert not np.any(obs1 == 123.0)
    obs1_keep = obs1.copy()
    env30.step(np.full(9, 0.5))
    np.testing.assert_array_equal(obs1, obs1_keep)  # not overwritten by the next step
    assert np.abs(keep - obs1_keep).max() < 0.5


def test_ordered_vs_any_order_scoring_on_hand_set_state():
    goal = OBS_ELEMENT_GOALS["kettle"]
    results = {}
    for scoring in ("ordered", "any_order"):
        env = KitchenEnv(scoring=scoring)
        _, info = env.reset(seed=0)
        assert info["num_subtasks_completed"] == 0 and not any(info["subtasks"].values())
        _set_object(env, "kettle", goal)
        _, r, term, trunc, info = env.step(np.zeros(9))
        results[scoring] = (r, info)
        assert info["subtasks"]["kettle"] and not info["subtasks"]["microwave"]
        assert info["scoring"] == scoring and not term and not trunc and not info["success"]
        env.close()
    r, info = results["ordered"]
    assert r == 0 and info["num_subtasks_completed"] == 0 and not info["target_completed"]["kettle"]
    r, info = results["any_order"]
    assert r == 1 and info["num_subtasks_completed"] == 1 and info["target_completed"]["kettle"]


def test_ordered_cascade_completion_is_sticky_and_terminates():
    env = KitchenEnv(scoring="ordered")
    env.reset(seed=0)
    _set_object(env, "kettle", OBS_ELEMENT_GOALS["kettle"])
    env.step(np.zeros(9))
    _set_object(env, "microwave", OBS_ELEMENT_GOALS["microwave"])
    _, r, term, _, info = env.step(np.zeros(9))
    assert r == 2 and info["num_subtasks_completed"] == 2  # microwave, then the waiting kettle
    _set_object(env, "microwave", [0.0])  # closing the door again does not un-complete it
    _, r, _, _, info = env.step(np.zeros(9))
    assert r == 0 and info["subtasks"]["microwave"] and info["target_completed"]["microwave"]
    _set_object(env, "bottom burner", OBS_ELEMENT_GOALS["bottom burner"])
    _set_object(env, "light switch", OBS_ELEMENT_GOALS["light switch"])
    _, r, term, trunc, info = env.step(np.zeros(9))
    assert r == 2 and term and not trunc and info["success"] and info["num_subtasks_completed"] == 4
    env.close()


def test_truncation_at_max_episode_steps():
    env = KitchenEnv(max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(np.zeros(9))[3] for _ in range(5)]
    assert flags == [False] * 4 + [True]
    env.reset(seed=0)
    assert not env.step(np.zeros(9))[3]
    env.close()


def test_validation_errors():
    with pytest.raises(ValueError, match="scoring"):
        KitchenEnv(scoring="best")
    with pytest.raises(ValueError, match="microwave"):  # message lists the valid names
        KitchenEnv(tasks_to_complete=("microwave", "toaster"))
    with pytest.raises(ValueError, match="state_layout"):
        KitchenEnv(state_layout="d4rl60")


def test_registered_and_factory():
    env = gym.make(ENV_ID, scoring="any_order", max_episode_steps=50)
    obs, info = env.reset(seed=1)
    assert obs.shape == (30,) and set(info["subtasks"]) == set(KITCHEN_SUBTASKS)
    assert set(info["target_completed"]) == set(PAPER_TARGET_TASKS)
    env.close()
    assert isinstance(make_kitchen_env(state_layout="full59"), KitchenEnv)


def test_controller_moves_end_effector_toward_target(env30):
    env30.reset(seed=0)
    ctrl = EEController(env30.model, env30.data)
    target = ctrl.ee_pos + np.array([-0.1, 0.15, -0.1])
    rot = frame([0, 1, 0], [1, 0, 0])
    d0 = np.linalg.norm(target - ctrl.ee_pos)
    dists = []
    for _ in range(20):
        a = ctrl.action(target, rot, 1.0, max_speed=0.5)
        assert a.shape == (9,) and np.all(np.abs(a) <= 1.0)
        env30.step(a)
        dists.append(np.linalg.norm(target - ctrl.ee_pos))
    assert dists[4] < 0.6 * d0 and dists[-1] < 0.02


def test_controller_holds_pose_against_gravity(env30):
    env30.reset(seed=0)
    ctrl = EEController(env30.model, env30.data)
    p0, r0 = ctrl.ee_pos, ctrl.ee_rot
    for _ in range(40):
        env30.step(ctrl.action(p0, r0, 1.0))
    assert np.linalg.norm(ctrl.ee_pos - p0) < 0.01


@pytest.mark.parametrize("task", PAPER_TARGET_TASKS)
def test_target_primitives_succeed(task):
    env = KitchenEnv(max_episode_steps=None, terminate_on_tasks_completed=False)
    for seed in (11, 12):
        ep = run_episode(env, seed=seed, order=(task,))
        assert ep["success"][task], (task, seed)
        assert ep["rewards"].sum() == 1.0
        if task == "kettle":
            assert kettle_final_pose_ok(ep["final_qpos"])
        assert len(ep["actions"]) < 200
    env.close()
