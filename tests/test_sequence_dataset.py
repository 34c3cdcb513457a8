"""SequenceDataset: crop shapes, contiguity, state/action pairing, splits, determinism."""

from __future__ import annotations

import logging

import h5py
import numpy as np
import pytest
import torch

from spirl_ray.data.readers import DatasetError, EpisodeData
from spirl_ray.data.sequence_dataset import SequenceDataset, make_sequence_dataset, to_torch

H = 4


def make_episodes(lengths, obs_dim=3, act_dim=2):
    """Episode k: obs[t] = 1000*k + t in every column; action[t] = 1000*k + t + 0.5.

    Values identify (episode, step), so crops can be checked for contiguity, episode
    membership and state/action pairing.
    """
    eps = []
    for k, t in enumerate(lengths):
        base = 1000.0 * k + np.arange(t, dtype=np.float32)
        eps.append(EpisodeData(np.repeat(base[:, None], obs_dim, 1).astype(np.float32),
                               np.repeat(base[:, None] + 0.5, act_dim, 1).astype(np.float32)))
    return eps


def test_shapes_and_window_counts():
    lengths = [10, 7, 5, 12, 9]
    ds = SequenceDataset(make_episodes(lengths), H, val_fraction=0.2, seed=0)
    b = ds.sample(32)
    assert b["states"].shape == (32, H + 1, 3) and b["actions"].shape == (32, H, 2)
    assert b["states"].dtype == np.float32 and b["actions"].dtype == np.float32
    assert ds.obs_dim == 3 and ds.act_dim == 2
    assert ds.num_train_windows + ds.num_val_windows == sum(t - H for t in lengths)
    assert len(ds.val_episodes) == 1


def test_crops_contiguous_within_one_episode_and_paired():
    lengths = [5, 6, 9, 5, 30, 7]  # includes episodes with exactly one valid crop (T = H+1)
    ds = SequenceDataset(make_episodes(lengths), H, val_fraction=0.3, seed=3)
    for split in ("train", "val"):
        b = ds.sample(4000, split=split, rng=np.random.default_rng(0))
        s = b["states"][:, :, 0]
        a = b["actions"][:, :, 0]
        ep = s // 1000
        assert (ep == ep[:, :1]).all(), "crop crosses an episode boundary"
        np.testing.assert_array_equal(np.diff(s, axis=1), 1.0)  # consecutive steps
        np.testing.assert_array_equal(a, s[:, :H] + 0.5)  # states[:, t] pairs with actions[:, t]
        step = s % 1000
        t_len = np.array(lengths)[ep[:, 0].astype(int)]
        assert (step[:, -1] <= t_len - 1).all()
    # every valid start is reachable: the last step of each episode appears as a crop end
    b = ds.sample(20000, rng=np.random.default_rng(1))
    ends = set(map(float, b["states"][:, -1, 0]))
    for k in ds.train_episodes:
        assert 1000.0 * k + lengths[k] - 1 in ends
        assert 1000.0 * k + H in ends  # the first crop (start 0)


def test_train_val_disjoint_by_episode():
    lengths = [8] * 20
    ds = SequenceDataset(make_episodes(lengths), H, val_fraction=0.25, seed=7)
    assert len(ds.val_episodes) == 5
    assert set(ds.train_episodes).isdisjoint(ds.val_episodes)
    tr = set(np.unique(ds.sample(5000, "train")["states"][:, 0, 0] // 1000).astype(int))
    va = set()
    for b in ds.iterate_val(7):
        va |= set(np.unique(b["states"][:, 0, 0] // 1000).astype(int))
    assert tr.isdisjoint(va)
    assert va == set(ds.val_episodes.tolist())
    assert tr == set(ds.train_episodes.tolist())


def test_val_gets_one_episode_with_two():
    ds = SequenceDataset(make_episodes([8, 8]), H, val_fraction=0.01)
    assert len(ds.val_episodes) == 1 and len(ds.train_episodes) == 1
    one = SequenceDataset(make_episodes([8]), H)
    assert one.num_val_windows == 0
    with pytest.raises(DatasetError, match="val"):
        one.sample(2, split="val")


def test_deterministic_given_seed():
    eps = make_episodes([9, 11, 6, 14, 8, 10])
    a = SequenceDataset(eps, H, seed=5)
    b = SequenceDataset(eps, H, seed=5)
    np.testing.assert_array_equal(a.val_episodes, b.val_episodes)
    for _ in range(3):
        np.testing.assert_array_equal(a.sample(16)["states"], b.sample(16)["states"])
    r1 = a.sample(16, rng=np.random.default_rng(9))
    r2 = b.sample(16, rng=np.random.default_rng(9))
    np.testing.assert_array_equal(r1["actions"], r2["actions"])
    v1 = [x["states"] for x in a.iterate_val(3)]
    v2 = [x["states"] for x in a.iterate_val(3)]
    assert len(v1) > 0 and all(np.array_equal(x, y) for x, y in zip(v1, v2))
    c = SequenceDataset(make_episodes([8] * 30), H, seed=1)
    d = SequenceDataset(make_episodes([8] * 30), H, seed=2)
    assert not np.array_equal(c.val_episodes, d.val_episodes)


def test_iterate_val_covers_all_windows_once():
    ds = SequenceDataset(make_episodes([8] * 10), H, val_fraction=0.3, seed=0)
    firsts = np.concatenate([b["states"][:, 0, 0] for b in ds.iterate_val(4)])
    assert len(firsts) == ds.num_val_windows == len(np.unique(firsts))
    capped = list(ds.iterate_val(100, max_windows=5))
    assert sum(len(b["states"]) for b in capped) == 5


def test_short_episodes_dropped_with_warning(caplog):
    with caplog.at_level(logging.WARNING):
        ds = SequenceDataset(make_episodes([3, 10, 2, 9]), H, source="short.hdf5")
    assert ds.num_dropped_episodes == 2
    assert any("dropped 2" in r.getMessage() for r in caplog.records)
    assert ds.num_train_windows + ds.num_val_windows == (10 - H) + (9 - H)


def test_all_episodes_too_short(tmp_path):
    n = 12
    term = np.zeros(n, bool)
    term[[2, 6, 9]] = True  # lengths 3, 4, 3, 2 → longest 4 < H+1=5
    p = tmp_path / "tiny.hdf5"
    with h5py.File(p, "w") as f:
        f["observations"] = np.zeros((n, 3))
        f["actions"] = np.zeros((n, 2))
        f["terminals"] = term
    with pytest.raises(DatasetError) as ei:
        make_sequence_dataset(p, horizon=H)
    msg = str(ei.value)
    assert "tiny.hdf5" in msg and "H=4" in msg and "longest episode has 4 steps" in msg


def test_make_sequence_dataset_and_to_torch(tmp_path):
    lengths = [20, 15, 30]
    eps = make_episodes(lengths, obs_dim=60, act_dim=9)
    p = tmp_path / "kitchen.hdf5"
    with h5py.File(p, "w") as f:
        f["observations"] = np.concatenate([e.observations for e in eps])
        f["actions"] = np.concatenate([e.actions for e in eps])
        term = np.zeros(sum(lengths), bool)
        term[np.cumsum(lengths) - 1] = True
        f["terminals"] = term
    ds = make_sequence_dataset(p, horizon=10, state_layout="d4rl30", obs_dim=30, act_dim=9)
    assert ds.obs_dim == 30 and ds.act_dim == 9
    assert ds.num_train_windows + ds.num_val_windows == sum(t - 10 for t in lengths)
    tb = to_torch(ds.sample(8), "cpu")
    assert tb["states"].dtype == torch.float32 and tuple(tb["states"].shape) == (8, 11, 30)
    assert tuple(tb["actions"].shape) == (8, 10, 9)
