"""The replicated engine: N independently seeded copies of the model trained at once, stacked along axis 0.

Copy r holds the weights a standalone run with seed `seeds[r]` starts from. The loss is the sum of the
copies' own losses, so each copy's gradient is exactly its own, and Keras's elementwise optimizers
then update each copy as a standalone run would: the per-epoch losses equal the `compiled` engine's
bit for bit on this machine (tests/test_replicates.py), 1000 copies for the price of a few.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.config import layer_specs
from pipeline.data import Dataset
from pipeline.engines import Schedule, copies_progress
from pipeline.engines.exact_sigmoid import standalone_sigmoid
from pipeline.models import seeded_initializer

tf.get_logger().setLevel(logging.ERROR)


@dataclass
class Replicates:
    """Per-copy results: per-epoch columns [epochs, copies], final metrics and train-set predictions, weights."""

    seeds: np.ndarray
    columns: dict[str, np.ndarray]
    final: dict[str, np.ndarray]
    predictions: np.ndarray  # [copies, n_train]: P(class 1) after training
    diverged_epoch: np.ndarray  # [copies]; 0 = never
    parameters: list[np.ndarray]  # Keras get_weights() order, each with a leading copy axis
    seconds: float = 0.0

    @property
    def copies(self) -> int:
        return len(self.seeds)

    @property
    def epochs_run(self) -> int:
        return len(self.columns["loss"])


class StackedMLP:
    """The configured MLP, `len(seeds)` copies: kernels [copies, n_in, units], biases [copies, units]."""

    def __init__(self, model_cfg: dict[str, Any], n_features: int, seeds: np.ndarray) -> None:
        self.use_bias = bool(model_cfg.get("use_bias", True))
        self.activations = [spec["activation"] for spec in layer_specs(model_cfg)]
        self.variables: list[tf.Variable] = []
        n_in = n_features
        for i, spec in enumerate(layer_specs(model_cfg)):
            shapes: list[tuple[int, tuple[int, ...], Any]] = [(2 * i, (n_in, spec["units"]), model_cfg["kernel_initializer"])]
            if self.use_bias:
                shapes.append((2 * i + 1, (spec["units"],), model_cfg["bias_initializer"]))
            for index, shape, initializer in shapes:  # the initializer calls a standalone Dense layer makes
                values = [seeded_initializer(initializer, int(seed), index)(shape) for seed in seeds]
                self.variables.append(tf.Variable(tf.stack(values), name=f"w{len(self.variables)}"))
            n_in = spec["units"]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Outputs [copies, batch, units] for inputs [batch, features] (shared) or [copies, batch, features]."""
        return self.forward(x)[1]

    def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The output layer's pre-activations (logits) and outputs, [copies, batch, units] each."""
        step = 2 if self.use_bias else 1
        copies = self.variables[0].shape[0]
        a = x if x.shape.rank == 3 else tf.broadcast_to(x[None], [copies, *x.shape])
        for layer, name in enumerate(self.activations):
            z = tf.matmul(a, self.variables[step * layer])
            if self.use_bias:
                z = z + self.variables[step * layer + 1][:, None, :]
            a = activate(name, z)
        return z, a


def activate(name: str, z: tf.Tensor) -> tf.Tensor:
    """Keras's activation `name`; the sigmoid as a standalone run computes it (see exact_sigmoid)."""
    return standalone_sigmoid(z) if name == "sigmoid" else keras.activations.get(name)(z)


def logits_loss(loss: keras.losses.Loss, output_activation: str) -> keras.losses.Loss | None:
    """The same cross-entropy from logits, where a standalone run's Keras computes it so; else None.

    Keras's cross-entropy of a sigmoid layer's output uses the sigmoid's input instead (more exact), which
    it finds on the tensor; the stacked copies hand it the logits themselves.
    """
    if not isinstance(loss, keras.losses.BinaryCrossentropy) or output_activation != "sigmoid":
        return None
    config = loss.get_config()
    return None if config["from_logits"] else keras.losses.BinaryCrossentropy.from_config({**config, "from_logits": True})


class ReplicatedLoop:
    """Epochs [first, first+count) for every copy in one graph; per-copy metrics as `model.fit` reports them."""

    def __init__(
        self,
        model: StackedMLP,
        loss: keras.losses.Loss,
        optimizer: keras.optimizers.Optimizer,
        dataset: Dataset,
        schedule: Schedule,
        seeds: np.ndarray,
        threshold: float = 0.5,
    ) -> None:
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        self.logits_loss = logits_loss(loss, model.activations[-1])
        self.threshold, self.has_test = threshold, dataset.has_test
        self.seeds = tf.constant(seeds, tf.int32)
        self.x, self.y = tf.constant(dataset.x_train), tf.constant(dataset.y_train)
        self.x_test, self.y_test = tf.constant(dataset.x_test), tf.constant(dataset.y_test)
        self.n, self.batch = len(dataset.x_train), min(schedule.batch_size, len(dataset.x_train))
        self.steps = -(-self.n // self.batch)
        optimizer.build(model.variables)
        self.run = tf.function(self._epochs)

    def losses(self, y: tf.Tensor, prediction: tf.Tensor, logits: tf.Tensor | None = None) -> tf.Tensor:
        """Each copy's loss [copies], reduced as Keras reduces one run's batch (from the logits where it would)."""
        loss = self.loss
        if logits is not None and self.logits_loss is not None:
            loss, prediction = self.logits_loss, logits
        values = loss.call(tf.broadcast_to(y, tf.shape(prediction)), prediction)
        total = tf.reduce_sum(values, axis=1)
        if self.loss.reduction == "sum":
            return total
        return tf.math.divide_no_nan(total, tf.cast(tf.shape(values)[1], total.dtype))

    def correct(self, y: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
        """Each copy's count of correctly classified samples [copies] (Keras's binary accuracy, summed)."""
        hits = tf.cast(tf.equal(y, tf.cast(prediction > self.threshold, y.dtype)), tf.float32)
        return tf.reduce_sum(tf.reduce_mean(hits, axis=-1), axis=1)

    def _batch(self, epoch: tf.Tensor, step: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """The step-th batch of every copy: its own stateless shuffle keyed (seed, epoch), as `compiled` does."""
        if self.steps == 1:
            return self.x, self.y
        order = tf.broadcast_to(tf.range(self.n)[None], [len(self.seeds), self.n])
        if self.schedule.shuffle:
            order = tf.map_fn(
                lambda seed: tf.argsort(tf.random.stateless_uniform([self.n], seed=tf.stack([seed, epoch])), stable=True),
                self.seeds,
            )
        index = order[:, step * self.batch : (step + 1) * self.batch]
        return tf.gather(self.x, index), tf.gather(self.y, index)

    def _epochs(self, first: tf.Tensor, count: tf.Tensor):
        variables = self.model.variables
        copies = len(self.seeds)
        columns = [tf.TensorArray(tf.float32, size=count, element_shape=[copies]) for _ in range(5)]
        for i in tf.range(count):
            total, correct, seen = tf.zeros([copies]), tf.zeros([copies]), tf.constant(0.0)
            for step in range(1) if self.steps == 1 else tf.range(self.steps):
                x, y = self._batch(first + i, step)
                with tf.GradientTape() as tape:
                    logits, prediction = self.model.forward(x)
                    losses = self.losses(y, prediction, logits)
                    summed = tf.reduce_sum(losses)  # copy r's gradient is d(loss_r)/d(w_r): exactly its own
                self.optimizer.apply(tape.gradient(summed, variables), variables)
                size = tf.cast(tf.shape(x)[-2], tf.float32)
                total, correct, seen = total + losses * size, correct + self.correct(y, prediction), seen + size
            loss = tf.math.divide_no_nan(total, seen)
            values = [loss, tf.math.divide_no_nan(correct, seen)]
            if self.has_test:
                logits, prediction = self.model.forward(self.x_test)
                values += [
                    self.losses(self.y_test, prediction, logits),
                    self.correct(self.y_test, prediction) / tf.cast(tf.shape(self.x_test)[0], tf.float32),
                ]
            else:
                values += [tf.zeros([copies]), tf.zeros([copies])]
            largest = tf.reduce_max(
                tf.stack([tf.reduce_max(tf.abs(tf.reshape(v, [copies, -1])), axis=1) for v in variables]), axis=0
            )
            values.append(tf.cast(tf.logical_or(~tf.math.is_finite(loss), largest > self.schedule.max_weight), tf.float32))
            columns = [column.write(i, value) for column, value in zip(columns, values)]
        return [column.stack() for column in columns]


def train(
    model_cfg: dict[str, Any],
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    dataset: Dataset,
    schedule: Schedule,
    copies: int,
    threshold: float = 0.5,
) -> Replicates:
    """Train `copies` copies seeded schedule.seed, schedule.seed + 1, ...; return their per-copy results."""
    seeds = schedule.seed + np.arange(copies)
    model = StackedMLP(model_cfg, dataset.n_features, seeds)
    loop = ReplicatedLoop(model, loss, optimizer, dataset, schedule, seeds, threshold)
    names = ("loss", "accuracy", "test_loss", "test_accuracy", "diverged")
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in names}
    start = time.perf_counter()
    for first, count in schedule.chunks():
        for name, values in zip(names, loop.run(tf.constant(first), tf.constant(count))):
            chunks[name].append(values.numpy())
        copies_progress(
            "replicated", first + count - 1, schedule.epochs, chunks["loss"][-1][-1], chunks["accuracy"][-1][-1], start
        )
    seconds = time.perf_counter() - start
    columns = {name: np.concatenate(chunks[name]) for name in names}
    bad = columns.pop("diverged") > 0
    if not dataset.has_test:
        columns = {k: v for k, v in columns.items() if not k.startswith("test_")}
    train_out, test_out = model(loop.x).numpy(), model(loop.x_test).numpy()
    final = {
        "train_loss": loop.losses(loop.y, train_out).numpy(),
        "train_accuracy": loop.correct(loop.y, train_out).numpy() / len(dataset.x_train),
        "test_loss": loop.losses(loop.y_test, test_out).numpy(),
        "test_accuracy": loop.correct(loop.y_test, test_out).numpy() / len(dataset.x_test),
    }
    return Replicates(
        seeds=seeds,
        columns=columns,
        final=final,
        predictions=_probabilities(train_out[..., 0], threshold),
        diverged_epoch=np.where(bad.any(axis=0), bad.argmax(axis=0) + 1, 0),
        parameters=[v.numpy() for v in model.variables],
        seconds=seconds,
    )


def _probabilities(output: np.ndarray, threshold: float) -> np.ndarray:
    """P(class 1) from the output layer: itself, or its sigmoid for logits (threshold 0)."""
    return 1.0 / (1.0 + np.exp(-output)) if threshold == 0.0 else output
