"""Env families (issue 13 §1): one module per family; config, callbacks and prior rollouts ask the family."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from spirl_ray.envs.families import FAMILIES, episode_metrics, get_family, load_entry_point
from spirl_ray.experiments.config import ConfigError, ExperimentConfig, load_config
from spirl_ray.rl.callbacks import SPiRLMetricsCallback


def test_registry_names_and_default():
    assert set(FAMILIES) == {"kitchen", "maze", "block_stacking", "gymnasium"}
    assert ExperimentConfig(name="x").env.name == "kitchen"
    assert ExperimentConfig(name="x", env={"scoring": "any_order"}).env.scoring == "any_order"  # no name: kitchen
    with pytest.raises(ValueError, match="unknown env 'mujoco'; expected one of"):
        get_family("mujoco")


def test_unknown_env_name_lists_the_families(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nenv: {name: kitchn}\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "env" in msg and "'kitchn'" in msg
    for name in FAMILIES:
        assert repr(name) in msg


def test_every_family_names_importable_entry_points():
    for name, cls in FAMILIES.items():
        assert callable(load_entry_point(cls.factory)), name
        if cls.collector is not None:
            assert callable(load_entry_point(cls.collector)), name


def test_entry_point_errors_say_what_is_wrong():
    with pytest.raises(ValueError, match="not an entry point of the form"):
        load_entry_point("no_colon")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg_x'"):
        load_entry_point("no_such_pkg_x:f")
    with pytest.raises(ValueError, match="has no attribute 'nope'"):
        load_entry_point("json:nope")


class _Logger:
    def __init__(self):
        self.values: dict[str, list[float]] = {}

    def log_value(self, key, value, **kw):
        self.values.setdefault(key, []).append(value)


class _Chunk:
    def __init__(self, infos):
        self._infos = infos

    def get_infos(self):
        return self._infos


def _episode_end(env_name, last_info):
    runner = SimpleNamespace(config=SimpleNamespace(num_env_runners=1, metrics_num_episodes_for_smoothing=10,
                                                    env_config={"env": env_name} if env_name else {}))
    logger = _Logger()
    SPiRLMetricsCallback().on_episode_end(episode=_Chunk([{}, {"env_steps": 3}, {"env_steps": 2, **last_info}]),
                                          env_runner=runner, metrics_logger=logger)
    return logger.values


def test_callback_logs_the_metrics_its_family_declares():
    info = {"success": True, "num_subtasks_completed": 2, "stacked_blocks": 3, "max_stacked_blocks": 4}
    kitchen = _episode_end("kitchen", info)
    assert kitchen["num_subtasks_completed_mean"] == [2.0] and kitchen["success_mean"] == [1.0]
    assert "stacked_blocks_mean" not in kitchen and kitchen["episode_env_steps_mean"] == [5]
    blocks = _episode_end("block_stacking", info)
    assert blocks["stacked_blocks_mean"] == [3.0] and blocks["max_stacked_blocks_mean"] == [4.0]
    assert "success_mean" not in blocks and "num_subtasks_completed_mean" not in blocks
    assert set(_episode_end("gymnasium", info)) == {"episode_env_steps_mean", "success_mean"}
    # an env_config without a family name (toy envs in tests): every built-in metric that is present
    assert set(_episode_end(None, info)) >= {"success_mean", "num_subtasks_completed_mean", "stacked_blocks_mean"}
    assert {m.info_key for m in episode_metrics("maze")} == {"success"}


def test_prior_rollout_summaries_come_from_the_family():
    report = {"mean_return": 1.5, "mean_subtasks": 0.6, "mean_any_subtasks": 0.9, "success_rate": 0.25,
              "mean_coverage": 0.3, "mean_stacked_blocks": 0.4, "mean_max_stacked_blocks": 0.8,
              "env_steps": 100, "episodes": 2}
    kitchen = ExperimentConfig(name="k", env={"scoring": "any_order"}).env
    assert kitchen.prior_rollout_summary(report).startswith("mean subtasks (any_order) 0.60, any of 7 0.90")
    assert "free cells visited 0.30" in get_family("maze")().prior_rollout_summary(report)
    assert get_family("block_stacking")().prior_rollout_summary(report).startswith("stacked blocks 0.40 at the end")
    gym_line = get_family("gymnasium")(id="CartPole-v1").prior_rollout_summary(report)
    assert gym_line == "success rate 0.25, mean return 1.50, 50 env steps per episode"


def test_family_checks_run_at_config_load(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("name: x\nenv: {name: maze}\ndata: {collect: {random_action_fraction: 0.5}}\n")
    with pytest.raises(ConfigError, match="maze planner collector has no random-action episodes"):
        load_config(p)
    p.write_text("name: x\ndata: {collect: {policy: 'my_pkg:act'}}\n")
    with pytest.raises(ConfigError, match="data.collect.policy: env.name 'kitchen' collects with its own scripted"):
        load_config(p)
