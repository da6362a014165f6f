"""The numpy engine: mini-batch gradient descent by hand-written backprop (pipeline.core.backprop), one loop over copies.

Every array carries a leading copy axis; copy r starts from the weights numpy draws after `np.random.seed(seed + r)`
(as the numpy tutorial draws them) and shuffles with its own generator, so a single run is simply one copy.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.core.backprop import MLP, Cost, predicted_class
from pipeline.core.data import Dataset
from pipeline.core.progress import Progress
from pipeline.core.engines import Schedule, Trained, diverged, final_values
from pipeline.core.memory import CHUNK
from pipeline.core.spec import initializer_name, initializer_specs, layer_specs, parameter_shapes


def numpy_weights(model_cfg: dict[str, Any], n_features: int, seed: int) -> list[np.ndarray]:
    """Kernel then bias, layer by layer, each drawn from the generator `np.random.seed(seed)` seeds.

    Written by hand because Keras's initializers draw from TensorFlow's generator, and the numpy tutorial's
    `W = np.random.random((3, 5))` from numpy's: the same distribution, other numbers.
    """
    rng = np.random.RandomState(seed)  # the legacy global generator's algorithm: np.random.seed(S) + np.random.random
    specs = initializer_specs(model_cfg)
    return [draw(rng, spec, shape) for spec, shape in zip(specs, parameter_shapes(model_cfg, n_features))]


def draw(rng: np.random.RandomState, spec: Any, shape: tuple[int, ...]) -> np.ndarray:
    """One array from the Keras initializer `spec`'s distribution, drawn from `rng`."""
    name, config = initializer_name(spec), (spec.get("config") or {}) if isinstance(spec, Mapping) else {}
    fan_in, fan_out = (shape[0], shape[0]) if len(shape) == 1 else shape
    if name == "random_uniform":
        low, high = config.get("minval", -0.05), config.get("maxval", 0.05)
        return low + (high - low) * rng.random_sample(shape)
    if name == "random_normal":
        return rng.normal(config.get("mean", 0.0), config.get("stddev", 0.05), shape)
    if name in UNIFORM_LIMITS:
        limit = UNIFORM_LIMITS[name](fan_in, fan_out)
        return -limit + 2 * limit * rng.random_sample(shape)
    return np.full(shape, {"zeros": 0.0, "ones": 1.0}.get(name, config.get("value", 0.0)), dtype=np.float64)


UNIFORM_LIMITS = {
    "glorot_uniform": lambda fan_in, fan_out: np.sqrt(6.0 / (fan_in + fan_out)),
    "he_uniform": lambda fan_in, fan_out: np.sqrt(6.0 / fan_in),
    "lecun_uniform": lambda fan_in, fan_out: np.sqrt(3.0 / fan_in),
}


@np.errstate(over="ignore")  # exp overflows for a diverged copy (backprop.sigmoid): silenced per call, not per step
def split_metrics(mlp: MLP, cost: Cost, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each copy's loss and accuracy on (x, y), from forward passes of CHUNK rows."""
    totals, hits = [], []
    for first in range(0, len(x), CHUNK):
        zs, a = mlp.forward(x[first : first + CHUNK])
        yc = y[first : first + CHUNK]
        totals.append(np.sum(cost.per_sample(zs[-1], a[-1], yc), axis=-1))
        hits.append(np.sum(predicted_class(zs, a, cost) == yc, axis=(-2, -1)))
    return cost.scale(len(x)) * np.sum(totals, axis=0), np.sum(hits, axis=0) / y.size


@np.errstate(over="ignore")
def probabilities(mlp: MLP, cost: Cost, x: np.ndarray) -> np.ndarray:
    """Each copy's P(class 1) for the rows of x [copies, n], CHUNK rows at a time."""
    return np.concatenate(
        [mlp.probabilities(x[first : first + CHUNK], cost.from_logits)[..., 0] for first in range(0, len(x), CHUNK)], axis=-1
    )


@np.errstate(over="ignore")
def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int) -> Trained:
    """Train `copies` copies seeded schedule.seed, +1, ... with plain gradient descent; metrics as Keras's fit reports them."""
    from pipeline.core.nets import NumpyNet

    seeds = schedule.seed + np.arange(copies)
    per_copy = [numpy_weights(cfg["model"], dataset.n_features, int(seed)) for seed in seeds]  # stacked below
    activations = [spec["activation"] for spec in layer_specs(cfg["model"])]
    mlp = MLP.from_parameters([np.stack(w) for w in zip(*per_copy)], bool(cfg["model"].get("use_bias", True)), activations)
    cost, learning_rate = Cost.from_config(cfg["loss"]), cfg["optimizer"]["learning_rate"]
    x, y = dataset.x_train.astype(np.float64), dataset.y_train.astype(np.float64)
    test_x, test_y = dataset.x_test.astype(np.float64), dataset.y_test.astype(np.float64)
    n, batch = len(x), min(schedule.batch_size, len(x))
    rngs = [np.random.default_rng(int(seed)) for seed in seeds]
    columns: dict[str, list[np.ndarray]] = {"loss": [], "accuracy": [], "test_loss": [], "test_accuracy": []}
    diverged_epoch = np.zeros(copies, dtype=int)
    snapshots, wanted = {}, set(schedule.snapshot_epochs)
    if 0 in wanted:
        snapshots[0] = [p.astype(np.float32) for p in mlp.parameters()]
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
            for name, value in zip(("test_loss", "test_accuracy"), split_metrics(mlp, cost, test_x, test_y)):
                columns[name].append(value)
        if epoch in wanted:
            snapshots[epoch] = [p.astype(np.float32) for p in mlp.parameters()]
        largest = np.abs(np.concatenate([p.reshape(copies, -1) for p in mlp.parameters()], axis=1)).max(axis=1)
        bad = diverged(loss_sum, largest, schedule.max_weight)
        diverged_epoch[(diverged_epoch == 0) & bad] = epoch
        progress.update(epoch, columns["loss"][-1], columns["accuracy"][-1])
        if diverged_epoch.all() or (schedule.stop_at_convergence and (correct == n).all()):
            break
    seconds = time.perf_counter() - start
    progress.update(epoch, columns["loss"][-1], columns["accuracy"][-1], final=True)
    parameters = mlp.parameters()

    def net(copy: int) -> NumpyNet:
        return NumpyNet(MLP.from_parameters([p[copy] for p in parameters], mlp.b is not None, mlp.activations), cost.from_logits)

    return Trained(
        seeds=seeds,
        columns={k: np.array(v) for k, v in columns.items() if v},  # float64, as the numpy tutorial computes
        finish=lambda: (
            final_values(lambda x, y: split_metrics(mlp, cost, x.astype(np.float64), y.astype(np.float64)), dataset),
            probabilities(mlp, cost, x),
        ),
        diverged_epoch=diverged_epoch,
        parameters=parameters,
        net=net,
        seconds=seconds,
        snapshots=snapshots,
    )
