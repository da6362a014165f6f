"""The reference engine: plain Keras `model.fit`, with the pipeline's progress line instead of Keras's bar."""

from __future__ import annotations

import time
from typing import Any

import keras
import numpy as np

from pipeline.core.data import Dataset
from pipeline.core.progress import Progress
from pipeline.core.engines import History, Schedule, Trained, check_copies, diverged, final_values


class Watch(keras.callbacks.Callback):
    """Per epoch: keeps weight snapshots, stops at divergence (or at 100% accuracy), shows the pipeline's progress line."""

    def __init__(self, schedule: Schedule, history: History, progress: Progress, metric: str) -> None:
        super().__init__()
        self.schedule, self.history, self.progress, self.metric = schedule, history, progress, metric

    def on_train_begin(self, logs=None):
        self.on_epoch_end(-1, None)

    def on_epoch_end(self, epoch, logs=None):
        weights = self.model.get_weights()
        if epoch + 1 in self.schedule.snapshot_epochs:
            self.history.snapshots[epoch + 1] = [np.array(w) for w in weights]
        if logs is None:  # before the first epoch
            return
        largest = max(float(np.max(np.abs(w))) for w in weights)
        if diverged(np.asarray(logs.get("loss", np.nan)), largest, self.schedule.max_weight):
            self.history.diverged_epoch = epoch + 1
            self.model.stop_training = True
        if self.schedule.stop_at_convergence and logs.get(self.metric, 0.0) >= 1.0:
            self.model.stop_training = True
        self.progress.update(epoch + 1, logs.get("loss", np.nan), logs.get(self.metric, np.nan))


def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int) -> Trained:
    """`model.fit` on a Keras model seeded as a standalone run (one copy only); the history in the pipeline's names."""
    from pipeline.core import keras_mlp
    from pipeline.core.nets import KerasNet

    check_copies("fit", copies)
    model = keras_mlp.seeded_model(cfg["model"], dataset.n_features, schedule.seed)
    metric = cfg["metrics"][0]
    model.compile(optimizer=keras_mlp.make_optimizer(cfg["optimizer"]), loss=keras_mlp.make_loss(cfg["loss"]), metrics=[metric])
    history = History()
    progress = Progress(schedule.epochs, "fit")
    start = time.perf_counter()
    logs = model.fit(
        dataset.x_train,
        dataset.y_train,
        batch_size=schedule.batch_size,
        epochs=schedule.epochs,
        # Shuffling one full batch changes only float rounding; skipping it keeps fit and compiled bitwise equal.
        shuffle=schedule.shuffle and schedule.batch_size < len(dataset.x_train),
        validation_data=(dataset.x_test, dataset.y_test) if dataset.has_test else None,
        verbose=0,
        callbacks=[Watch(schedule, history, progress, metric)],
    ).history
    seconds = time.perf_counter() - start
    progress.update(len(logs["loss"]), logs["loss"][-1], logs[metric][-1], final=True)
    columns = {"loss": logs["loss"], "accuracy": logs[metric]}
    if dataset.has_test:
        columns |= {"test_loss": logs["val_loss"], "test_accuracy": logs[f"val_{metric}"]}
    net = KerasNet(model, bool(cfg["loss"].get("from_logits")))

    def metrics(x: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
        return [np.array([value]) for value in (net.loss_and_accuracy(cfg["loss"], x, y) if len(x) else (np.nan, np.nan))]

    return Trained(
        seeds=np.array([schedule.seed]),
        columns={name: np.asarray(values)[:, None] for name, values in columns.items()},
        finish=lambda: (final_values(metrics, dataset), net.probabilities(dataset.x_train)[None, :, 0]),
        diverged_epoch=np.array([history.diverged_epoch or 0]),
        parameters=[w[None] for w in model.get_weights()],
        net=lambda copy: net,
        seconds=seconds,
        snapshots={epoch: [w[None] for w in weights] for epoch, weights in history.snapshots.items()},
    )
