"""The wheel a user gets from ``pip install .``: one ``socialpipe`` package holding every subpackage,
runnable from any folder without the source checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_VIDEO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """``pip wheel --no-deps .``; setuptools' in-tree build/ folder is removed before and after, so no stale
    module from an earlier build can slip into the wheel."""
    out = tmp_path_factory.mktemp("wheel")
    shutil.rmtree(REPO / "build", ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
                       check=True, capture_output=True)
    finally:
        shutil.rmtree(REPO / "build", ignore_errors=True)
    (found,) = out.glob("socialpipe-*.whl")
    return found


def test_the_wheel_holds_one_package_with_every_subpackage(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith((".dist-info", ".data"))}
    assert top == {"socialpipe"}
    for module in ("socialpipe/__init__.py", "socialpipe/cli.py", "socialpipe/stages/answer/attention.py",
                   "socialpipe/stages/people/stage.py", "socialpipe/stages/speech/__init__.py",
                   "socialpipe/pipeline/presentation/viewer_assets/view.js",
                   "socialpipe/pipeline/presentation/viewer_assets/view.html"):
        assert module in names
    # every package of the source tree (each folder with an __init__.py) is in the wheel
    for root, package in (("socialpipe", "socialpipe"), ("pipeline", "socialpipe/pipeline"), ("stages", "socialpipe/stages")):
        for init in (REPO / root).rglob("__init__.py"):
            assert f"{package}/{init.relative_to(REPO / root).as_posix()}" in names


def test_an_installed_wheel_runs_perception_from_another_folder(wheel, tmp_path):
    """Installed without its source (no editable link), from a folder outside the checkout: the answer
    stage imports and the sample runs to the link stage."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    work = tmp_path / "elsewhere"
    work.mkdir()
    check = subprocess.run([sys.executable, "-c", "import socialpipe, socialpipe.stages.answer; "
                            "print(socialpipe.__file__); print(socialpipe.stages.answer.AnswerStage.__module__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True)
    assert check.stdout.splitlines()[0].startswith(str(site))
    run = subprocess.run([sys.executable, "-c", "from socialpipe.cli import main; main()", "run",
                          str(SAMPLE_VIDEO), "--out", "run", "--until", "link"],
                         cwd=work, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert {"people.json", "speech.json", "links.json"} <= {p.name for p in (work / "run").iterdir()}
