"""MLflow tracking: store choice, run lifecycle, batched params and metrics, models, datasets, artifacts."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import types
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.pyfunc import PythonModel
from mlflow.tracking import MlflowClient

import pipeline
from pipeline.tracking_store import tracking_uri

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "failed to resolve pip version": pins are explicit
logging.getLogger("mlflow.types.type_hints").setLevel(logging.ERROR)  # NumpyMLPModel's `float | int` is meant loose
# MLflow's advice on integer schema columns and ambiguous local sources does not apply to these tiny tables.
warnings.filterwarnings("ignore", module=r"mlflow\.(types|data)\..*", category=UserWarning)

MAX_METRICS_PER_CALL = 1000  # MLflow's log_batch limits
MAX_PARAMS_PER_CALL = 100
MAX_PARAM_VALUE = 6000


def end_orphaned_runs(uri: str, helper: str, message: str) -> list[str]:
    """End FAILED every RUNNING run that the helper process `helper` (tag tracking_helper) opened; return their ids."""
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = client.search_runs(experiments, f"tags.tracking_helper = '{helper}' and attributes.status = 'RUNNING'")
    for run in found:
        client.set_tag(run.info.run_id, "error", message)
        client.set_terminated(run.info.run_id, "FAILED")
    return [run.info.run_id for run in found]


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys for a nested config, lists indexed (`model.hidden.0.units`); values cut to MLflow's limit."""
    if isinstance(config, Mapping):
        items = [(f"{prefix}{k}", v) for k, v in config.items()]
    elif isinstance(config, (list, tuple)):
        items = [(f"{prefix}{i}", v) for i, v in enumerate(config)]
    else:
        return {prefix.rstrip("."): str(config)[:MAX_PARAM_VALUE]}
    flat: dict[str, str] = {}
    for key, value in items:
        if isinstance(value, (Mapping, list, tuple)) and value:
            flat.update(flatten(value, f"{key}."))
        else:
            flat[key] = str(value)[:MAX_PARAM_VALUE]
    return flat


def git_tags(root: str | Path) -> dict[str, str]:
    """The git commit and whether the work tree has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

    try:
        return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": str(bool(git("status", "--porcelain")))}
    except (OSError, subprocess.CalledProcessError):
        return {}


class Run:
    """One MLflow run, written through `MlflowClient.log_batch` in as few calls as MLflow allows."""

    def __init__(self, client: MlflowClient, run_id: str) -> None:
        self.client, self.run_id = client, run_id
        self.model_id: str | None = None  # the model logged last; final metrics and the dataset link to it
        self.dataset: tuple[str, str] | None = None  # (name, digest) of the training data logged last

    def log_params(self, params: Mapping[str, Any]) -> None:
        entries = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(entries), MAX_PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=entries[i : i + MAX_PARAMS_PER_CALL])

    def log_config(self, config: Mapping[str, Any]) -> None:
        """The config as params with dotted keys (see `flatten`)."""
        self.log_params(flatten(config))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._log_metric_entries([Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None])

    def log_final_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        """Final values, linked to the logged model and the training dataset (the model's page lists them)."""
        now = int(time.time() * 1000)
        name, digest = self.dataset or (None, None)
        entries = [Metric(k, float(v), now, step, self.model_id, name, digest) for k, v in metrics.items() if v is not None]
        self._log_metric_entries(entries)

    def log_series(self, series: Mapping[str, list[float]], first_step: int = 1) -> None:
        """Per-epoch values with step=epoch, at most 1000 per call."""
        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, first_step + i) for key, values in series.items() for i, value in enumerate(values)
        ]
        self._log_metric_entries(entries)

    def _log_metric_entries(self, entries: list[Metric]) -> None:
        for i in range(0, len(entries), MAX_METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=entries[i : i + MAX_METRICS_PER_CALL])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_keras_model_file(
        self, path: str | Path, example: Any, output: Any, name: str = "model", registered_name: str | None = None
    ) -> str:
        """Log a saved `.keras` file through MLflow's Keras flavour, with signature and input example; return its URI.

        `output` is the model's prediction for `example` (for the signature). The model is called `name`; with
        `registered_name` it also becomes a new version of that registered model.
        """
        from mlflow.models import Model, infer_signature

        keras = pipeline.import_keras()
        example = np.asarray(example, dtype=np.float32)
        info = Model.log(
            artifact_path=None,
            name=name,
            flavor=KERAS_FLAVOR,
            registered_model_name=registered_name,
            run_id=self.run_id,
            model=keras.saving.load_model(path),
            input_example=example,
            signature=infer_signature(example, np.asarray(output, dtype=np.float32)),
            pip_requirements=pinned("keras", "tensorflow-cpu", "tensorflow", "numpy"),
            validate_serving_input=False,  # a Keras predict call; tests load the model and predict
        )
        self.model_id = info.model_id
        return info.model_uri

    def log_numpy_model_file(self, path: str | Path, example: Any, name: str, registered_name: str | None = None) -> str:
        """Log the numpy engine's `model.npz` as a pyfunc model (see NumpyMLPModel), like log_keras_model_file."""
        import mlflow.pyfunc

        info = mlflow.pyfunc.log_model(  # the run is the fluent API's active run
            name=name,
            python_model=NumpyMLPModel(),
            artifacts={"weights": str(path)},
            input_example=np.asarray(example, dtype=np.float64).tolist(),
            registered_model_name=registered_name,
            pip_requirements=pinned("numpy"),  # and this package, which defines the model's class
        )
        self.model_id = info.model_id
        return info.model_uri

    def log_dataset_file(self, path: Path, name: str) -> None:
        """Record a dataset CSV as a run input, named `name`, with the first 16 hex digits of its SHA-256."""
        import hashlib

        import pandas as pd

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.log_dataset(pd.read_csv(path), name, path, digest)

    def log_dataset(self, frame: Any, name: str, source: str | Path, digest: str) -> None:
        """Record the dataset as a run input, named after it, with its file's hash."""
        from mlflow.entities import LoggedModelInput
        from mlflow.exceptions import MlflowException

        from mlflow.data.pandas_dataset import from_pandas

        dataset = from_pandas(frame, source=str(source), name=name, targets="label", digest=digest)
        model = LoggedModelInput(self.model_id) if self.model_id else None
        self.dataset = (name, digest)
        for attempt in range(3):
            try:
                mlflow.log_input(dataset, context="training", model=model)  # the run is the fluent API's active run
                return
            except MlflowException as error:
                # Parallel jobs may insert the same dataset at once (SQLite: "UNIQUE constraint failed", PostgreSQL:
                # "duplicate key value violates unique constraint"); MLflow reuses it on the next try.
                if "unique constraint" not in str(error).lower() or attempt == 2:
                    raise


class NumpyMLPModel(PythonModel):
    """The numpy engine's MLP as an MLflow model: `predict` gives its output probabilities (no MLflow flavour has it)."""

    def load_context(self, context: Any) -> None:
        from pipeline.backprop import MLP

        self.mlp = MLP.load(context.artifacts["weights"])

    # MLflow reads the signature from these hints (rows of numbers, JSON's ints included) and checks inputs.
    def predict(self, context: Any, model_input: list[list[float | int]], params: dict[str, Any] | None = None) -> list[float]:
        return np.ravel(self.mlp.probabilities(np.asarray(model_input, dtype=np.float64))).tolist()


def save_keras_model(path: str, validate_serving_input: bool = True, **kwargs: Any) -> None:
    """`mlflow.keras.save_model`, into a folder made first: MLflow 3.17 writes the input example before it makes it.

    `validate_serving_input` is Model.log's own option, which it also hands to the flavour.
    """
    import mlflow.keras

    os.makedirs(path, exist_ok=True)
    mlflow.keras.save_model(path=path, **kwargs)


# Model.log's `flavor`: MLflow's Keras flavour with the save_model above.
KERAS_FLAVOR = types.SimpleNamespace(__name__="mlflow.keras", save_model=save_keras_model)


def pinned(*names: str) -> list[str]:
    """`name==version` for each of these packages that is installed."""
    from importlib import metadata

    pins = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


# Asks MLflow 3's UI to open the experiment on its runs, not its GenAI overview (the 3.17 UI follows its own
# "Model training" switch instead, hence the README's `?workflowType=machine_learning`).
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def experiment_for(name: str, uri: str, root: str | Path, description: str | None = None) -> str:
    """The id of experiment `name`, created if new, with its kind and description (`mlflow.note.content`) tags.

    A SQLite store keeps artifacts in <root>/mlartifacts.
    """
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    tags = EXPERIMENT_KIND | ({"mlflow.note.content": description} if description else {})
    for _ in range(2):  # a parallel job may create it between our look and our create
        if (experiment := client.get_experiment_by_name(name)) is not None:
            for key, value in tags.items():  # an experiment made by an older version, or by hand
                if experiment.tags.get(key) != value:
                    client.set_experiment_tag(experiment.experiment_id, key, value)
            return experiment.experiment_id
        location = (Path(root).resolve() / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
        with contextlib.suppress(MlflowException):
            return client.create_experiment(name, artifact_location=location, tags=tags)
    raise RuntimeError(f"could not create MLflow experiment {name!r}")


def open_run(
    tracking_cfg: Mapping[str, Any],
    root: str | Path,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    parent_run_id: str | None = None,
) -> Run:
    """Start a run (a child of `parent_run_id` if given), tagged with git, DVC stage and `tags`."""
    uri = tracking_uri(tracking_cfg, root)
    mlflow.set_tracking_uri(uri)
    experiment_id = experiment_for(tracking_cfg["experiment_name"], uri, root, tracking_cfg.get("description"))
    all_tags = {k: str(v) for k, v in {**git_tags(root), **(tags or {})}.items()}
    if os.environ.get("DVC_STAGE"):
        all_tags["dvc_stage"] = os.environ["DVC_STAGE"]
    active = mlflow.start_run(
        experiment_id=experiment_id,
        run_name=run_name,
        tags=all_tags,
        parent_run_id=parent_run_id or None,
    )
    return Run(MlflowClient(), active.info.run_id)


def end_run(run_id: str, status: str, message: str | None = None) -> None:
    """End the active run with `status` (FINISHED, FAILED or KILLED); `message` becomes its `error` tag."""
    if message:
        with contextlib.suppress(Exception):  # never hide the original error behind a tracking error
            MlflowClient().set_tag(run_id, "error", message[:5000])
    mlflow.end_run(status)
