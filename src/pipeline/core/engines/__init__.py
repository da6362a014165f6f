"""Training engines: one loop per backend (a compiled graph, numpy), and Keras's `fit` as the reference.

Every engine answers one call, `train(cfg, dataset, schedule, copies)`: it trains `copies` copies of the
configured model seeded schedule.seed, schedule.seed + 1, ... in one loop, and a single run is one copy.
All return a `Trained`. `engine(name)` is the one place that maps a name to its engine.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.core.data import Dataset
    from pipeline.core.nets import Net


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

    columns: dict[str, list[float]] = field(default_factory=dict)  # loss, accuracy (test_loss, test_accuracy)
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


def paced(
    chunks: Iterable[tuple[int, int]], seconds_per_epoch: Callable[[], float | None], budget: float
) -> Iterator[tuple[int, int]]:
    """The chunks cut into pieces of about `budget` seconds at the rate measured so far (one epoch until measured):
    a watched run reaches its watch, which may stop it, that often, however long its epochs are."""
    for first, count in chunks:
        end = first + count
        while first < end:
            rate = seconds_per_epoch()
            size = 1 if rate is None else max(1, min(end - first, int(budget / max(rate, 1e-9))))
            yield first, size
            first += size


def snapshot_epochs(epochs: int, count: int) -> tuple[int, ...]:
    """0 and about `count` log-spaced epochs up to `epochs` (boundary evolution frames)."""
    if count <= 0:
        return ()
    spaced = np.unique(np.round(np.geomspace(1, epochs, num=count)).astype(int))
    return (0, *map(int, spaced))


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


def diverged(loss: Any, largest_weight: Any, max_weight: float) -> Any:
    """A NaN or infinite loss, or a weight beyond `max_weight` (saturated nets never reach NaN): numpy arrays or tensors."""
    return ~(abs(loss) < np.inf) | (largest_weight > max_weight)  # NaN < inf is false too


def final_values(metrics: Callable[[np.ndarray, np.ndarray], Any], dataset: Dataset) -> dict[str, np.ndarray]:
    """train_loss, train_accuracy, test_loss, test_accuracy, one value per copy, from `metrics(x, y)` = (loss, accuracy)."""
    splits = {"train": (dataset.x_train, dataset.y_train), "test": (dataset.x_test, dataset.y_test)}
    return {
        f"{split}_{name}": value for split, (x, y) in splits.items() for name, value in zip(("loss", "accuracy"), metrics(x, y))
    }


@dataclass
class Trained:
    """An engine's copies (a single run is one): per-epoch columns [epochs, copies], final values, weights, models."""

    seeds: np.ndarray
    columns: dict[str, np.ndarray]
    # () -> (train_loss, train_accuracy, test_loss, test_accuracy per copy; P(class 1) on the training set
    # [copies, n_train]): computed when asked, which a single run never does (its model answers instead)
    finish: Callable[[], tuple[dict[str, np.ndarray], np.ndarray]]
    diverged_epoch: np.ndarray  # [copies]; 0 = never
    parameters: list[np.ndarray]  # Keras get_weights() order, each with a leading copy axis
    net: Callable[[int], Net]  # copy r as a model behind the `Net` interface
    seconds: float = 0.0
    snapshots: dict[int, list[np.ndarray]] = field(default_factory=dict)  # epoch -> parameters, copy axis first

    @property
    def epochs_run(self) -> int:
        return len(self.columns["loss"])

    def history(self, copy: int = 0) -> History:
        """Copy `copy`'s history: its columns, snapshots, training seconds and divergence epoch."""
        columns = {name: [float(v) for v in values[:, copy]] for name, values in self.columns.items()}
        snapshots = {epoch: [p[copy] for p in weights] for epoch, weights in self.snapshots.items()}
        return History(columns, snapshots, self.seconds, int(self.diverged_epoch[copy]) or None)


# name -> module; imported on first use, so choosing `numpy` or `fit` never traces graphs it does not need.
ENGINES = {
    "compiled": "pipeline.core.engines.compiled",
    "fit": "pipeline.core.engines.fit",
    "numpy": "pipeline.core.engines.numpy_backprop",
}
MANY_COPIES = ("compiled", "numpy")  # the engines that train replicates (checked before TensorFlow starts)
# After each chunk of epochs: (epochs done, the chunk's columns [count, copies], the parameters now); it may block
# (a paused playground) or raise (stopped). The compiled engine calls it, first with epoch 0 (the initial weights).
Watch = Callable[[int, dict[str, np.ndarray], list[np.ndarray]], None]


def engine_name(name: Any) -> str:
    """`name` if an engine is registered under it; else a ConfigError listing the engines."""
    if name not in ENGINES:
        raise ConfigError("trainer.engine", name, f"one of {', '.join(ENGINES)}")
    return name


def check_copies(name: str, copies: int) -> None:
    """Reject copies > 1 for an engine that trains one copy at a time."""
    if copies > 1 and name not in MANY_COPIES:
        raise ConfigError(
            "trainer.replicates", copies, f"1 with trainer.engine={name} (copies train with {' or '.join(MANY_COPIES)})"
        )


def engine(name: str) -> Any:
    """The engine module registered as `name`: it provides `train(cfg, dataset, schedule, copies) -> Trained`."""
    return importlib.import_module(ENGINES[engine_name(name)])


def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int = 1, watch: Watch | None = None) -> Trained:
    """`copies` seeded copies (a single run: one) with the configured engine; `watch` sees each chunk (compiled only)."""
    check_copies(cfg["trainer"]["engine"], copies)
    if watch is None:
        return engine(cfg["trainer"]["engine"]).train(cfg, dataset, schedule, copies)
    if cfg["trainer"]["engine"] != "compiled":
        raise ConfigError("trainer.engine", cfg["trainer"]["engine"], "compiled for a watched run (the playground)")
    return engine("compiled").train(cfg, dataset, schedule, copies, watch)
