"""The parallel kitchen collector writes a valid, deterministic D4RL-layout file."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from spirl_ray.data.collect_kitchen import collect_kitchen_dataset, episode_seed, random_episode_mask
from spirl_ray.data.scripted.kitchen_primitives import RPL_SUBTASK_ORDER, SCRIPTED_SUBTASKS, sample_subtask_order
from spirl_ray.envs.kitchen import KITCHEN_SUBTASKS, PAPER_TARGET_TASKS

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, object_store_memory=10**9, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _read(path):
    with h5py.File(path, "r") as f:
        data = {k: f[k][()] for k in ("observations", "actions", "rewards", "terminals", "timeouts")}
        data["flags"] = f["infos/subtasks_completed"][()]
        data["episode_id"] = f["infos/episode_id"][()]
        data["order"] = f["metadata/subtask_order"][()]
        data["names"] = [n.decode() if isinstance(n, bytes) else n for n in f["metadata/subtask_names"][()]]
        data["attrs"] = dict(f["metadata"].attrs)
        data["random"] = f["metadata/random_episode"][()]
    return data


def test_tiny_collection_is_valid_and_deterministic(local_ray, tmp_path):
    p1, p2 = tmp_path / "a.hdf5", tmp_path / "b.hdf5"
    s1 = collect_kitchen_dataset(p1, num_episodes=4, seed=7, num_workers=2, show_progress=False, chunk_size=1)
    s2 = collect_kitchen_dataset(p2, num_episodes=4, seed=7, num_workers=1, show_progress=False, chunk_size=4)
    a, b = _read(p1), _read(p2)
    n = len(a["actions"])
    assert a["observations"].shape == (n, 30) and a["observations"].dtype == np.float32
    assert a["actions"].shape == (n, 9) and a["actions"].dtype == np.float32
    assert a["rewards"].shape == (n,) and a["terminals"].dtype == bool and not a["terminals"].any()
    assert np.all(np.abs(a["actions"]) <= 1.0)
    assert a["names"] == list(KITCHEN_SUBTASKS) and a["attrs"]["state_layout"] == "d4rl30"
    # episode boundaries: one timeout per episode, at the last step of each episode id
    ends = np.flatnonzero(a["timeouts"])
    assert len(ends) == 4 and ends[-1] == n - 1
    np.testing.assert_array_equal(a["episode_id"][ends], np.arange(4))
    changes = np.flatnonzero(np.diff(a["episode_id"])) 
    np.testing.assert_array_equal(changes, ends[:-1])
    # episodes start at the (near-deterministic) reset state
    starts = np.concatenate([[0], ends[:-1] + 1])
    assert np.abs(a["observations"][starts] - a["observations"][0]).max() < 0.05
    # rewards count newly completed scripted subtasks; flags are cumulative
    assert a["order"].shape == (4, 4)
    for e, (s, t) in enumerate(zip(starts, ends)):
        flags = a["flags"][s : t + 1]
        assert np.all(flags[1:] >= flags[:-1])
        scripted = [KITCHEN_SUBTASKS[i] for i in a["order"][e]]
        assert tuple(scripted) != PAPER_TARGET_TASKS
        assert a["rewards"][s : t + 1].sum() == flags[-1][a["order"][e]].sum()
    # obs_t / a_t pairs: the next observation differs after an action
    assert np.abs(a["observations"][1] - a["observations"][0]).max() > 0
    # same seed -> identical arrays regardless of worker count / chunking
    for k in ("observations", "actions", "rewards", "timeouts", "flags", "episode_id", "order"):
        np.testing.assert_array_equal(a[k], b[k])
    assert s1["total_steps"] == n == s2["total_steps"]
    summary = json.loads((tmp_path / "a.hdf5.summary.json").read_text())
    assert summary["episodes"] == 4 and set(summary["per_subtask"]) == set(KITCHEN_SUBTASKS)
    attempts = sum(v["attempts"] for v in summary["per_subtask"].values())
    assert attempts == 16
    assert summary["mean_episode_length"] == pytest.approx(n / 4)


def test_random_action_fraction(local_ray, tmp_path):
    p = tmp_path / "r.hdf5"
    s = collect_kitchen_dataset(p, num_episodes=2, seed=1, num_workers=2, show_progress=False, random_action_fraction=0.5)
    d = _read(p)
    assert d["random"].sum() == 1 and s["random_episodes"] == 1
    r = int(np.flatnonzero(d["random"])[0])
    assert np.all(d["order"][r] == -1)


def test_seeding_helpers():
    assert episode_seed(0, 1) == episode_seed(0, 1) != episode_seed(0, 2) != episode_seed(1, 2)
    m = random_episode_mask(10, 0.3, seed=0)
    assert m.sum() == 3 and np.array_equal(m, random_episode_mask(10, 0.3, seed=0))
    with pytest.raises(ValueError):
        random_episode_mask(10, 1.5, seed=0)
    rng = np.random.default_rng(0)
    orders = [sample_subtask_order(rng) for _ in range(400)]
    assert all(o != PAPER_TARGET_TASKS and len(set(o)) == 4 for o in orders)
    for t in PAPER_TARGET_TASKS:  # every target subtask appears often and in every position
        assert sum(t in o for o in orders) > 150
        assert all(any(o[i] == t for o in orders) for i in range(4))


def test_rpl_order_is_kitchen_mixed_structure():
    """rule 'rpl': every 4-subset of the scripted subtasks except those holding all four targets, each in the
    human demos' order; target pairs and triples do occur (microwave -> kettle -> bottom burner)."""
    rng = np.random.default_rng(0)
    orders = [sample_subtask_order(rng, rule="rpl") for _ in range(1000)]
    rank = {t: i for i, t in enumerate(RPL_SUBTASK_ORDER)}
    assert all(list(o) == sorted(o, key=rank.__getitem__) and len(set(o)) == 4 for o in orders)
    assert not any(set(PAPER_TARGET_TASKS) <= set(o) for o in orders)
    assert len(set(orders)) == 15 - 1  # C(6, 4) sets of the 6 scripted subtasks minus the one holding the target
    assert set().union(*orders) == set(SCRIPTED_SUBTASKS)
    assert ("microwave", "kettle", "top burner", "bottom burner") in orders
    firsts = [o[0] for o in orders]
    assert firsts.count("microwave") > firsts.count("kettle") > firsts.count("top burner") > 0
    # the default rule is unchanged: any position, so the target order's reverse pairs occur too
    random_orders = [sample_subtask_order(np.random.default_rng(i)) for i in range(300)]
    assert any(o.index("kettle") < o.index("microwave") for o in random_orders if {"kettle", "microwave"} <= set(o))
    with pytest.raises(ValueError, match="subtask order rule must be one of"):
        sample_subtask_order(rng, rule="sorted")
