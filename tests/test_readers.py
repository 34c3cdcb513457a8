"""Readers: D4RL flat hdf5 and Minari episode hdf5, state layouts, validation errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from spirl_ray.data.readers import (
    DatasetError,
    read_d4rl_hdf5,
    read_dataset,
    read_minari,
)


def write_d4rl(path, obs, act, terminals=None, timeouts=None, extra=True):
    with h5py.File(path, "w") as f:
        if obs is not None:
            f["observations"] = obs
        if act is not None:
            f["actions"] = act
        if terminals is not None:
            f["terminals"] = terminals
        if timeouts is not None:
            f["timeouts"] = timeouts
        if extra and obs is not None:
            f["rewards"] = np.zeros(len(obs), np.float32)
            f.create_group("infos")["qpos"] = np.zeros((len(obs), 2))
            f.create_group("metadata").attrs["algorithm"] = "test"
    return path


def write_minari(root, episodes, dict_obs=True):
    """episodes: list of (obs (T+1, D), act (T, A)). Returns the dataset directory."""
    ds = root / "kitchen" / "mixed-v2"
    (ds / "data").mkdir(parents=True)
    (ds / "metadata.json").write_text("{}")
    with h5py.File(ds / "data" / "main_data.hdf5", "w") as f:
        # write out of order to check sorting by integer index
        for i in reversed(range(len(episodes))):
            obs, act = episodes[i]
            g = f.create_group(f"episode_{i}")
            if dict_obs:
                og = g.create_group("observations")
                og["observation"] = obs
                og.create_group("achieved_goal")["kettle"] = np.zeros((len(obs), 7))
                og.create_group("desired_goal")["kettle"] = np.zeros((len(obs), 7))
            else:
                g["observations"] = obs
            g["actions"] = act
            g["rewards"] = np.zeros(len(act))
            g["terminations"] = np.zeros(len(act), bool)
            g["truncations"] = np.zeros(len(act), bool)
    return ds


# ---------------------------------------------------------------- D4RL round trips


def test_d4rl_split_terminals_and_timeouts(tmp_path):
    n = 12
    obs = np.arange(n * 3, dtype=np.float32).reshape(n, 3)
    act = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
    term = np.zeros(n, bool)
    tout = np.zeros(n, bool)
    term[3] = True  # episode 0: rows 0..3
    tout[7] = True  # episode 1: rows 4..7; trailing 8..11 unterminated → episode 2
    p = write_d4rl(tmp_path / "d.hdf5", obs, act, term, tout)
    eps = read_d4rl_hdf5(p)
    assert [len(e) for e in eps] == [4, 4, 4]
    np.testing.assert_array_equal(eps[1].observations, obs[4:8])
    np.testing.assert_array_equal(eps[2].actions, act[8:12])
    assert eps[0].observations.dtype == np.float32 and eps[0].actions.dtype == np.float32
    # auto detection picks d4rl for a flat file
    assert [len(e) for e in read_dataset(p)] == [4, 4, 4]


def test_d4rl_terminal_at_end_gives_no_empty_episode(tmp_path):
    term = np.array([0, 1, 0, 0, 1], bool)
    p = write_d4rl(tmp_path / "d.hdf5", np.zeros((5, 2)), np.zeros((5, 1)), term)
    assert [len(e) for e in read_d4rl_hdf5(p)] == [2, 3]


def test_d4rl_kitchen_60_to_d4rl30(tmp_path):
    n = 6
    obs = np.random.default_rng(0).normal(size=(n, 60)).astype(np.float32)
    p = write_d4rl(tmp_path / "kitchen.hdf5", obs, np.zeros((n, 9)), np.eye(1, n, n - 1, dtype=bool)[0])
    eps = read_d4rl_hdf5(p, obs_dim=30, act_dim=9, state_layout="d4rl30")
    assert len(eps) == 1
    np.testing.assert_array_equal(eps[0].observations, obs[:, :30])
    with pytest.raises(DatasetError, match="full59"):
        read_d4rl_hdf5(p, state_layout="full59")


def test_v1_59_to_d4rl30_columns(tmp_path):
    n = 5
    # column j holds value j so we can read off which columns were picked
    obs = np.tile(np.arange(59, dtype=np.float32), (n, 1))
    p = write_d4rl(tmp_path / "v1.hdf5", obs, np.zeros((n, 9)), np.zeros(n, bool))
    eps = read_d4rl_hdf5(p, state_layout="d4rl30")
    expect = list(range(0, 9)) + list(range(18, 39))
    assert eps[0].observations.shape == (n, 30)
    np.testing.assert_array_equal(eps[0].observations[0], np.array(expect, np.float32))
    # full59 keeps everything
    np.testing.assert_array_equal(read_d4rl_hdf5(p, state_layout="full59")[0].observations, obs)


# ---------------------------------------------------------------- Minari round trip


@pytest.mark.parametrize("dict_obs", [True, False])
def test_minari_round_trip(tmp_path, dict_obs):
    rng = np.random.default_rng(1)
    lens = [5, 8, 3]
    episodes = [(rng.normal(size=(t + 1, 59)), rng.normal(size=(t, 9))) for t in lens]
    ds = write_minari(tmp_path, episodes, dict_obs=dict_obs)
    for target in (ds, ds / "data" / "main_data.hdf5"):
        eps = read_dataset(target)  # auto → minari
        assert [len(e) for e in eps] == lens  # sorted by index, final obs dropped
        for e, (o, a) in zip(eps, episodes):
            assert e.observations.shape == (len(a), 59)
            np.testing.assert_allclose(e.observations, o[:-1].astype(np.float32))
            np.testing.assert_allclose(e.actions, a.astype(np.float32))
    eps30 = read_minari(ds, obs_dim=30, act_dim=9, state_layout="d4rl30")
    np.testing.assert_allclose(
        eps30[1].observations,
        np.concatenate([episodes[1][0][:-1, 0:9], episodes[1][0][:-1, 18:39]], 1).astype(np.float32),
    )


def test_minari_sorts_numerically(tmp_path):
    episodes = [(np.full((3, 2), i, float), np.full((2, 1), i, float)) for i in range(12)]
    ds = write_minari(tmp_path, episodes, dict_obs=False)
    eps = read_minari(ds)
    assert [int(e.actions[0, 0]) for e in eps] == list(range(12))  # not 0,1,10,11,2,...


def test_minari_length_mismatch(tmp_path):
    ds = write_minari(tmp_path, [(np.zeros((4, 3)), np.zeros((4, 2)))])  # obs should be T+1
    with pytest.raises(DatasetError, match=r"main_data\.hdf5.*episode_0/observations"):
        read_minari(ds)


def test_minari_missing_actions(tmp_path):
    ds = write_minari(tmp_path, [(np.zeros((4, 3)), np.zeros((3, 2)))])
    with h5py.File(ds / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/actions"]
    with pytest.raises(DatasetError, match=r"main_data\.hdf5.*episode_0/actions"):
        read_minari(ds)


def test_minari_no_episodes(tmp_path):
    p = tmp_path / "main_data.hdf5"
    with h5py.File(p, "w") as f:
        f.create_group("something_else")
    with pytest.raises(DatasetError, match="main_data.hdf5.*episode"):
        read_minari(p)


# ---------------------------------------------------------------- validation errors


def test_missing_key(tmp_path):
    p = write_d4rl(tmp_path / "noact.hdf5", np.zeros((4, 3)), None, np.zeros(4, bool))
    with pytest.raises(DatasetError) as ei:
        read_d4rl_hdf5(p)
    assert "noact.hdf5" in str(ei.value) and "'actions'" in str(ei.value)


def test_missing_terminals(tmp_path):
    p = write_d4rl(tmp_path / "noterm.hdf5", np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(DatasetError, match=r"noterm\.hdf5.*'terminals'"):
        read_d4rl_hdf5(p)


def test_length_mismatch(tmp_path):
    p = write_d4rl(tmp_path / "mm.hdf5", np.zeros((5, 3)), np.zeros((4, 2)), np.zeros(5, bool))
    with pytest.raises(DatasetError, match=r"mm\.hdf5.*'observations'.*5.*'actions'.*4"):
        read_d4rl_hdf5(p)


@pytest.mark.parametrize(
    "kw,key",
    [
        (dict(obs_dim=30), "observations"),
        (dict(act_dim=7), "actions"),
        (dict(state_layout="d4rl30"), "observations"),  # 12-d cannot map to d4rl30
    ],
)
def test_wrong_dims(tmp_path, kw, key):
    p = write_d4rl(tmp_path / "dims.hdf5", np.zeros((4, 12)), np.zeros((4, 9)), np.zeros(4, bool))
    with pytest.raises(DatasetError) as ei:
        read_d4rl_hdf5(p, **kw)
    msg = str(ei.value)
    assert "dims.hdf5" in msg and f"'{key}'" in msg and "expect" in msg


def test_obs_dim_checked_after_layout(tmp_path):
    p = write_d4rl(tmp_path / "k.hdf5", np.zeros((4, 60)), np.zeros((4, 9)), np.zeros(4, bool))
    with pytest.raises(DatasetError, match=r"k\.hdf5.*'observations'.*30.*obs_dim=60"):
        read_d4rl_hdf5(p, obs_dim=60, state_layout="d4rl30")


@pytest.mark.parametrize("bad,word", [(np.nan, "NaN"), (np.inf, "inf")])
@pytest.mark.parametrize("key", ["observations", "actions"])
def test_non_finite(tmp_path, bad, word, key):
    obs, act = np.zeros((6, 3)), np.zeros((6, 2))
    arr = obs if key == "observations" else act
    arr[2, 1] = bad
    arr[4, 0] = bad
    p = write_d4rl(tmp_path / "bad.hdf5", obs, act, np.zeros(6, bool))
    with pytest.raises(DatasetError) as ei:
        read_d4rl_hdf5(p)
    msg = str(ei.value)
    assert "bad.hdf5" in msg and f"'{key}'" in msg and f"2 {word}" in msg


def test_non_finite_in_minari(tmp_path):
    obs = np.zeros((5, 59))
    obs[1, 3] = np.nan
    ds = write_minari(tmp_path, [(np.zeros((3, 59)), np.zeros((2, 9))), (obs, np.zeros((4, 9)))])
    with pytest.raises(DatasetError, match=r"main_data\.hdf5.*episode_1/observations/observation.*1 NaN"):
        read_minari(ds, state_layout="full59")


def test_empty_file_zero_rows(tmp_path):
    p = write_d4rl(tmp_path / "empty.hdf5", np.zeros((0, 3)), np.zeros((0, 2)), np.zeros(0, bool))
    with pytest.raises(DatasetError, match=r"empty\.hdf5.*'observations'.*0 rows"):
        read_d4rl_hdf5(p)


def test_hdf5_without_any_keys(tmp_path):
    p = tmp_path / "nothing.hdf5"
    h5py.File(p, "w").close()
    with pytest.raises(DatasetError, match=r"nothing\.hdf5.*'observations'"):
        read_dataset(p)


def test_garbage_file(tmp_path):
    p = tmp_path / "garbage.hdf5"
    p.write_bytes(b"this is not an hdf5 file" * 100)
    for fn in (read_d4rl_hdf5, read_minari, read_dataset):
        with pytest.raises(DatasetError, match=r"garbage\.hdf5.*not an hdf5"):
            fn(p)


def test_truncated_hdf5(tmp_path):
    good = write_d4rl(tmp_path / "good.hdf5", np.zeros((1000, 30)), np.zeros((1000, 9)), np.zeros(1000, bool))
    p = tmp_path / "trunc.hdf5"
    p.write_bytes(good.read_bytes()[:3000])
    with pytest.raises(DatasetError, match=r"trunc\.hdf5"):
        read_dataset(p)


def test_nonexistent_path(tmp_path):
    p = tmp_path / "nope" / "missing.hdf5"
    for fn in (read_d4rl_hdf5, read_minari, read_dataset):
        with pytest.raises(DatasetError, match=r"missing\.hdf5.*does not exist"):
            fn(p)


def test_unknown_format_and_layout(tmp_path):
    p = write_d4rl(tmp_path / "d.hdf5", np.zeros((4, 3)), np.zeros((4, 2)), np.zeros(4, bool))
    with pytest.raises(DatasetError, match="format"):
        read_dataset(p, fmt="parquet")
    with pytest.raises(DatasetError, match="state_layout"):
        read_dataset(p, state_layout="foo")


# ---------------------------------------------------------------- shapes from headers (preflight)

from spirl_ray.data.readers import read_dataset_spec  # noqa: E402


def test_spec_agrees_with_the_full_read_d4rl_with_images(tmp_path):
    n = 12
    path = write_d4rl(tmp_path / "d.hdf5", np.zeros((n, 60), np.float32), np.zeros((n, 9), np.float32),
                      timeouts=np.arange(n) % 4 == 3)
    with h5py.File(path, "a") as f:
        f["images"] = np.zeros((n, 2, 32, 32), np.uint8)
    spec = read_dataset_spec(path, state_layout="d4rl30")
    eps = read_dataset(path, state_layout="d4rl30")
    assert spec.format == "d4rl" and spec.steps == sum(len(e) for e in eps) == n
    assert (spec.obs_dim, spec.act_dim) == (eps[0].observations.shape[1], eps[0].actions.shape[1]) == (30, 9)
    assert spec.image_shape == eps[0].images.shape[1:] == (2, 32, 32) and spec.image_dtype == "uint8"
    assert read_dataset_spec(path, read_images=False).image_shape is None
    assert read_dataset_spec(path).obs_dim == 60  # no layout: as stored


def test_spec_agrees_with_the_full_read_minari(tmp_path):
    episodes = [(np.zeros((5, 59)), np.zeros((4, 9))), (np.zeros((3, 59)), np.zeros((2, 9)))]
    ds = write_minari(tmp_path, episodes, dict_obs=True)
    spec = read_dataset_spec(ds, state_layout="d4rl30")
    assert spec.format == "minari" and spec.file.name == "main_data.hdf5"
    assert (spec.steps, spec.obs_dim, spec.act_dim) == (6, 30, 9)
    assert spec.obs_key == "episode_0/observations/observation" and spec.image_shape is None


def test_spec_errors_name_file_and_key(tmp_path):
    n = 6
    bad_images = write_d4rl(tmp_path / "f.hdf5", np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32),
                            timeouts=np.ones(n, bool))
    with h5py.File(bad_images, "a") as f:
        f["images"] = np.zeros((n, 2, 32, 32), np.float32)
    with pytest.raises(DatasetError, match=r"f\.hdf5: key 'images' has dtype float32, expected uint8"):
        read_dataset_spec(bad_images)
    no_images = write_d4rl(tmp_path / "g.hdf5", np.zeros((n, 4), np.float32), np.zeros((n, 2), np.float32),
                           timeouts=np.ones(n, bool))
    with pytest.raises(DatasetError, match=r"g\.hdf5: missing key 'images'"):
        read_dataset_spec(no_images, read_images=True)
    with pytest.raises(DatasetError, match=r"key 'observations' has dim 4; state_layout 'd4rl30' expects"):
        read_dataset_spec(no_images, state_layout="d4rl30")
    short = write_d4rl(tmp_path / "h.hdf5", np.zeros((n, 4), np.float32), np.zeros((n - 1, 2), np.float32),
                       timeouts=np.ones(n, bool))
    with pytest.raises(DatasetError, match="length mismatch"):
        read_dataset_spec(short)
    mixed = write_minari(tmp_path, [(np.zeros((3, 4)), np.zeros((2, 2))), (np.zeros((3, 4)), np.zeros((2, 3)))],
                         dict_obs=False)
    with pytest.raises(DatasetError, match=r"episode_1/observations' / 'episode_1/actions' have dims \(4, 3\)"):
        read_dataset_spec(mixed)
