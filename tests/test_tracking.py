"""MLflow tracking against real stores: params, per-epoch metrics, artifacts, models, status, sweeps."""

from __future__ import annotations

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
from mlflow.tracking import MlflowClient

from conftest import mlflow_server, run_cli, run_sweep
from pipeline import tracking, tracking_process
from pipeline.errors import DivergedError
from pipeline.train import train

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
    flat = tracking.flatten({"model": {"hidden": [{"units": 16, "activation": "relu"}]}, "metrics": ["a"], "x": None})
    assert flat == {"model.hidden.0.units": "16", "model.hidden.0.activation": "relu", "metrics.0": "a", "x": "None"}


def test_uri_prefers_environment_then_config_then_sqlite_at_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri({"uri": None}, tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlflow.db?timeout=15"
    assert tracking.tracking_uri({"uri": "sqlite:///a.db?timeout=2"}, tmp_path) == "sqlite:///a.db?timeout=2"
    assert tracking.tracking_uri({"uri": "http://127.0.0.1:5000"}, tmp_path) == "http://127.0.0.1:5000"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:6000")
    assert tracking.tracking_uri({"uri": "http://127.0.0.1:5000"}, tmp_path) == "http://127.0.0.1:6000"


@pytest.mark.integration
def test_run_logs_params_history_artifacts_model_and_dataset(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_STAGE", "train@xor_relu16")
    metrics = train(
        make_config("experiment=xor_relu16", "tracking.registered_model=xor_relu16", tracking=True), out=tmp_path / "out"
    )
    client = store(tmp_path)
    run = only_run(client, "xor_relu16")
    assert run.info.status == "FINISHED" and run.info.run_name == "xor_relu16"
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
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.tags["mlflow.note.content"].startswith("Training runs of `xor_relu16`")
    (model,) = client.search_logged_models([experiment.experiment_id])
    assert model.name == "xor_relu16" and model.source_run_id == run.info.run_id
    assert {m.key: m.value for m in model.metrics}["final_train_accuracy"] == 1.0
    assert {m.dataset_name for m in model.metrics} == {"xor"}
    (version,) = client.search_model_versions("name = 'xor_relu16'")
    assert version.run_id == run.info.run_id and int(version.version) == 1
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "results"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "results")} >= {"results/history.csv"}
    assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["xor"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model_uri = "models:/xor_relu16/1"
    loaded = mlflow.keras.load_model(model_uri)
    assert np.round(loaded.predict(XOR, verbose=0)).ravel().tolist() == [0, 1, 1, 0]
    info = mlflow.models.get_model_info(model_uri)
    assert info.signature is not None and info.saved_input_example_info is not None
    assert (tmp_path / "mlartifacts").is_dir() and not (tmp_path / "mlruns").exists()


def test_keras_model_is_saved_with_its_input_example_into_a_new_folder(tmp_path):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(FileNotFoundError):  # MLflow 3.17 writes the example before it makes the folder
        mlflow.keras.save_model(model, str(tmp_path / "plain"), input_example=XOR, pip_requirements=["keras"])
    tracking.save_keras_model(
        str(tmp_path / "ours"), model=model, input_example=XOR, pip_requirements=["keras"], validate_serving_input=False
    )
    assert mlflow.models.get_model_info(str(tmp_path / "ours")).saved_input_example_info is not None
    np.testing.assert_array_equal(
        mlflow.keras.load_model(str(tmp_path / "ours")).predict(XOR, verbose=0), model.predict(XOR, verbose=0)
    )


@pytest.mark.integration
def test_numpy_engine_logs_its_weights_file_and_a_registered_pyfunc_model(make_config, tmp_path, monkeypatch):
    from pipeline.backprop import MLP

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = make_config("experiment=xor_bias_numpy", "trainer.epochs=10", "tracking.registered_model=xor_bias_numpy", tracking=True)
    train(cfg, out=tmp_path / "out")
    client = store(tmp_path)
    run = only_run(client, "xor_bias_numpy")
    local = client.download_artifacts(run.info.run_id, "model/model.npz", str(tmp_path / "download"))
    assert MLP.load(local).activations == ["sigmoid", "sigmoid"]
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    served = mlflow.pyfunc.load_model("models:/xor_bias_numpy/1")
    x = np.hstack([XOR, np.ones((4, 1))]).astype(np.float64)
    trained = MLP.load(tmp_path / "out" / "model.npz")
    np.testing.assert_array_equal(served.predict(x.tolist()), np.ravel(trained.probabilities(x)))
    assert served.predict([[0, 1, 1]]) == served.predict([[0.0, 1.0, 1.0]])  # JSON's integers are numbers too
    assert served.metadata.run_id == run.info.run_id and served.metadata.signature is not None


@pytest.mark.integration
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
                "pipeline.train",
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


@pytest.mark.integration
def test_a_failed_tracking_call_is_one_error_line_and_ends_the_run_failed(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = {"uri": None, "experiment_name": "broken"}
    with (
        pytest.raises(tracking_process.TrackingError, match=r"^tracking: log_artifact: .*missing\.csv"),
        tracking_process.start(cfg, str(tmp_path), "r", {}) as run,
    ):
        run.log_metrics({"x": 1.0})
        run.log_artifact(tmp_path / "missing.csv")
        run.log_metrics({"y": 2.0})  # skipped: the run has already failed
    run = only_run(store(tmp_path), "broken")
    assert run.info.status == "FAILED" and "missing.csv" in run.data.tags["error"]
    assert run.data.metrics == {"x": 1.0}


@pytest.mark.integration
def test_a_run_ended_without_waiting_ends_once_settled_and_its_failure_fails_the_next_run(tmp_path, monkeypatch):
    """What a sequential sweep's jobs do: each job goes on while the helper logs its run."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = {"uri": None, "experiment_name": "later"}
    with tracking_process.start(cfg, str(tmp_path), "first", {}, wait_at_end=False) as run:
        run.log_series({"loss": [0.5, 0.25]})
    tracking_process.settle()
    first = only_run(store(tmp_path), "later")
    assert first.info.status == "FINISHED" and first.data.metrics == {"loss": 0.25}

    with tracking_process.start(cfg, str(tmp_path), "broken", {}, wait_at_end=False) as run:
        run.log_artifact(tmp_path / "missing.csv")  # no error yet: the job did not wait
    with (
        pytest.raises(tracking_process.TrackingError, match=r"^tracking: run broken: log_artifact: .*missing\.csv"),
        tracking_process.start(cfg, str(tmp_path), "next", {}) as run,
    ):
        run.log_metrics({"x": 1.0})
        assert run.run_id  # the first wait for the helper
    runs = {r.info.run_name: r for r in store(tmp_path).search_runs([first.info.experiment_id])}
    assert runs["broken"].info.status == "FAILED" and "missing.csv" in runs["broken"].data.tags["error"]
    assert runs["next"].info.status == "FAILED" and "run broken" in runs["next"].data.tags["error"]

    with tracking_process.start(cfg, str(tmp_path), "last", {}, wait_at_end=False) as run:
        run.log_artifact(tmp_path / "missing.csv")
    with pytest.raises(tracking_process.TrackingError, match=r"^tracking: run last: log_artifact"):
        tracking_process.raise_late_error()  # what the command does when its sweep is over
    tracking_process.raise_late_error()  # raised once


@pytest.mark.integration
def test_a_killed_training_process_leaves_its_run_killed_not_running(tmp_path):
    """SIGKILL gives the trainer no chance to end its run; MLflow's helper process sees it go and ends it."""
    process = training_under_way(tmp_path)
    process.kill()
    process.wait(timeout=60)
    for _ in range(60):
        run = only_run(store(tmp_path), "xor_relu16")
        if run.info.status != "RUNNING":
            break
        time.sleep(0.5)
    assert run.info.status == "KILLED"
    assert "ended without ending its run" in run.data.tags["error"]


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


def test_prestart_starts_the_helper_only_where_this_process_will_track(monkeypatch):
    started = []
    monkeypatch.setattr(tracking_process, "helper", lambda: started.append(True))
    tracking_process.prestart(["experiment=xor_relu16", "tracking.enabled=false"])
    tracking_process.prestart(["-m", "hydra/launcher=joblib", "trainer.seed=0,1"])  # jobs run in workers
    assert started == []
    tracking_process.prestart(["-m", "experiment=xor_relu16", "trainer.seed=0,1"])
    assert started == [True]


def test_the_in_thread_helper_used_on_windows_logs_the_same_run(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    helper = tracking_process.Helper(in_thread=True)
    monkeypatch.setattr(tracking_process, "_helper", helper)
    train(make_config("experiment=xor_relu16", "trainer.epochs=50", tracking=True), out=tmp_path / "out")
    assert helper.thread is not None and helper.process is None
    client = store(tmp_path)
    run = only_run(client, "xor_relu16")
    assert run.info.status == "FINISHED" and len(client.get_metric_history(run.info.run_id, "epoch_loss")) == 50
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    model = mlflow.keras.load_model(f"models:/{model_id(client, run)}")
    assert model.predict(XOR, verbose=0).shape == (4, 1)
    helper.close()


def test_a_dataset_inserted_at_once_by_another_job_is_reused(monkeypatch):
    from mlflow.exceptions import MlflowException

    calls = []

    def log_input(dataset, context, model=None):
        calls.append(context)
        if len(calls) == 1:  # what a tracking server on PostgreSQL answers when another job won the race
            raise MlflowException('duplicate key value violates unique constraint "datasets_pk"')

    def refuse(dataset, context, model=None):
        raise MlflowException("denied")

    run, frame = tracking.Run(None, "run-id"), pd.DataFrame({"x": [0.0], "label": [1]})
    monkeypatch.setattr(mlflow, "log_input", log_input)
    run.log_dataset(frame, "xor", "data/xor.csv", "0" * 16)
    assert calls == ["training", "training"]
    monkeypatch.setattr(mlflow, "log_input", refuse)  # any other refusal is not retried
    with pytest.raises(MlflowException, match="denied"):
        run.log_dataset(frame, "xor", "data/xor.csv", "0" * 16)
