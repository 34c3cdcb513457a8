"""The shipped YAMLs resolve, and key their cached priors, exactly as they did before env families existed.

``fixtures/config_pins.json`` was recorded from commit 24b8edd, before the env
families of issue 13 §1 (``spirl_ray/envs/families/``), with that commit's own
code: per YAML the text of ``config.resolved.yaml``; per sweep arm its env
section, env kwargs, collected-dataset name, the prior's data settings and
the prior cache key. A change of any of them would retrain every cached prior
or change what ``--resume`` compares, so they must stay as recorded. Deliberate
changes update the pin in the same commit: ``kitchen_cl.yaml`` collects its data
with ``data.collect.subtask_order: rpl`` (a new dataset name and resolved config) and
LayerNorm critics (``rl.critic_layer_norm``); ``maze.yaml`` and ``block_stacking.yaml``
keep the paper's 1e6 replay now that images stay uint8 in it (``rl.replay_capacity``).

The cache key is computed with the dataset's content hash replaced by a
constant (the data are not at hand here); the dims are those each family's
data have (:func:`_dims`, the table the recording used).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import spirl_ray.skills.train as train
from spirl_ray.experiments.config import load_config
from spirl_ray.experiments.methods import get_method
from spirl_ray.experiments.pipeline import offline_model_config, prior_data_settings

ROOT = Path(__file__).resolve().parents[1]
PINS = json.loads((Path(__file__).parent / "fixtures" / "config_pins.json").read_text())


def _dims(env: dict) -> tuple[int, int, tuple[int, int, int] | None]:
    """(obs_dim, act_dim, image_shape) of a family's data, as recorded."""
    if env["name"] == "kitchen":
        return {"d4rl30": 30, "full59": 59}[env["state_layout"]], 9, None
    if env["name"] == "maze":
        return (2048, 2, (2, 32, 32)) if env["state"] == "image" else (4, 2, None)
    return (6144, 3, (6, 32, 32)) if env["state"] == "image" else (25, 3, None)


def test_every_shipped_config_is_pinned():
    assert sorted(PINS) == sorted(p.name for p in (ROOT / "tune_configs").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(PINS))
def test_resolved_config_and_prior_cache_keys_unchanged(name, monkeypatch):
    monkeypatch.setattr(train, "dataset_content_sha256", lambda path: "0" * 64)
    cfg = load_config(ROOT / "tune_configs" / name)
    pinned = PINS[name]
    assert yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False) == pinned["resolved_yaml"]
    arms = cfg.variant_configs()
    assert sorted(a for a, _ in arms) == sorted(pinned["arms"])
    storage = Path(cfg.storage_path).expanduser().resolve()
    for arm, v in arms:
        want = pinned["arms"][arm]
        env = v.model_dump(mode="json")["env"]
        assert env == want["env"], arm
        assert json.loads(json.dumps(v.env.env_kwargs())) == want["env_kwargs"], arm
        assert str(v.dataset_path.relative_to(storage)) == want["dataset"], arm
        assert prior_data_settings(v) == want["data_settings"], arm
        assert v.env.image_states == want["image_states"], arm
        offline = get_method(v.rl.method).offline_model
        assert offline == want.get("offline_model"), arm
        if offline is None:
            continue
        obs_dim, act_dim, image_shape = _dims(env)
        model = offline_model_config(v, obs_dim, act_dim, image_shape, flat=offline == "flat")
        key = train.prior_cache_key("unused.hdf5", prior_data_settings(v), model, v.prior_training)
        assert key == want["prior_cache_key"], arm


def test_the_pin_can_fail(monkeypatch):
    """Control: a changed data setting or model field gives another key than the recorded one."""
    monkeypatch.setattr(train, "dataset_content_sha256", lambda path: "0" * 64)
    cfg = load_config(ROOT / "tune_configs" / "kitchen_quick.yaml")
    want = PINS["kitchen_quick.yaml"]["arms"]["spirl"]["prior_cache_key"]
    settings = prior_data_settings(cfg)
    model = offline_model_config(cfg, 30, 9)
    assert train.prior_cache_key("x", settings, model, cfg.prior_training) == want
    assert train.prior_cache_key("x", {**settings, "state_layout": None}, model, cfg.prior_training) != want
    assert train.prior_cache_key("x", settings, offline_model_config(cfg, 59, 9), cfg.prior_training) != want
