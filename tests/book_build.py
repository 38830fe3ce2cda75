"""Build a Jupyter Book with the venv's jupyter-book, for the tests that open built pages."""

import shutil
import subprocess
import sys
from pathlib import Path

BUILD_TIMEOUT_S = 300


def jupyter_book() -> str:
    """The venv's jupyter-book, next to this Python; else the one on PATH."""
    here = Path(sys.executable).parent / "jupyter-book"
    found = str(here) if here.exists() else shutil.which("jupyter-book")
    assert found, "jupyter-book not found next to the Python running pytest nor on PATH"
    return found


def build_book(args: list[str]) -> None:
    """``jupyter-book build ARGS``; fails the test with the end of the log if the build fails."""
    done = subprocess.run([jupyter_book(), "build", *args], capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    assert done.returncode == 0, (
        f"jupyter-book build {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
