"""The README's Python examples run as written (each block in a fresh namespace, in a scratch folder)."""

from __future__ import annotations

import os
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_is_a_guide():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 260, f"README has {len(lines)} lines; measured results belong in docs/results.md"
    assert "make demo" in README.read_text() and "make test" in README.read_text()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_python_block_runs(index, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VADAPTERS_NO_PROGRESS", "1")
    source = BLOCKS[index]
    exec(compile(source, f"README.md python block {index}", "exec"), {"__name__": f"readme_{index}"})
    assert os.getcwd() == str(tmp_path)


# ------------------------------------------------------------------------------------------- the shell commands
COMMANDS = [
    line.strip()
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    for line in block.splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]
NOT_RUN_HERE = {  # the first word(s) of a command -> where it is checked instead
    "make venv": "builds the environment this test runs in",
    "make demo": "`vadapters demo --quick`: tests/test_cli.py::test_demo_quick_writes_a_page_whose_images_exist",
    "make test": "runs this suite",
    "source .venv/bin/activate": "the test puts .venv/bin first on PATH instead",
    ".venv/bin/vadapters studio": "serves until stopped; tests/test_app*.py drive the same build_demo",
}


def _words(command: str) -> list[str]:
    import shlex

    return shlex.split(command, comments=True)


def test_every_readme_command_is_run_or_says_where_it_is_checked():
    assert COMMANDS, "the README has no shell commands"
    for command in COMMANDS:
        words = _words(command)
        assert words[0] == "vadapters" or any(" ".join(words).startswith(k) for k in NOT_RUN_HERE), command


@pytest.mark.slow
def test_readme_cli_sequence_runs_as_written(tmp_path):
    """Every `vadapters ...` line of the README, in order, in a fresh folder, exactly as written."""
    import subprocess
    import sys
    import time

    bin_dir = os.path.dirname(sys.executable)
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "VADAPTERS_NO_PROGRESS": "1"}
    timings = []
    for command in COMMANDS:
        words = _words(command)
        if words[0] != "vadapters":
            continue
        start = time.perf_counter()
        result = subprocess.run(words, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800)
        timings.append(f"{time.perf_counter() - start:7.1f} s  {' '.join(words)}")
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    print("\n".join(timings))
