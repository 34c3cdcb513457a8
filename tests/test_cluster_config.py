"""The cluster launch files pass Ray's own autoscaler schema, and the image pins what pyproject.toml says.

Validation is the part of `ray up` that needs no cloud credentials: the
provider's defaults are merged in (`prepare_config`), then the result is
checked against `ray/autoscaler/ray-schema.json` (`validate_config`).
"""

from __future__ import annotations

import copy
import re
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"


def _load(name: str) -> dict:
    return yaml.safe_load((DOCKER / name).read_text())


def _prepared(name: str) -> dict:
    """What `ray up` validates: the YAML merged with the provider's defaults."""
    config = prepare_config(copy.deepcopy(_load(name)))
    validate_config(config)
    return config


def _dockerfile_args() -> dict[str, str]:
    """``ARG NAME=value`` defaults of docker/Dockerfile (quotes stripped)."""
    args = {}
    for m in re.finditer(r"^ARG\s+(\w+)=(.*)$", (DOCKER / "Dockerfile").read_text(), re.M):
        args[m.group(1)] = m.group(2).strip().strip('"')
    return args


def _tag_versions(tag: str) -> tuple[str, str, str]:
    """``2.60.0-py311-cpu`` -> (ray "2.60.0", python "3.11", variant "cpu")."""
    m = re.fullmatch(r"(\d+\.\d+\.\d+)-py(\d)(\d+)-(cpu|gpu)", tag)
    assert m, f"unexpected image tag {tag!r}"
    return m.group(1), f"{m.group(2)}.{m.group(3)}", m.group(4)


def _pyproject_requirements() -> dict[str, Requirement]:
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return {Requirement(r).name: Requirement(r) for r in meta["dependencies"]}


def test_aws_cluster_passes_ray_schema_with_cpu_workers_and_gpu_learner():
    config = _prepared("cluster_aws.yaml")
    types = config["available_node_types"]
    assert config["head_node_type"] == "head" and set(types) == {"head", "cpu_worker", "gpu_learner"}
    assert types["cpu_worker"]["max_workers"] > types["cpu_worker"]["min_workers"] == 0  # autoscaling
    assert types["gpu_learner"]["min_workers"] == 0  # only when a trial asks for a GPU
    assert config["max_workers"] >= types["cpu_worker"]["max_workers"] + types["gpu_learner"]["max_workers"]
    # CPU image for head/workers, the GPU variant for the learner node, both of the Dockerfile's Ray/Python.
    ray_v, py_v, _ = _tag_versions(_dockerfile_args()["RAY_IMAGE_TAG"])
    cpu_tag = config["docker"]["image"].rsplit(":", 1)[1]
    gpu_tag = types["gpu_learner"]["docker"]["worker_image"].rsplit(":", 1)[1]
    assert _tag_versions(cpu_tag) == (ray_v, py_v, "cpu")
    assert _tag_versions(gpu_tag) == (ray_v, py_v, "gpu")
    # Shared storage mounted into every container at the same path.
    assert "--volume /mnt/efs:/mnt/efs" in config["docker"]["run_options"]
    assert any("/mnt/efs" in c and "mount" in c for c in config["initialization_commands"])
    assert "--dashboard-host=0.0.0.0" in " ".join(config["head_start_ray_commands"])


def test_local_cluster_passes_ray_schema_with_placeholder_ips():
    raw = _load("cluster_local.yaml")
    config = _prepared("cluster_local.yaml")
    ips = raw["provider"]["worker_ips"]
    assert raw["provider"]["head_ip"] and len(ips) >= 1
    (node_type,) = config["available_node_types"].values()
    assert node_type["min_workers"] == node_type["max_workers"] == len(ips)  # a fixed set of machines
    assert config["docker"]["image"] and config["docker"]["container_name"]
    assert any(o.startswith("--volume ") for o in config["docker"]["run_options"])


def test_schema_check_is_not_vacuous():
    """A typo in a node type and a head type that does not exist are rejected."""
    config = prepare_config(copy.deepcopy(_load("cluster_aws.yaml")))
    bad = copy.deepcopy(config)
    bad["available_node_types"]["cpu_worker"]["max_worker"] = 3
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(bad)
    bad = copy.deepcopy(config)
    bad["head_node_type"] = "no_such_type"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(bad)


def test_dockerfile_pins_agree_with_pyproject():
    args = _dockerfile_args()
    reqs = _pyproject_requirements()
    ray_v, py_v, variant = _tag_versions(args["RAY_IMAGE_TAG"])
    assert variant == "cpu"  # the default build is the CPU image
    # Ray: the base image's version is allowed by pyproject (pip keeps the image's Ray) and is
    # the Ray running here (client and cluster must run the same Ray).
    assert Version(ray_v) in reqs["ray"].specifier, (ray_v, str(reqs["ray"]))
    assert {"rllib", "tune"} <= reqs["ray"].extras
    assert ray.__version__ == ray_v
    # Python of the image satisfies requires-python.
    requires_python = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    assert Version(py_v) in SpecifierSet(requires_python)
    # torch: the pinned wheel is in pyproject's range and is the version the README pins.
    assert Version(args["TORCH_VERSION"]) in reqs["torch"].specifier
    assert f'torch=={args["TORCH_VERSION"]}' in (REPO / "README.md").read_text()
    assert args["TORCH_INDEX_URL"].endswith("/cpu")
    # MuJoCo: the same bound (the kitchen breaks on mujoco >= 3.12).
    assert Requirement(args["MUJOCO_SPEC"]).specifier == reqs["mujoco"].specifier
    # Headless GL libraries and the MuJoCo backend switch.
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"apt-get install .*libosmesa6.*libegl1.*libgl1", text)
    assert "ENV MUJOCO_GL=${MUJOCO_GL}" in text and args["MUJOCO_GL"] in {"osmesa", "egl"}
    assert re.search(r"pip install --no-cache-dir \.(\s|$)", text)  # the project itself


def test_run_prints_where_to_watch_it():
    """`python -m spirl_ray.run` prints the dashboard URL (or why there is none) and the TensorBoard command."""
    from spirl_ray.run import monitoring_lines

    cluster = monitoring_lines("10.0.0.5:8265", True, "/mnt/efs/spirl-runs/kitchen/tune")
    assert cluster[0].startswith("Ray dashboard: http://10.0.0.5:8265") and "ray dashboard <cluster yaml>" in cluster[0]
    assert cluster[1] == "TensorBoard: tensorboard --logdir /mnt/efs/spirl-runs/kitchen/tune"
    assert monitoring_lines("127.0.0.1:8265", False, "t")[0] == "Ray dashboard: http://127.0.0.1:8265"
    assert monitoring_lines("", False, "t")[0].startswith("Ray dashboard: not running")
