"""The parallel block-stacking collector writes a valid, deterministic D4RL-layout file the readers load."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spirl_ray.data.collect_block_stacking import collect_block_stacking_dataset, episode_seed, random_episode_mask
from spirl_ray.data.readers import read_dataset
from spirl_ray.envs.block_stacking import make_data_collection_env

ray = pytest.importorskip("ray")

KEYS = ("observations", "actions", "rewards", "terminals", "timeouts", "images", "infos/stacked_blocks",
        "infos/episode_id")


@pytest.fixture(scope="module")
def local_ray():
    # address="local": a fresh instance even when another job's Ray runs on this machine
    ray.init(address="local", num_cpus=2, object_store_memory=10**9, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _read(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in KEYS if k in f}
        data["meta"] = {k: f["metadata"][k][()] for k in f["metadata"]}
        data["attrs"] = dict(f["metadata"].attrs)
    return data


def test_tiny_collection_round_trip_and_determinism(local_ray, tmp_path):
    p1, p2 = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    kw = dict(num_episodes=4, seed=11, images=True, random_action_fraction=0.5, show_progress=False)
    s1 = collect_block_stacking_dataset(p1, num_workers=2, chunk_size=1, **kw)
    s2 = collect_block_stacking_dataset(p2, num_workers=1, chunk_size=4, **kw)
    a, b = _read(p1), _read(p2)
    n = len(a["actions"])
    assert a["observations"].shape == (n, 25) and a["observations"].dtype == np.float32
    assert a["actions"].shape == (n, 3) and a["actions"].dtype == np.float32
    assert a["images"].shape == (n, 6, 32, 32) and a["images"].dtype == np.uint8
    assert a["rewards"].shape == (n,) and not a["terminals"].any()
    assert np.all(a["actions"][:, :2] >= -1) and np.all(a["actions"][:, :2] <= 1)
    assert np.all(a["actions"][:, 2] >= 0) and np.all(a["actions"][:, 2] <= 1)
    # one timeout per episode, at the last step of each episode id; lengths match the metadata
    ends = np.flatnonzero(a["timeouts"])
    assert len(ends) == 4 and ends[-1] == n - 1
    np.testing.assert_array_equal(a["infos/episode_id"][ends], np.arange(4))
    np.testing.assert_array_equal(np.diff(np.concatenate([[-1], ends])), a["meta"]["episode_lengths"])
    assert a["meta"]["random_episode"].sum() == 2 and s1["random_episodes"] == 2
    # the first observation and image of each episode are the env's reset state for that episode
    env = make_data_collection_env()
    starts = np.concatenate([[0], ends[:-1] + 1])
    for e, s in enumerate(starts):
        rng = np.random.default_rng(episode_seed(11, e))
        obs, _ = env.reset(seed=int(rng.integers(2**31)))
        np.testing.assert_array_equal(a["observations"][s], obs)
        frame = env.render_frame().transpose(2, 0, 1)  # first image obs of an episode: frame 0 twice
        np.testing.assert_array_equal(a["images"][s], np.concatenate([frame, frame]))
    # the readers load it: same episodes, aligned observations/actions
    eps = read_dataset(p1, obs_dim=25, act_dim=3)
    assert [len(e) for e in eps] == a["meta"]["episode_lengths"].tolist()
    np.testing.assert_array_equal(np.concatenate([e.observations for e in eps]), a["observations"])
    np.testing.assert_array_equal(np.concatenate([e.actions for e in eps]), a["actions"])
    # same seed -> identical bytes regardless of worker count and chunking
    for k in KEYS:
        np.testing.assert_array_equal(a[k], b[k])
    assert s1["total_steps"] == n == s2["total_steps"]
    # summary: stacks per episode of the scripted episodes, also in the JSON beside the file
    summary = json.loads((tmp_path / "a.hdf5.summary.json").read_text())
    assert summary["episodes"] == 4 and summary["scripted_episodes"] == 2
    hist = summary["stacks_per_episode"]["histogram"]
    assert sum(hist.values()) == 2
    scripted = ~a["meta"]["random_episode"]
    assert summary["stacks_per_episode"]["mean"] == pytest.approx(a["meta"]["successful_stacks"][scripted].mean())
    assert a["attrs"]["num_blocks"] == 5 and a["attrs"]["images"]


def test_helpers_and_bad_arguments(tmp_path):
    assert episode_seed(0, 1) == episode_seed(0, 1) != episode_seed(0, 2) != episode_seed(1, 2)
    m = random_episode_mask(8, 0.75, seed=0)
    assert m.sum() == 6 and np.array_equal(m, random_episode_mask(8, 0.75, seed=0))
    assert not random_episode_mask(8, 0.0, seed=0).any()
    with pytest.raises(ValueError, match="random_action_fraction"):
        random_episode_mask(10, 1.5, seed=0)
    with pytest.raises(ValueError, match="num_episodes"):
        collect_block_stacking_dataset(tmp_path / "x.hdf5", num_episodes=0)
    with pytest.raises(ValueError, match="num_workers"):
        collect_block_stacking_dataset(tmp_path / "x.hdf5", num_episodes=2, num_workers=0)
    assert not (tmp_path / "x.hdf5").exists()
