"""`trainer.replicates=N`: N seeded copies trained at once; per-copy table, convergence statistics, plots, MLflow."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import files
from pipeline.core import convergence, data
from pipeline.core import engines
from pipeline.core.engines import Trained, schedule_from
from pipeline.errors import DivergedError


def fit_replicates(cfg: dict[str, Any], dataset: data.Dataset) -> Trained:
    """Train `trainer.replicates` copies at once with the configured engine; their columns in float32, as Keras's."""
    trainer = cfg["trainer"]
    trained = engines.train(cfg, dataset, schedule_from(trainer | {"snapshots": 0}), trainer["replicates"])
    trained.columns = {name: values.astype(np.float32) for name, values in trained.columns.items()}
    return trained


def save_outputs(
    out: Path, replicates: Trained, table: pd.DataFrame, metrics: dict[str, Any], timing: dict[str, Any]
) -> list[Path]:
    """Write replicates.csv, history.csv (per-epoch bands), metrics.json, timing.json, weights.npz and the plot."""
    from pipeline.core import plots

    with files.atomic_path(out / "replicates.csv") as tmp:
        table.to_csv(tmp, index=False, float_format="%.9g", lineterminator="\n")
    with files.atomic_path(out / "history.csv") as tmp:
        convergence.epoch_bands(replicates, table).to_csv(tmp, index=False, float_format="%.9g", lineterminator="\n")
    with files.atomic_path(out / "weights.npz") as tmp, open(tmp, "wb") as handle:
        arrays: dict[str, Any] = {"seeds": replicates.seeds} | {f"w{i}": w for i, w in enumerate(replicates.parameters)}
        np.savez(handle, **arrays)
    picture = out / "plots" / "convergence.png"
    picture.parent.mkdir(parents=True, exist_ok=True)
    converged = table["converged"].to_numpy()
    km = convergence.kaplan_meier(table["observed_epochs"].to_numpy(), converged) if converged.any() else None
    plots.convergence(table, km, replicates.epochs_run, out.name, picture)
    files.write_json(out / "metrics.json", metrics)
    files.write_json(out / "timing.json", timing)
    return [out / "replicates.csv", out / "history.csv", out / "weights.npz", picture]


def train_replicates(
    cfg: dict[str, Any], dataset: data.Dataset, out: Path, run_id: str | None = None, final: Path | None = None
) -> dict[str, Any]:
    """Train the copies, write their outputs under `out` (bound for `final`), log to the MLflow run `run_id`."""
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
    written = save_outputs(out, replicates, table, metrics, timing)
    files.write_json(out / "run.json", {"run_id": run_id, "output_dir": str(final or out)})
    if run_id:
        from pipeline.tracking import runs

        bands = pd.read_csv(out / "history.csv")  # converged_share's last step is already its final value
        summary = {k: v for k, v in (metrics | timing).items() if k not in bands}
        series = {k: bands[k].tolist() for k in bands.columns if k != "epoch"}
        runs.log_training(cfg, series, summary, len(bands), [*written, out / "metrics.json", out / "timing.json"])
    print(f"{cfg['name']} x{replicates.copies}: " + json.dumps(metrics | timing))
    return metrics | timing
