"""`idproj-or demo knapsack` works from a non-editable install, run from an empty folder.

A fresh virtual environment gets a wheel build of this checkout (``pip install --no-deps
--no-build-isolation``: no network) and borrows the dependencies (torch, ortools, ... and pip,
setuptools for the build) from the test's own environment through a ``.pth`` file. That file
names the test environment's site-packages as a plain path, after the new environment's own
site-packages, and a plain path is not scanned for ``.pth`` files: the editable install of the
test environment (``__editable__.*.pth`` -> ``src/``) stays out of the new one, and the wheel's
copy is the one imported.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(cmd: list, cwd: Path, env: dict[str, str], timeout: float) -> str:
    done = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{cmd} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


BIN = "Scripts" if os.name == "nt" else "bin"  # where a venv keeps python and entry points


def _venv_purelib(venv: Path, env: dict[str, str]) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([venv / BIN / "python", "-c", code], venv, env, 60).strip())


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory) -> tuple[Path, Path, dict[str, str]]:
    """(venv, its site-packages, the environment to run it with), idproj_or installed from a wheel."""
    try:
        import setuptools
    except ImportError:  # pragma: no cover
        pytest.fail("the wheel build (--no-build-isolation) needs setuptools in the test environment")
    assert int(setuptools.__version__.split(".")[0]) >= 77, f"setuptools {setuptools.__version__} < 77 (pyproject.toml)"
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_", "VIRTUAL_ENV"))}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1")

    # The source as `pip install .` sees it, copied so that the build's build/ and *.egg-info
    # stay out of the checkout (and a stale build/lib cannot leak into the wheel).
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))

    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env, 120)
    purelib = _venv_purelib(venv, env)
    (purelib / "_test_environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run(
        [
            venv / BIN / "python",
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--ignore-installed",
            source,
        ],
        tmp,
        env,
        300,
    )
    return venv, purelib, env


def test_install_is_a_wheel_copy(wheel_venv):
    venv, purelib, env = wheel_venv
    package = purelib / "idproj_or"
    assert (package / "cli.py").is_file() and (package / "demos" / "knapsack.py").is_file()
    assert (package / "py.typed").is_file()
    assert not list(purelib.glob("__editable__*")), "an editable install, not a wheel"
    (dist_info,) = purelib.glob("idproj_or-*.dist-info")
    direct_url = json.loads((dist_info / "direct_url.json").read_text())
    assert not direct_url.get("dir_info", {}).get("editable", False)
    assert "idproj-or" in (dist_info / "entry_points.txt").read_text()
    empty = venv.parent / "empty-import"
    empty.mkdir()
    code = "import idproj_or, idproj_or.demos.knapsack as k; print(idproj_or.__file__); print(k.__file__)"
    files = _run([venv / BIN / "python", "-c", code], empty, env, 120).split()
    assert [Path(f).parent for f in files] == [package, package / "demos"]


def test_console_script_demo_from_empty_folder(wheel_venv):
    venv, _, env = wheel_venv
    work = venv.parent / "empty-demo"
    work.mkdir()
    # the demo's defaults, only smaller: still labels, trains, evaluates, and plots
    out = _run(
        [
            venv / BIN / "idproj-or",
            "demo",
            "knapsack",
            "--quiet",
            "--",
            "--items",
            "10",
            "--train",
            "60",
            "--test",
            "40",
            "--epochs",
            "2",
        ],
        work,
        env,
        300,
    )
    assert "knapsack: normalized test regret" in out and "two-stage" in out and "Bayes floor" in out
    plot = work / "runs" / "demo" / "knapsack" / "curves.png"
    assert f"plot: {plot.relative_to(work)}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    results = json.loads((plot.parent / "results.json").read_text())
    assert results["config"]["items"] == 10 and results["config"]["workers"] == 2  # solver processes too
    trained = results["histories"][0]
    assert trained["label"] == "auto (regret)" and trained["epochs"] == [0, 2] and len(trained["train_regret"]) == 2
    assert sorted(p.name for p in work.iterdir()) == ["runs"]  # nothing else written beside it
