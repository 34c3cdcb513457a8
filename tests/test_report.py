"""Results record (``python -m spirl_ray.report``) on a fabricated Tune experiment folder."""

import json
import re
import shlex

import pandas as pd
import pytest

from spirl_ray.experiments import report
from spirl_ray.experiments.report import PAPER_NUMBERS, main, paper_cell, paper_value

M = "env_runners/num_subtasks_completed_mean"
STEPS = [100_000, 190_000, 200_000, 300_000, 390_000, 400_000]


@pytest.fixture
def no_png(monkeypatch):
    """Skip drawing where the test is about text (matplotlib dominates the run time); curve.png is still written."""
    monkeypatch.setattr(report, "plot", lambda agg, metric, out, **kw: out.write_bytes(b"png"))


def _row(x, y, it, ev=None, alpha=None, kl=None, logps=None):
    row = {"env_runners": {"env_steps_lifetime": x, "num_subtasks_completed_mean": y},
           "time_total_s": 10.0 * it, "training_iteration": it, "config": {"lr": 1}}
    pol = {k: v for k, v in (("alpha_value", alpha), ("kl_to_prior", kl), ("logps", logps),
                             ("qf_mean", None if alpha is None else -1.0),
                             ("qf_target_mean", None if alpha is None else -1.5)) if v is not None}
    if pol:
        row["learners"] = {"default_policy": pol}
    if ev is not None:
        row["evaluation"] = {"env_runners": {"num_subtasks_completed_mean": ev, "episode_return_mean": ev}}
    return row


def _trial(tune, name, params, rows):
    d = tune / name
    d.mkdir(parents=True)
    (d / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "params.json").write_text(json.dumps(params))


def make_run(tmp_path, run_info=True, name="kitchen_test"):
    """runs/<name>/{config.resolved.yaml, run_info.json, tune/spirl/<trial>/...}: spirl x 2 seeds, ssp x 1 seed."""
    run = tmp_path / "runs" / name
    tune = run / "tune" / "spirl"
    (run).mkdir(parents=True)
    (run / "config.resolved.yaml").write_text(f"name: {name}\nenv:\n  name: kitchen\n  scoring: ordered\n")
    if run_info:
        (run / "run_info.json").write_text(json.dumps({
            "command": "python -m spirl_ray.run --config tune_configs/kitchen.yaml", "commit": "abc123",
            "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T01:30:05+00:00",
            "cpus": 64, "hostname": "box"}))
    ys = {0: [0.0, 1.0, 2.0, 2.0, 3.0, 4.0], 1: [0.0, 0.0, 1.0, 1.0, 2.0, 2.0]}
    evals = {0: {200_000: 2.5, 400_000: 3.5}, 1: {200_000: 1.5, 400_000: 2.5}}
    finals = {0: (0.5, 1.0), 1: (0.3, 2.0)}
    for seed in (0, 1):
        rows = []
        for i, (x, y) in enumerate(zip(STEPS, ys[seed])):
            late = i >= 1  # learner stats start after warm-up
            last = i == len(STEPS) - 1
            rows.append(_row(x, y, i + 1, evals[seed].get(x),
                             alpha=(finals[seed][0] if last else 0.9) if late else None,
                             kl=(finals[seed][1] if last else 0.1) if late else None))
        _trial(tune, f"SPiRLTrial_{seed}", {"seed": seed, "spirl_variant": "spirl"}, rows)
    _trial(tune, "SPiRLTrial_ssp0", {"seed": 0, "rl": {"method": "ssp"}},
           [_row(100_000, 0.0, 1), _row(200_000, 0.5, 2, alpha=0.2, logps=-3.0)])
    return run, tune


def test_csv_per_trial_has_eval_only_on_evaluating_rows(tmp_path):
    run, tune = make_run(tmp_path)
    out = tmp_path / "results" / "kitchen" / "rec"
    assert main([str(tune), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.csv")) == ["seed0_spirl.csv", "seed0_ssp.csv", "seed1_spirl.csv"]
    df = pd.read_csv(out / "seed0_spirl.csv")
    assert list(df.columns) == ["env_steps", "train_num_subtasks_completed_mean", "eval_num_subtasks_completed_mean",
                                "alpha", "kl_to_prior", "qf_mean", "qf_target_mean", "time_total_s",
                                "training_iteration"]
    assert df["env_steps"].tolist() == STEPS
    assert df.loc[df["eval_num_subtasks_completed_mean"].notna(), "env_steps"].tolist() == [200_000, 400_000]
    assert df["eval_num_subtasks_completed_mean"].dropna().tolist() == [2.5, 3.5]
    assert df["train_num_subtasks_completed_mean"].tolist() == [0.0, 1.0, 2.0, 2.0, 3.0, 4.0]
    assert pd.isna(df["alpha"][0]) and df["alpha"].iloc[-1] == 0.5
    assert df["training_iteration"].tolist() == [1, 2, 3, 4, 5, 6]
    raw = (out / "seed0_spirl.csv").read_text().splitlines()
    assert raw[1].startswith("100000,0.0,,,,,,10.0,1")  # empty cells, integer steps
    ssp = pd.read_csv(out / "seed0_ssp.csv")  # arm from params["rl"]["method"]; entropy method: no KL
    assert ssp["eval_num_subtasks_completed_mean"].isna().all() and ssp["kl_to_prior"].isna().all()
    assert (out / "config.resolved.yaml").read_text() == (run / "config.resolved.yaml").read_text()
    assert (out / "curve.png").stat().st_size > 1000
    assert not list(out.parent.glob(".rec.*"))  # no temp folders left


def test_table_numbers_by_hand(tmp_path, no_png):
    _, tune = make_run(tmp_path)
    out = tmp_path / "rec"
    main([str(tune), "--out", str(out), "--paper", "spirl=kitchen_spirl_cl", "--paper", "ssp=kitchen_ssp"])
    table = (out / "table.md").read_text()
    # 100k: no evaluation yet; training rows 0 and 0
    assert "| spirl | 100,000 | 2 | — | 0.000 ± 0.000 | n/a |" in table
    # 200k: eval 2.5, 1.5; train window (180k, 200k]: seed0 mean(1, 2) = 1.5, seed1 mean(0, 1) = 0.5; paper read off
    assert "| spirl | 200,000 | 2 | 2.000 ± 0.500 | 1.000 ± 0.500 | 2.50 (kitchen_spirl_cl) |" in table
    # 300k: last evaluation at or before is still the one at 200k; train only the 300k row (2, 1); paper interpolated
    assert "| spirl | 300,000 | 2 | 2.000 ± 0.500 | 1.500 ± 0.500 | ≈ 2.54 (interpolated; kitchen_spirl_cl) |" in table
    # 400k: eval 3.5, 2.5; train seed0 mean(3, 4) = 3.5, seed1 mean(2, 2) = 2 -> 2.75 ± 0.75
    assert "| spirl | 400,000 | 2 | 3.000 ± 0.500 | 2.750 ± 0.750 | ≈ 2.58 (interpolated; kitchen_spirl_cl) |" in table
    # ssp: one seed to 200k, no evaluation; its paper number is only at 1.3M
    assert "| ssp | 200,000 | 1 | — | 0.500 ± 0.000 | n/a |" in table
    assert "| ssp | 300,000 |" not in table
    # final alpha / KL: mean of each seed's last value
    assert "| spirl | 2 | 400,000 | 0.4 | 1.5 |" in table
    assert "| ssp | 1 | 200,000 | 0.2 | n/a |" in table
    assert PAPER_NUMBERS["kitchen_spirl_cl"]["note"] in table
    # explicit checkpoints: a seed counts only where it reached the step
    main([str(tune), "--out", str(out), "--at", "150000,400000"])
    table = (out / "table.md").read_text()
    assert "| ssp | 400,000 | 0 | — | — | n/a |" in table
    assert "| spirl | 150,000 | 2 | — | 0.000 ± 0.000 | n/a |" in table


def test_paper_interpolation():
    assert paper_value("kitchen_spirl_cl", 200_000) == (2.5, "read off")
    v, kind = paper_value("kitchen_spirl_cl", 750_000)
    assert kind == "interpolated" and v == pytest.approx(2.5 + 0.45 * 0.5)
    assert paper_value("kitchen_spirl_cl", 100_000) == (None, "n/a")
    assert paper_value("kitchen_spirl_cl", 1_500_000) == (None, "n/a")
    assert paper_cell("kitchen_spirl", 1_300_000) == "2.65 (kitchen_spirl)"
    assert paper_cell("kitchen_spirl_cl", 750_000) == "≈ 2.73 (interpolated; kitchen_spirl_cl)"
    assert paper_cell(None, 1_300_000) == "n/a"
    with pytest.raises(KeyError, match="unknown paper key"):
        paper_value("nope", 1)


def test_bare_paper_key_and_bad_ones(tmp_path, no_png):
    _, tune = make_run(tmp_path)
    out = tmp_path / "rec"
    main([str(tune), "--out", str(out), "--paper", "kitchen_spirl_cl"])
    table = (out / "table.md").read_text()
    assert "| ssp | 200,000 | 1 | — | 0.500 ± 0.000 | 2.50 (kitchen_spirl_cl) |" in table
    with pytest.raises(SystemExit, match="unknown key 'nope'"):
        main([str(tune), "--out", str(out), "--paper", "nope"])
    with pytest.raises(SystemExit, match="no arm 'sac'"):
        main([str(tune), "--out", str(out), "--paper", "sac=kitchen_sac"])


def test_readme_from_run_info_and_from_command(tmp_path, no_png):
    _, tune = make_run(tmp_path)
    out = tmp_path / "rec"
    main([str(tune), "--out", str(out)])
    readme = (out / "README.md").read_text()
    assert readme.startswith("# kitchen_test — kitchen, ordered\n")
    assert "`python -m spirl_ray.run --config tune_configs/kitchen.yaml`" in readme
    assert "`abc123`" in readme and "1:30:05 wall time" in readme and "box, 64 CPU cores" in readme
    assert "- commit: `abc123`\n" in readme  # no note in run_info: nothing after the commit
    assert "0:01:00" in readme  # seed's last time_total_s = 60 s
    assert "![learning curves](curve.png)" in readme and "| spirl | 400,000 | 2 |" in readme
    for f in ("table.md", "curve.png", "config.resolved.yaml", "seed1_spirl.csv"):
        assert f"- `{f}`" in readme
    _, tune2 = make_run(tmp_path / "other", run_info=False)
    main([str(tune2), "--out", str(tmp_path / "rec2"), "--command", "python -m spirl_ray.run --config x.yaml"])
    readme = (tmp_path / "rec2" / "README.md").read_text()
    assert "`python -m spirl_ray.run --config x.yaml` (given to the report)" in readme and "`unknown`" in readme
    _, tune3 = make_run(tmp_path / "third", run_info=False)
    main([str(tune3), "--out", str(tmp_path / "rec3")])
    assert "- command: `unknown`" in (tmp_path / "rec3" / "README.md").read_text()


def test_results_index_added_and_replaced(tmp_path, no_png):
    _, tune = make_run(tmp_path)
    out = tmp_path / "results" / "kitchen" / "rec"
    index = tmp_path / "results" / "README.md"
    main([str(tune), "--out", str(out)])
    main([str(tune), "--out", str(out)])  # rerun: same line, not a second one
    main([str(tune), "--out", str(tmp_path / "results" / "kitchen" / "rec_b")])
    text = index.read_text()
    assert text.startswith("# Results\n")
    lines = [x for x in text.splitlines() if x.startswith("- [")]
    assert lines == [
        "- [kitchen/rec](kitchen/rec/README.md): kitchen_test — kitchen, ordered, spirl / ssp, 2 seeds, "
        "200,000 env steps",
        "- [kitchen/rec_b](kitchen/rec_b/README.md): kitchen_test — kitchen, ordered, spirl / ssp, 2 seeds, "
        "200,000 env steps",
    ]
    index.write_text(text.replace("kitchen_test — kitchen, ordered, spirl / ssp", "an old title"))
    main([str(tune), "--out", str(out)])
    text = index.read_text()
    assert "an old title" in text and text.count("[kitchen/rec]") == 1 and "kitchen/rec/README.md): kitchen_test" in text
    assert not (tmp_path / "README.md").exists()  # a record outside results/ touches no index
    main([str(tune), "--out", str(tmp_path / "elsewhere")])
    assert not (tmp_path / "README.md").exists()


def test_failure_leaves_the_old_record(tmp_path, no_png, monkeypatch):
    _, tune = make_run(tmp_path)
    out = tmp_path / "rec"
    main([str(tune), "--out", str(out)])
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(report, "results_table", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        main([str(tune), "--out", str(out), "--paper", "kitchen_spirl"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_clear_errors(tmp_path, capsys):
    _, tune = make_run(tmp_path)
    with pytest.raises(SystemExit) as e:
        main([str(tune), "--out", str(tmp_path / "rec"), "--metric", "env_runners/nope_mean"])
    msg = str(e.value.code)
    assert "env_runners/nope_mean" in msg and "evaluation/env_runners/nope_mean" in msg and str(tune) in msg
    assert "\n" not in msg and not (tmp_path / "rec").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit, match="no Tune trial .* found below .*empty"):
        main([str(empty), "--out", str(tmp_path / "rec")])


def test_commit_note_of_run_info_follows_the_commit(tmp_path, no_png):
    run, tune = make_run(tmp_path)
    info = json.loads((run / "run_info.json").read_text())
    info["commit_note"] = "launched with an uncommitted change, committed as def456"
    (run / "run_info.json").write_text(json.dumps(info))
    main([str(tune), "--out", str(tmp_path / "rec")])
    assert "- commit: `abc123` (launched with an uncommitted change, committed as def456)\n" in (
        tmp_path / "rec" / "README.md").read_text()


def test_resumes_of_both_run_info_formats_are_listed(tmp_path, no_png):
    run, tune = make_run(tmp_path)
    info = json.loads((run / "run_info.json").read_text())
    info["resumed"] = ["2026-01-01T00:10:00+00:00",
                       {"at": "2026-01-01T00:20:00+00:00", "command": "python -m spirl_ray.run --resume",
                        "commit": "def456"}]
    (run / "run_info.json").write_text(json.dumps(info))
    main([str(tune), "--out", str(tmp_path / "rec")])
    readme = (tmp_path / "rec" / "README.md").read_text()
    assert "(resumed at 2026-01-01T00:10:00+00:00, 2026-01-01T00:20:00+00:00 (commit `def456`))" in readme


def test_index_line_counts_seeds_in_words():
    from spirl_ray.experiments.report import index_line

    assert index_line("m/a", "t", ["ssp"], 1, 1000).endswith("ssp, 1 seed, 1,000 env steps")
    assert index_line("m/a", "t", ["spirl"], 3, 5e5).endswith("spirl, 3 seeds, 500,000 env steps")


def test_readme_quotes_the_report_command_that_regenerates_it(tmp_path, no_png):
    _, tune = make_run(tmp_path)
    out = tmp_path / "rec dir"  # a space: the quoted command must still run as is
    argv = [str(tune), "--out", str(out), "--every", "50000", "--smooth", "3", "--paper", "kitchen_spirl_cl"]
    main(argv)
    readme = (out / "README.md").read_text()
    quoted = re.search(r"Regenerate it \(same flags\) with `([^`]*)`", readme).group(1)
    assert shlex.split(quoted) == ["python", "-m", "spirl_ray.report", *argv]
    # the quoted command writes the same record
    before = {f: (out / f).read_text() for f in ("table.md", "seed0_spirl.csv")}
    main(shlex.split(quoted)[3:])
    assert {f: (out / f).read_text() for f in before} == before


def test_seeds_added_in_a_second_run_pool_into_one_record(tmp_path, no_png):
    _, tune_a = make_run(tmp_path / "a", name="kitchen_test")
    run_b, tune_b = make_run(tmp_path / "b", name="kitchen_test_more")
    # run b: the same config with other seeds, skipped prior rollouts and another thread count
    (run_b / "config.resolved.yaml").write_text("name: kitchen_test_more\nenv:\n  name: kitchen\n  scoring: ordered\n"
                                               "rl:\n  seeds: [2, 3]\nprior_rollouts:\n  episodes: 0\n"
                                               "prior_training:\n  num_threads: 2\n")
    for d in tune_b.iterdir():  # run b holds seeds 2 and 3 of the spirl arm
        params = json.loads((d / "params.json").read_text())
        if params.get("spirl_variant") == "spirl":
            params["seed"] += 2
            (d / "params.json").write_text(json.dumps(params))
        else:
            for f in d.iterdir():
                f.unlink()
            d.rmdir()
    out = tmp_path / "rec"
    main([str(tune_a), str(tune_b), "--out", str(out)])
    table = (out / "table.md").read_text()
    assert "| spirl | 400,000 | 4 |" in table  # 4 seeds of spirl pooled, ssp still 1
    for seed in (0, 1, 2, 3):
        assert (out / f"seed{seed}_spirl.csv").is_file()
    readme = (out / "README.md").read_text()
    assert f"`{tune_a}`:" in readme and f"`{tune_b}`:" in readme
    assert readme.count("- command: `python -m spirl_ray.run --config tune_configs/kitchen.yaml`") == 2

    # the same seed twice, or another config, is refused with the folders named
    with pytest.raises(SystemExit, match="seed 0 is in both"):
        main([str(tune_a), str(make_run(tmp_path / "c", name="kitchen_test")[1]), "--out", str(tmp_path / "r2")])
    (run_b / "config.resolved.yaml").write_text("name: other\nenv:\n  name: kitchen\n  scoring: any\n")
    with pytest.raises(SystemExit, match=r"differs in env\.scoring"):
        main([str(tune_a), str(tune_b), "--out", str(tmp_path / "r3")])
