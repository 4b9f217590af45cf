"""First contact: installing aixsmit as make run does prints no warning box of the build's own
(setuptools' "Editable installation ... !!" box came before the menu), and the install runs the
working tree's code."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent


def test_editable_install_prints_no_build_warning(tmp_path):
    venv.create(tmp_path / "v", with_pip=False)
    py = tmp_path / "v" / "bin" / "python"
    # The project's own pip installs into the new environment (--python), as make run's does
    # into .venv; --no-deps: only the build of aixsmit itself is under test.
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                        "--disable-pip-version-check", "--no-deps", "-e", str(PROJECT)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "Warning" not in out and "!!" not in out and "****" not in out, out[-3000:]
    where = subprocess.run([str(py), "-c", "import aixsmit; print(aixsmit.__file__)"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert Path(where) == PROJECT / "aixsmit" / "__init__.py"
