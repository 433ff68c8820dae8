"""The release path: ``python -m build --wheel`` gives a compiled wheel without sources."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_build_wheel_has_compiled_modules_and_no_sources(tmp_path):
    pytest.importorskip("build")
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        pytest.skip("needs the git checkout (setuptools-scm reads the version from it)")
    proc = subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    wheels = list(tmp_path.glob("fastnet-*.whl"))
    assert len(wheels) == 1
    names = zipfile.ZipFile(wheels[0]).namelist()
    for mod in ("_wire", "_tcp", "_io"):
        assert any(n.startswith(f"fastnet/{mod}.") and n.endswith(".so") for n in names), mod
    assert not [n for n in names if n.endswith((".pyx", ".pxd", ".c", ".h"))], names
    assert "fastnet/py.typed" in names
    assert any(n.endswith("entry_points.txt") for n in names)
