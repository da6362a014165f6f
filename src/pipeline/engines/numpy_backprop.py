"""The numpy engine: mini-batch gradient descent by hand-written backprop (pipeline.backprop), one loop over copies.

Every array carries a leading copy axis; copy r starts from the weights a Keras run with seed+r starts from
and shuffles with its own generator, so a single run is simply one copy.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pipeline.backprop import MLP, Cost, predicted_class
from pipeline.data import Dataset
from pipeline.engines import History, Progress, Replicates, Schedule, Trained


def initial_parameters(model_cfg: dict[str, Any], n_features: int, seeds: np.ndarray) -> tuple[list[np.ndarray], bool, list[str]]:
    """Each copy's initial weights, stacked: the Keras initializers a standalone run with that seed calls."""
    from pipeline.engines.replicated import StackedMLP

    stacked = StackedMLP(model_cfg, n_features, seeds)
    return [v.numpy() for v in stacked.variables], stacked.use_bias, stacked.activations


CHUNK = 65_536  # rows per forward pass over a whole split: memory stays copies x CHUNK x units, whatever n


def split_metrics(mlp: MLP, cost: Cost, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's loss and accuracy on (x, y), from forward passes of CHUNK rows."""
    totals, hits = [], []
    for first in range(0, len(x), CHUNK):
        zs, a = mlp.forward(x[first : first + CHUNK])
        yc = y[first : first + CHUNK]
        totals.append(np.sum(cost.per_sample(zs[-1], a[-1], yc), axis=-1))
        hits.append(np.sum(predicted_class(zs, a, cost) == yc, axis=(-2, -1)))
    return cost.scale(len(x)) * np.sum(totals, axis=0), np.sum(hits, axis=0) / y.size


def probabilities(mlp: MLP, cost: Cost, x: np.ndarray) -> np.ndarray:
    """Each copy's P(class 1) for the rows of x [copies, n], CHUNK rows at a time."""
    return np.concatenate(
        [mlp.probabilities(x[first : first + CHUNK], cost.from_logits)[..., 0] for first in range(0, len(x), CHUNK)], axis=-1
    )


def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int) -> Trained | Replicates:
    """Train `copies` copies seeded schedule.seed, +1, ... with plain gradient descent; metrics as Keras's fit reports them."""
    from pipeline.nets import NumpyNet

    seeds = schedule.seed + np.arange(copies)
    mlp = MLP.from_parameters(*initial_parameters(cfg["model"], dataset.n_features, seeds))
    cost, learning_rate = Cost.from_config(cfg["loss"]), cfg["optimizer"]["learning_rate"]
    x, y = dataset.x_train.astype(np.float64), dataset.y_train.astype(np.float64)
    test_x, test_y = dataset.x_test.astype(np.float64), dataset.y_test.astype(np.float64)
    n, batch = len(x), min(schedule.batch_size, len(x))
    rngs = [np.random.default_rng(int(seed)) for seed in seeds]
    columns: dict[str, list[np.ndarray]] = {"loss": [], "accuracy": [], "test_loss": [], "test_accuracy": []}
    diverged_epoch = np.zeros(copies, dtype=int)
    snapshots, wanted = {}, set(schedule.snapshot_epochs)
    if 0 in wanted:
        snapshots[0] = [p[0].astype(np.float32) for p in mlp.parameters()]
    progress = Progress(schedule.epochs, "numpy" if copies == 1 else f"numpy x{copies}")
    start = time.perf_counter()
    for epoch in range(1, schedule.epochs + 1):
        order = np.arange(n)[None]
        if schedule.shuffle:  # filled in place: one copy's permutation at a time beside the others
            order = np.empty((copies, n), dtype=np.int64)
            for r, rng in enumerate(rngs):
                order[r] = rng.permutation(n)
        loss_sum, correct = np.zeros(copies), np.zeros(copies)
        for first in range(0, n, batch):
            index = order[:, first : first + batch]
            xb, yb = (x[index[0]], y[index[0]]) if len(index) == 1 else (x[index], y[index])
            zs, a = mlp.forward(xb)
            loss, dW, db = mlp.backward(zs, a, yb, cost)
            correct += np.sum(predicted_class(zs, a, cost) == yb, axis=(-2, -1))
            loss_sum += loss * index.shape[1]
            mlp.step(dW, db, learning_rate)
        columns["loss"].append(loss_sum / n)
        columns["accuracy"].append(correct / n)
        if dataset.has_test:
            test_loss, test_accuracy = split_metrics(mlp, cost, test_x, test_y)
            columns["test_loss"].append(test_loss)
            columns["test_accuracy"].append(test_accuracy)
        if epoch in wanted:
            snapshots[epoch] = [p[0].astype(np.float32) for p in mlp.parameters()]
        largest = np.max([np.abs(W).max(axis=(-2, -1)) for W in mlp.W], axis=0)
        bad = ~np.isfinite(loss_sum) | (largest > schedule.max_weight)
        diverged_epoch[(diverged_epoch == 0) & bad] = epoch
        progress.update(epoch, columns["loss"][-1], columns["accuracy"][-1])
        if diverged_epoch.all() or (schedule.stop_at_convergence and (correct == n).all()):
            break
    seconds = time.perf_counter() - start
    progress.update(epoch, columns["loss"][-1], columns["accuracy"][-1], final=True)
    if copies == 1:
        history = History(snapshots=snapshots, seconds=seconds, diverged_epoch=int(diverged_epoch[0]) or None)
        history.extend(**{k: np.array(v)[:, 0] for k, v in columns.items() if v})
        single = MLP.from_parameters([p[0] for p in mlp.parameters()], mlp.b is not None, mlp.activations)
        return Trained(NumpyNet(single, cost.from_logits), history)
    train_loss, train_accuracy = split_metrics(mlp, cost, x, y)
    test_loss, test_accuracy = split_metrics(mlp, cost, test_x, test_y)
    return Replicates(
        seeds=seeds,
        columns={k: np.array(v, dtype=np.float32) for k, v in columns.items() if v},
        final={
            "train_loss": train_loss,
            "train_accuracy": train_accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        },
        predictions=probabilities(mlp, cost, x),
        diverged_epoch=diverged_epoch,
        parameters=mlp.parameters(),
        seconds=seconds,
    )
