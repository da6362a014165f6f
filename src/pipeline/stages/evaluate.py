"""DVC stage `evaluate`: metrics and pictures of a trained run, logged into the MLflow run that trained it."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from pipeline import files
from pipeline.config import checks as config
from pipeline.config.overrides import resolved
from pipeline.core import data, nets, plots
from pipeline.core.nets import Net
from pipeline.core.spec import layer_specs
from pipeline.errors import DataError
from pipeline.stages import hydra_app

PICTURES = ("decision_boundary.png", "learning_curves.png", "boundary_evolution.gif", "neurons.png")


def read_snapshots(path: Path) -> dict[int, list[np.ndarray]]:
    """The weight snapshots by epoch; DataError naming the file if it is missing or damaged."""
    if not path.is_file():
        raise DataError(path, "no such snapshots file; train first")
    try:
        with np.load(path, allow_pickle=False) as archive:
            epochs = sorted({int(k.split("_")[0][5:]) for k in archive.files})
            return {
                e: [archive[f"epoch{e}_w{i}"] for i in range(sum(k.startswith(f"epoch{e}_") for k in archive.files))]
                for e in epochs
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        raise DataError(path, "not a readable snapshots archive; train again") from None


def split_metrics(model: Net, loss_cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Loss, accuracy, precision, recall, F1, ROC AUC and the confusion matrix on one split."""
    from sklearn import metrics as skm

    loss, accuracy = model.loss_and_accuracy(loss_cfg, x, y)
    p = np.ravel(model.probabilities(x))
    truth, guess = np.ravel(y).astype(int), (p > 0.5).astype(int)
    tn, fp, fn, tp = skm.confusion_matrix(truth, guess, labels=[0, 1]).ravel()
    auc = round(float(skm.roc_auc_score(truth, p)), 6) if len(set(truth)) == 2 else None
    scores = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    rounded = {name: round(float(score(truth, guess, zero_division=0)), 6) for name, score in scores.items()}
    confusion = {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)}
    return {"loss": loss, "accuracy": accuracy, **rounded, "roc_auc": auc, "confusion": confusion}


def evaluate(cfg: dict[str, Any], folder: Path, dataset: data.Dataset, resolution: int = 200) -> tuple[dict, list[Path]]:
    """Write evaluation.json, predictions.csv and the pictures under `folder`; return the metrics and pictures.

    Every input is read before anything is written, and the outputs move in together (files.staged): a failure
    leaves the previous evaluation as it was.
    """
    model, made = nets.load(folder, bool(cfg["loss"].get("from_logits"))), files.digest(model_file(folder))
    history = _read_history(folder / "history.csv")
    trained = files.read_json(folder / "metrics.json")
    by_epoch = read_snapshots(folder / "snapshots.npz")
    if wrong := [epoch for epoch, weights in by_epoch.items() if [w.shape for w in weights] != model.shapes()]:
        raise DataError(
            folder / "snapshots.npz", f"epoch {wrong[0]}'s weights do not fit the model {model.shapes()}; train again"
        )
    snapshots = [(epoch, model.at(weights)) for epoch, weights in by_epoch.items()]
    metrics: dict[str, Any] = {"train": split_metrics(model, cfg["loss"], dataset.x_train, dataset.y_train)}
    if dataset.has_test:  # no split (XOR): no test metrics
        metrics["test"] = split_metrics(model, cfg["loss"], dataset.x_test, dataset.y_test)
    probability = np.ravel(model.probabilities(dataset.x_train))
    metrics["rounded_predictions"] = " ".join(str(int(v)) for v in np.round(probability[:8]))
    table = pd.DataFrame(dataset.x_train, columns=[f"x{i + 1}" for i in range(dataset.n_features)])
    table["label"], table["probability"] = dataset.y_train.ravel().astype(int), probability
    scores = [f"{split} acc {metrics[split]['accuracy']:.0%}" for split in ("train", "test") if split in metrics]
    title = f"{cfg['name']} ({', '.join(scores)})"
    with files.staged(folder) as stage:
        files.write_csv(stage / "predictions.csv", table, digits=6)
        staged_pictures = [stage / "plots" / name for name in PICTURES]
        plots.decision_boundary(model.probabilities, dataset, title, staged_pictures[0], resolution)
        plots.learning_curves(history, trained.get("convergence_epoch"), cfg["name"], staged_pictures[1])
        plots.boundary_evolution(snapshots, dataset, cfg["name"], staged_pictures[2])
        plots.neuron_maps(model.hidden, dataset, cfg["name"], staged_pictures[3])
        files.write_json(stage / "evaluation.json", metrics)
        if files.digest(model_file(folder)) != made:  # a training moved its set in meanwhile: this one is not its
            raise DataError(model_file(folder), "replaced by a training while it was evaluated; evaluate again")
    return metrics, [folder / "plots" / name for name in PICTURES]


def run(cfg: DictConfig) -> None:
    """Hydra task: evaluate results/<name>/ and log into its MLflow run (the DVC stage: and write its summary row)."""
    plain = resolved(cfg)
    folder = Path(plain["paths"]["results"]) / plain["name"]
    evaluate_folder(plain, folder)


def summary_row(cfg: dict[str, Any], n_features: int, trained: dict[str, Any], evaluation: dict[str, Any]) -> dict[str, Any]:
    """The experiment's row of reports/summary.md: setup, final scores, convergence epoch."""
    layers = "-".join([str(n_features)] + [f"{spec['units']}{spec['activation']}" for spec in layer_specs(cfg["model"])])
    optimizer = f"{cfg['optimizer']['_target_'].rsplit('.', 1)[-1]} lr {cfg['optimizer']['learning_rate']:g}"
    scores = {
        f"{split}_{k}": evaluation[split][k] for split in ("train", "test") if split in evaluation for k in ("accuracy", "loss")
    }
    setup = {"experiment": cfg["name"], "dataset": cfg["dataset"]["name"], "architecture": layers, "optimizer": optimizer}
    return setup | scores | {k: trained[k] for k in ("epochs_run", "convergence_epoch")}


def evaluate_folder(cfg: dict[str, Any], folder: Path) -> dict[str, Any]:
    """Evaluate a training output folder, log into its run, write its summary row if asked (DVC stage, multirun jobs)."""
    files.settle(folder)  # a training killed while moving its outputs in: finish the move before reading
    dataset = data.load_configured(cfg)
    run_id = bound_run(cfg, folder, dataset)
    metrics, pictures = evaluate(cfg, folder, dataset)
    if run_id and cfg["tracking"]["enabled"]:
        from pipeline.tracking import runs

        runs.log_evaluation(cfg, run_id, metrics, pictures)
    if cfg["paths"]["summary_rows"]:  # a folder of git-tracked files only: the report's one dependency on results
        row = summary_row(cfg, dataset.n_features, files.read_json(folder / "metrics.json"), metrics)
        files.write_json(Path(cfg["paths"]["summary_rows"]) / f"{cfg['name']}.json", row)
    print(f"{cfg['name']}: wrote {folder / 'evaluation.json'} and {len(pictures)} pictures in {folder / 'plots'}")
    return metrics


def model_file(folder: Path) -> Path:
    """The model file a run wrote into `folder` (DataError if none)."""
    found = [path for path in nets.model_files(folder) if path.is_file()]
    if not found:
        raise DataError(nets.model_files(folder)[-1], "no such model file; train first")
    return found[0]


def bound_run(cfg: dict[str, Any], folder: Path, dataset: data.Dataset) -> str | None:
    """The MLflow run that trained the folder's model; DataError while a training writes the folder, for a model
    of another width than the data, or for a run.json naming a run that did not train this model."""
    if (pid := files.writer(folder)) is not None:
        raise DataError(folder, f"a training (process {pid}) is writing it; evaluate once it has finished")
    model = model_file(folder)
    width = nets.input_width(model)
    if width is not None and width != dataset.n_features:
        raise DataError(model, f"takes {width} features, the data {dataset.n_features}; train it on this data")
    run_id = _read_run_id(folder / "run.json")
    if run_id and cfg["tracking"]["enabled"]:
        from pipeline.tracking import runs

        runs.check_model_of(cfg, run_id, model)
    return run_id


def check(cfg: DictConfig) -> None:
    """Reject a bad config, or a missing model, before anything is written."""
    plain = resolved(cfg)
    config.check_training(plain)
    folder = Path(plain["paths"]["results"]) / plain["name"]
    files.settle(folder)
    model_file(folder)
    config.check_results_folder(plain["paths"]["results"], folder)
    dataset = data.load_configured(plain)
    files.read_json(folder / "metrics.json")  # what evaluate reads, checked before TensorFlow starts
    _read_history(folder / "history.csv")
    read_snapshots(folder / "snapshots.npz")
    if _read_run_id(folder / "run.json") and plain["tracking"]["enabled"]:
        from pipeline.tracking import store

        store.check(plain["tracking"], plain["paths"]["root"])
    bound_run(plain, folder, dataset)


def _read_history(path: Path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (FileNotFoundError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise DataError(path, "missing or unreadable history file; train first") from None


def _read_run_id(path: Path) -> str | None:
    """The MLflow run a training wrote into run.json; None without tracking; DataError for a damaged file."""
    if not path.exists():
        return None
    run_id = files.read_json(path).get("run_id")
    if not isinstance(run_id, (str, type(None))):
        raise DataError(path, "holds no run_id string; train again to write it")
    return run_id


main = hydra_app(run, check, "experiment=xor_relu16 (after pipeline-train experiment=xor_relu16)", ("experiment", "tracking"))

if __name__ == "__main__":
    main()
