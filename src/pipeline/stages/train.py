"""DVC stage `train`: train the configured model (or N seeded copies) on its dataset file; write its files; track in MLflow."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline import files, import_keras
from pipeline.config import checks as config
from pipeline.config.overrides import CONF_DIR, resolved
from pipeline.core import data, engines, memory
from pipeline.core.engines import History, Trained, Watch, schedule_from
from pipeline.core.nets import Net
from pipeline.errors import ConfigError, DivergedError
from pipeline.stages import hydra_app

# What a training run and its evaluation write into results/<name>/: a new run replaces all of it
RUN_FILES: tuple[str, ...] = ("model.*", "history.csv", "snapshots.npz", "metrics.json", "timing.json", "run.json")
RUN_FILES += ("replicates.csv", "weights.npz", "predictions.csv", "evaluation.json", "plots/*")


def fit_model(cfg: dict[str, Any], dataset: data.Dataset, watch: Watch | None = None) -> tuple[Net, History]:
    """Train one copy of the configured model with the configured engine; return (model, history)."""
    trained = engines.train(cfg, dataset, schedule_from(cfg["trainer"]), watch=watch)
    return trained.net(0), trained.history(0)


def final_metrics(cfg: dict[str, Any], model: Net, dataset: data.Dataset, history: History) -> dict[str, Any]:
    """Loss and accuracy of the trained model on train and test, plus what the history says."""
    train_loss, train_accuracy = model.loss_and_accuracy(cfg["loss"], dataset.x_train, dataset.y_train)
    test: dict[str, Any] = {}
    if dataset.has_test:  # no split (XOR): no test metrics
        test_loss, test_accuracy = model.loss_and_accuracy(cfg["loss"], dataset.x_test, dataset.y_test)
        test = {"test_loss": test_loss, "test_accuracy": test_accuracy}
    scores = {"train_loss": train_loss, "train_accuracy": train_accuracy, **test}
    return scores | {"convergence_epoch": history.convergence_epoch, "epochs_run": history.epochs_run}  # engine, seed: params


def write_run(
    out: Path, history: pd.DataFrame, metrics: dict[str, Any], timing: dict[str, Any], run_id: str | None, final: Path
) -> list[Path]:
    """Write history.csv, metrics.json, timing.json and run.json (the MLflow run, for later stages); return the first three."""
    files.write_csv(out / "history.csv", history)
    files.write_json(out / "metrics.json", metrics)
    files.write_json(out / "timing.json", timing)
    files.write_json(out / "run.json", {"run_id": run_id, "output_dir": str(final)})
    return [out / name for name in ("history.csv", "metrics.json", "timing.json")]


def output_dir(cfg: DictConfig) -> Path:
    """results/<name> for a single run; each multirun job writes into its own Hydra job folder."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return Path(HydraConfig.get().runtime.output_dir)
    return Path(cfg.paths.results) / cfg.name


def train(
    cfg: DictConfig, out: Path | None = None, overrides: list[str] | None = None, watch: Watch | None = None
) -> dict[str, Any]:
    """Check the config, load the data, train, write the outputs and log the run; return the final metrics.

    `overrides` name the MLflow run (by default the Hydra job's); `watch` sees each chunk of a single run."""
    dataset = check(cfg)
    plain = resolved(cfg)
    out = Path(out or output_dir(cfg))
    # The outputs move into `out` after the MLflow run ended FINISHED; a failure leaves the previous set there.
    with files.staged(out, RUN_FILES) as stage, tracked_run(cfg, overrides) as run_id:
        import_keras()
        if plain["trainer"]["replicates"] > 1:
            return train_replicates(plain, dataset, stage, run_id, final=out)
        model, history = fit_model(plain, dataset, watch)
        if history.diverged_epoch is not None:
            raise DivergedError(history.diverged_epoch)
        metrics = final_metrics(plain, model, dataset, history)
        timing = {"train_seconds": round(history.seconds, 4)}
        model_path = model.save(stage)
        files.write_npz(
            stage / "snapshots.npz", {f"epoch{e}_w{i}": w for e, ws in history.snapshots.items() for i, w in enumerate(ws)}
        )
        columns = {name: values for name, values in history.columns.items() if values}
        logged = write_run(
            stage, pd.DataFrame({"epoch": np.arange(1, history.epochs_run + 1)} | columns), metrics, timing, run_id, out
        )
        if run_id:
            from pipeline.tracking import runs

            example = dataset.x_train[:4]
            series = {f"epoch_{k}": v for k, v in columns.items()}
            finals = {f"final_{k}": v for k, v in metrics.items()} | timing
            runs.log_training(
                plain, series, finals, history.epochs_run, logged, (model_path, example, model.probabilities(example))
            )
    print(f"{plain['name']}: " + json.dumps(metrics | timing))
    return metrics


def fit_replicates(cfg: dict[str, Any], dataset: data.Dataset) -> Trained:
    """Train `trainer.replicates` copies at once with the configured engine; their columns in float32, as Keras's."""
    trainer = cfg["trainer"]
    trained = engines.train(cfg, dataset, schedule_from(trainer | {"snapshots": 0}), trainer["replicates"])
    trained.columns = {name: values.astype(np.float32) for name, values in trained.columns.items()}
    return trained


def train_replicates(
    cfg: dict[str, Any], dataset: data.Dataset, out: Path, run_id: str | None = None, final: Path | None = None
) -> dict[str, Any]:
    """Train the copies, write their outputs under `out` (bound for `final`), log to the MLflow run `run_id`."""
    from pipeline.core import convergence, plots  # SciPy and Matplotlib: a single run needs neither

    replicates = fit_replicates(cfg, dataset)
    if (replicates.diverged_epoch > 0).all():
        raise DivergedError(int(replicates.diverged_epoch.min()))
    table = convergence.copies_table(replicates)
    metrics = convergence.table_summary(table) | {
        "epochs_run": replicates.epochs_run,
        "engine": cfg["trainer"]["engine"],
        "seed": cfg["trainer"]["seed"],
    }
    timing = {"train_seconds": round(replicates.seconds, 4)}
    files.write_csv(out / "replicates.csv", table)
    files.write_npz(out / "weights.npz", {"seeds": replicates.seeds} | {f"w{i}": w for i, w in enumerate(replicates.parameters)})
    picture = out / "plots" / "convergence.png"
    converged = table["converged"].to_numpy()
    km = convergence.kaplan_meier(table["observed_epochs"].to_numpy(), converged) if converged.any() else None
    plots.convergence(table, km, replicates.epochs_run, out.name, picture)
    bands = convergence.epoch_bands(replicates, table)
    logged = write_run(out, bands, metrics, timing, run_id, final or out)
    if run_id:
        from pipeline.tracking import runs

        bands = pd.read_csv(out / "history.csv")  # as written; converged_share's last step is already its final value
        summary = {k: v for k, v in (metrics | timing).items() if k not in bands}
        series = {k: bands[k].tolist() for k in bands.columns if k != "epoch"}
        runs.log_training(cfg, series, summary, len(bands), [out / "replicates.csv", out / "weights.npz", picture, *logged])
    print(f"{cfg['name']} x{len(replicates.seeds)}: " + json.dumps(metrics | timing))
    return metrics | timing


@contextlib.contextmanager
def tracked_run(cfg: DictConfig, overrides: list[str] | None = None) -> Iterator[str | None]:
    """The MLflow run's id, with the config logged (None when tracking is off); it ends FAILED or KILLED on errors.

    `overrides` name the run: by default this Hydra job's command-line overrides."""
    plain = resolved(cfg)
    if not plain["tracking"]["enabled"]:  # MLflow is imported only when a run is tracked
        yield None
        return
    from hydra.core.hydra_config import HydraConfig

    from pipeline.tracking import runs

    if overrides is None:
        overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    preset = CONF_DIR / "experiment" / f"{plain['name']}.yaml"
    with runs.started(plain, overrides, preset, source=__file__) as run_id:
        runs.log_config(plain, OmegaConf.to_yaml(cfg, resolve=True))
        yield run_id


def run(cfg: DictConfig) -> float:
    """Hydra task: train one run; return its `objective` (what sweepers minimize).

    A multirun job also evaluates and plots its run, through the same code as the DVC stage.
    """
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    metrics = train(cfg)
    if HydraConfig.get().mode == RunMode.MULTIRUN and cfg.evaluate_multirun_jobs and cfg.trainer.replicates == 1:
        from pipeline.stages.evaluate import evaluate_folder

        evaluate_folder(resolved(cfg), output_dir(cfg))
    if cfg.objective not in metrics:
        numeric = (k for k, v in metrics.items() if not isinstance(v, str))
        raise ConfigError("objective", cfg.objective, "one of " + ", ".join(numeric))
    value = metrics[cfg.objective]
    return float("inf") if value is None else float(value)  # e.g. a median convergence epoch never reached


def check(cfg: DictConfig) -> data.Dataset:
    """Reject a bad config or data file before TensorFlow starts and anything is written; return the dataset."""
    plain = resolved(cfg)
    config.check_training(plain)
    config.check_results_folder(plain["paths"]["results"])
    if plain["tracking"]["enabled"]:
        from pipeline.tracking import store

        store.check(plain["tracking"], plain["paths"]["root"])
    dataset = data.load_configured(plain)  # the file made with exactly these dataset values, or a ConfigError
    config.check_model(plain["model"], dataset.n_features)
    memory.check_training(plain, dataset.n_features, len(dataset.x_train) + len(dataset.x_test))
    return dataset


main = hydra_app(
    run,
    check,
    "experiment=xor_relu16 optimizer.learning_rate=0.01",
    ("experiment", "dataset", "model", "loss", "optimizer", "trainer", "tracking", "hparams_search"),
)

if __name__ == "__main__":
    main()
