"""Convergence statistics over seeded copies: per-copy table, Kaplan-Meier estimates with censoring, per-epoch bands."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from scipy import stats


def convergence_epochs(accuracy: np.ndarray, diverged_epoch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(epoch, converged) per copy from accuracy [epochs, copies]: the first epoch at 100% training accuracy,
    or, for a copy that never got there, the last epoch it was observed (censored, never dropped)."""
    epochs = len(accuracy)
    hit = accuracy >= 1.0
    ended = np.where(diverged_epoch > 0, diverged_epoch, epochs)  # a diverged copy is observed up to then
    hit &= np.arange(1, epochs + 1)[:, None] < ended[None, :] + 1
    converged = np.asarray(hit.any(axis=0))
    return np.where(converged, hit.argmax(axis=0) + 1, ended), converged


def stable_epochs(accuracy: np.ndarray) -> np.ndarray:
    """The epoch from which each copy stays at 100% training accuracy to the end; 0 if it ends below."""
    below = accuracy < 1.0
    last_below = len(accuracy) - below[::-1].argmax(axis=0)  # 1-based epoch of the last epoch below 100%
    return np.where(~below[-1], np.where(below.any(axis=0), last_below + 1, 1), 0)


def kaplan_meier(epoch: np.ndarray, converged: np.ndarray) -> Any:
    """scipy's Kaplan-Meier estimate (an ECDFResult) of the convergence epoch; censored copies count."""
    return stats.ecdf(stats.CensoredData(uncensored=epoch[converged], right=epoch[~converged]))


def km_quantile(result: Any, q: float) -> int | None:
    """The first epoch by which the estimated share converged reaches q; None if it never does."""
    reached = np.flatnonzero(result.cdf.probabilities >= q - 1e-12)
    return int(result.cdf.quantiles[reached[0]]) if reached.size else None


def summary(epoch: np.ndarray, converged: np.ndarray) -> dict[str, Any]:
    """Share converged and the Kaplan-Meier median and quartiles of the convergence epoch."""
    result: dict[str, Any] = {"copies": int(len(epoch)), "converged_share": round(float(np.mean(converged)), 6)}
    km = kaplan_meier(epoch, converged) if converged.any() else None
    for name, q in (("convergence_q25", 0.25), ("convergence_median", 0.5), ("convergence_q75", 0.75)):
        result[name] = km_quantile(km, q) if km is not None else None
    return result


def copies_table(replicates: Any, max_predictions: int = 16) -> pd.DataFrame:
    """One row per copy: seed, convergence, divergence, first-epoch and final metrics, and train-set outputs."""
    accuracy = replicates.columns["accuracy"]
    epoch, converged = convergence_epochs(accuracy, replicates.diverged_epoch)
    table = pd.DataFrame(
        {
            "seed": replicates.seeds,
            "convergence_epoch": np.where(converged, epoch, np.nan),  # NaN: censored at `observed_epochs`
            "converged": converged,
            "observed_epochs": epoch,
            "stable_epoch": stable_epochs(accuracy),
            "diverged_epoch": replicates.diverged_epoch,
            "accuracy_epoch_1": accuracy[0],
        }
    )
    final, predictions = replicates.finish()
    for name, values in final.items():
        table[name] = values
    if predictions.shape[1] <= max_predictions:  # the 4-row tables: the outputs people quote
        for i in range(predictions.shape[1]):
            table[f"output_{i}"] = predictions[:, i]
    return table


def table_summary(table: pd.DataFrame) -> dict[str, Any]:
    """The run's metrics: convergence summary (censoring respected) and final loss and accuracy distributions.

    `train_loss` is the copies' median final loss and `train_accuracy` their mean, so objectives written for
    single runs rank replicated jobs too.
    """
    result = summary(table["observed_epochs"].to_numpy(), table["converged"].to_numpy())
    loss, accuracy = table["train_loss"], table["train_accuracy"]
    values: dict[str, Any] = {"train_loss": loss.median(), "train_accuracy": accuracy.mean()}
    values |= {"train_loss_q25": loss.quantile(0.25), "train_loss_q75": loss.quantile(0.75)}
    values |= {"train_accuracy_share_100": (accuracy >= 1).mean(), "diverged_share": (table["diverged_epoch"] > 0).mean()}
    return result | {name: None if pd.isna(value) else round(float(value), 8) for name, value in values.items()}


def epoch_bands(replicates: Any, table: pd.DataFrame) -> pd.DataFrame:
    """Per epoch: loss median and quartiles, mean accuracy, share of copies converged so far (from `copies_table`)."""
    epoch, converged = table["observed_epochs"].to_numpy(), table["converged"].to_numpy()
    epochs = np.arange(1, replicates.epochs_run + 1)
    frame = pd.DataFrame({"epoch": epochs})
    for name, values in replicates.columns.items():
        if name.endswith("loss"):
            frame[f"{name}_q25"], frame[f"{name}_median"], frame[f"{name}_q75"] = np.nanquantile(
                values, [0.25, 0.5, 0.75], axis=1
            )
        else:
            frame[f"{name}_mean"] = np.nanmean(values, axis=1)
    frame["converged_share"] = ((epoch[None, :] <= epochs[:, None]) & converged[None, :]).mean(axis=1)
    return frame
