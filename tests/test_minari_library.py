"""Minari datasets written by the ``minari`` library are read through it; h5py only without it (issue 13 §2)."""

from __future__ import annotations

import builtins

import gymnasium as gym
import numpy as np
import pytest

from spirl_ray.data.readers import (
    DatasetError,
    describe_reader,
    minari_reader,
    read_dataset,
    read_dataset_spec,
)

minari = pytest.importorskip("minari")


def _write(tmp_path, monkeypatch, lengths=(4, 6), dict_obs=True, seed=0):
    """A Minari dataset made by minari.create_dataset_from_buffers; returns (dataset dir, raw episodes)."""
    from minari.data_collector import EpisodeBuffer

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    rng = np.random.default_rng(seed)
    box = lambda d: gym.spaces.Box(-10, 10, (d,), np.float32)  # noqa: E731
    obs_space = gym.spaces.Dict({"goal": box(2), "state": box(3)}) if dict_obs else box(3)
    raw, buffers = [], []
    for i, t in enumerate(lengths):
        if dict_obs:
            obs = {"goal": rng.normal(size=(t + 1, 2)).astype(np.float32),
                   "state": rng.normal(size=(t + 1, 3)).astype(np.float32)}
        else:
            obs = rng.normal(size=(t + 1, 3)).astype(np.float32)
        act = rng.uniform(-1, 1, size=(t, 2)).astype(np.float32)
        raw.append((obs, act))
        buffers.append(EpisodeBuffer(id=i, observations=obs, actions=act, rewards=np.zeros(t),
                                     terminations=np.zeros(t, bool), truncations=np.r_[np.zeros(t - 1, bool), True],
                                     infos={}))
    with pytest.warns(UserWarning):  # minari asks for author, permalink, ...
        minari.create_dataset_from_buffers("test/toy-v0", buffers, observation_space=obs_space,
                                           action_space=gym.spaces.Box(-1, 1, (2,), np.float32), algorithm_name="x")
    return tmp_path / "minari" / "test" / "toy-v0", raw


def test_library_reads_dict_observations_in_the_given_key_order(tmp_path, monkeypatch):
    ds, raw = _write(tmp_path, monkeypatch)
    kind, why = minari_reader(ds)
    assert kind == "minari" and why == f"the minari library {minari.__version__}"
    assert describe_reader(ds) == f"Minari dataset, read with the minari library {minari.__version__}"
    eps = read_dataset(ds, dict_keys=["state", "goal"])
    assert [len(e) for e in eps] == [4, 6]
    for e, (obs, act) in zip(eps, raw):
        np.testing.assert_array_equal(e.observations, np.concatenate([obs["state"], obs["goal"]], 1)[:-1])
        np.testing.assert_array_equal(e.actions, act)
    # None = every entry, sorted (gymnasium's Dict order): goal first
    np.testing.assert_array_equal(read_dataset(ds, dict_keys=None)[0].observations[:, :2], raw[0][0]["goal"][:-1])
    with pytest.raises(DatasetError, match=r"observation keys \['velocity'\] missing"):
        read_dataset(ds, dict_keys=["velocity"])


def test_spec_from_the_library_metadata(tmp_path, monkeypatch):
    ds, _ = _write(tmp_path, monkeypatch, lengths=(3, 5, 2))
    spec = read_dataset_spec(ds, dict_keys=["state"])
    assert (spec.format, spec.steps, spec.obs_dim, spec.act_dim) == ("minari", 10, 3, 2)
    assert spec.reader.startswith("the minari library")
    assert read_dataset_spec(ds, dict_keys=None).obs_dim == 5


def test_h5py_reads_the_same_arrays_when_minari_is_not_installed(tmp_path, monkeypatch):
    ds, _ = _write(tmp_path, monkeypatch, dict_obs=False)
    with_library = read_dataset(ds)
    real_import = builtins.__import__

    def no_minari(name, *a, **k):
        if name == "minari" or name.startswith("minari."):
            raise ImportError("No module named 'minari'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_minari)
    kind, why = minari_reader(ds)
    assert kind == "h5py" and "minari is not installed" in why
    without = read_dataset(ds)
    assert len(without) == len(with_library)
    for a, b in zip(without, with_library):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)


def test_hand_made_file_without_metadata_is_read_with_h5py_and_says_why(tmp_path):
    import h5py

    f = tmp_path / "ds" / "data" / "main_data.hdf5"
    f.parent.mkdir(parents=True)
    with h5py.File(f, "w") as h:
        h["episode_0/observations"] = np.zeros((3, 4), np.float32)
        h["episode_0/actions"] = np.zeros((2, 2), np.float32)
    kind, why = minari_reader(tmp_path / "ds")
    assert kind == "h5py" and "has no metadata.json" in why
    assert [len(e) for e in read_dataset(tmp_path / "ds")] == [2]
