"""The compiled engine: whole chunks of epochs inside one tf.function, with Keras's own objects."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.core.data import Dataset
from pipeline.core.progress import Progress
from pipeline.core.engines import History, Replicates, Schedule, Trained

# Each run traces its own loop for its own model; TensorFlow's retracing advice does not apply.
tf.get_logger().setLevel(logging.ERROR)


class CompiledLoop:
    """Runs epochs [first, first+count) of minibatch training in a graph; mirrors `model.fit`'s math."""

    def __init__(
        self,
        model: keras.Model,
        loss: keras.losses.Loss,
        optimizer: keras.optimizers.Optimizer,
        dataset: Dataset,
        schedule: Schedule,
        threshold: float = 0.5,
    ) -> None:
        self.model, self.loss, self.optimizer, self.schedule = model, loss, optimizer, schedule
        self.has_test = dataset.has_test
        self.x, self.y = tf.constant(dataset.x_train), tf.constant(dataset.y_train)
        self.x_test, self.y_test = tf.constant(dataset.x_test), tf.constant(dataset.y_test)
        n = len(dataset.x_train)
        self.n, self.batch = n, min(schedule.batch_size, n)
        self.steps = -(-n // self.batch)
        optimizer.build(model.trainable_variables)
        self.threshold = threshold
        self.test_accuracy = keras.metrics.BinaryAccuracy(threshold=threshold)
        self.run = tf.function(self._epochs)

    def _order(self, epoch: tf.Tensor) -> tf.Tensor:
        """The epoch's sample order: a stateless shuffle keyed by (seed, epoch), reproducible whatever ran before."""
        if not self.schedule.shuffle:
            return tf.range(self.n)
        noise = tf.random.stateless_uniform([self.n], seed=tf.stack([self.schedule.seed, epoch]))
        return tf.argsort(noise, stable=True)

    def _step(self, x: tf.Tensor, y: tf.Tensor, sums: tuple[tf.Tensor, tf.Tensor, tf.Tensor]) -> tuple[tf.Tensor, ...]:
        """One optimizer step on the batch (x, y); the epoch's running sums with this batch added."""
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            prediction = self.model(x, training=True)
            loss = self.loss(y, prediction)
        self.optimizer.apply(tape.gradient(loss, variables), variables)
        size = tf.cast(tf.shape(x)[0], tf.float32)
        hits = tf.reduce_sum(keras.metrics.binary_accuracy(y, prediction, threshold=self.threshold))
        return sums[0] + loss * size, sums[1] + hits, sums[2] + size

    def _epochs(self, first: tf.Tensor, count: tf.Tensor):
        variables = self.model.trainable_variables
        losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        accuracies = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        test_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        test_accuracies = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        diverged = tf.constant(False)
        for i in tf.range(count):
            # Keras's Mean and BinaryAccuracy sums, kept as loop values instead of metric variables: the same
            # float32 additions (so the same numbers) without two variable updates per step.
            sums = (tf.constant(0.0), tf.constant(0.0), tf.constant(0.0))  # loss x size, hits, samples
            if self.steps == 1:  # the 4-row tables: one full batch as it is (its order changes only rounding)
                sums = self._step(self.x, self.y, sums)
            else:  # a graph loop over batches gathered from the epoch's order, drawn once per epoch
                order = self._order(first + i)
                for step in tf.range(self.steps):
                    index = order[step * self.batch : (step + 1) * self.batch]
                    sums = self._step(tf.gather(self.x, index), tf.gather(self.y, index), sums)
            loss_total, hits, seen = sums
            epoch_loss, epoch_accuracy = tf.math.divide_no_nan(loss_total, seen), tf.math.divide_no_nan(hits, seen)
            losses = losses.write(i, epoch_loss)
            accuracies = accuracies.write(i, epoch_accuracy)
            if self.has_test:
                prediction = self.model(self.x_test, training=False)
                self.test_accuracy.reset_state()
                self.test_accuracy.update_state(self.y_test, prediction)
                test_losses = test_losses.write(i, self.loss(self.y_test, prediction))
                test_accuracies = test_accuracies.write(i, self.test_accuracy.result())
            largest = tf.reduce_max(tf.stack([tf.reduce_max(tf.abs(v)) for v in variables]))
            diverged = tf.logical_or(tf.logical_not(tf.math.is_finite(epoch_loss)), largest > self.schedule.max_weight)
            if diverged:
                break
            if self.schedule.stop_at_convergence and epoch_accuracy >= 1.0:
                break
        return losses.stack(), accuracies.stack(), test_losses.stack(), test_accuracies.stack(), diverged


def one_op_at_a_time() -> None:
    """Run graph ops on one inter-op thread when this process starts TensorFlow, unless the user sized the pools.

    A small net's step is one chain of tiny ops: handing each to another core costs more than it runs
    (1e6 points, 2 epochs: 13.6 -> 9.8 s on 2 cores). Ops still use every core inside themselves.
    """
    if "TF_NUM_INTEROP_THREADS" in os.environ or tf.config.threading.get_inter_op_parallelism_threads():
        return
    with contextlib.suppress(RuntimeError):  # TensorFlow already runs in this process (an earlier job): pools stay
        tf.config.threading.set_inter_op_parallelism_threads(1)


def train(cfg: dict[str, Any], dataset: Dataset, schedule: Schedule, copies: int) -> Trained | Replicates:
    """The engine: a Keras model trained by `CompiledLoop`, or `copies` > 1 stacked copies by the replicated loop."""
    from pipeline.core import keras_mlp as models
    from pipeline.core.nets import KerasNet

    if copies == 1:
        one_op_at_a_time()
    loss, optimizer = models.make_loss(cfg["loss"]), models.make_optimizer(cfg["optimizer"])
    from_logits = bool(cfg["loss"].get("from_logits"))
    threshold = 0.0 if from_logits else 0.5
    if copies > 1:
        from pipeline.core.engines import replicated

        tf.config.experimental.enable_op_determinism()
        return replicated.train(cfg["model"], loss, optimizer, dataset, schedule, copies, threshold)
    model = models.seeded_model(cfg["model"], dataset.n_features, schedule.seed)
    return Trained(KerasNet(model, from_logits), train_model(model, loss, optimizer, dataset, schedule, threshold=threshold))


def train_model(
    model: keras.Model,
    loss: keras.losses.Loss,
    optimizer: keras.optimizers.Optimizer,
    dataset: Dataset,
    schedule: Schedule,
    label: str = "compiled",
    threshold: float = 0.5,
) -> History:
    """Train `model` in place for `schedule.epochs`, chunk by chunk; return its history and snapshots."""
    loop = CompiledLoop(model, loss, optimizer, dataset, schedule, threshold)
    history, progress = History(), Progress(schedule.epochs, label)
    columns = history.columns
    wanted = set(schedule.snapshot_epochs)
    if 0 in wanted:
        history.snapshots[0] = [np.array(w) for w in model.get_weights()]
    start = time.perf_counter()
    for first, count in schedule.chunks():
        loss_, accuracy, test_loss, test_accuracy, diverged = loop.run(tf.constant(first), tf.constant(count))
        history.extend(loss=loss_.numpy(), accuracy=accuracy.numpy())
        if dataset.has_test:
            history.extend(test_loss=test_loss.numpy(), test_accuracy=test_accuracy.numpy())
        done = history.epochs_run
        if done in wanted:
            history.snapshots[done] = [np.array(w) for w in model.get_weights()]
        progress.update(done, columns["loss"][-1], columns["accuracy"][-1])
        if bool(diverged):
            history.diverged_epoch = done
            break
        if done < first + count - 1:  # the graph stopped early: converged
            break
    history.seconds = time.perf_counter() - start
    progress.update(history.epochs_run, columns["loss"][-1], columns["accuracy"][-1], final=True)
    return history
