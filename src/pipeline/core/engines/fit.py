"""The reference engine: plain Keras `model.fit`, with the pipeline's progress line instead of Keras's bar."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from pipeline.core.data import Dataset
from pipeline.core.progress import Progress
from pipeline.core.engines import History, Replicates, Schedule, Trained, check_copies, diverged


class Snapshots(keras.callbacks.Callback):
    """Keeps the model's weights at the given epochs (0 = before training)."""

    def __init__(self, epochs: tuple[int, ...], history: History) -> None:
        super().__init__()
        self.epochs, self.history = set(epochs), history

    def on_train_begin(self, logs=None):
        if 0 in self.epochs:
            self.history.snapshots[0] = [np.array(w) for w in self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 in self.epochs:
            self.history.snapshots[epoch + 1] = [np.array(w) for w in self.model.get_weights()]


class StopAtDivergence(keras.callbacks.Callback):
    """Stops training at the end of an epoch whose loss is NaN/inf or whose weights passed `max_weight`."""

    def __init__(self, max_weight: float, history: History) -> None:
        super().__init__()
        self.max_weight, self.history = max_weight, history

    def on_epoch_end(self, epoch, logs=None):
        if diverged((logs or {}).get("loss", np.nan), self.model.get_weights(), self.max_weight):
            self.history.diverged_epoch = epoch + 1
            self.model.stop_training = True


class ShowProgress(keras.callbacks.Callback):
    """The pipeline's progress line (at most once a second, quiet on short runs) instead of Keras's bar."""

    def __init__(self, progress: Progress, metric: str) -> None:
        super().__init__()
        self.progress, self.metric = progress, metric

    def on_epoch_end(self, epoch, logs=None):
        self.progress.update(epoch + 1, (logs or {}).get("loss", np.nan), (logs or {}).get(self.metric, np.nan))


class StopAtConvergence(keras.callbacks.Callback):
    """Stops training at the end of the first epoch whose training accuracy is 100%."""

    def __init__(self, metric: str) -> None:
        super().__init__()
        self.metric = metric

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.metric, 0.0) >= 1.0:
            self.model.stop_training = True


def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int) -> Trained | Replicates:
    """The engine: `model.fit` on a Keras model seeded as a standalone run (one copy only)."""
    from pipeline.core import keras_mlp as models
    from pipeline.core.nets import KerasNet

    check_copies("fit", copies)
    model = models.seeded_model(cfg["model"], dataset.n_features, schedule.seed)
    loss, optimizer = models.make_loss(cfg["loss"]), models.make_optimizer(cfg["optimizer"])
    history = train_model(model, loss, optimizer, dataset, schedule, metric=cfg["metrics"][0])
    return Trained(KerasNet(model, bool(cfg["loss"].get("from_logits"))), history)


def train_model(
    model: keras.Model,
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    dataset: Dataset,
    schedule: Schedule,
    metric: str = "binary_accuracy",
) -> History:
    """Train with `model.fit`; return the history in the pipeline's column names."""
    model.compile(optimizer=optimizer, loss=loss, metrics=[metric])
    history = History()
    progress = Progress(schedule.epochs, "fit")
    callbacks = [
        Snapshots(schedule.snapshot_epochs, history),
        StopAtDivergence(schedule.max_weight, history),
        ShowProgress(progress, metric),
    ]
    if schedule.stop_at_convergence:
        callbacks.append(StopAtConvergence(metric))
    start = time.perf_counter()
    fitted = model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=schedule.batch_size,
        epochs=schedule.epochs,
        # Shuffling one full batch changes only float rounding; skipping it keeps fit and compiled bitwise equal.
        shuffle=schedule.shuffle and schedule.batch_size < len(dataset.x_train),
        validation_data=(dataset.x_test, dataset.y_test) if dataset.has_test else None,
        verbose=0,
        callbacks=callbacks,
    )
    history.seconds = time.perf_counter() - start
    logs = fitted.history
    history.extend(loss=np.array(logs["loss"]), accuracy=np.array(logs[metric]))
    progress.update(history.epochs_run, logs["loss"][-1], logs[metric][-1], final=True)
    if dataset.has_test:
        history.extend(test_loss=np.array(logs["val_loss"]), test_accuracy=np.array(logs[f"val_{metric}"]))
    return history
