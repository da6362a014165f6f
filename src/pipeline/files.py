"""Atomic file output: a result appears under its name complete, or not at all."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~umask())  # mkstemp makes 0600; a new file gets what open() would give it
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def staged(folder: str | os.PathLike, replaces: tuple[str, ...] = (), enabled: bool = True) -> Iterator[Path]:
    """Yield a fresh folder beside `folder` to write a set of outputs into; move them into `folder` only if the
    block succeeds, else delete them: a failure while writing (disk full, an error, Ctrl-C) leaves the previous set
    as it was. Files of `folder` matching a `replaces` pattern (`plots/*`) that the new set lacks are removed, so
    what `folder` holds always belongs to one run. Disabled, it yields `folder` itself (a fresh sweep job folder).
    """
    folder = Path(folder)
    if not enabled:
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    folder.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        yield stage
        new = {path.relative_to(stage) for path in stage.rglob("*") if path.is_file()}
        folder.mkdir(exist_ok=True)
        for old in folder.rglob("*"):  # renames and unlinks only from here: nothing that needs disk space
            relative = old.relative_to(folder)
            if old.is_file() and relative not in new and any(fnmatch.fnmatch(relative.as_posix(), p) for p in replaces):
                old.unlink()
        for relative in sorted(new):
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            os.replace(stage / relative, folder / relative)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def umask() -> int:
    """The process's file-creation mask (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON to `path` atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def unwritable(folder: str | os.PathLike) -> str | None:
    """Why files cannot be created in `folder` (made if missing), or None if they can."""
    path = Path(folder).absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:  # a probe, not os.access: it also sees read-only mounts, and root's access to a 0555 folder
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        return f"{existing}: {error.strerror or error}"
    return None
