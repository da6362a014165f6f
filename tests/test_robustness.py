"""A run's outputs appear together or not at all; evaluation refuses damaged inputs before writing anything."""

from __future__ import annotations

import contextlib
import errno
import http.server
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import snapshot
from omegaconf import OmegaConf

from pipeline import files
from pipeline.stages import evaluate, train


def test_a_runs_files_and_folders_get_the_umasks_mode(make_config, tmp_path):
    cfg = make_config("experiment=xor_relu16", "trainer.epochs=5")
    previous = os.umask(0o027)
    try:
        train.train(cfg, out=tmp_path / "results" / "xor_relu16")
    finally:
        os.umask(previous)
    written = [tmp_path / "results", *(tmp_path / "results").rglob("*")]
    modes = {str(p.relative_to(tmp_path)): p.stat().st_mode & 0o777 for p in written}
    assert modes and all(mode == (0o750 if (tmp_path / path).is_dir() else 0o640) for path, mode in modes.items()), modes


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_training_that_fails_mid_save_leaves_the_previous_set_intact(complete, monkeypatch):
    cfg, folder = complete
    before = snapshot(folder)
    monkeypatch.setattr(np, "savez", disk_full)  # snapshots.npz, after model.keras and history.csv are written
    with pytest.raises(OSError, match="No space left"):
        train.train(OmegaConf.merge(cfg, {"trainer": {"seed": 1}}), out=folder)
    assert snapshot(folder) == before  # the seed-0 set, whole: no seed-1 model beside seed-0 metrics
    assert [p.name for p in folder.parent.iterdir()] == ["xor_relu16"]  # no staging folder left behind


def test_a_full_disk_is_one_line_and_keeps_the_previous_set(complete, monkeypatch, refused):
    folder = complete[1]
    before = snapshot(folder.parent.parent)
    monkeypatch.chdir(folder.parent.parent)
    monkeypatch.setattr(np, "savez", disk_full)
    args = ["experiment=xor_relu16", "paths.root=.", "paths.results=results", "tracking.enabled=false", "trainer.seed=1"]
    code, err = refused(train.main, *args, "hydra/job_logging=none", "hydra/hydra_logging=none")
    assert code == 2 and err.strip().splitlines() == [
        "error: disk: No space left on device; free some space (earlier results are kept)"
    ]
    assert snapshot(folder.parent.parent) == before  # Hydra's output folder included


def test_ctrl_c_while_a_command_imports_is_one_line():
    code = "import sys; sys.argv = ['-m']; import os, signal, time, pipeline; os.kill(os.getpid(), signal.SIGINT); time.sleep(9)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130 and result.stderr == "error: interrupted (Ctrl-C)\n"


def write_set(stage, contents):
    for relative, text in contents.items():
        (stage / relative).parent.mkdir(parents=True, exist_ok=True)
        (stage / relative).write_text(text)


def test_a_move_killed_half_way_is_finished_before_the_folder_is_read_again(tmp_path, monkeypatch):
    folder = tmp_path / "results" / "xor_relu16"
    with files.staged(folder, replaces=("*.txt", "plots/*")) as stage:
        write_set(stage, {"a.txt": "old", "b.txt": "old", "stale.txt": "old", "plots/p.png": "old"})
    (folder / "notes.md").write_text("the user's")  # not a run file: kept
    real_replace, calls = os.replace, []

    def killed_after_one_file(source, target):
        calls.append(target)
        if len(calls) == 3:  # 1: the set is committed, 2: a.txt moved in, 3: the process dies
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", killed_after_one_file)
    with pytest.raises(KeyboardInterrupt), files.staged(folder, replaces=("*.txt", "plots/*")) as stage:
        write_set(stage, {"a.txt": "new", "b.txt": "new", "plots/p.png": "new"})
    monkeypatch.setattr(files.os, "replace", real_replace)
    assert snapshot(folder)["a.txt"] == b"new" and snapshot(folder)["b.txt"] == b"old"  # mixed until settled
    files.settle(folder)
    expected = {"a.txt": "new", "b.txt": "new", "plots/p.png": "new", "notes.md": "the user's"}
    assert {k: v.decode() for k, v in snapshot(folder).items()} == expected
    assert [p.name for p in folder.parent.iterdir()] == ["xor_relu16"]


def test_a_killed_processs_unfinished_set_is_dropped_and_a_running_ones_kept(tmp_path):
    folder = tmp_path / "results" / "xor_relu16"
    pending = files.staging_dir(folder)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    mine, killed = pending / f"{host}.{os.getpid()}.abc.tmp", pending / f"{host}.{dead.stdout.strip()}.def.tmp"
    for stage in (mine, killed):
        write_set(stage, {"files/model.keras": "half"})
    files.settle(folder)
    assert mine.exists() and not killed.exists()


def test_a_new_training_replaces_the_whole_set(complete):
    cfg, folder = complete
    train.train(OmegaConf.merge(cfg, {"trainer": {"seed": 1}}), out=folder)
    assert not (folder / "evaluation.json").exists()  # the seed-0 model's evaluation went with it
    assert {"model.keras", "history.csv", "metrics.json", "run.json", "snapshots.npz"} <= set(snapshot(folder))


def test_an_evaluation_that_fails_mid_way_keeps_the_previous_evaluation(complete, monkeypatch):
    cfg, folder = complete
    before = snapshot(folder)
    monkeypatch.setattr(evaluate.plots, "neuron_maps", disk_full)  # the last picture, after three were drawn
    with pytest.raises(OSError):
        evaluate.evaluate_folder(OmegaConf.to_container(cfg, resolve=True), folder)
    assert snapshot(folder) == before


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "metrics.json").unlink(), "metrics.json: no such file"),
        (lambda f: (f / "snapshots.npz").write_bytes(b"PK\x03\x04 truncated"), "snapshots.npz: not a readable snapshots"),
        (lambda f: (f / "run.json").write_text('{"run_id": '), "run.json: not readable JSON"),
        (lambda f: (f / "history.csv").write_text(""), "history.csv: missing or unreadable"),
    ],
    ids=["metrics.json missing", "snapshots.npz corrupt", "run.json corrupt", "history.csv empty"],
)
def test_evaluate_refuses_damaged_inputs_in_one_line_and_writes_nothing(complete, monkeypatch, damage, message, refused):
    cfg, folder = complete
    damage(folder)
    before = snapshot(folder.parent.parent)
    monkeypatch.chdir(folder.parent.parent)
    args = ["experiment=xor_relu16", "paths.root=.", "paths.results=results", "tracking.enabled=false"]
    code, err = refused(evaluate.main, *args)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], lines
    assert snapshot(folder.parent.parent) == before


def test_single_class_training_data_is_refused(tmp_path, monkeypatch, refused):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "xor.csv").write_text("x1,x2,label,split\n0,0,1,train\n1,1,1,train\n")
    (tmp_path / "data" / "xor.json").write_text(
        '{"generated_with": {"name": "xor", "test_fraction": 0.0}, "features": ["x1", "x2"]}'
    )
    monkeypatch.chdir(tmp_path)
    code, err = refused(train.main, "experiment=xor_relu16", "paths.root=.", "tracking.enabled=false")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "both 0 and 1" in lines[0]
    assert not (tmp_path / "runs").exists()


def hold_lock(db: Path, seconds: float) -> threading.Thread:
    """A thread holding SQLite's exclusive lock on `db` for `seconds`, as another writer would."""
    locked = threading.Event()

    def hold():
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN EXCLUSIVE")
            locked.set()
            time.sleep(seconds)
            other.execute("ROLLBACK")

    thread = threading.Thread(target=hold)
    thread.start()
    locked.wait(10)
    return thread


def test_the_sqlite_store_is_checked_before_training(tmp_path):
    from pipeline.errors import TrackingError
    from pipeline.tracking.store import check_sqlite

    db = tmp_path / "mlflow.db"
    check_sqlite(db)  # not there yet: it will be created
    with contextlib.closing(sqlite3.connect(db)) as store:
        store.execute("CREATE TABLE runs (id TEXT)")
    holder = hold_lock(db, 2.0)
    start = time.monotonic()
    check_sqlite(db, wait=15)  # a brief lock: waits for it
    assert time.monotonic() - start >= 1.0
    holder.join()
    holder = hold_lock(db, 1.5)
    with pytest.raises(TrackingError, match=f"{db}: the MLflow store cannot be written \\(held by another process"):
        check_sqlite(db, wait=0.5)
    holder.join()
    db.write_bytes(b"this is not a database at all")
    with pytest.raises(TrackingError, match=f"{db}: not an SQLite database"):
        check_sqlite(db)
    with pytest.raises(TrackingError, match="cannot create the MLflow store"):
        check_sqlite(Path("/etc/hostname/mlflow.db"))


@pytest.mark.integration
@pytest.mark.parametrize(("uri", "waits"), [("{db}?timeout=15", True), ("{db}", False)], ids=["ours", "sqlite3's 5 s"])
def test_a_store_locked_for_8_s_while_a_process_opens_it_is_waited_out(tmp_path, monkeypatch, uri, waits):
    from mlflow.tracking import MlflowClient

    from pipeline.tracking.store import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # an earlier in-process sweep may have exported one
    store = uri.format(db=f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}")
    assert tracking_uri({"uri": None}, tmp_path) == store or not waits  # the URI every step of a run opens
    made = "from mlflow.tracking import MlflowClient as C; import sys; print(C(sys.argv[1]).create_run('0').info.run_id)"
    run_id = subprocess.run([sys.executable, "-c", made, store], capture_output=True, text=True, check=True).stdout.strip()
    holder = hold_lock(tmp_path / "mlflow.db", 8.0)
    start = time.monotonic()
    if waits:  # e.g. evaluate's client opening the store while another process writes
        client = MlflowClient(store)
        client.log_metric(run_id, "loss", 0.5)
        client.set_terminated(run_id)
        assert time.monotonic() - start >= 5 and client.get_run(run_id).info.status == "FINISHED"
    else:  # what the URI's timeout is for: MLflow's first look at the tables uses sqlite3's 5 s
        with pytest.raises(Exception, match="database is locked"):  # SQLAlchemy's OperationalError
            MlflowClient(store).log_metric(run_id, "loss", 0.5)
    holder.join()


@pytest.mark.integration
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://127.0.0.1:9", "the MLflow server at http://127.0.0.1:9 does not answer"),
        ("sqlite:////etc/hostname/mlflow.db", "/etc/hostname/mlflow.db: cannot create the MLflow store"),
    ],
)
def test_an_unusable_tracking_store_fails_fast_in_one_line_before_training(tmp_path, make_config, uri, message):
    from conftest import run_cli

    make_config("dataset=xor")
    start = time.monotonic()
    result = run_cli("train", "experiment=xor_relu16", f"paths.root={tmp_path}", cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert time.monotonic() - start < 20 and not (tmp_path / "runs").exists()


class HealthyButFailing(http.server.BaseHTTPRequestHandler):
    """A server whose /health answers but whose REST API fails, as one with a broken database does."""

    def do_GET(self):  # noqa: N802 (the handler's protocol)
        self.send_response(200 if self.path == "/health" else 500)
        self.end_headers()


@pytest.mark.parametrize(
    ("handler", "path", "code"),
    [(http.server.SimpleHTTPRequestHandler, "/health", 404), (HealthyButFailing, "/api/2.0/mlflow/experiments/search", 500)],
)
def test_a_server_that_is_not_working_mlflow_is_named(handler, path, code):
    from pipeline.errors import TrackingError
    from pipeline.tracking.store import check_server

    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    uri = f"http://127.0.0.1:{server.server_port}"
    try:
        with pytest.raises(TrackingError, match=f"{uri} answers {path}.* with HTTP {code}: not a working MLflow"):
            check_server(uri)
    finally:
        server.shutdown()


@pytest.mark.parametrize("killed_at", range(1, 8))  # 1: before the set is committed; 2-7: after 0-5 files moved in
def test_a_training_killed_anywhere_in_its_move_leaves_one_whole_set(tmp_path, monkeypatch, killed_at):
    folder, names = tmp_path / "results" / "xor_relu16", ["history.csv", "metrics.json", "model.keras", "run.json"]
    names += ["snapshots.npz", "timing.json"]
    with files.staged(folder, replaces=train.RUN_FILES) as stage:
        write_set(stage, dict.fromkeys([*names, "evaluation.json"], "old"))
    real_replace, calls = os.replace, []

    def killed(source, target):
        calls.append(target)
        if len(calls) == killed_at:
            raise KeyboardInterrupt  # as SIGKILL there would: nothing after it runs but `finally` blocks
        real_replace(source, target)

    monkeypatch.setattr(files.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt), files.staged(folder, replaces=train.RUN_FILES) as stage:
        write_set(stage, dict.fromkeys(names, "new"))
    monkeypatch.setattr(files.os, "replace", real_replace)
    files.settle(folder)  # what the next command does first
    expected = dict.fromkeys([*names, "evaluation.json"], "old") if killed_at == 1 else dict.fromkeys(names, "new")
    assert {k: v.decode() for k, v in snapshot(folder).items()} == expected
