"""MLflow runs: their experiment, a name that says what differs, lifecycle, and what training and evaluation log."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import yaml
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from pipeline import files
from pipeline.config.overrides import flatten
from pipeline.core import data
from pipeline.errors import DataError, TrackingError
from pipeline.tracking import PARENT_RUN_ENV, interrupts_held, models, store, watchdog

logging.getLogger("mlflow").setLevel(logging.WARNING)
# MLflow's advice on integer schema columns and ambiguous local sources does not apply to these tiny tables.
warnings.filterwarnings("ignore", module=r"mlflow\.(types|data)\..*", category=UserWarning)

UNNAMED = ("experiment=", "paths.", "tracking.", "hydra")  # overrides that do not change what is trained
MODEL_DIGEST = "model_sha256"  # tag: the SHA-256 of the model file the run trained


def git(root: str | Path, *args: str) -> str | None:
    """A git command's output in `root`, or None outside a repository."""
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def preset_changes(preset: Path | None) -> list[str]:
    """`key=value` for each value of the experiment preset that differs from git's baseline (what `dvc exp run -S`
    edits): DVC's baseline commit in an experiment, else HEAD."""
    if preset is None or not preset.is_file():
        return []
    committed = git(preset.parent, "show", f"{os.environ.get('DVC_EXP_BASELINE_REV', 'HEAD')}:./{preset.name}")
    if committed is None:
        return []
    before, now = flatten(yaml.safe_load(committed) or {}), flatten(yaml.safe_load(preset.read_text()) or {})
    return [f"{k}={v}" for k, v in now.items() if before.get(k) != v] + [f"~{k}" for k in before if k not in now]


def run_name(name: str, overrides: list[str], changes: list[str]) -> str:
    """The experiment, a `dvc exp run`'s name, the preset's edits and the command line's overrides."""
    shown = [o for o in overrides if not o.lstrip("+~").startswith(UNNAMED)]
    exp = os.environ.get("DVC_EXP_NAME")
    return " ".join([name, *([f"(dvc exp {exp})"] if exp else []), *changes, *shown])[:250]


def experiment_for(client: MlflowClient, name: str, root: str | Path, description: str | None) -> str:
    """The id of experiment `name`, created if new (artifacts in <root>/mlartifacts for SQLite), described."""
    for _ in range(2):  # a parallel job may create it between our look and our create
        if (experiment := client.get_experiment_by_name(name)) is not None:
            if description and experiment.tags.get("mlflow.note.content") != description:  # made by an older version
                client.set_experiment_tag(experiment.experiment_id, "mlflow.note.content", description)
            return experiment.experiment_id
        location = (Path(root).resolve() / "mlartifacts").as_uri() if client.tracking_uri.startswith("sqlite:") else None
        with contextlib.suppress(MlflowException):
            return client.create_experiment(name, location, {"mlflow.note.content": description or ""})
    raise TrackingError(f"could not create the MLflow experiment {name!r}")


@contextlib.contextmanager
def started(cfg: Mapping[str, Any], overrides: list[str], preset: Path | None, source: str) -> Iterator[str]:
    """A run of the resolved config `cfg`, yielding its id; it ends FINISHED, FAILED or KILLED, never RUNNING.

    Two runs of different configs get different names in one experiment: a clash adds the config's digest.
    """
    root, tracking = cfg["paths"]["root"], cfg["tracking"]
    trained = {k: v for k, v in cfg.items() if k not in ("paths", "tracking")}
    digest = hashlib.sha256(yaml.safe_dump(trained, sort_keys=True).encode()).hexdigest()[:8]
    changes = preset_changes(preset)
    name = run_name(cfg["name"], overrides, changes)
    with interrupts_held():
        try:
            client = MlflowClient(uri := store.tracking_uri(tracking, root))
            mlflow.set_tracking_uri(uri)
            experiment_id = experiment_for(client, tracking["experiment_name"], root, tracking.get("description"))
            store.check_artifacts(client.get_experiment(experiment_id).artifact_location)  # else it fails after training
            quote = '"' if "'" in name else "'"
            clash = f"attributes.run_name = {quote}{name}{quote} and tags.config_digest != '{digest}'"
            if client.search_runs([experiment_id], clash, max_results=1):
                name = f"{name} #{digest}"
            tags = {  # MLflow adds the source's git commit (mlflow.source.git.commit)
                "mlflow.source.name": source,
                "config_digest": digest,
                "overrides": " ".join(overrides),
                "preset_changes": " ".join(changes),
                "git_dirty": str(bool(git(Path(source).parent, "status", "--porcelain", "--untracked-files=no"))),
                "dvc_stage": os.environ.get("DVC_STAGE", ""),
                "dvc_exp": os.environ.get("DVC_EXP_NAME", ""),
            }
            tags |= {k: str(cfg["trainer"][k]) for k in ("engine", "seed", "replicates")}
            parent = os.environ.get(PARENT_RUN_ENV)
            run = mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=tags, parent_run_id=parent)
        except MlflowException as error:
            raise TrackingError(one_line(error)) from None
        watcher, status, message = watchdog.watch(run.info.run_id, uri), "FINISHED", ""  # from here no run is left RUNNING
    try:
        yield run.info.run_id
    except KeyboardInterrupt as error:
        status, message = "KILLED", f"interrupted ({str(error) or 'Ctrl-C'})"
        raise
    except MlflowException as error:
        status, message = "FAILED", one_line(error)
        raise TrackingError(message) from None
    except BaseException as error:
        status, message = "FAILED", str(error) or type(error).__name__
        raise
    finally:
        with interrupts_held():
            ended = False
            try:
                if message:
                    mlflow.set_tag("error", message[:5000])
                mlflow.end_run(status)
                ended = True
            except Exception as error:  # MLflow's, or SQLAlchemy's: the watchdog then ends the run
                if status == "FINISHED":  # else the error that ended the run is the one to report
                    raise TrackingError(one_line(error)) from None
            finally:
                watchdog.release(watcher, ended)


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:1000]


def log_config(cfg: Mapping[str, Any], text: str) -> None:
    """The config as params with dotted keys (see `flatten`) and as config.yaml."""
    mlflow.log_params({k: v[:6000] for k, v in flatten({k: v for k, v in cfg.items() if k != "paths"}).items()})
    mlflow.log_text(text, "config.yaml")


@interrupts_held()
def log_training(
    cfg: Mapping[str, Any],
    series: Mapping[str, list[float]],
    final: Mapping[str, Any],
    step: int,
    outputs: list[Path],
    model: tuple[Path, Any, Any] | None = None,
) -> None:
    """Per-epoch `series` (step = epoch), the dataset, the model file (path, example input, its output), the
    `final` metrics linked to both, and the `outputs` as artifacts; a registered model gets a new version."""
    active = mlflow.active_run()
    assert active is not None, "log_training runs inside `started`"
    client, run_id, now = MlflowClient(), active.info.run_id, int(time.time() * 1000)
    rows = [Metric(k, float(v), now, i + 1) for k, values in series.items() for i, v in enumerate(values)]
    client.log_batch(run_id, metrics=rows)
    dataset = log_dataset(data.csv_path(cfg), cfg["dataset"]["name"])
    model_id = models.log_model(*model, cfg["name"]) if model else None
    if model:  # evaluate checks it: a run.json naming another run is refused
        mlflow.set_tag(MODEL_DIGEST, files.digest(model[0]))
    numbers = {k: float(v) for k, v in final.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    mlflow.log_metrics(numbers, step=step, model_id=model_id, dataset=dataset)
    for path in outputs:
        mlflow.log_artifact(str(path), "plots" if path.suffix == ".png" else "results")
    registered = cfg["tracking"].get("registered_model")
    if model_id and registered:
        run = mlflow.get_run(run_id)
        scores = {k: f"{v:.10g}" for k, v in numbers.items()}
        commit = run.data.tags.get("mlflow.source.git.commit", "-")[:12]
        described = ", ".join(f"{k} {v}" for k, v in scores.items())
        description = f"{run.info.run_name}: {described}. Run {run_id}, commit {commit}."
        models.register(model_id, registered, description, scores | {"config_digest": run.data.tags["config_digest"]})


def log_dataset(csv: Path, name: str) -> Any:
    """Record the dataset file as the active run's training input, with the first 16 hex digits of its SHA-256."""
    digest = files.digest(csv)[:16]
    dataset = from_pandas(pd.read_csv(csv), str(csv), targets="label", name=name, digest=digest)
    for attempt in range(3):
        try:
            mlflow.log_input(dataset, context="training")
            return dataset
        except MlflowException as error:
            # Parallel jobs may insert the same dataset at once (SQLite: "UNIQUE constraint failed", PostgreSQL:
            # "duplicate key value violates unique constraint"); MLflow reuses it on the next try.
            if "unique constraint" not in str(error).lower() or attempt == 2:
                raise
    return dataset


def check_model_of(cfg: Mapping[str, Any], run_id: str, model: Path) -> None:
    """DataError unless run `run_id` is the one that trained the model file `model` (its digest tag says so)."""
    client = MlflowClient(store.tracking_uri(cfg["tracking"], cfg["paths"]["root"]))
    try:
        tags = client.get_run(run_id).data.tags
    except MlflowException:
        raise DataError(model.with_name("run.json"), f"names run {run_id}, which this MLflow store does not have") from None
    if tags.get(MODEL_DIGEST) != files.digest(model):
        problem = f"names run {run_id}, which did not train {model.name} beside it; train again to pair them"
        raise DataError(model.with_name("run.json"), problem)


@interrupts_held()
def log_evaluation(cfg: Mapping[str, Any], run_id: str, metrics: Mapping[str, Any], pictures: list[Path]) -> None:
    """Add an evaluation to the run that trained the model: scores as metrics, confusion counts as a table."""
    client = MlflowClient(store.tracking_uri(cfg["tracking"], cfg["paths"]["root"]))
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict)}
    scores = ("precision", "recall", "f1", "roc_auc")  # loss and accuracy: the run's final_* metrics already
    values = {f"eval_{s}_{k}": float(m[k]) for s, m in splits.items() for k in scores if m.get(k) is not None}
    client.log_batch(run_id, metrics=[Metric(k, v, int(time.time() * 1000), 0) for k, v in values.items()])
    confusion = pd.DataFrame([{"split": s, **m["confusion"]} for s, m in splits.items()])
    client.log_table(run_id, confusion, "evaluation/confusion.json")
    log_pictures(cfg, run_id, pictures)


def open_store(cfg: Mapping[str, Any]) -> None:
    """Connect to the configured store once (a process's first client imports MLflow's SQL store: about 2 s)."""
    MlflowClient(store.tracking_uri(cfg["tracking"], cfg["paths"]["root"])).search_experiments(max_results=1)


def tag_run(cfg: Mapping[str, Any], run_id: str, tags: Mapping[str, str]) -> str:
    """Add `tags` to a run (e.g. the playground that started it); return its experiment's id."""
    client = MlflowClient(store.tracking_uri(cfg["tracking"], cfg["paths"]["root"]))
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    return client.get_run(run_id).info.experiment_id


def log_pictures(cfg: Mapping[str, Any], run_id: str, pictures: list[Path]) -> None:
    """Add pictures to a run, under plots/."""
    client = MlflowClient(store.tracking_uri(cfg["tracking"], cfg["paths"]["root"]))
    for picture in pictures:
        client.log_artifact(run_id, str(picture), "plots")
