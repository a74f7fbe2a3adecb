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
