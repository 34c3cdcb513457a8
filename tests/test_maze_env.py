"""Maze env on gymnasium-robotics PointMaze: spaces, reward, success, images, checker; the scripted planner."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from spirl_ray.data.scripted.maze_planner import (
    PlannerNoise,
    WaypointController,
    plan_waypoints,
    run_planner_episode,
    sample_task,
)
from spirl_ray.envs.maze import GOAL_THRESHOLD, MazeEnv, make_maze_env
from spirl_ray.envs.maze_layout import bfs_distances, generate_layout
from spirl_ray.envs.maze_render import render_local_view


@pytest.fixture(scope="module")
def downstream():
    env = make_maze_env()
    yield env
    env.close()


def _check(env):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*infinity.*")
        check_env(env, skip_render_check=True)


def test_downstream_env_passes_checker_and_is_fixed(downstream):
    env = downstream
    _check(env)
    assert env.layout.interior_size == (20, 20)
    assert env.observation_space.shape == (4,) and env.observation_space.dtype == np.float32
    assert env.action_space.shape == (2,) and env.max_episode_steps == 2000
    assert bfs_distances(env.layout.walls, env.start_cell)[env.goal_cell] == 40
    # fixed task: same layout, start and goal from a fresh factory call
    other = make_maze_env()
    assert other.start_cell == env.start_cell and other.goal_cell == env.goal_cell
    np.testing.assert_array_equal(other.layout.walls, env.layout.walls)
    other.close()
    obs, info = env.reset(seed=3)
    start = env.layout.cell_to_xy(env.start_cell)
    assert np.abs(obs[:2] - start).max() <= 0.25 and (obs[2:] == 0).all()
    np.testing.assert_allclose(info["goal_xy"], env.layout.cell_to_xy(env.goal_cell))
    np.testing.assert_allclose(info["xy"], obs[:2], atol=1e-6)
    assert info["cell"] == env.start_cell and info["success"] is False
    obs2, *_ = env.step(np.array([1.0, 0.0], np.float32))
    assert obs2[2] > 0  # pushed +x


def test_sparse_reward_success_and_truncation():
    lay = generate_layout(5, 0)
    free = [tuple(c) for c in lay.free_cells()]
    env = MazeEnv(lay, start_cell=free[0], goal_cell=free[-1], max_episode_steps=30, start_noise=0.0)
    goal = env.layout.cell_to_xy(free[-1])
    # start right next to the goal: reward 1 per step at the goal, no termination by default
    _, info = env.reset(seed=0, options={"start_xy": goal + np.array([0.2, 0.0])})
    assert info["success"] and info["at_goal"]
    total = 0.0
    for t in range(30):
        _, r, term, trunc, info = env.step(np.zeros(2, np.float32))
        total += r
        assert not term and trunc == (t == 29)
    assert total == 30.0 and info["success"] and info["distance"] <= GOAL_THRESHOLD
    # far from the goal: 0 reward; terminate_on_success ends the episode on arrival
    env2 = MazeEnv(lay, start_cell=free[0], goal_cell=free[-1], terminate_on_success=True, start_noise=0.0)
    env2.reset(seed=0, options={"start_xy": goal + np.array([0.0, 0.6])})
    _, r, term, _, info = env2.step(np.zeros(2, np.float32))
    assert r == 0.0 and not term and not info["success"]
    for _ in range(100):
        _, r, term, _, info = env2.step(np.array([0.0, -0.5], np.float32))
        if term:
            break
    assert term and r == 1.0 and info["success"]
    env.close()
    env2.close()


def test_image_variant_matches_the_renderer():
    lay = generate_layout(10, 1)
    env = MazeEnv(lay, state="image", max_episode_steps=50)
    _check(env)
    assert env.observation_space.shape == (2, 32, 32) and env.observation_space.dtype == np.uint8
    obs, info = env.reset(seed=1)
    assert obs.dtype == np.uint8 and (obs[0] == obs[1]).all()
    np.testing.assert_array_equal(obs[1], render_local_view(lay.walls, info["xy"]))
    prev = obs[1]
    for _ in range(5):
        obs, _, _, _, info = env.step(np.array([0.5, 0.5], np.float32))
        np.testing.assert_array_equal(obs[0], prev)
        np.testing.assert_array_equal(obs[1], render_local_view(lay.walls, info["xy"]))
        prev = obs[1]
    env.close()


def test_point_maze_without_skybox_has_identical_physics():
    """The env compiles PointMaze without its skybox texture: same model arrays, bit-identical rollout."""
    import os

    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

    lay = generate_layout(6, 2)
    ours = MazeEnv(lay, max_episode_steps=None).base_env
    ref = PointMazeEnv(maze_map=lay.maze_map(), continuing_task=True, reset_target=False)
    os.remove(ref.tmp_xml_file_path)
    m1, m2 = ours.point_env.model, ref.point_env.model
    for name in ("geom_pos", "geom_size", "geom_contype", "geom_conaffinity", "geom_friction", "body_mass",
                 "dof_damping", "actuator_gear", "actuator_ctrlrange"):
        np.testing.assert_array_equal(getattr(m1, name), getattr(m2, name), err_msg=name)
    assert m1.opt.timestep == m2.opt.timestep and m1.ntex == m2.ntex - 1
    traj = []
    acts = np.random.default_rng(0).uniform(-1, 1, (300, 2))
    for e in (ours, ref):
        e.reset(seed=0, options={"goal_cell": np.array([1, 1]), "reset_cell": np.array([5, 4])})
        e.point_env.set_state(lay.cell_to_xy((5, 4)) + np.array([0.1, -0.2]), np.zeros(2))
        traj.append(np.array([e.step(a)[0]["observation"] for a in acts]))
    np.testing.assert_array_equal(traj[0], traj[1])
    assert np.ptp(traj[0][:, 0]) > 1.0  # it moved (and hit walls on the way)
    ref.close()


def test_bad_arguments_raise_value_error():
    lay = generate_layout(5, 0)
    with pytest.raises(ValueError, match="state"):
        MazeEnv(lay, state="rgb")
    with pytest.raises(ValueError, match="reward_type"):
        MazeEnv(lay, reward_type="shaped")
    with pytest.raises(ValueError, match="goal_cell"):
        MazeEnv(lay, start_cell=(1, 1), goal_cell=(0, 0))
    with pytest.raises(ValueError, match="size"):
        make_maze_env(size=3)
    with pytest.raises(ValueError, match="max_episode_steps"):
        MazeEnv(lay, max_episode_steps=0)


def test_reset_options_switch_layouts():
    env = MazeEnv(generate_layout(10, 0), max_episode_steps=None)
    new = generate_layout(10, 9)
    s, g = sample_task(new, np.random.default_rng(0))
    _, info = env.reset(seed=0, options={"layout": new, "start_cell": s, "goal_cell": g})
    assert env.layout is new and info["cell"] == s
    names = {env.base_env.point_env.model.geom(i).name for i in range(env.base_env.point_env.model.ngeom)}
    assert {n for n in names if n.startswith("block_")} == {f"block_{i}_{j}" for i, j in np.argwhere(new.walls)}
    with pytest.raises(ValueError, match="unknown reset option"):
        env.reset(options={"goal": (1, 1)})
    env.close()


def test_planner_reaches_goals_in_real_point_maze():
    """Scripted planner + controller on 8 fresh 10x10 layouts: all reach the goal without wall contact."""
    env = MazeEnv(generate_layout(10, 0), max_episode_steps=None)
    results = []
    for i in range(8):
        rng = np.random.default_rng(100 + i)
        ep = run_planner_episode(env, rng, layout=generate_layout(10, rng))
        results.append(ep)
        assert 20 <= ep["length"] <= 500
        assert ep["observations"].shape == (ep["length"], 4) and ep["actions"].shape == (ep["length"], 2)
        assert np.abs(ep["actions"]).max() <= 1.0
        d = bfs_distances(ep["walls"], ep["start_cell"])[ep["goal_cell"]]
        assert 2 <= d <= 15
    assert sum(e["success"] for e in results) == 8
    assert sum(e["collision_steps"] for e in results) == 0
    assert all(e["rewards"][-1] == 1.0 and e["rewards"][:-1].sum() == 0 for e in results)
    env.close()


def test_waypoints_follow_the_corners_and_noise_is_validated():
    lay = generate_layout(10, 5)
    s, g = sample_task(lay, np.random.default_rng(1), min_distance=6)
    wp = plan_waypoints(lay, lay.cell_to_xy(s), lay.cell_to_xy(g))
    np.testing.assert_allclose(wp[-1], lay.cell_to_xy(g))
    for p in wp:  # every waypoint at a free cell's centre
        assert lay.is_free(lay.xy_to_cell(p))
    ctrl = WaypointController(wp)
    a = ctrl.act(lay.cell_to_xy(s), np.zeros(2))
    assert a.shape == (2,) and np.abs(a).max() <= 1.0
    with pytest.raises(ValueError, match="waypoint_jitter"):
        PlannerNoise(waypoint_jitter=0.4)
    with pytest.raises(ValueError, match="speed_range"):
        PlannerNoise(speed_range=(1.0, 6.0))
