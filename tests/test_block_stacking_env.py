"""Block-stacking env (SPiRL appendix C): spaces, rewards on constructed scenes, renderer, scripted policy."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from spirl_ray.data.scripted.stacking_policy import StackingNoise, run_episode
from spirl_ray.envs.block_stacking import (
    BLOCK_HALF,
    GROUND_TOL,
    LIFT_REWARD,
    ON_TOP_REWARD,
    STACK_Z_TOL,
    TOWER_REWARD_PER_METRE,
    BlockStackingEnv,
    make_block_stacking_env,
    make_data_collection_env,
    reward_terms,
    scene_predicates,
    stack_frames,
)
from spirl_ray.envs.block_stacking_render import rasterise

H = BLOCK_HALF
PER_BLOCK_TOWER = TOWER_REWARD_PER_METRE * 2 * H  # 4.0


def _ground(*xs):
    return np.array([[x, H] for x in xs], dtype=float)


# ----------------------------------------------------------------------------- spaces / API


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"num_blocks": 5, "initial_layout": "random"}, {"num_blocks": 5, "obs_mode": "image", "reward_type": "sparse"}],
)
def test_env_passes_gymnasium_checker(kwargs):
    env = make_block_stacking_env(**kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # infinite Box bounds of the state vector
        check_env(env, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    if env.obs_mode == "state":
        assert obs.shape == (5 + 4 * env.num_blocks,) and obs.dtype == np.float32
    else:
        assert obs.shape == (6, 32, 32) and obs.dtype == np.uint8  # channel-first (C, H, W)
    assert {"stacked_blocks", "max_stacked_blocks", "tower_height", "reward_lift", "reward_on_top",
            "reward_tower"} <= set(info)


def test_variants_and_truncation():
    down = make_block_stacking_env()
    assert down.num_blocks == 11 and down.max_episode_steps == 1000 and down.table_width == pytest.approx(2.4)
    data = make_data_collection_env()
    assert data.num_blocks == 5 and data.max_episode_steps is None and data.initial_layout == "random"
    env = make_block_stacking_env(num_blocks=5, max_episode_steps=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(3, np.float32))[2:4] for _ in range(3)]
    assert flags == [(False, False), (False, False), (False, True)]


def test_reset_is_seeded_and_random_layout_varies():
    env = make_data_collection_env()
    a, _ = env.reset(seed=3)
    b, _ = env.reset(seed=3)
    c, _ = env.reset(seed=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # the random layout stacks blocks in some episodes and scatters them in others
    stacked = [env.reset(seed=s)[1]["stacked_blocks"] for s in range(20)]
    assert min(stacked) == 0 and max(stacked) >= 1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_blocks": 0}, "num_blocks"),
        ({"initial_layout": "tower"}, "initial_layout"),
        ({"obs_mode": "rgb"}, "obs_mode"),
        ({"reward_type": "shaped"}, "reward_type"),
        ({"max_episode_steps": 0}, "max_episode_steps"),
        ({"image_size": 2}, "image_size"),
        ({"render_mode": "human"}, "render_mode"),
        ({"num_blocks": 11, "table_width": 1.2}, "table_width"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BlockStackingEnv(**kwargs)


def test_bad_action_raises():
    env = make_block_stacking_env(num_blocks=2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action"):
        env.step(np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan, 0.0, 1.0]))


# ----------------------------------------------------------------------------- rewards (appendix C)


def test_reward_terms_on_constructed_scenes():
    # all blocks on the table: nothing lifted, no tower
    r = reward_terms(_ground(-0.4, 0.0, 0.4))
    assert r["reward"] == 0.0 and r["stacked_blocks"] == 0 and r["tower_height"] == 1

    # lifted exactly when the centre is more than GROUND_TOL above its resting height
    b = _ground(-0.4, 0.0, 0.4)
    b[0, 1] = H + GROUND_TOL - 1e-3
    assert reward_terms(b)["reward_lift"] == 0.0
    b[0, 1] = H + GROUND_TOL + 1e-3
    r = reward_terms(b)
    assert r["reward_lift"] == LIFT_REWARD and r["reward_on_top"] == 0.0 and r["reward"] == LIFT_REWARD

    # a lifted block held above another block (not touching): lift + on-top, no tower
    b = _ground(-0.4, 0.0, 0.4)
    b[0] = (0.0 + H - 1e-3, 0.3)
    r = reward_terms(b)
    assert (r["reward_lift"], r["reward_on_top"], r["reward_tower"]) == (LIFT_REWARD, ON_TOP_REWARD, 0.0)
    assert r["stacked_blocks"] == 0
    b[0, 0] = 0.0 + H + 1e-3  # its centre no longer over the other block's top face
    assert reward_terms(b)["reward_on_top"] == 0.0

    # placed on top: lift + on-top + tower (one stacked block = 8 cm)
    b = _ground(-0.4, 0.0, 0.4)
    b[0] = (0.01, 3 * H)
    r = reward_terms(b)
    assert r["stacked_blocks"] == 1 and r["tower_height"] == 2
    assert r["reward"] == pytest.approx(LIFT_REWARD + ON_TOP_REWARD + PER_BLOCK_TOWER)
    assert r["reward_tower"] == pytest.approx(TOWER_REWARD_PER_METRE * 0.08)

    # a tower of three: two stacked blocks; the sparse reward is the tower term alone
    b = np.array([[0.0, H], [0.0, 3 * H], [0.005, 5 * H], [0.4, H]])
    dense, sparse = reward_terms(b), reward_terms(b, "sparse")
    assert dense["stacked_blocks"] == 2 and dense["tower_height"] == 3
    assert dense["reward"] == pytest.approx(2 * LIFT_REWARD + 2 * ON_TOP_REWARD + 2 * PER_BLOCK_TOWER)
    assert sparse["reward"] == pytest.approx(2 * PER_BLOCK_TOWER) and sparse["reward_lift"] == 0.0

    # resting tolerance: a block hovering just beyond STACK_Z_TOL above a tower does not count
    b[2, 1] = 5 * H + STACK_Z_TOL + 1e-3
    r = reward_terms(b)
    assert r["stacked_blocks"] == 1 and r["num_on_top"] == 2

    # the highest tower wins; a block floating in the air is no tower
    pr = scene_predicates(np.array([[0.0, H], [0.0, 3 * H], [0.4, H], [0.4, 0.5]]))
    assert pr["level"].tolist() == [0, 1, 0, -1] and pr["stacked_blocks"] == 1

    with pytest.raises(ValueError, match="reward_type"):
        reward_terms(b, "shaped")
    with pytest.raises(ValueError, match="block_xz"):
        reward_terms(np.zeros(3))


def test_rewards_fire_in_simulation():
    """Grasp and lift a block with the real physics, then place it on another one."""
    env = make_block_stacking_env(num_blocks=2, max_episode_steps=None)
    _, info = env.reset(seed=0, options={"block_xz": _ground(-0.2, 0.2), "gripper_xz": (-0.2, 0.3)})
    assert info["stacked_blocks"] == 0
    step = lambda dx, dz, op: env.step(np.array([dx, dz, op], np.float32))  # noqa: E731

    def go(x, z, op, n=60):
        for _ in range(n):
            e = (np.array([x, z]) - env.gripper_xz) / 0.03
            r, info = step(*np.clip(0.8 * e, -0.7, 0.7), op)[1::3]
            if np.abs(e).max() < 0.15:
                break
        return r, info

    r, info = go(-0.2, H, 1.0)  # down around block 0, fingers open
    assert r == 0.0 and info["num_lifted"] == 0
    for _ in range(5):
        r, info = step(0, 0, 0.0)[1::3]  # close
    assert abs(env.finger_half_gap - H) < 0.006  # fingers stopped by the block
    r, info = go(-0.2, 0.35, 0.0)  # lift: per-step lift reward while in the air
    assert env.block_xz[0, 1] > 0.25
    assert (info["num_lifted"], info["num_on_top"], r) == (1, 0, LIFT_REWARD)
    r, info = go(0.2, 0.35, 0.0)  # carry over block 1: on-top reward
    assert (info["num_on_top"], r) == (1, LIFT_REWARD + ON_TOP_REWARD)
    go(0.2, 3 * H + 0.008, 0.0)  # lower onto it and let go
    for _ in range(5):
        r, info = step(0, 0, 1.0)[1::3]
    r, info = go(0.2, 0.35, 1.0)
    assert info["stacked_blocks"] == 1 and info["max_stacked_blocks"] == 1
    assert r == pytest.approx(LIFT_REWARD + ON_TOP_REWARD + PER_BLOCK_TOWER)


def test_tall_tower_stands():
    """An 11-block tower with 1-2.5 cm offsets between blocks stays up for 10 s (250 env steps)."""
    env = make_block_stacking_env(max_episode_steps=None)
    offs = [0.0, 0.02, 0.0, -0.02, 0.0, 0.025, 0.0, -0.025, 0.0, 0.02, 0.0]
    tower = np.array([[x, H * (2 * i + 1)] for i, x in enumerate(offs)])
    _, info = env.reset(seed=0, options={"block_xz": tower, "gripper_xz": (0.8, 0.5)})
    assert info["stacked_blocks"] == 10
    for _ in range(250):
        _, r, _, _, info = env.step(np.array([0.0, 0.0, 1.0], np.float32))
    assert info["stacked_blocks"] == 10 and np.abs(env.block_angle).max() < 0.05
    assert r == pytest.approx(10 * (LIFT_REWARD + ON_TOP_REWARD + PER_BLOCK_TOWER))


# ----------------------------------------------------------------------------- renderer


def test_rasteriser_exact_pixels():
    # one rectangle covering the left half of a 1 m x 1 m window; 4 px wide image
    img = rasterise(np.array([[-0.25, 0.0, 0.25, 0.5, 0.0]]), np.array([[200, 10, 20]], np.uint8),
                    center=(0.0, 0.0), extent=(1.0, 1.0), size=(4, 4), background=(0, 0, 0), supersample=4)
    assert img.shape == (4, 4, 3) and img.dtype == np.uint8
    assert (img[:, :2] == [200, 10, 20]).all() and (img[:, 2:] == 0).all()
    # an edge through the middle of a pixel covers half its samples -> mean colour (rounded half up)
    img = rasterise(np.array([[-0.375, 0.0, 0.25, 0.5, 0.0]]), np.array([[201, 10, 20]], np.uint8),
                    center=(0.0, 0.0), extent=(1.0, 1.0), size=(4, 4), supersample=4)
    assert (img[:, 0] == [201, 10, 20]).all() and (img[:, 1] == [101, 5, 10]).all() and (img[:, 2:] == 0).all()
    # a square rotated by 45 degrees covers its inscribed diamond: centre painted, corners not
    img = rasterise(np.array([[0.0, 0.0, 0.35, 0.35, np.pi / 4]]), np.array([[255, 255, 255]], np.uint8),
                    center=(0.0, 0.0), extent=(1.0, 1.0), size=(8, 8), supersample=1)
    assert img[3, 3].max() == 255 and img[0, 0].max() == 0 and img[7, 7].max() == 0
    with pytest.raises(ValueError, match="rects"):
        rasterise(np.zeros((2, 4)), np.zeros((2, 3), np.uint8), (0, 0), (1, 1), (4, 4))
    with pytest.raises(ValueError, match="supersample"):
        rasterise(np.zeros((1, 5)), np.zeros((1, 3), np.uint8), (0, 0), (1, 1), (4, 4), supersample=0)


def test_rendered_frames_shape_dtype_determinism_and_frame_stack():
    a, b = make_data_collection_env(), make_data_collection_env()
    a.reset(seed=5)
    b.reset(seed=5)
    fa, fb = a.render_frame(), b.render_frame()
    assert fa.shape == (32, 32, 3) and fa.dtype == np.uint8
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(fa, a.render_frame())
    assert len(np.unique(fa.reshape(-1, 3), axis=0)) > 3  # background, table, gripper, blocks...
    # the view follows the gripper: moving it 5 cm shifts the blocks in the frame by 2 px
    a.set_state((0.0, 0.2), _ground(-0.2, 0.0, 0.2, 0.4, -0.4))
    f0 = a.render_frame()
    a.set_state((0.05, 0.2), _ground(-0.2, 0.0, 0.2, 0.4, -0.4))
    f1 = a.render_frame()
    assert not np.array_equal(f0, f1)
    # rows below z = 5 cm (blocks, table; the gripper stays centred) shift by exactly 2 px
    np.testing.assert_array_equal(f1[16:, :-2], f0[16:, 2:])

    img_env = make_data_collection_env(obs_mode="image", render_mode="rgb_array")
    obs0, _ = img_env.reset(seed=5)
    assert obs0.shape == (6, 32, 32) and obs0.dtype == np.uint8 and obs0.flags.c_contiguous
    assert img_env.observation_space.shape == (6, 32, 32) and img_env.observation_space.dtype == np.uint8
    np.testing.assert_array_equal(obs0[:3].transpose(1, 2, 0), fa)  # channels 0-2 = R, G, B of frame t-1
    np.testing.assert_array_equal(obs0[3:].transpose(1, 2, 0), fa)
    obs1 = img_env.step(np.array([1.0, 0.0, 1.0], np.float32))[0]
    np.testing.assert_array_equal(obs1[:3], obs0[3:])  # previous frame first
    np.testing.assert_array_equal(obs1[3:].transpose(1, 2, 0), img_env.render_frame())
    np.testing.assert_array_equal(stack_frames(None, fa), obs0)
    with pytest.raises(ValueError, match="frames"):
        stack_frames(fa, fa[:16])
    scene = img_env.render()
    assert scene.ndim == 3 and scene.shape[1] > scene.shape[0] and scene.dtype == np.uint8


# ----------------------------------------------------------------------------- scripted policy


def test_scripted_policy_stacks_blocks():
    """Over 10 seeded episodes: >= 2 successful stacks in most (measured 10/10 for seeds 0-9)."""
    env = make_data_collection_env()
    eps = [run_episode(env, seed=s) for s in range(10)]
    successes = np.array([e["stats"]["successes"] for e in eps])
    attempts = sum(e["stats"]["attempts"] for e in eps)
    rate = float((successes >= 2).mean())
    print(f"scripted stacking: >=2 stacks in {rate:.0%} of 10 episodes, mean {successes.mean():.2f} stacks, "
          f"{successes.sum()}/{attempts} attempts succeeded, mean length {np.mean([len(e['actions']) for e in eps]):.0f}")
    assert rate >= 0.8
    assert successes.sum() >= 0.9 * attempts
    assert np.mean([e["max_stacked"] for e in eps]) >= 2.0
    for e in eps:
        t = len(e["actions"])
        assert e["observations"].shape == (t, 25) and e["actions"].shape == (t, 3) and e["rewards"].shape == (t,)
        assert np.all(e["actions"][:, :2] >= -1) and np.all(e["actions"][:, :2] <= 1)
        assert np.all(e["actions"][:, 2] >= 0) and np.all(e["actions"][:, 2] <= 1)
    # deterministic per seed
    again = run_episode(env, seed=3)
    np.testing.assert_array_equal(again["actions"], eps[3]["actions"])
    np.testing.assert_array_equal(again["observations"], eps[3]["observations"])


def test_random_action_episode_and_noise_validation():
    env = make_data_collection_env()
    ep = run_episode(env, seed=0, random_actions=True, random_length=(20, 21), render_images=True)
    assert len(ep["actions"]) == 20 and ep["images"].shape == (20, 6, 32, 32) and ep["stats"]["planned"] == 0
    with pytest.raises(ValueError, match="stacks_probs"):
        StackingNoise(stacks_probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="speed_range"):
        StackingNoise(speed_range=(0.0, 1.0))
    with pytest.raises(ValueError, match="obs_mode"):
        run_episode(make_data_collection_env(obs_mode="image"), seed=0)


def test_recorded_images_are_the_image_envs_observations():
    """Data and RL see the same bytes: a scripted episode's ``images`` replay in an image env exactly."""
    ep = run_episode(make_data_collection_env(), seed=2, max_steps=40, render_images=True)
    env = make_data_collection_env(obs_mode="image")
    rng = np.random.default_rng(2)  # run_episode seeds the reset with the episode rng's first draw
    obs, _ = env.reset(seed=int(rng.integers(2**31)))
    for t, action in enumerate(ep["actions"]):
        np.testing.assert_array_equal(obs, ep["images"][t])
        obs = env.step(action)[0]
