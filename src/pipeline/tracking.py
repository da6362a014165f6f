"""MLflow tracking: store choice, run lifecycle, batched params and metrics, models, datasets, artifacts."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
import types
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
from hydra.experimental.callback import Callback
from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

logging.getLogger("mlflow").setLevel(logging.WARNING)
logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "failed to resolve pip version": pins are explicit
# MLflow's advice on integer schema columns and ambiguous local sources does not apply to these tiny tables.
warnings.filterwarnings("ignore", module=r"mlflow\.(types|data)\..*", category=UserWarning)

MAX_METRICS_PER_CALL = 1000  # MLflow's log_batch limits
MAX_PARAMS_PER_CALL = 100
MAX_PARAM_VALUE = 6000
PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"  # set by the sweep callback; jobs become its children


def tracking_uri(tracking_cfg: Mapping[str, Any], root: str | Path) -> str:
    """MLFLOW_TRACKING_URI if set, else the configured URI, else the SQLite store mlflow.db under `root`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_cfg.get("uri")
    return uri or f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


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

    def log_params(self, params: Mapping[str, Any]) -> None:
        entries = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(entries), MAX_PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=entries[i:i + MAX_PARAMS_PER_CALL])

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        now = int(time.time() * 1000)
        self._log_metric_entries([Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None])

    def log_series(self, series: Mapping[str, list[float]], first_step: int = 1) -> None:
        """Per-epoch values with step=epoch, at most 1000 per call."""
        now = int(time.time() * 1000)
        entries = [
            Metric(key, float(value), now, first_step + i) for key, values in series.items() for i, value in enumerate(values)
        ]
        self._log_metric_entries(entries)

    def _log_metric_entries(self, entries: list[Metric]) -> None:
        for i in range(0, len(entries), MAX_METRICS_PER_CALL):
            self.client.log_batch(self.run_id, metrics=entries[i:i + MAX_METRICS_PER_CALL])

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self.client.log_batch(self.run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), folder)

    def log_text(self, text: str, name: str) -> None:
        self.client.log_text(self.run_id, text, name)

    def log_keras_model(self, model: Any, example: Any) -> str:
        """Log through MLflow's Keras flavour with a signature and an input example; return the model URI."""
        import numpy as np
        from mlflow.models import Model, infer_signature

        example = np.asarray(example, dtype=np.float32)
        signature = infer_signature(example, np.asarray(model(example, training=False)))
        info = Model.log(
            artifact_path=None, name="model", flavor=_KERAS_FLAVOR, run_id=self.run_id, model=model,
            signature=signature, input_example=example,
            validate_serving_input=False,  # a Keras predict call; the tests load the logged model and predict
            pip_requirements=_pinned("keras", "tensorflow-cpu", "tensorflow", "numpy"),
        )
        return info.model_uri

    def log_dataset_file(self, path: Path, name: str) -> None:
        """Record a dataset CSV as a run input, named `name`, with the first 16 hex digits of its SHA-256."""
        import hashlib

        import pandas as pd

        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        self.log_dataset(pd.read_csv(path), name, path, digest)

    def log_dataset(self, frame: Any, name: str, source: str | Path, digest: str) -> None:
        """Record the dataset as a run input, named after it, with its file's hash."""
        from mlflow.exceptions import MlflowException

        dataset = mlflow.data.from_pandas(frame, source=str(source), name=name, targets="label", digest=digest)
        for attempt in range(3):
            try:
                mlflow.log_input(dataset, context="training")  # the run is the fluent API's active run
                return
            except MlflowException as error:
                # Parallel jobs may insert the same dataset at once; MLflow reuses it on the next try.
                if "UNIQUE constraint" not in str(error) or attempt == 2:
                    raise


def _save_keras_model(path: str, **kwargs: Any) -> None:
    # MLflow 3.17's mlflow.keras.save_model writes the input example before creating its folder.
    os.makedirs(path, exist_ok=True)
    import mlflow.keras

    kwargs.pop("validate_serving_input", None)  # an option of Model.log, not of save_model
    mlflow.keras.save_model(path=path, **kwargs)


_KERAS_FLAVOR = types.SimpleNamespace(__name__="mlflow.keras", save_model=_save_keras_model)


def _pinned(*names: str) -> list[str]:
    from importlib import metadata

    pins = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins


def experiment_for(name: str, uri: str, root: str | Path) -> str:
    """The id of experiment `name`, created if new; a SQLite store keeps artifacts in <root>/mlartifacts."""
    from mlflow.exceptions import MlflowException

    client = MlflowClient(uri)
    for _ in range(2):  # a parallel job may create it between our look and our create
        if (experiment := client.get_experiment_by_name(name)) is not None:
            return experiment.experiment_id
        location = (Path(root).resolve() / "mlartifacts").as_uri() if uri.startswith("sqlite:") else None
        with contextlib.suppress(MlflowException):
            return client.create_experiment(name, artifact_location=location)
    raise RuntimeError(f"could not create MLflow experiment {name!r}")


@contextlib.contextmanager
def start(tracking_cfg: Mapping[str, Any], root: str | Path, run_name: str,
          tags: Mapping[str, str] | None = None) -> Iterator[Run]:
    """Open a run (a child of PIPELINE_PARENT_RUN_ID when set); end it FINISHED, FAILED or KILLED, never RUNNING."""
    uri = tracking_uri(tracking_cfg, root)
    mlflow.set_tracking_uri(uri)
    experiment_id = experiment_for(tracking_cfg["experiment_name"], uri, root)
    all_tags = {k: str(v) for k, v in {**git_tags(root), **(tags or {})}.items()}
    if os.environ.get("DVC_STAGE"):
        all_tags["dvc_stage"] = os.environ["DVC_STAGE"]
    active = mlflow.start_run(
        experiment_id=experiment_id, run_name=run_name, tags=all_tags,
        parent_run_id=os.environ.get(PARENT_RUN_ENV) or None,
    )
    try:
        yield Run(MlflowClient(), active.info.run_id)
    except KeyboardInterrupt as error:
        _end(active.info.run_id, RunStatus.KILLED, f"interrupted ({error or 'Ctrl-C'})")
        raise
    except BaseException as error:
        _end(active.info.run_id, RunStatus.FAILED, str(error) or type(error).__name__)
        raise
    else:
        mlflow.end_run(RunStatus.to_string(RunStatus.FINISHED))


def _end(run_id: str, status: int, message: str) -> None:
    with contextlib.suppress(Exception):  # never hide the original error behind a tracking error
        MlflowClient().set_tag(run_id, "error", message[:5000])
    mlflow.end_run(RunStatus.to_string(status))


class SweepCallback(Callback):
    """Hydra callback: a parent MLflow run per multirun, its jobs as children, a summary table at the end.

    The parent's id travels to jobs in PIPELINE_PARENT_RUN_ID, so jobs in other processes find it too.
    """

    SUMMARY_METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "convergence_epoch", "train_seconds",
                       "converged_share", "convergence_median")  # the last two: replicated jobs

    def __init__(self, metric: str = "train_loss", mode: str = "min") -> None:
        self.metric, self.mode = metric, mode
        self.run_id: str | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        tracking_cfg = OmegaConf.to_container(config.tracking, resolve=True)
        if not tracking_cfg.get("enabled", True):
            return
        root = config.paths.root
        uri = tracking_uri(tracking_cfg, root)
        self.client = MlflowClient(uri)
        overrides = list(config.hydra.overrides.task)
        searched = list((OmegaConf.select(config, "hydra.sweeper.params") or {}).keys())  # Optuna's search space
        self.swept = sweep_keys(overrides) + [k for k in searched if k not in sweep_keys(overrides)]
        self.sweep_dir = Path(config.hydra.sweep.dir)
        experiment_id = experiment_for(tracking_cfg["experiment_name"], uri, root)
        tags = {**git_tags(root), "sweep": "true", "overrides": " ".join(overrides)}
        name = f"{config.name}-sweep"
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        self.client.log_batch(self.run_id, params=[Param(k, v) for k, v in flatten(
            {"sweep": {"keys": ",".join(self.swept) or "-", "metric": self.metric, "mode": self.mode}}).items()])
        os.environ[PARENT_RUN_ENV] = self.run_id
        os.environ.setdefault("MLFLOW_TRACKING_URI", uri)
        import atexit

        atexit.register(self._end_if_running, "FAILED")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        try:
            self.log_summary()
            self.log_search_result()
        finally:
            self._end_if_running("FINISHED")

    def log_summary(self) -> None:
        """Log every child's swept params and final metrics as summary.csv, and tag the best child."""
        import pandas as pd

        children = self.client.search_runs(
            [self.client.get_run(self.run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'", max_results=10000,
        )
        rows = [
            {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status}
            | {k: r.data.params.get(k) for k in self.swept}
            | {m: r.data.metrics.get(m) for m in self.SUMMARY_METRICS}
            for r in children
        ]
        table = pd.DataFrame(rows)
        self.client.log_text(self.run_id, table.to_csv(index=False), "summary.csv")
        ranked = table.dropna(subset=[self.metric]) if self.metric in table else table.iloc[:0]
        if not ranked.empty:
            best = ranked.sort_values(self.metric, ascending=self.mode == "min").iloc[0]
            self.client.log_batch(self.run_id, metrics=[Metric(f"best_{self.metric}", float(best[self.metric]),
                                                                int(time.time() * 1000), 0)],
                                  tags=[RunTag("best_run_id", best["run_id"])])
            self.client.set_tag(best["run_id"], "best_in_sweep", "true")
        self.client.log_batch(self.run_id, metrics=[Metric("children", len(table), int(time.time() * 1000), 0)])
        if len(self.swept) >= 2 and self.metric in table and table[self.metric].notna().any():
            self.client.log_figure(self.run_id, sweep_heatmap(table, self.swept[0], self.swept[1], self.metric),
                                   "sweep_heatmap.png")

    def log_search_result(self) -> None:
        """Log an Optuna study's best params (`best.<key>`) and value to the parent run."""
        import yaml

        path = self.sweep_dir / "optimization_results.yaml"
        if not path.is_file():
            return
        result = yaml.safe_load(path.read_text())
        params = {f"best.{k}": v for k, v in result.get("best_params", {}).items()}
        self.client.log_batch(self.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                              metrics=[Metric("best_value", float(result["best_value"]), int(time.time() * 1000), 0)])
        self.client.log_artifact(self.run_id, str(path))

    def _end_if_running(self, status: str) -> None:
        with contextlib.suppress(Exception):
            if self.run_id and self.client.get_run(self.run_id).info.status == "RUNNING":
                self.client.set_terminated(self.run_id, status)


def sweep_heatmap(table: Any, rows: str, columns: str, metric: str) -> Any:
    """A heatmap of the median of `metric` over two swept keys (other keys, e.g. seeds, pooled)."""
    import numpy as np

    from pipeline import plots

    grid = table.pivot_table(index=rows, columns=columns, values=metric, aggfunc="median")
    fig, ax = plots.plt.subplots(figsize=(1.2 * len(grid.columns) + 3, 0.6 * len(grid.index) + 2))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel=columns, ylabel=rows, title=f"median {metric}")
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    return fig


def sweep_keys(overrides: list[str]) -> list[str]:
    """The config keys a multirun sweeps over (those given several values), as flat param names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if o.is_sweep_override()]
