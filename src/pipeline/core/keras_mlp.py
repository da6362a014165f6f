"""Models: the Keras MLP built from `conf/model`, its loss and optimizer from `conf/loss`, `conf/optimizer`."""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from pipeline.core.progress import Progress
from pipeline.core.spec import initializer_specs, layer_specs, parameter_shapes


def expand(names: Sequence[str], x: Any) -> Any:
    """The features `names` of points x [..., 2] (x1, x2), stacked on the last axis; any backend tensor or array."""
    x1, x2 = x[..., 0], x[..., 1]
    values = {"x1": x1, "x2": x2, "x1_squared": x1 * x1, "x2_squared": x2 * x2, "x1_x2": x1 * x2}
    values |= {"sin_x1": ops.sin(x1), "sin_x2": ops.sin(x2)}
    return ops.stack([values[name] for name in names], axis=-1)


@keras.saving.register_keras_serializable(package="pipeline")
class Features(layers.Layer):
    """The configured input features of (x1, x2), the model's first layer (Keras has no such layer)."""

    def __init__(self, names: Sequence[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.names = list(names)

    def call(self, x):
        return expand(self.names, x)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.names))

    def get_config(self) -> dict[str, Any]:
        return super().get_config() | {"names": self.names}


def regularizer(model_cfg: Mapping[str, Any]) -> keras.regularizers.Regularizer | None:
    """The configured kernel penalty, keras.regularizers.L1 or L2 at `regularization_rate`, or None."""
    kind = model_cfg.get("regularization")
    if not kind:
        return None
    return {"l1": keras.regularizers.L1, "l2": keras.regularizers.L2}[kind](float(model_cfg["regularization_rate"]))


@keras.saving.register_keras_serializable(package="pipeline")
class HalfSquaredError(keras.losses.Loss):
    """1/2 * sum_k (y_pred - y_true)^2 per sample: the textbook cost (Keras has none with the 1/2)."""

    def __init__(self, reduction: str = "sum", name: str = "half_squared_error", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return 0.5 * ops.sum(ops.square(y_pred - y_true), axis=-1)


def build(model_cfg: Mapping[str, Any], n_features: int) -> keras.Sequential:
    """Build the configured MLP as a tutorial does: Dense layers in order, each creating its own initializers."""
    initializers = {key: model_cfg[key] for key in ("kernel_initializer", "bias_initializer")}
    penalty = regularizer(model_cfg)
    dense = [
        layers.Dense(
            spec["units"],
            spec["activation"],
            model_cfg.get("use_bias", True),
            name=f"dense_{i}",
            kernel_regularizer=penalty,
            **initializers,
        )
        for i, spec in enumerate(layer_specs(model_cfg))
    ]
    features = [Features(model_cfg["features"], name="features")] if model_cfg.get("features") else []
    return keras.Sequential([keras.Input(shape=(n_features,)), *features, *dense], name="mlp")


def seeded_model(model_cfg: Mapping[str, Any], n_features: int, seed: int) -> keras.Sequential:
    """`build` after `keras.utils.set_random_seed(seed)`: the weights a tutorial's code gets with that seed.

    An unseeded Keras initializer draws its seed from Python's generator when created, so seeding then
    building the layers in the same order gives the same weights as `Sequential([Dense(..), ..])`.
    """
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return build(model_cfg, n_features)


def initial_weights(model_cfg: Mapping[str, Any], n_features: int, seeds: Sequence[int]) -> list[list[np.ndarray]]:
    """Per seed, the weights `seeded_model` starts from (get_weights() order), from the initializers alone.

    All initializers are created first, each copy's after set_random_seed(its seed), then called: their seeds are
    fixed at creation, and a TensorFlow op run after set_random_seed costs ~10 ms (it clears TensorFlow's caches).
    """
    seeding = Progress(len(seeds), "initial weights: seeding", unit="copy")  # 1e6 copies take minutes
    specs, created = initializer_specs(model_cfg), []
    for done, seed in enumerate(seeds, 1):
        keras.utils.set_random_seed(int(seed))
        created.append([keras.initializers.get(spec) for spec in specs])
        seeding.count(done, final=done == len(seeds))
    shapes = parameter_shapes(model_cfg, n_features)
    drawing, weights = Progress(len(seeds), "initial weights: drawing", unit="copy"), []
    for done, mine in enumerate(created, 1):
        weights.append([np.asarray(init(shape, dtype="float32")) for init, shape in zip(mine, shapes)])
        drawing.count(done, final=done == len(seeds))
    return weights


def make_loss(loss_cfg: Mapping[str, Any]) -> keras.losses.Loss:
    """The configured Keras loss."""
    return keras_object(loss_cfg)


def make_optimizer(optimizer_cfg: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """The configured Keras optimizer."""
    return keras_object(optimizer_cfg)


def keras_object(spec: Mapping[str, Any]) -> Any:
    """The class `_target_` names, called with the other keys: what Hydra's instantiate does with a flat entry.

    By hand because the core imports no Hydra, and Keras's deserializer finds our own loss only by its registered name.
    """
    module, name = spec["_target_"].rsplit(".", 1)
    return getattr(importlib.import_module(module), name)(**{key: value for key, value in spec.items() if key != "_target_"})
