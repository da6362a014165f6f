"""The MLflow store: its URI, and a check, before training starts, that runs can be written to it.

Hand-written because MLflow finds out only when the run starts: after up to 251 s of HTTP retries for an
unreachable server, or with an SQLAlchemy error that names neither the file nor the cause.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.errors import TrackingError

SERVER_TIMEOUT = 10.0  # seconds for the server's /health to answer
LOCK_WAIT = 15.0  # seconds to wait for another process's lock on the SQLite store before failing
SQLITE_HEADER = b"SQLite format 3\x00"
RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}  # 3 s of waits; env wins
# MLflow's tracking stores: a server, or a database (SQLAlchemy's dialects); 3.17 refuses the `file:` store
SCHEMES = ("http", "https", "databricks", "sqlite", "postgresql", "mysql", "mssql")


def tracking_uri(tracking_cfg: Mapping[str, Any], root: str | os.PathLike) -> str:
    """MLFLOW_TRACKING_URI if set, else the configured URI, else the SQLite store mlflow.db under `root`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_cfg.get("uri") or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"
    if uri.startswith("sqlite:") and "timeout=" not in uri:  # SQLAlchemy passes it to sqlite3: MLflow's own writes then
        uri = f"{uri}{'&' if '?' in uri else '?'}timeout={LOCK_WAIT:g}"  # wait out another's lock (default: fail after 5 s)
    return uri


def check(tracking_cfg: Mapping[str, Any], root: str | Path) -> None:
    """Raise TrackingError naming the store and the cause if runs cannot be written to it."""
    store(tracking_uri(tracking_cfg, root))


@functools.lru_cache(maxsize=16)  # once per store and process, however many sweep jobs are checked
def store(uri: str) -> None:
    scheme = uri.partition(":")[0].split("+")[0] if ":" in uri else "file"
    if scheme not in SCHEMES:
        allowed = f"{', '.join(SCHEMES)}; e.g. sqlite:///mlflow.db or http://127.0.0.1:5000"
        raise TrackingError(f"{uri}: not a store MLflow 3 tracks runs in (URI schemes: {allowed})")
    if uri.startswith(("http://", "https://")):
        for variable, value in RETRIES.items():  # MLflow's defaults retry a failing server for 254 s
            os.environ.setdefault(variable, value)
        check_server(uri)
    elif uri.startswith("sqlite:///"):
        check_sqlite(Path(uri.removeprefix("sqlite:///").split("?")[0]))


def check_server(uri: str, timeout: float = SERVER_TIMEOUT) -> None:
    """The tracking server at `uri` answers its /health and its REST API (or asks for credentials)."""
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        try:
            with urllib.request.urlopen(f"{uri.rstrip('/')}{path}", timeout=timeout):
                continue
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                return
            raise TrackingError(f"{uri} answers {path} with HTTP {error.code}: not a working MLflow tracking server?") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise TrackingError(f"the MLflow server at {uri} does not answer ({reason}); start it or set another URI") from None


def check_sqlite(path: Path, wait: float = LOCK_WAIT) -> None:
    """The SQLite store at `path` can be created, or is an SQLite database this process can write within `wait` s."""
    if not path.exists():
        problem = files.unwritable(path.parent)
        if problem:
            raise TrackingError(f"{path}: cannot create the MLflow store ({problem})")
        return
    try:
        with open(path, "rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise TrackingError(f"{path}: cannot read the MLflow store ({error.strerror or error})") from None
    if header and header != SQLITE_HEADER:
        raise TrackingError(f"{path}: not an SQLite database (corrupt?); move it away to start a new store")
    try:
        with contextlib.closing(sqlite3.connect(path, timeout=wait, isolation_level=None)) as db:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            db.execute("BEGIN IMMEDIATE")  # the write lock MLflow will need: waits `wait` s for another writer
            db.execute("ROLLBACK")
    except sqlite3.Error as error:
        cause = "held by another process" if "locked" in str(error) else str(error)
        raise TrackingError(f"{path}: the MLflow store cannot be written ({cause}; waited {wait:.0f} s)") from None


def check_artifacts(location: str) -> None:
    """An experiment's local artifact folder (`file:` or a path) can take a run's files; a remote one is the server's."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme in ("", "file") and (problem := files.unwritable(urllib.request.url2pathname(parsed.path))):
        raise TrackingError(f"{location}: the experiment's artifact store cannot be written ({problem})")
