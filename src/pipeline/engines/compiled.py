"""The compiled engine: whole chunks of epochs inside one tf.function, with Keras's own objects."""

from __future__ import annotations

import logging
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from pipeline.data import Dataset
from pipeline.engines import History, Progress, Schedule

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
        self.loss_mean = keras.metrics.Mean()
        self.accuracy = keras.metrics.BinaryAccuracy(threshold=threshold)
        self.test_accuracy = keras.metrics.BinaryAccuracy(threshold=threshold)
        self.run = tf.function(self._epochs)

    def _batch(self, epoch: tf.Tensor, step: Any) -> tuple[tf.Tensor, tf.Tensor]:
        """The step-th batch of the epoch; one full batch is used as it is (its order changes only rounding)."""
        if self.steps == 1:
            return self.x, self.y
        order = tf.range(self.n)
        if self.schedule.shuffle:  # a stateless shuffle keyed by (seed, epoch): reproducible whatever ran before
            noise = tf.random.stateless_uniform([self.n], seed=tf.stack([self.schedule.seed, epoch]))
            order = tf.argsort(noise, stable=True)
        index = order[step * self.batch : (step + 1) * self.batch]
        return tf.gather(self.x, index), tf.gather(self.y, index)

    def _epochs(self, first: tf.Tensor, count: tf.Tensor):
        variables = self.model.trainable_variables
        losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        accuracies = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        test_losses = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        test_accuracies = tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=())
        diverged = tf.constant(False)
        for i in tf.range(count):
            self.loss_mean.reset_state()
            self.accuracy.reset_state()
            # One batch (the 4-row tables): a plain step, no inner loop to trace; else a graph loop.
            for step in range(1) if self.steps == 1 else tf.range(self.steps):
                x, y = self._batch(first + i, step)
                with tf.GradientTape() as tape:
                    prediction = self.model(x, training=True)
                    loss = self.loss(y, prediction)
                self.optimizer.apply(tape.gradient(loss, variables), variables)
                self.loss_mean.update_state(loss, sample_weight=tf.shape(x)[0])
                self.accuracy.update_state(y, prediction)
            epoch_loss, epoch_accuracy = self.loss_mean.result(), self.accuracy.result()
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


def train(
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
        progress.update(history)
        if bool(diverged):
            history.diverged_epoch = done
            break
        if done < first + count - 1:  # the graph stopped early: converged
            break
    history.seconds = time.perf_counter() - start
    progress.update(history, final=True)
    return history
