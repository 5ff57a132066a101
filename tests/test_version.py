"""The version lives in pyproject.toml only; ``idproj_or.__version__`` reads the installed metadata."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import idproj_or

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, **kwargs) -> str:
    done = subprocess.run(
        [sys.executable, *kwargs.pop("flags", []), "-c", code], capture_output=True, text=True, timeout=120, **kwargs
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_version_is_pyproject_version():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project.get("dynamic", [])
    assert idproj_or.__version__ == project["version"]
    assert "__version__ = " not in (ROOT / "src" / "idproj_or" / "__init__.py").read_text()  # no second copy


def test_import_stays_cheap_until_the_version_is_asked_for():
    code = "import sys, idproj_or; print('importlib.metadata' in sys.modules, idproj_or.__version__)"
    assert _python(code) == f"False {idproj_or.__version__}"


def test_without_metadata_the_version_is_a_missing_attribute(tmp_path):
    # the sources alone (no dist-info, no egg-info, no site-packages): getattr's default applies
    shutil.copytree(ROOT / "src" / "idproj_or", tmp_path / "idproj_or", ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    code = (
        "import idproj_or\n"
        "print(getattr(idproj_or, '__version__', None))\n"
        "try:\n    idproj_or.__version__\nexcept AttributeError as e:\n    print(e)\n"
    )
    out = _python(code, flags=["-S"], env=env, cwd=tmp_path).splitlines()
    assert out == ["None", "idproj_or has no package metadata: install it (pip install -e .)"]
