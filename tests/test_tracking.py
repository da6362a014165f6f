"""MLflow tracking against real stores: params, per-epoch metrics, artifacts, models, status, sweeps."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from conftest import mlflow_server, run_cli, run_sweep
from mlflow.tracking import MlflowClient

from pipeline.config.overrides import flatten
from pipeline.core import engines
from pipeline.errors import DivergedError, TrackingError
from pipeline.stages.train import train
from pipeline.tracking import runs
from pipeline.tracking.store import tracking_uri

XOR = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)


def store(root: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


def only_run(client: MlflowClient, experiment: str):
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1
    return runs[0]


def model_id(client: MlflowClient, run) -> str:
    """The id of the one model `run` logged."""
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")
    return model.model_id


def test_flatten_indexes_lists_and_dots_keys():
    flat = flatten({"model": {"hidden": [{"units": 16, "activation": "relu"}]}, "metrics": ["a"], "x": None})
    assert flat == {"model.hidden.0.units": "16", "model.hidden.0.activation": "relu", "metrics.0": "a", "x": "None"}


def test_uri_prefers_environment_then_config_then_sqlite_at_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri({"uri": None}, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db?timeout=15"
    assert tracking_uri({"uri": "sqlite:///a.db?timeout=2"}, tmp_path) == "sqlite:///a.db?timeout=2"
    assert tracking_uri({"uri": "http://127.0.0.1:5000"}, tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")
    assert tracking_uri({"uri": "http://127.0.0.1:5000"}, tmp_path) == "http://127.0.0.1:6000"


def test_run_logs_params_history_artifacts_model_and_dataset(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_STAGE", "train@xor_relu16")
    metrics = train(
        make_config("experiment=xor_relu16", "tracking.registered_model=xor_relu16", tracking=True), out=tmp_path / "out"
    )
    client = store(tmp_path)
    run = only_run(client, "xor_relu16")
    assert run.info.status == "FINISHED" and run.info.run_name == "xor_relu16"
    assert run.data.tags["mlflow.source.name"].endswith("train.py")  # the stage, as the UI's Source column shows
    params = run.data.params
    assert params["model.hidden.0.units"] == "16" and params["model.hidden.0.activation"] == "relu"
    assert params["optimizer._target_"] == "keras.optimizers.Adam" and params["trainer.epochs"] == "1000"
    assert run.data.tags["engine"] == "compiled" and run.data.tags["seed"] == "0"
    assert run.data.tags["dvc_stage"] == "train@xor_relu16"
    loss = client.get_metric_history(run.info.run_id, "epoch_loss")
    assert [m.step for m in loss] == list(range(1, 1001))
    assert run.data.metrics["final_train_accuracy"] == 1.0
    assert run.data.metrics["final_convergence_epoch"] == metrics["convergence_epoch"]
    assert not [k for k in run.data.metrics if "test" in k]  # XOR has no test split
    experiment = client.get_experiment_by_name("xor_relu16")
    assert experiment.tags["mlflow.note.content"].startswith("Training runs of xor_relu16;")  # plain text
    (model,) = client.search_logged_models([experiment.experiment_id])
    assert model.name == "xor_relu16" and model.source_run_id == run.info.run_id
    assert {m.key: m.value for m in model.metrics}["final_train_accuracy"] == 1.0
    assert {m.dataset_name for m in model.metrics} == {"xor"}
    (version,) = client.search_model_versions("name = 'xor_relu16'")
    assert version.run_id == run.info.run_id and int(version.version) == 1
    assert float(version.tags["final_train_accuracy"]) == 1.0 and version.tags["config_digest"] == run.data.tags["config_digest"]
    assert version.description.startswith("xor_relu16: final_train_loss ") and run.info.run_id in version.description
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "results"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "results")} >= {"results/history.csv"}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["xor"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_uri = "models:/xor_relu16/1"
    loaded = mlflow.keras.load_model(model_uri)
    assert np.round(loaded.predict(XOR, verbose=0)).ravel().tolist() == [0, 1, 1, 0]
    assert mlflow.models.get_model_info(model_uri).signature is not None
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()


def test_numpy_engine_logs_a_registered_pyfunc_model_as_code_without_pickling(make_config, tmp_path, monkeypatch, capfd):
    import warnings

    from pipeline.core.backprop import MLP

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config("experiment=xor_bias_numpy", "trainer.epochs=10", "tracking.registered_model=xor_bias_numpy", tracking=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, out=tmp_path / "out")
    assert not [w for w in caught if "pickle" in str(w.message).lower()]
    printed = capfd.readouterr().err
    assert "Downloading artifacts" not in printed and "WARNING" not in printed  # what `dvc repro` shows
    client = store(tmp_path)
    run = only_run(client, "xor_bias_numpy")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    folder = Path(mlflow.artifacts.download_artifacts("models:/xor_bias_numpy/1", dst_path=str(tmp_path / "model")))
    assert (folder / "numpy_model.py").is_file() and not list(folder.rglob("*.pkl"))  # code, not a pickle
    assert MLP.load(next(folder.rglob("model.npz"))).activations == ["sigmoid", "sigmoid"]
    served = mlflow.pyfunc.load_model("models:/xor_bias_numpy/1")
    x = np.hstack([XOR, np.ones((4, 1))]).astype(np.float64)
    trained = MLP.load(tmp_path / "out" / "model.npz")
    np.testing.assert_array_equal(served.predict(x.tolist()), np.ravel(trained.probabilities(x)))
    assert served.predict([[0, 1, 1]]) == served.predict([[0.0, 1.0, 1.0]])  # JSON's integers are numbers too
    assert served.metadata.run_id == run.info.run_id and served.metadata.signature is not None


def test_exception_ends_the_run_failed_with_the_message(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(DivergedError):
        train(make_config("experiment=xor_relu16", "optimizer.learning_rate=1e6", tracking=True), out=tmp_path / "o")
    run = only_run(store(tmp_path), "xor_relu16")
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("diverged at epoch")


def training_under_way(root: Path) -> subprocess.Popen:
    """A tracked 2,000,000-epoch XOR run in a subprocess under `root`, returned once it trains and its run has started."""
    assert run_cli("generate", "dataset=xor", "paths.root=.", cwd=root).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"PYTHONUNBUFFERED": "1"}
    # pytest run as a background job ignores SIGINT, and a child would inherit that; a handler is not inherited.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline.stages.train",
                "experiment=xor_relu16",
                "trainer.epochs=2000000",
                "trainer.progress_every=2000",
                "paths.root=.",
            ],
            cwd=root,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    for line in process.stderr:  # wait until training is under way
        if line.startswith("[compiled] epoch"):
            break
    for _ in range(600):  # and the run has started: the store is created, its config logged
        if list(root.glob("mlartifacts/**/config.yaml")):
            break
        time.sleep(0.1)
    return process


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_training_subprocess_ends_killed_without_a_model(tmp_path, signum):
    process = training_under_way(tmp_path)
    process.send_signal(signum)
    _, err = process.communicate(timeout=120)
    assert process.returncode != 0
    assert "interrupted" in err and "interrupted ()" not in err
    run = only_run(store(tmp_path), "xor_relu16")
    assert run.info.status == "KILLED"
    assert not list(tmp_path.glob("runs/**/model.keras")) and not list(tmp_path.glob("runs/**/.*tmp*"))


def test_a_failed_tracking_call_is_one_error_line_and_ends_the_run_failed(make_config, tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    def refuse(*args, **kwargs):
        raise MlflowException("the store refused\nsecond line")

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setattr(mlflow, "log_input", refuse)
    with pytest.raises(TrackingError, match=r"^tracking: MlflowException: the store refused$"):
        train(make_config("experiment=xor_relu16", "trainer.epochs=20", tracking=True), out=tmp_path / "o")
    run = only_run(store(tmp_path), "xor_relu16")
    assert run.info.status == "FAILED" and run.data.tags["error"] == "MlflowException: the store refused"
    assert not (tmp_path / "o").exists()  # no outputs of a run that did not finish


@pytest.mark.integration
def test_a_killed_training_process_leaves_its_run_killed_not_running(tmp_path):
    """SIGKILL gives the trainer no chance to end its run; its watchdog process sees it go and ends it."""
    process = training_under_way(tmp_path)
    process.kill()
    process.wait(timeout=60)
    for _ in range(60):
        run = only_run(store(tmp_path), "xor_relu16")
        if run.info.status != "RUNNING":
            break
        time.sleep(0.5)
    assert run.info.status == "KILLED"
    assert "died without ending it" in run.data.tags["error"]


@pytest.mark.integration
def test_multirun_is_one_parent_with_children_and_a_summary(tmp_path):
    client, parent, children = run_sweep(
        tmp_path,
        "model.hidden.0.units=2,4,8",
        "optimizer.learning_rate=0.01,0.1",
        "trainer.epochs=100",
        "evaluate_multirun_jobs=false",
    )
    assert len(children) == 6 and all(c.info.status == "FINISHED" for c in children)
    assert sorted(c.data.params["model.hidden.0.units"] for c in children) == ["2", "2", "4", "4", "8", "8"]
    summary = client.download_artifacts(parent.info.run_id, "summary.csv", str(tmp_path))
    import pandas as pd

    table = pd.read_csv(summary)
    assert len(table) == 6 and sorted(table["model.hidden.0.units"]) == [2, 2, 4, 4, 8, 8]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"summary.csv", "sweep_heatmap.png"} <= artifacts
    best = parent.data.tags["best_run_id"]
    assert best in {c.info.run_id for c in children}
    assert parent.data.metrics["best_train_loss"] == table["train_loss"].min()


@pytest.mark.system
def test_run_against_a_real_tracking_server_with_proxied_artifacts(make_config, tmp_path, monkeypatch):
    with mlflow_server(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "server-artifacts", tmp_path) as uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        train(make_config("experiment=xor_relu16", "trainer.epochs=300", tracking=True), out=tmp_path / "out")
        client = MlflowClient(uri)
        run = only_run(client, "xor_relu16")
        assert run.info.status == "FINISHED"
        assert len(client.get_metric_history(run.info.run_id, "epoch_loss")) == 300
        assert (tmp_path / "server-artifacts").is_dir()
        mlflow.set_tracking_uri(uri)
        loaded = mlflow.keras.load_model(f"models:/{model_id(client, run)}")
        assert loaded.predict(XOR, verbose=0).shape == (4, 1)


def test_a_dataset_inserted_at_once_by_another_job_is_reused(tmp_path, monkeypatch):
    from mlflow.exceptions import MlflowException

    calls = []

    def log_input(dataset, context, model=None):
        calls.append(context)
        if len(calls) == 1:  # what a tracking server on PostgreSQL answers when another job won the race
            raise MlflowException('duplicate key value violates unique constraint "datasets_pk"')

    def refuse(dataset, context, model=None):
        raise MlflowException("denied")

    csv = tmp_path / "xor.csv"
    pd.DataFrame({"x": [0.0], "label": [1]}).to_csv(csv, index=False)
    monkeypatch.setattr(mlflow, "log_input", log_input)
    assert runs.log_dataset(csv, "xor").name == "xor"
    assert calls == ["training", "training"]
    monkeypatch.setattr(mlflow, "log_input", refuse)  # any other refusal is not retried
    with pytest.raises(MlflowException, match="denied"):
        runs.log_dataset(csv, "xor")


def test_a_run_is_named_after_the_experiment_and_what_differs_from_its_preset(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    bookkeeping = ["experiment=xor_relu16", "paths.root=.", "tracking.registered_model=x"]
    assert runs.run_name("xor_relu16", bookkeeping, []) == "xor_relu16"
    assert runs.run_name("xor_relu16", ["trainer.epochs=500"], []) == "xor_relu16 trainer.epochs=500"
    monkeypatch.setenv("DVC_EXP_NAME", "lusty-bran")
    assert runs.run_name("xor_relu16", [], ["trainer.seed=3"]) == "xor_relu16 (dvc exp lusty-bran) trainer.seed=3"


def test_the_preset_changes_are_its_values_that_differ_from_the_git_baseline(tmp_path, monkeypatch):
    preset = tmp_path / "xor.yaml"
    preset.write_text("name: xor\ntrainer:\n  epochs: 1000\n  seed: 0\n")
    assert runs.preset_changes(preset) == []  # not in a git repository
    for command in (["init", "-q"], ["add", "."], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *command], cwd=tmp_path, check=True)
    monkeypatch.delenv("DVC_EXP_BASELINE_REV", raising=False)
    assert runs.preset_changes(preset) == []
    preset.write_text("name: xor\ntrainer:\n  epochs: 500\n")  # as `dvc exp run -S` edits it
    assert runs.preset_changes(preset) == ["trainer.epochs=500", "~trainer.seed"]


def test_two_configs_never_share_a_run_name_in_one_experiment(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    train(make_config("experiment=xor_relu16", "trainer.epochs=5", tracking=True), out=tmp_path / "a")
    train(make_config("experiment=xor_relu16", "trainer.epochs=5", tracking=True), out=tmp_path / "b")  # same config
    # a config that the name does not show (here: composed, not a command line), as an edited config group gives
    train(make_config("experiment=xor_relu16", "trainer.epochs=6", tracking=True), out=tmp_path / "c")
    client = store(tmp_path)
    found = client.search_runs([client.get_experiment_by_name("xor_relu16").experiment_id], order_by=["attributes.start_time"])
    names = [r.info.run_name for r in found]
    assert names[:2] == ["xor_relu16", "xor_relu16"] and names[2] == f"xor_relu16 #{found[2].data.tags['config_digest']}"


def sweep_under_way(root: Path, workers: int) -> subprocess.Popen:
    """A tracked 4-job sweep under `root` (its own process group), joblib on 2 workers or (1) Hydra's sequential
    launcher, returned once `workers` jobs train."""
    assert run_cli("generate", "dataset=xor", "paths.root=.", cwd=root).returncode == 0
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in training_under_way
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.stages.train", "-m", "experiment=xor_relu16", "trainer.seed=0,1,2,3"]
            + ["trainer.epochs=2000000", "trainer.progress_every=2000", "paths.root=."]
            + (
                ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={workers}"] if workers > 1 else []
            ),  # progress every 2000 epochs: the graph returns to Python, which takes signals, often
            cwd=root,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # its own group: Ctrl-C in a terminal signals the whole group
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    jobs = (
        "SELECT count(*) FROM runs WHERE status = 'RUNNING' AND run_uuid NOT IN (SELECT run_uuid FROM tags WHERE key = 'sweep')"
    )
    for _ in range(1200):  # read-only SQL: a client of our own would race the sweep's creation of the store
        with (
            contextlib.suppress(sqlite3.Error),
            contextlib.closing(sqlite3.connect(f"file:{root / 'mlflow.db'}?mode=ro", uri=True)) as db,
        ):
            if db.execute(jobs).fetchone()[0] == workers:
                return process
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the sweep's jobs did not start")


@pytest.mark.system
@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM", "SIGINT", "group SIGINT", "sequential SIGKILL"])
def test_a_sweep_stopped_any_way_leaves_no_run_running(tmp_path, how):
    process = sweep_under_way(tmp_path, workers=1 if how.startswith("sequential") else 2)
    try:
        if how.startswith("sequential"):
            os.kill(process.pid, signal.SIGKILL)
        elif how == "group SIGINT":
            os.killpg(process.pid, signal.SIGINT)
        else:
            os.kill(process.pid, getattr(signal, how))
        process.wait(timeout=60)  # idle joblib workers may hold its stderr open: read once they are gone
        for _ in range(60):  # within 30 s every run of the sweep has ended
            experiment = store(tmp_path).get_experiment_by_name("xor_relu16")
            runs = store(tmp_path).search_runs([experiment.experiment_id])
            if not any(r.info.status == "RUNNING" for r in runs):
                break
            time.sleep(0.5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # workers left behind, if any
    err = process.stderr.read()
    assert [r.info.status for r in runs if r.info.status == "RUNNING"] == []
    assert len(runs) >= 2 and {r.info.status for r in runs} == {"KILLED"}  # the parent and its started jobs
    if "SIGKILL" not in how:
        assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: interrupted"), err[-2000:]


def test_evaluate_refuses_a_run_json_that_names_another_run(make_config, tmp_path, monkeypatch, refused):
    from conftest import snapshot

    from pipeline.stages import evaluate

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    for name in ("xor_relu16", "xor_relu32"):
        train(make_config(f"experiment={name}", "trainer.epochs=20", tracking=True))
    other = json.loads((tmp_path / "runs" / "xor_relu32" / "run.json").read_text())["run_id"]
    shutil.copy(tmp_path / "runs" / "xor_relu32" / "run.json", tmp_path / "runs" / "xor_relu16" / "run.json")
    before, logged = snapshot(tmp_path / "runs"), store(tmp_path).get_run(other).data
    monkeypatch.chdir(tmp_path)
    code, err = refused(evaluate.main, "experiment=xor_relu16", "paths.root=.")
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and f"run.json: names run {other}, which did not train model.keras" in lines[0]
    assert snapshot(tmp_path / "runs") == before  # nothing evaluated, nothing logged into the other run
    after = store(tmp_path).get_run(other).data
    assert after.metrics == logged.metrics and after.tags == logged.tags


def test_an_unwritable_artifact_store_is_refused_before_training(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlartifacts").write_text("a file where the experiment's artifact folder goes")
    trained = []
    monkeypatch.setattr(engines, "train", lambda *args: trained.append(args))
    with pytest.raises(TrackingError, match="mlartifacts: the experiment's artifact store cannot be written .* is a file"):
        train(make_config("experiment=xor_relu16", "trainer.epochs=20", tracking=True), out=tmp_path / "o")
    assert not trained and not (tmp_path / "o").exists()
    assert store(tmp_path).search_runs([store(tmp_path).get_experiment_by_name("xor_relu16").experiment_id]) == []


def test_ctrl_c_inside_the_final_logging_is_held_until_it_ends_then_ends_the_run_killed(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    real = runs.log_dataset

    def interrupted_while_logging(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # inside an SQLite write, it left the store locked and the run RUNNING
        return real(*args, **kwargs)

    monkeypatch.setattr(runs, "log_dataset", interrupted_while_logging)
    with pytest.raises(KeyboardInterrupt):
        train(make_config("experiment=xor_relu16", "trainer.epochs=20", tracking=True), out=tmp_path / "o")
    run = only_run(store(tmp_path), "xor_relu16")
    assert run.info.status == "KILLED" and run.data.tags["error"] == "interrupted (Ctrl-C)"
    assert "final_train_loss" in run.data.metrics  # the logging it arrived in ran to its end first
