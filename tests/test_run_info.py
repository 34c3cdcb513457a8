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
