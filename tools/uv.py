#!/usr/bin/env python3
"""Run the pinned uv, first installing it into .tools/ if needed: Python 3.11+ is the only prerequisite.

Hand-written because a fresh machine may have neither uv nor a pip allowed to install into the system.
"""

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

UV_VERSION = "0.13.9"
TOOLS = Path(__file__).resolve().parent.parent / ".tools"
BIN = TOOLS / ("Scripts" if os.name == "nt" else "bin")


def uv() -> Path:
    """The path of uv==UV_VERSION, installed into .tools/ on first use."""
    exe = BIN / ("uv.exe" if os.name == "nt" else "uv")
    stamp = TOOLS / f"uv-{UV_VERSION}"
    if not (exe.exists() and stamp.exists()):
        venv.EnvBuilder(with_pip=True, clear=True).create(TOOLS)
        python = BIN / ("python.exe" if os.name == "nt" else "python")
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", f"uv=={UV_VERSION}"], check=True
        )
        stamp.touch()
    return exe


def compile_once(exe: str) -> None:
    """Sync with compiled bytecode once per uv.lock, so later `uv run`s neither recompile nor print it."""
    # Compiled bytecode: where PYTHONDONTWRITEBYTECODE is set, Python would otherwise recompile TensorFlow,
    # MLflow and pandas on every command (about 9 s each time). uv itself recompiles every file on every
    # `uv run` when UV_COMPILE_BYTECODE is set (1-8 s), hence a stamp per lock file.
    root = TOOLS.parent
    lock = root / "uv.lock"
    if not lock.exists() or "UV_COMPILE_BYTECODE" in os.environ:
        return
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()[:16]
    stamp = root / ".venv" / f".bytecode-{digest}"
    if not stamp.exists():
        subprocess.run([exe, "sync", "--compile-bytecode", "--quiet"], cwd=root, check=True)
        stamp.touch()


if __name__ == "__main__":
    exe = str(uv())
    if sys.argv[1:2] == ["run"]:
        compile_once(exe)
    os.execv(exe, [exe, *sys.argv[1:]])
