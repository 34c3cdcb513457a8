"""Experiment config: the shipped YAMLs validate; bad input gives one clear message."""

from pathlib import Path

import pytest

from spirl_ray.experiments.config import ConfigError, load_config

CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("tune_configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path):
    cfg = load_config(path)
    mc = cfg.skill_model_config(obs_dim=30, action_dim=9)
    assert mc.horizon >= 1 and cfg.rl.env_steps > 0


def test_shipped_configs_exist():
    assert {"kitchen.yaml", "kitchen_quick.yaml"} <= {p.name for p in CONFIGS}


def test_paper_budget_config_matches_appendix_b():
    cfg = load_config(Path(__file__).resolve().parents[1] / "tune_configs" / "kitchen.yaml")
    mc = cfg.skill_model_config(30, 9)
    assert (mc.horizon, mc.latent_dim, mc.beta) == (10, 10, 5e-4)
    rl = cfg.rl
    assert (rl.env_steps, rl.target_divergence, rl.batch_size, rl.lr, rl.gamma, rl.tau) == (1_500_000, 5.0, 256, 3e-4, 0.99, 5e-3)
    assert (rl.replay_capacity, rl.warmup_env_steps) == (1_000_000, 5000)
    assert cfg.env.tasks_to_complete == ["microwave", "kettle", "bottom burner", "light switch"]
    assert cfg.env.max_episode_steps == 280


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_lists_valid_keys(tmp_path):
    p = _write(tmp_path, "name: x\nrl:\n  target_divergnce: 3\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "c.yaml" in msg and "rl.target_divergnce: unknown key" in msg and "target_divergence" in msg


def test_unknown_skill_model_key(tmp_path):
    with pytest.raises(ConfigError, match="skill_model"):
        load_config(_write(tmp_path, "name: x\nskill_model:\n  horizn: 3\n"))


def test_bad_value_and_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="env.scoring"):
        load_config(_write(tmp_path, "name: x\nenv:\n  scoring: sometimes\n"))
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [x\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_overrides(tmp_path):
    cfg = load_config(_write(tmp_path, "name: x\n"), {"rl.env_steps": 123, "skill_model.horizon": 3})
    assert cfg.rl.env_steps == 123 and cfg.skill_model_config(4, 2).horizon == 3


def test_collected_dataset_name_follows_collect_settings(tmp_path):
    a = load_config(_write(tmp_path, "name: x\ndata: {collect: {episodes: 10}}\n"))
    b = load_config(_write(tmp_path, "name: x\ndata: {collect: {episodes: 20}}\n"))
    c = load_config(_write(tmp_path, "name: x\ndata: {path: /some/file.hdf5}\n"))
    assert a.dataset_path != b.dataset_path and "10ep" in a.dataset_path.name
    assert str(c.dataset_path) == "/some/file.hdf5"


def test_kitchen_subtask_order_names_its_own_dataset_and_only_applies_to_kitchen(tmp_path):
    a = load_config(_write(tmp_path, "name: x\nenv: {name: kitchen}\n"))
    b = load_config(_write(tmp_path, "name: x\nenv: {name: kitchen}\ndata: {collect: {subtask_order: rpl}}\n"))
    assert a.dataset_path.name == "scripted_kitchen_600ep_seed0_d4rl30.hdf5"  # unchanged: old files still hit
    assert b.dataset_path.name == "scripted_kitchen_600ep_seed0_d4rl30_rplorder.hdf5"
    assert "subtask_order" not in a.model_dump()["data"]["collect"]
    assert b.model_dump()["data"]["collect"]["subtask_order"] == "rpl"
    with pytest.raises(ConfigError, match="subtask_order"):
        load_config(_write(tmp_path, "name: x\nenv: {name: maze}\ndata: {collect: {subtask_order: rpl}}\n"))
    with pytest.raises(ConfigError, match="subtask_order"):
        load_config(_write(tmp_path, "name: x\nenv: {name: kitchen}\ndata: {collect: {subtask_order: sorted}}\n"))


def test_block_stacking_step_noise_names_its_own_dataset_and_reaches_the_script(tmp_path, monkeypatch):
    import spirl_ray.envs.families.block_stacking as family_module
    from spirl_ray.data.scripted.stacking_policy import StackingNoise

    a = load_config(_write(tmp_path, "name: x\nenv: {name: block_stacking}\n"))
    b = load_config(_write(tmp_path, "name: x\nenv: {name: block_stacking}\ndata: {collect: {step_noise_scale: 0.5}}\n"))
    assert a.dataset_path.name == "scripted_block_stacking_600ep_seed0_image.hdf5"  # unchanged: old files still hit
    assert b.dataset_path.name == "scripted_block_stacking_600ep_seed0_image_stepnoise0.5.hdf5"
    assert "step_noise_scale" not in a.model_dump()["data"]["collect"]
    assert b.model_dump()["data"]["collect"]["step_noise_scale"] == 0.5

    seen = {}

    def fake_collector(path, **kw):
        seen.update(kw)
        return {"stacks_per_episode": {"mean": None}, "stacked_blocks": {"scripted_max_mean": None},
                "total_steps": 0, "mean_episode_length": 0.0, "wall_time_s": 0.0}

    monkeypatch.setattr(family_module, "load_entry_point", lambda _: fake_collector)
    b.env.collect(b.data.collect, tmp_path / "d.hdf5", show_progress=False)
    default = StackingNoise()
    # the per-step noises scale; the episode-level randomisation (subgoals, jitter, speeds) does not
    assert (seen["noise"].action_noise, seen["noise"].opening_noise) == (default.action_noise * 0.5,
                                                                         default.opening_noise * 0.5)
    assert seen["noise"].subgoal_between_prob == default.subgoal_between_prob
    assert seen["noise"].place_jitter == default.place_jitter
    with pytest.raises(ConfigError, match="step_noise_scale"):
        load_config(_write(tmp_path, "name: x\nenv: {name: maze}\ndata: {collect: {step_noise_scale: 0}}\n"))
    with pytest.raises(ConfigError, match="step_noise_scale"):
        load_config(_write(tmp_path, "name: x\nenv: {name: block_stacking}\ndata: {collect: {step_noise_scale: -1}}\n"))


def test_yaml_syntax_error_names_file_line_and_column(tmp_path):
    p = _write(tmp_path, "name: x\nrl:\n  env_steps: 3\n   seeds: [1]\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value).startswith(f"config file {str(p)!r}, line 4, column 9: not valid YAML: mapping values")
    # an unclosed bracket: where the parser gave up and where the bracket opened
    with pytest.raises(ConfigError, match=r"line 3, column 6: not valid YAML: .* \(while parsing a flow sequence "
                                          r"at line 2, column 13\)"):
        load_config(_write(tmp_path, "name: x\nrl: {seeds: [1, 2\nname2: y\n"))


def test_unknown_kitchen_subtask_is_refused_with_the_closest_names(tmp_path):
    p = _write(tmp_path, "name: x\nenv:\n  tasks_to_complete: [microwave, light swich, kettle, kettle]\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "env.tasks_to_complete: unknown subtask 'light swich' (did you mean 'light switch'?)" in msg
    assert "repeated subtask(s) ['kettle']" in msg and "'hinge cabinet'" in msg  # the valid names are listed
    assert "Value error" not in msg
    with pytest.raises(ConfigError, match="env.tasks_to_complete: needs at least one subtask"):
        load_config(_write(tmp_path, "name: x\nenv: {tasks_to_complete: []}\n"))
    # a sweep arm's override is checked too
    with pytest.raises(ConfigError, match="(?s)variant 'a'.*unknown subtask 'kettel'"):
        load_config(_write(tmp_path, "name: x\nvariants:\n  - {name: a, set: {env.tasks_to_complete: [kettel]}}\n"))
    ok = load_config(_write(tmp_path, "name: x\nenv: {tasks_to_complete: [light switch, hinge cabinet]}\n"))
    assert ok.env.tasks_to_complete == ["light switch", "hinge cabinet"]


# rl options that are off by default: (env section, option, where the on value must land: the
# SPiRLConfig attribute and/or the RL module's model_config)
WIRED_RL_OPTIONS = [
    ("{name: maze, state: image}", "shared_image_encoder", ("algo", "module")),
    ("{name: maze, state: image}", "freeze_policy_encoder", ("algo", "module")),
    ("{name: maze, state: image}", "cache_prior_features", ("algo",)),
    ("{name: maze, state: image}", "critic_prior_encoder", ("algo", "module")),
    ("{name: kitchen}", "critic_layer_norm", ("module",)),
]


@pytest.mark.parametrize("env,option,targets", WIRED_RL_OPTIONS, ids=[o for _, o, _ in WIRED_RL_OPTIONS])
def test_rl_option_reaches_the_algorithm_and_serialises_only_when_set(tmp_path, env, option, targets):
    from spirl_ray.experiments.pipeline import build_algo_config

    off = load_config(_write(tmp_path, f"name: x\nenv: {env}\n"))
    on = load_config(_write(tmp_path, f"name: x\nenv: {env}\nrl: {{{option}: true, critic_layers: 4}}\n"))
    assert option not in off.model_dump()["rl"]  # resolved configs and pins of older runs unchanged
    assert on.model_dump()["rl"][option] is True
    fake = tmp_path / "skills.pt"  # not read: no validate()
    algo_off, algo_on = build_algo_config(off, fake), build_algo_config(on, fake)
    if "algo" in targets:
        assert (getattr(algo_off, option), getattr(algo_on, option)) == (False, True)
    if "module" in targets:
        inc_off, inc_on = algo_off._model_config_auto_includes, algo_on._model_config_auto_includes
        assert (inc_off.get(option, False), inc_on[option]) == (False, True)
        assert inc_on["critic_layers"] == 4  # the neighbouring field still arrives


def test_alpha_min_reaches_the_algorithm_and_serialises_only_when_set(tmp_path):
    from spirl_ray.experiments.pipeline import build_algo_config

    off = load_config(_write(tmp_path, "name: x\n"))
    on = load_config(_write(tmp_path, "name: x\nrl: {alpha_min: 0.25, initial_alpha: 0.5}\n"))
    assert "alpha_min" not in off.model_dump()["rl"]  # resolved configs and pins of older runs unchanged
    fake = tmp_path / "skills.pt"  # not read: no validate()
    algo_off, algo_on = build_algo_config(off, fake), build_algo_config(on, fake)
    assert (algo_off.alpha_min, algo_on.alpha_min, algo_on.initial_alpha) == (None, 0.25, 0.5)
    with pytest.raises(ConfigError, match="rl.alpha_min"):
        load_config(_write(tmp_path, "name: x\nrl: {alpha_min: 0}\n"))


@pytest.mark.parametrize("env,rl,match", [
    ("state", "freeze_policy_encoder: true", "freeze_policy_encoder.*image states only"),
    ("image", "method: sac, freeze_policy_encoder: true", "does not copy the prior"),
    ("state", "cache_prior_features: true", "cache_prior_features: image states only"),
    ("image", "method: prior_init_sac, cache_prior_features: true", "does not use the skill prior"),
    ("state", "critic_prior_encoder: true", "critic_prior_encoder: image states only"),
    ("image", "method: ssp, critic_prior_encoder: true", "critic_prior_encoder makes the critics read .* 'ssp' does not use"),
])
def test_image_options_are_refused_where_they_cannot_act(tmp_path, env, rl, match):
    with pytest.raises(ConfigError, match=match):
        load_config(_write(tmp_path, f"name: x\nenv: {{name: maze, state: {env}}}\nrl: {{{rl}}}\n"))


def test_trials_fit_is_checked_before_the_prior_exists_for_prior_only_image_options(tmp_path):
    """The pre-stage resource check sizes each arm as SAC; options that need the prior must not fail it."""
    from spirl_ray.experiments.config import load_config
    from spirl_ray.experiments.pipeline import check_trials_fit_before_offline_stages

    path = tmp_path / "maze.yaml"
    path.write_text(f"name: m\nstorage_path: {tmp_path}\nenv: {{name: maze, state: image}}\n"
                    "rl: {num_env_runners: 0, freeze_policy_encoder: true, cache_prior_features: true, "
                    "shared_image_encoder: true}\n")
    need = check_trials_fit_before_offline_stages(load_config(path))
    assert need is not None and need.get("CPU", 0) >= 1
