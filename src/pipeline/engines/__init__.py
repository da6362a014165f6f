"""Training engines: the same model, loss and optimizer, three loops (compiled graph, Keras fit, numpy)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

COLUMNS = ("loss", "accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True)
class Schedule:
    """How to train: epochs, batching, shuffling, seed, early stop, and when to report or snapshot."""

    epochs: int
    batch_size: int = 32
    shuffle: bool = True
    seed: int = 0
    stop_at_convergence: bool = False
    progress_every: int = 0
    snapshot_epochs: tuple[int, ...] = ()
    max_weight: float = 1e4

    def chunks(self) -> list[tuple[int, int]]:
        """(first_epoch, count) pieces of the run, ending at every snapshot and progress epoch."""
        every = self.progress_every or max(1, math.ceil(self.epochs / 10))
        ends = {e for e in self.snapshot_epochs if 0 < e <= self.epochs}
        ends |= set(range(every, self.epochs + 1, every)) | {self.epochs}
        starts = [1] + [e + 1 for e in sorted(ends)[:-1]]
        return [(start, end - start + 1) for start, end in zip(starts, sorted(ends))]


@dataclass
class History:
    """Per-epoch metrics (epoch 1 first), weight snapshots by epoch (0 = initial), training seconds."""

    columns: dict[str, list[float]] = field(default_factory=lambda: {c: [] for c in COLUMNS})
    snapshots: dict[int, list[np.ndarray]] = field(default_factory=dict)
    seconds: float = 0.0
    diverged_epoch: int | None = None  # the epoch whose loss went NaN/inf or whose weights passed max_weight

    @property
    def epochs_run(self) -> int:
        return len(self.columns["loss"])

    @property
    def convergence_epoch(self) -> int | None:
        """The first epoch whose training accuracy is 100%, or None."""
        hits = np.flatnonzero(np.asarray(self.columns["accuracy"]) >= 1.0)
        return int(hits[0]) + 1 if hits.size else None

    def extend(self, **values: np.ndarray) -> None:
        """Append per-epoch values for some columns."""
        for name, series in values.items():
            self.columns[name].extend(float(v) for v in np.ravel(series))


def diverged(loss: float, weights: list[np.ndarray], max_weight: float) -> bool:
    """A NaN or infinite loss, or a weight beyond `max_weight` (saturated nets never reach NaN)."""
    return not np.isfinite(loss) or max(float(np.max(np.abs(w))) for w in weights) > max_weight


def snapshot_epochs(epochs: int, count: int) -> tuple[int, ...]:
    """0 and about `count` log-spaced epochs up to `epochs` (boundary evolution frames)."""
    if count <= 0:
        return ()
    spaced = np.unique(np.round(np.geomspace(1, epochs, num=count)).astype(int))
    return (0, *map(int, spaced))


def copies_progress(label: str, epoch: int, epochs: int, loss: np.ndarray, accuracy: np.ndarray, start: float) -> None:
    """One progress line for stacked copies: their median loss and the share at 100% training accuracy."""
    print(
        f"[{label}] epoch {epoch}/{epochs}  median loss {np.median(loss):.4g}  copies at 100% "
        f"{np.mean(accuracy >= 1.0):.1%}  ({time.perf_counter() - start:.1f} s)",
        file=sys.stderr,
        flush=True,
    )


class Progress:
    """Prints a line at most once a second while training, and a final line: quiet on short runs."""

    def __init__(self, epochs: int, label: str, interval: float = 1.0) -> None:
        self.epochs, self.label, self.interval = epochs, label, interval
        self.start = self.last = time.perf_counter()

    def update(self, history: History, final: bool = False) -> None:
        now = time.perf_counter()
        if not final and now - self.last < self.interval:
            return
        self.last = now
        epoch = history.epochs_run
        loss, accuracy = history.columns["loss"][-1], history.columns["accuracy"][-1]
        print(
            f"[{self.label}] epoch {epoch}/{self.epochs}  loss {loss:.4g}  accuracy {accuracy:.3f}  ({now - self.start:.1f} s)",
            file=sys.stderr,
            flush=True,
        )


def schedule_from(trainer_cfg: Mapping[str, Any]) -> Schedule:
    """The training schedule the `trainer` config group describes."""
    return Schedule(
        epochs=trainer_cfg["epochs"],
        batch_size=trainer_cfg["batch_size"],
        shuffle=trainer_cfg["shuffle"],
        seed=trainer_cfg["seed"],
        stop_at_convergence=trainer_cfg["stop_at_convergence"],
        progress_every=trainer_cfg["progress_every"],
        max_weight=float(trainer_cfg["max_weight"]),
        snapshot_epochs=snapshot_epochs(trainer_cfg["epochs"], trainer_cfg["snapshots"]),
    )
