"""Plot command on a fabricated Tune results folder."""

import json

import numpy as np
import pytest

from spirl_ray.experiments.plot import ENV_STEPS_KEY, aggregate, load_curves, main

M = "env_runners/num_subtasks_completed_mean"


def _trial(root, exp, name, xs, ys, method=None):
    """A Tune-like trial folder: nested result dicts, one JSON line per iteration."""
    d = root / exp / name
    d.mkdir(parents=True)
    with open(d / "result.json", "w") as f:
        for x, y in zip(xs, ys):
            f.write(json.dumps({"env_runners": {"env_steps_lifetime": x, "num_subtasks_completed_mean": y},
                                "config": {"lr": 1}, "other": 1}) + "\n")
    (d / "params.json").write_text(json.dumps({"method": method} if method else {}))


def test_mean_std_over_seeds_and_table(tmp_path, capsys):
    _trial(tmp_path, "spirl", "s0", [0, 100, 200], [0.0, 1.0, 2.0])
    _trial(tmp_path, "spirl", "s1", [0, 100, 200, 300], [0.0, 3.0, 4.0, 9.0])
    _trial(tmp_path, "sac", "s0", [0, 200], [0.0, 0.0], method="SAC")
    curves = load_curves([tmp_path])
    assert sorted({c.method for c in curves}) == ["SAC", "spirl"]
    agg = aggregate(curves, n_points=3)
    # spirl grid is cut at the shortest trial (200 env steps): at x=100 seeds give 1 and 3
    np.testing.assert_allclose(agg["spirl"]["x"], [0, 100, 200])
    np.testing.assert_allclose(agg["spirl"]["mean"], [0, 2, 3])
    np.testing.assert_allclose(agg["spirl"]["std"], [0, 1, 1])
    assert main([str(tmp_path), "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").stat().st_size > 1000
    table = (tmp_path / "c.md").read_text()
    assert "| spirl | 2 | 200 |" in table and "| SAC | 1 |" in table


def test_missing_metric_and_empty_dir(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_curves([tmp_path])
    _trial(tmp_path, "spirl", "s0", [0, 1], [0, 1])
    with pytest.raises(KeyError, match="no trial logged"):
        load_curves([tmp_path], metric="nope")


def test_metric_that_starts_late_is_read(tmp_path):
    """Learner metrics appear only after warm-up; rows without them are skipped, not fatal."""
    d = tmp_path / "spirl" / "t0"
    d.mkdir(parents=True)
    rows = [{"env_runners": {"env_steps_lifetime": 100}},
            {"env_runners": {"env_steps_lifetime": 200}, "learners": {"default_policy": {"alpha_value": 0.5}}},
            {"env_runners": {"env_steps_lifetime": 300}, "learners": {"default_policy": {"alpha_value": 0.7}}}]
    (d / "result.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (c,) = load_curves([tmp_path], metric="learners/default_policy/alpha_value")
    np.testing.assert_allclose(c.x, [200, 300])
    np.testing.assert_allclose(c.y, [0.5, 0.7])


def test_smoothing_is_a_trailing_mean_per_trial(tmp_path):
    _trial(tmp_path, "spirl", "s0", [0, 100, 200, 300], [0.0, 2.0, 0.0, 2.0])
    (c,) = load_curves([tmp_path])
    agg = aggregate([c], n_points=4, smoothing=2)
    np.testing.assert_allclose(agg["spirl"]["mean"], [0.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="window"):
        aggregate([c], smoothing=0)


def test_running_trial_with_half_written_last_row_is_plotted(tmp_path):
    """Tune appends result rows while a trial runs: a torn last line is skipped, a torn middle line is an error."""
    _trial(tmp_path, "spirl", "s0", [0, 100, 200], [0.0, 1.0, 2.0])
    f = tmp_path / "spirl" / "s0" / "result.json"
    with open(f, "a") as fh:
        fh.write('{"env_runners": {"env_steps_lif')
    (c,) = load_curves([tmp_path])
    np.testing.assert_allclose(c.x, [0, 100, 200])
    lines = f.read_text().splitlines()
    f.write_text("\n".join([lines[0], lines[1][:20], lines[2]]) + "\n")
    with pytest.raises(ValueError, match="line 2 is not a JSON result row"):
        load_curves([tmp_path])


def _eval_trial(root, name, rows):
    """A trial whose rows are (env steps, training value, evaluation value or None)."""
    d = root / name
    d.mkdir(parents=True)
    lines = []
    for x, y, ev in rows:
        r = {"env_runners": {"env_steps_lifetime": x, "num_subtasks_completed_mean": y}}
        if ev is not None:
            r["evaluation"] = {"env_runners": {"num_subtasks_completed_mean": ev}}
        lines.append(json.dumps(r))
    (d / "result.json").write_text("\n".join(lines) + "\n")
    (d / "params.json").write_text(json.dumps({"seed": 0, "spirl_variant": "spirl"}))


def test_source_auto_picks_evaluation_rows(tmp_path, capsys):
    tune = tmp_path / "runs" / "kq" / "tune" / "spirl"
    _eval_trial(tune, "t0", [(100, 0.0, None), (200, 1.0, 3.0), (300, 1.0, None), (400, 2.0, 4.0)])
    _eval_trial(tune, "t1", [(100, 0.0, None), (200, 1.0, None), (300, 1.0, None), (400, 1.0, None)])
    (c0,) = [c for c in load_curves([tune], source="auto") if c.trial == "t0"]
    assert c0.source == "eval"
    np.testing.assert_allclose(c0.x, [200, 400])  # only the rows that evaluated, at their training env steps
    np.testing.assert_allclose(c0.y, [3.0, 4.0])
    assert {c.trial for c in load_curves([tune], source="eval")} == {"t0"}
    assert all(c.source == "train" and len(c.x) == 4 for c in load_curves([tune]))  # default stays training
    assert main([str(tune), "--out", str(tmp_path / "c.png")]) == 0
    table = (tmp_path / "c.md").read_text()
    assert "deterministic evaluation" in table.splitlines()[0]
    # t1 never evaluated: one curve, from its first evaluation (200 env steps): 3 -> 4, AUC 3.5
    assert "| spirl | 1 | 400 | 3.955 ± 0.000 | 3.500 |" in table
    main([str(tune), "--source", "train", "--out", str(tmp_path / "t.png")])
    table = (tmp_path / "t.md").read_text()
    assert "training episodes" in table.splitlines()[0] and "| spirl | 2 | 400 |" in table


def test_source_auto_without_evaluation_is_train(tmp_path):
    _trial(tmp_path, "spirl", "s0", [0, 100], [0.0, 1.0])
    assert [c.source for c in load_curves([tmp_path], source="auto")] == ["train"]
    with pytest.raises(KeyError, match="no trial logged.*evaluation/env_runners"):
        load_curves([tmp_path], source="eval")
    with pytest.raises(ValueError, match="source must be one of"):
        load_curves([tmp_path], source="best")


def test_title_and_axis_words(tmp_path):
    from spirl_ray.experiments.plot import default_title, y_label

    tune = tmp_path / "runs" / "kq" / "tune" / "spirl"
    tune.mkdir(parents=True)
    assert default_title(tune) == "spirl"  # no config.resolved.yaml: the folder's name
    (tmp_path / "runs" / "kq" / "config.resolved.yaml").write_text("name: kq\nenv:\n  name: kitchen\n  scoring: ordered\n")
    assert default_title(tune) == "kq — kitchen, ordered"
    (tmp_path / "runs" / "kq" / "config.resolved.yaml").write_text("name: mz\nenv:\n  name: maze\n")
    assert default_title(tune) == "mz — maze"
    (tmp_path / "runs" / "kq" / "config.resolved.yaml").write_text(
        "name: fr\nenv:\n  name: gymnasium\n  id: gymnasium_robotics:FetchReach-v4\n")
    assert default_title(tune) == "fr — gymnasium_robotics:FetchReach-v4"
    assert y_label(M, "eval", "ordered") == "subtasks completed per episode (ordered) (deterministic evaluation)"
    assert y_label("env_runners/success_mean", "train") == "success rate (training episodes)"
    assert y_label("env_runners/stacked_blocks_mean", "eval") == "stacked blocks at episode end (deterministic evaluation)"
    assert y_label("env_runners/episode_return_mean", "train") == "episode return (training episodes)"
    assert y_label("learners/default_policy/alpha_value", "train") == "learners/default_policy/alpha_value"


def test_cli_missing_metric_is_one_line_error(tmp_path):
    _trial(tmp_path, "spirl", "s0", [0, 1], [0, 1])
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path), "--metric", "env_runners/nope", "--out", str(tmp_path / "c.png")])
    msg = str(e.value.code)
    assert "env_runners/nope" in msg and str(tmp_path) in msg and "\n" not in msg


def test_default_metric_is_the_envs_task_metric(tmp_path):
    from spirl_ray.experiments.plot import default_metric

    tune = tmp_path / "runs" / "x" / "tune" / "spirl"
    tune.mkdir(parents=True)
    cfg = tmp_path / "runs" / "x" / "config.resolved.yaml"
    assert default_metric(tune) == "env_runners/num_subtasks_completed_mean"  # no config: kitchen's
    expected = {"kitchen": "env_runners/num_subtasks_completed_mean", "maze": "env_runners/success_mean",
                "block_stacking": "env_runners/stacked_blocks_mean"}
    for env, metric in expected.items():
        cfg.write_text(f"name: x\nenv:\n  name: {env}\n")
        assert default_metric(tune) == metric, env
    cfg.write_text("name: x\nenv:\n  name: gymnasium\n  id: gymnasium_robotics:FetchReach-v4\n")
    assert default_metric(tune) == "env_runners/episode_return_mean"


def test_rows_repeated_after_a_restore_replace_the_abandoned_ones(tmp_path):
    from spirl_ray.experiments.plot import read_results

    path = tmp_path / "result.json"
    rows = [(1, 100, 0.1), (2, 200, 0.2), (3, 300, 0.3), (4, 400, 0.4),  # checkpoint at 2, then killed
            (3, 300, 0.9), (4, 400, 1.0), (5, 500, 1.1)]  # resumed from iteration 2
    path.write_text("".join(json.dumps({"training_iteration": i, "x": x, "y": y}) + "\n" for i, x, y in rows))
    df = read_results(path)
    assert df["training_iteration"].tolist() == [1, 2, 3, 4, 5]
    assert df["y"].tolist() == [0.1, 0.2, 0.9, 1.0, 1.1]
