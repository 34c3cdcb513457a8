"""The README's two commands are the ones CI and users run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks]


def test_ci_runs_the_readme_test_command():
    cmds = _readme_commands()
    test_cmd = next(c for c in cmds if c.endswith("python -m pytest"))
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_cmd in ci


def test_readme_main_command_uses_an_existing_config():
    cmds = _readme_commands()
    main = next(c for c in cmds if "python -m spirl_ray.run" in c)
    config = re.search(r"--config (\S+)", main).group(1)
    assert (ROOT / config).is_file()
