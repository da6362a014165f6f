"""Atomic file output: a result appears under its name complete, or not at all."""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import shutil
import socket
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pipeline.errors import DataError


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
        mask = os.umask(0o022)  # the process's mask, which os.umask can only read by setting it
        os.umask(mask)
        os.chmod(tmp_path, 0o666 & ~mask)  # mkstemp makes 0600; a new file gets what open() would give it
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


STAGING = ".staging"  # results/.staging/<name>/: sets being written (*.tmp) and sets being moved in (*.commit)
MANIFEST = "manifest.json"  # in a *.commit folder, beside files/: what the new set holds and what it replaces


@contextlib.contextmanager
def staged(folder: str | os.PathLike, replaces: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a fresh folder to write a set of outputs into; move them into `folder` only if the block succeeds,
    else delete them: a failure while writing (disk full, an error, Ctrl-C) leaves the previous set as it was.
    Files of `folder` matching a `replaces` pattern (`plots/*`) that the new set lacks are removed, so what
    `folder` holds always belongs to one run.

    The move is journaled: the finished set is renamed to *.commit with its manifest first, so a process killed
    while moving the files in leaves a move that `settle` (called here, and by every reader) finishes.
    """
    folder = Path(folder)
    settle(folder)
    pending = staging_dir(folder)
    stage = fresh_stage(pending)
    (stage / "files").mkdir()
    try:
        yield stage / "files"
        new = sorted(p.relative_to(stage / "files").as_posix() for p in (stage / "files").rglob("*") if p.is_file())
        (stage / MANIFEST).write_text(json.dumps({"files": new, "replaces": list(replaces)}))
        commit = stage.with_suffix(".commit")
        os.replace(stage, commit)  # the new set is now committed: if this process dies, settle() moves it in
        move_in(commit, folder)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        remove_empty(pending)


def settle(folder: str | os.PathLike) -> None:
    """Finish moving in the sets that killed processes committed for `folder`; drop their unfinished ones."""
    folder = Path(folder)
    pending = staging_dir(folder)
    if not pending.is_dir():
        return
    for commit in sorted(pending.glob("*.commit"), key=lambda p: p.stat().st_mtime):
        move_in(commit, folder)
    for stage in pending.glob("*.tmp"):
        host, _, pid = stage.name.rsplit(".", 2)[0].rpartition(".")  # <host>.<pid>.<random>.tmp
        if host == socket.gethostname() and pid.isdigit() and not alive(int(pid)):
            shutil.rmtree(stage, ignore_errors=True)
    remove_empty(pending)


def move_in(commit: Path, folder: Path) -> None:
    """Move a committed set into `folder` as its manifest says; idempotent, so a killed move can be redone."""
    try:
        manifest = json.loads((commit / MANIFEST).read_text())
        new = set(manifest["files"])
    except (OSError, ValueError, KeyError, TypeError):
        problem = f"an unreadable record of a set to move into {folder}; remove its folder ({commit}) and train again"
        raise DataError(commit / MANIFEST, problem) from None
    folder.mkdir(exist_ok=True)
    for old in list(folder.rglob("*")):  # renames and unlinks only from here: nothing that needs disk space
        relative = old.relative_to(folder).as_posix()
        if old.is_file() and relative not in new and any(fnmatch.fnmatch(relative, p) for p in manifest["replaces"]):
            old.unlink(missing_ok=True)
    for relative in manifest["files"]:
        source = commit / "files" / relative
        if source.exists():  # else moved in before the process was killed
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):  # another reader settling the same move
                os.replace(source, folder / relative)
    shutil.rmtree(commit, ignore_errors=True)


def fresh_stage(pending: Path, attempts: int = 5) -> Path:
    """A new folder <host>.<pid>.<random>.tmp in `pending`, which another job may be removing as it empties."""
    prefix = f"{socket.gethostname()}.{os.getpid()}."
    for _ in range(attempts):
        pending.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            return Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=pending))
    raise FileNotFoundError(f"{pending}: removed {attempts} times while a set was being staged there")


def staging_dir(folder: Path) -> Path:
    """Where the sets for `folder` are written before they move in: beside it, on the same filesystem."""
    return folder.parent / STAGING / folder.name


def writer(folder: str | os.PathLike) -> int | None:
    """The id of another live process of this machine staging a set of outputs for `folder`, or None."""
    pending = staging_dir(Path(folder))
    for stage in pending.glob("*.tmp") if pending.is_dir() else []:
        host, _, pid = stage.name.rsplit(".", 2)[0].rpartition(".")  # <host>.<pid>.<random>.tmp
        if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and alive(int(pid)):
            return int(pid)
    return None


def digest(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes, in hex."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def alive(pid: int) -> bool:
    """Whether process `pid` of this machine is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's
        return True
    return True


def remove_empty(pending: Path) -> None:
    """Remove `pending` and the .staging folder above it once they hold nothing."""
    for path in (pending, pending.parent):
        with contextlib.suppress(OSError):
            path.rmdir()


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write `payload` as indented, key-sorted JSON to `path` atomically."""
    write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")


def read_json(path: Path, missing: str = "no such file; train first (`dvc repro` or `pipeline-train`)") -> dict[str, Any]:
    """The JSON object in `path`; DataError naming the file if it is missing, unreadable or not an object."""
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(path, missing) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DataError(path, "not readable JSON; train again to write it") from None
    if not isinstance(value, dict):
        raise DataError(path, "not a JSON object; train again to write it")
    return value


def write_npz(path: str | os.PathLike, arrays: dict[str, Any]) -> None:
    """Write named numpy arrays as one .npz file atomically (no pickles: plain arrays only), the same bytes for the
    same arrays."""
    import numpy as np

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        undated_zip(tmp)


def undated_zip(path: Path, edit: Callable[[str, bytes], bytes] = lambda name, data: data) -> None:
    """Rewrite the zip archive at `path` with its members dated 1980-01-01 (and `edit`ed), so the same content is the
    same bytes: np.savez and Keras date them now, and DVC would record a new hash for the same model each run."""
    with zipfile.ZipFile(path) as archive:
        members = [(info, edit(info.filename, archive.read(info))) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for info, data in members:
            archive.writestr(zipfile.ZipInfo(info.filename), data, compress_type=info.compress_type)


def write_csv(path: str | os.PathLike, frame: Any, digits: int = 9) -> None:
    """Write a pandas table as CSV atomically, floats to `digits` significant digits (9 keep every float32 bit)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format=f"%.{digits}g", lineterminator="\n")


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
