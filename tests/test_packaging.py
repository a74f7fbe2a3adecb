"""The wheel installs `pipelines/` and `apps/` as `vadapters.pipelines` / `vadapters.apps`, never top level."""

from __future__ import annotations

import pathlib
import subprocess
import sys
import sysconfig
import zipfile

import pytest
import tomllib

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_every_package_directory_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for root, namespace in (
        ("vadapters", "vadapters"),
        ("pipelines", "vadapters.pipelines"),
        ("apps", "vadapters.apps"),
    ):
        for init in (REPO / root).rglob("__init__.py"):
            parts = init.parent.relative_to(REPO / root).parts
            found.add(".".join((namespace, *parts)))
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"


@pytest.mark.timeout(600)
def test_wheel_installs_namespaced_packages_in_a_throwaway_venv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(REPO)],
        check=True,
        capture_output=True,
        cwd=tmp_path,
    )
    (wheel,) = dist.glob("vadapters-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "vadapters/pipelines/__init__.py" in names and "vadapters/apps/__init__.py" in names
    assert "vadapters/pipelines/community/mv_adapter.py" in names  # diffusers custom-pipeline files ship too
    top_level = {n.split("/")[0] for n in names if not n.split("/")[0].endswith((".dist-info", ".data"))}
    assert top_level == {"vadapters"}, top_level

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # The throwaway venv sees the project's dependencies but not its editable install (.pth files in an
    # added directory are not processed), so `vadapters` can only come from the wheel.
    (site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--target", str(site), str(wheel)],
        check=True,
        capture_output=True,
    )
    probe = (
        "import importlib.util, vadapters, vadapters.pipelines, vadapters.apps;"
        f"assert vadapters.__file__.startswith({str(site)!r}), vadapters.__file__;"
        "assert importlib.util.find_spec('pipelines') is None;"
        "assert importlib.util.find_spec('apps') is None;"
        "print(vadapters.list_methods())"
    )
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path
    )
    assert "res_adapter" in out.stdout
