"""run_info.json keeps the command and commit that started a run; resumes are appended, finishing adds a time."""

import json

import spirl_ray.run as run


def test_start_resume_finish_keep_the_starting_commit(tmp_path, monkeypatch):
    commits = iter(["aaa", "bbb", "ccc"])
    monkeypatch.setattr(run, "git_commit", lambda cwd=None: next(commits))
    run.write_run_info(tmp_path, ["--config", "x.yaml"])
    run.write_run_info(tmp_path, ["--config", "x.yaml", "--resume"])
    run.write_run_info(tmp_path, ["--config", "x.yaml", "--resume"], finished=True)
    info = json.loads((tmp_path / "run_info.json").read_text())
    assert info["command"] == "python -m spirl_ray.run --config x.yaml" and info["commit"] == "aaa"
    assert len(info["resumed"]) == 1 and info["resumed"][0]["commit"] == "bbb"
    assert info["resumed"][0]["command"].endswith("--resume") and "finished" in info


def test_finish_keeps_a_given_time_and_stamps_true(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "git_commit", lambda cwd=None: "aaa")
    run.write_run_info(tmp_path, ["--config", "x.yaml"], finished="2026-01-02T03:04:05+00:00")
    assert json.loads((tmp_path / "run_info.json").read_text())["finished"] == "2026-01-02T03:04:05+00:00"
    run.write_run_info(tmp_path, ["--config", "x.yaml"], finished=True)
    stamped = json.loads((tmp_path / "run_info.json").read_text())["finished"]
    assert stamped.startswith("20") and stamped != "2026-01-02T03:04:05+00:00"
