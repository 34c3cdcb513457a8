"""The maze collector writes a valid D4RL-layout file that read_dataset splits into its episodes."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spirl_ray.data.collect_maze import collect_maze_dataset, default_dataset_name, main
from spirl_ray.data.readers import read_dataset
from spirl_ray.envs.maze_render import render_local_view


def _read(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
        data["episode_id"] = f["infos/episode_id"][()]
        data["goal"] = f["infos/goal"][()]
        data["images"] = f["images"][()] if "images" in f else None
        m = f["metadata"]
        data.update({k: m[k][()] for k in ("layouts", "start_cells", "goal_cells", "episode_lengths", "success")})
        data["attrs"] = dict(m.attrs)
    return data


def test_state_dataset_round_trip_through_read_dataset(tmp_path):
    p = tmp_path / "maze.hdf5"
    s = collect_maze_dataset(p, num_episodes=4, seed=3, num_workers=1, show_progress=False)
    d = _read(p)
    n = len(d["actions"])
    assert d["observations"].shape == (n, 4) and d["observations"].dtype == np.float32
    assert d["actions"].shape == (n, 2) and np.abs(d["actions"]).max() <= 1.0
    assert d["images"] is None and d["attrs"]["state"] == "state"
    assert s["planner_success_rate"] == 1.0 and s["total_steps"] == n
    # successful episodes end in a terminal at their single rewarded step
    ends = np.flatnonzero(d["terminals"] | d["timeouts"])
    assert len(ends) == 4 and ends[-1] == n - 1 and d["terminals"][ends].all()
    np.testing.assert_array_equal(np.diff(np.concatenate([[-1], ends])), d["episode_lengths"])
    np.testing.assert_array_equal(d["rewards"][ends], 1.0)
    assert d["rewards"].sum() == 4
    assert all(20 <= L <= 500 for L in d["episode_lengths"])
    # each episode has its own layout; starts in its start cell, ends near its goal
    assert d["layouts"].shape == (4, 12, 12) and len({x.tobytes() for x in d["layouts"]}) == 4
    starts = np.concatenate([[0], ends[:-1] + 1])
    for e, (a, b) in enumerate(zip(starts, ends)):
        assert (d["episode_id"][a : b + 1] == e).all()
        walls = d["layouts"][e]
        R, C = walls.shape
        x, y = d["observations"][a, :2]
        assert (int(np.floor(R / 2 - y)), int(np.floor(x + C / 2))) == tuple(d["start_cells"][e])
        assert np.linalg.norm(d["observations"][b, :2] - d["goal"][b]) < 0.45 + 0.06  # last obs: one step before
    # the reader splits the file into the same episodes
    eps = read_dataset(p)
    assert [len(e) for e in eps] == d["episode_lengths"].tolist()
    np.testing.assert_array_equal(np.concatenate([e.observations for e in eps]), d["observations"])
    np.testing.assert_array_equal(np.concatenate([e.actions for e in eps]), d["actions"])
    summary = json.loads((tmp_path / "maze.hdf5.summary.json").read_text())
    assert summary["episodes"] == 4 and summary["episode_length"]["max"] <= 500


def test_image_dataset_parallel_equals_in_process(tmp_path):
    ray = pytest.importorskip("ray")
    p1, p2 = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    collect_maze_dataset(p1, num_episodes=3, seed=5, num_workers=1, state="image", show_progress=False)
    ray.init(address="local", num_cpus=2, object_store_memory=10**9, include_dashboard=False, log_to_driver=False)
    try:
        collect_maze_dataset(p2, num_episodes=3, seed=5, num_workers=2, state="image", show_progress=False,
                             chunk_size=1)
    finally:
        ray.shutdown()
    a, b = _read(p1), _read(p2)
    for k in ("observations", "actions", "rewards", "terminals", "timeouts", "episode_id", "images", "layouts"):
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    n = len(a["actions"])
    assert a["images"].shape == (n, 2, 32, 32) and a["images"].dtype == np.uint8
    # frames are the env's observation: current frame = view at the stored position,
    # previous frame = the step before's current frame (reset frame twice)
    walls = a["layouts"][0]
    L0 = int(a["episode_lengths"][0])
    for t in (0, 1, L0 // 2, L0 - 1):
        # stored positions are float32 (the env renders from float64): allow one grey level
        view = render_local_view(walls, a["observations"][t, :2].astype(np.float64)).astype(int)
        assert np.abs(a["images"][t, 1].astype(int) - view).max() <= 1, t
        if t > 0:
            np.testing.assert_array_equal(a["images"][t, 0], a["images"][t - 1, 1])
    assert (a["images"][0, 0] == a["images"][0, 1]).all()
    assert len(read_dataset(p1)) == 3  # observations/actions read as for the state variant


def test_cli_and_bad_arguments(tmp_path):
    out = tmp_path / default_dataset_name(2, 1)
    assert out.name == "scripted_maze_2ep_seed1_state.hdf5"
    s = main(["--out", str(out), "--episodes", "2", "--seed", "1", "--workers", "1", "--no-progress"])
    assert out.exists() and s["episodes"] == 2
    with pytest.raises(ValueError, match="state"):
        collect_maze_dataset(tmp_path / "x.hdf5", num_episodes=1, num_workers=1, state="rgb")
    with pytest.raises(ValueError, match="size"):
        collect_maze_dataset(tmp_path / "x.hdf5", num_episodes=1, num_workers=1, maze_size=3)
    with pytest.raises(ValueError, match="num_episodes"):
        collect_maze_dataset(tmp_path / "x.hdf5", num_episodes=0, num_workers=1)
    assert not (tmp_path / "x.hdf5").exists()
