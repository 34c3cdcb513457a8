"""SPiRL on a two-node Ray cluster (``ray.cluster_utils.Cluster``, one CPU per node on this machine):
EnvRunners on both nodes, and a worker node lost mid-run.

Each test prints its before/after numbers (``pytest -s`` shows them).
"""

from __future__ import annotations

import time

import pytest
import ray
from ray.cluster_utils import Cluster


import fault_toy
from toy_skill_env import save_toy_skill_model

NODE_MEMORY = 3 * 10**8  # object store per node, bytes


@pytest.fixture(scope="module")
def cluster():
    """Head + one worker node, 1 CPU each: two 1-CPU EnvRunners can only run one per node."""
    c = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 1, "object_store_memory": NODE_MEMORY, "include_dashboard": False},
    )
    try:
        c.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
        c.wait_for_nodes()
        ray.init(address=c.address)
        fault_toy.register()
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def skill_model_path(tmp_path_factory):
    return save_toy_skill_model(tmp_path_factory.mktemp("skills") / "skills.pt")


def _config(path: str):
    # one CPU per runner: the two runners cannot share a 1-CPU node
    return fault_toy.spirl_config(path, cpus_per_runner=1, fragment=10, probe_timeout_s=0.5)


@pytest.fixture(scope="module")
def algo(cluster, skill_model_path):
    """One SPiRL algorithm for both tests (building one takes ~15 s here); its 2 runners start one per node."""
    a = _config(skill_model_path).build_algo()
    yield a
    a.stop()


def _steps(result) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def _worker_nodes(c: Cluster) -> list:
    return [n for n in c.list_all_nodes() if n is not c.head_node]


def test_env_runners_on_both_nodes_and_both_sample(cluster, algo):
    head_id = cluster.head_node.node_id
    (worker,) = _worker_nodes(cluster)
    for _ in range(2):
        result = algo.train()
    stats = fault_toy.remote_runner_stats(algo)
    per_node = {}
    for s in stats.values():
        per_node[s["node"]] = per_node.get(s["node"], 0) + s["steps"]
    print(
        f"\n[two nodes] high-level steps per node: head {per_node.get(head_id)}, worker {per_node.get(worker.node_id)}; "
        f"algorithm total {_steps(result)}"
    )
    assert set(per_node) == {head_id, worker.node_id}
    assert all(n > 0 for n in per_node.values()), per_node
    # Every sampled step came from one of the two runners, and all of them reached the learner.
    assert sum(per_node.values()) == _steps(result)
    assert result["num_gradient_updates_lifetime"] > 0


def test_worker_node_lost_mid_run_the_run_finishes_and_a_new_node_is_used(cluster, algo):
    head_id = cluster.head_node.node_id
    (worker,) = _worker_nodes(cluster)
    result = algo.train()
    t0 = time.monotonic()
    result = algo.train()
    secs_before = time.monotonic() - t0
    steps_before = _steps(result)
    budget = steps_before + 90  # high-level steps the run still has to sample
    assert {s["node"] for s in fault_toy.remote_runner_stats(algo).values()} == {head_id, worker.node_id}

    cluster.remove_node(worker)  # the node and its EnvRunner are gone (e.g. a spot instance reclaimed)
    history, t0 = [], time.monotonic()
    while _steps(result) < budget:
        assert len(history) < 20, history
        result = algo.train()  # must not raise
        history.append(_steps(result))
    secs_after = (time.monotonic() - t0) / len(history)
    survivors = fault_toy.remote_runner_stats(algo)
    print(
        f"\n[node lost] steps before removal {steps_before} -> {history} (budget {budget} reached); "
        f"healthy runners {algo.env_runner_group.num_healthy_remote_workers()}; "
        f"s per iteration {secs_before:.2f} before, {secs_after:.2f} after"
    )
    assert history == sorted(set(history)) and history[0] > steps_before
    assert [s["node"] for s in survivors.values()] == [head_id]

    # A replacement node joins (as the autoscaler would start one): the lost runner comes back there.
    new_node = cluster.add_node(num_cpus=1, object_store_memory=NODE_MEMORY)
    cluster.wait_for_nodes()
    restored, t0 = None, time.monotonic()
    while time.monotonic() - t0 < 120:
        result = algo.train()
        stats = fault_toy.remote_runner_stats(algo)
        if len(stats) == 2 and all(s["steps"] > 0 for s in stats.values()):
            restored = stats
            break
    print(
        f"[node lost] replacement node joined: runners on "
        f"{sorted('head' if s['node'] == head_id else 'new node' for s in (restored or {}).values())} "
        f"after {time.monotonic() - t0:.1f} s; steps {_steps(result)}; "
        f"restarts {result['fault_tolerance']['num_remote_worker_restarts']}"
    )
    assert restored is not None, "the lost EnvRunner did not come back on the new node within 120 s"
    assert {s["node"] for s in restored.values()} == {head_id, new_node.node_id}
