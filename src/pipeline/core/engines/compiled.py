"""The compiled engine: N seeded copies of the model (a single run is one) trained at once, in one graph.

Copies are stacked along axis 0; chunks of epochs run inside one tf.function with Keras's losses and optimizers.
The loss is the sum of the copies' losses, so each copy's gradient and (elementwise) optimizer step are its own:
full-batch losses equal a standalone run's bit for bit, mini-batch ones to 1e-5 (tests/test_replicates.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.data import Dataset
from pipeline.core.engines import Schedule, Trained, Watch, diverged, final_values, paced
from pipeline.core.memory import CHUNK
from pipeline.core.engines.exact_sigmoid import standalone_sigmoid
from pipeline.core.keras_mlp import build, expand, initial_weights, make_loss, make_optimizer, regularizer
from pipeline.core.nets import KerasNet
from pipeline.core.progress import Progress
from pipeline.core.spec import layer_specs

# Each run traces its own loop for its own model; TensorFlow's retracing advice does not apply.
tf.get_logger().setLevel(logging.ERROR)
# For helpers whose Python branches depend on shapes and settings only: AutoGraph need not rewrite them, and
# rewriting them was most of a single run's tracing time.
plain_python = tf.autograph.experimental.do_not_convert
WATCHED_CALL_SECONDS = 0.05  # a watched run's graph calls: the playground can stop it within about this


class StackedMLP:
    """The configured MLP, `len(seeds)` copies: kernels [copies, n_in, units], biases [copies, units]."""

    def __init__(self, model_cfg: dict[str, Any], n_features: int, seeds: np.ndarray) -> None:
        self.use_bias = bool(model_cfg.get("use_bias", True))
        self.features, self.regularizer = model_cfg.get("features"), regularizer(model_cfg)
        self.activations = [spec["activation"] for spec in layer_specs(model_cfg)]
        per_copy = initial_weights(model_cfg, n_features, [int(seed) for seed in seeds])
        self.variables = [tf.Variable(np.stack(values), name=f"w{i}") for i, values in enumerate(zip(*per_copy))]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        """Outputs [copies, batch, units] for inputs [batch, features] (shared) or [copies, batch, features]."""
        return self.forward(x)[1]

    @plain_python
    def forward(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The output layer's pre-activations (logits) and outputs, [copies, batch, units] each."""
        step = 2 if self.use_bias else 1
        copies = self.variables[0].shape[0]
        a = x if x.shape.rank == 3 else tf.broadcast_to(x[None], [copies, *x.shape])
        if self.features:
            a = expand(self.features, a)
        for layer, name in enumerate(self.activations):
            z = tf.matmul(a, self.variables[step * layer])
            if self.use_bias:
                z = z + tf.expand_dims(self.variables[step * layer + 1], 1)
            a = activate(name, z)
        return z, a

    @plain_python
    def penalty(self) -> tf.Tensor | float:
        """Each copy's kernel penalty [copies] (Keras's regularizer summed over the layers), or 0."""
        if self.regularizer is None:
            return 0.0
        step = 2 if self.use_bias else 1
        kernels = self.variables[::step]
        return tf.add_n([tf.map_fn(self.regularizer, kernel) for kernel in kernels])


@plain_python
def activate(name: str, z: tf.Tensor) -> tf.Tensor:
    """Keras's activation `name`; the sigmoid as a standalone run computes it (see exact_sigmoid)."""
    return standalone_sigmoid(z) if name == "sigmoid" else keras.activations.get(name)(z)


def logits_loss(loss: keras.losses.Loss, output_activation: str) -> keras.losses.Loss | None:
    """The cross-entropy from logits where a standalone run's Keras takes the sigmoid's input off its output tensor."""
    if not isinstance(loss, keras.losses.BinaryCrossentropy) or output_activation != "sigmoid":
        return None
    config = loss.get_config()
    return None if config["from_logits"] else keras.losses.BinaryCrossentropy.from_config({**config, "from_logits": True})


class CompiledLoop:
    """Epochs [first, first+count) of minibatch training, every copy in one graph; metrics as `model.fit` reports them."""

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
        if self.steps == 1:  # the whole table is every step's batch: broadcast to the copies once, not every step
            self.x_copies = tf.broadcast_to(self.x[None], [len(seeds), *self.x.shape])
            self.y_copies = tf.broadcast_to(self.y[None], [len(seeds), *self.y.shape])
        self.names = ("loss", "accuracy", *(("test_loss", "test_accuracy") if self.has_test else ()), "diverged")
        optimizer.build(model.variables)
        self.run = tf.function(self._epochs)

    @plain_python
    def losses(self, y: tf.Tensor, prediction: tf.Tensor, logits: tf.Tensor | None = None) -> tf.Tensor:
        """Each copy's loss [copies], reduced as Keras reduces one run's batch (from the logits where it would)."""
        return self.reduce(self.loss_sums(y, prediction, logits), tf.shape(prediction)[1])

    @plain_python
    def loss_sums(self, y: tf.Tensor, prediction: tf.Tensor, logits: tf.Tensor | None = None) -> tf.Tensor:
        """Each copy's sum of per-sample losses [copies]."""
        loss = self.loss
        if logits is not None and self.logits_loss is not None:
            loss, prediction = self.logits_loss, logits
        return tf.reduce_sum(loss.call(tf.broadcast_to(y, tf.shape(prediction)), prediction), axis=1)

    @plain_python
    def reduce(self, total: tf.Tensor, samples: Any) -> tf.Tensor:
        """Summed per-sample losses over `samples` samples as Keras's reduction reports them."""
        if self.loss.reduction == "sum":
            return total
        return tf.math.divide_no_nan(total, tf.cast(samples, total.dtype))

    def final(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each copy's loss and accuracy on (x, y) and its outputs [copies, n, units], CHUNK rows at a time."""
        outputs, totals, hits = [], [], []
        for first in range(0, len(x), CHUNK):
            out, yc = self.model(tf.constant(x[first : first + CHUNK])), tf.constant(y[first : first + CHUNK])
            totals.append(self.loss_sums(yc, out))
            hits.append(self.correct(yc, out))
            outputs.append(out.numpy())
        total, correct = (parts[0] if len(parts) == 1 else tf.add_n(parts) for parts in (totals, hits))  # 1 chunk: exact
        return self.reduce(total, len(x)).numpy(), correct.numpy() / len(x), np.concatenate(outputs, axis=1)

    @plain_python
    def correct(self, y: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
        """Each copy's count of correctly classified samples [copies] (Keras's binary accuracy, summed)."""
        hits = tf.cast(tf.equal(y, tf.cast(prediction > self.threshold, y.dtype)), tf.float32)
        return tf.reduce_sum(tf.reduce_mean(hits, axis=-1), axis=1)

    @plain_python
    def _order(self, epoch: tf.Tensor) -> tf.Tensor:
        """Every copy's sample order for the epoch [copies, n]: its own shuffle keyed (seed, epoch), as `compiled`'s."""
        if not self.schedule.shuffle:
            return tf.broadcast_to(tf.range(self.n)[None], [len(self.seeds), self.n])
        return tf.map_fn(
            lambda seed: tf.argsort(tf.random.stateless_uniform([self.n], seed=tf.stack([seed, epoch])), stable=True),
            self.seeds,
        )

    def _epochs(self, first: tf.Tensor, count: tf.Tensor):
        variables = self.model.variables
        copies = len(self.seeds)
        columns = [tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[copies]) for _ in self.names]
        for i in tf.range(count):
            total, correct, seen = tf.zeros([copies]), tf.zeros([copies]), tf.constant(0.0)
            order = self._order(first + i) if self.steps > 1 else None  # once per epoch: linear in n
            for step in range(1) if self.steps == 1 else tf.range(self.steps):
                if order is None:
                    x, y = self.x_copies, self.y_copies
                else:
                    index = order[:, step * self.batch : (step + 1) * self.batch]
                    x, y = tf.gather(self.x, index), tf.gather(self.y, index)
                with tf.GradientTape() as tape:
                    logits, prediction = self.model.forward(x)
                    losses = self.losses(y, prediction, logits) + self.model.penalty()  # Keras's fit adds it too
                    summed = tf.reduce_sum(losses)  # copy r's gradient is d(loss_r)/d(w_r): exactly its own
                self.optimizer.apply(tape.gradient(summed, variables), variables)
                size = tf.cast(tf.shape(x)[-2], tf.float32)
                total, correct, seen = total + losses * size, correct + self.correct(y, prediction), seen + size
            loss = tf.math.divide_no_nan(total, seen)
            values = [loss, tf.math.divide_no_nan(correct, seen)]
            if self.has_test:
                logits, prediction = self.model.forward(self.x_test)
                hits = self.correct(self.y_test, prediction)
                test_loss = self.losses(self.y_test, prediction, logits) + self.model.penalty()
                values += [test_loss, tf.math.divide_no_nan(hits, float(len(self.x_test)))]
            largest = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(v), axis=range(1, v.shape.rank)) for v in variables]), axis=0)
            bad = diverged(loss, largest, self.schedule.max_weight)
            columns = [column.write(i, value) for column, value in zip(columns, [*values, tf.cast(bad, tf.float32)])]
            if tf.reduce_all(bad) or self.schedule.stop_at_convergence and tf.reduce_all(values[1] >= 1.0):
                break
        return [column.stack() for column in columns]


def one_op_at_a_time() -> None:
    """One inter-op thread unless the user sized the pools: a small net's step is a chain of tiny ops that another
    core costs more than it runs (1e6 points, 2 epochs: 13.6 -> 9.8 s on 2 cores); ops still use every core inside."""
    if "TF_NUM_INTEROP_THREADS" in os.environ or tf.config.threading.get_inter_op_parallelism_threads():
        return
    with contextlib.suppress(RuntimeError):  # TensorFlow already runs in this process (an earlier job): pools stay
        tf.config.threading.set_inter_op_parallelism_threads(1)


def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int, watch: Watch | None = None) -> Trained:
    """Train `copies` copies seeded schedule.seed, schedule.seed + 1, ... chunk by chunk; return them.

    `watch` sees the initial weights and each chunk (it may block, or raise to stop the run)."""
    if copies == 1:
        one_op_at_a_time()
    tf.config.experimental.enable_op_determinism()
    from_logits = bool(cfg["loss"].get("from_logits"))
    threshold = 0.0 if from_logits else 0.5
    seeds = schedule.seed + np.arange(copies)
    model = StackedMLP(cfg["model"], dataset.n_features, seeds)
    loop = CompiledLoop(model, make_loss(cfg["loss"]), make_optimizer(cfg["optimizer"]), dataset, schedule, seeds, threshold)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in loop.names}
    wanted, snapshots = set(schedule.snapshot_epochs), {}
    if 0 in wanted:
        snapshots[0] = [v.numpy() for v in model.variables]
    progress = Progress(schedule.epochs, "compiled" if copies == 1 else f"compiled x{copies}")
    start, done = time.perf_counter(), 0
    pieces: Iterable[tuple[int, int]] = schedule.chunks()
    if watch is not None:
        watch(0, {}, [v.numpy() for v in model.variables])
        timed = [0, 0.0]  # epochs and seconds of the graph calls after the first (which traces the graph)
        pieces = paced(pieces, lambda: timed[1] / timed[0] if timed[0] else None, WATCHED_CALL_SECONDS)
    for first, count in pieces:
        called = time.perf_counter()
        for name, values in zip(loop.names, loop.run(tf.constant(first), tf.constant(count))):
            chunks[name].append(values.numpy())
        if watch is not None and done:
            timed[0], timed[1] = timed[0] + count, timed[1] + time.perf_counter() - called
        done += len(chunks["loss"][-1])
        if done in wanted:
            snapshots[done] = [v.numpy() for v in model.variables]
        progress.update(done, chunks["loss"][-1][-1], chunks["accuracy"][-1][-1])
        if watch is not None:
            watch(done, {name: c[-1] for name, c in chunks.items()}, [v.numpy() for v in model.variables])
        if done < first + count - 1:  # the graph stopped early: every copy diverged or converged
            break
    seconds = time.perf_counter() - start
    progress.update(done, chunks["loss"][-1][-1], chunks["accuracy"][-1][-1], final=True)
    columns = {name: np.concatenate(values) for name, values in chunks.items()}
    bad = columns.pop("diverged") > 0
    parameters = [v.numpy() for v in model.variables]

    def probability(outputs: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-outputs[..., 0])) if from_logits else outputs[..., 0]

    def net(copy: int) -> KerasNet:
        keras_model = build(cfg["model"], dataset.n_features)
        keras_model.set_weights([p[copy] for p in parameters])
        return KerasNet(keras_model, from_logits)

    return Trained(
        seeds=seeds,
        columns=columns,
        finish=lambda: (
            final_values(lambda x, y: loop.final(x, y)[:2], dataset),
            probability(loop.final(dataset.x_train, dataset.y_train)[2]),
        ),
        diverged_epoch=np.where(bad.any(axis=0), bad.argmax(axis=0) + 1, 0),
        parameters=parameters,
        net=net,
        seconds=seconds,
        snapshots=snapshots,
    )
