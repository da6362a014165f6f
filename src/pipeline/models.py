"""Models: the Keras MLP built from `conf/model`, its loss and optimizer from `conf/loss`, `conf/optimizer`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
from hydra.utils import instantiate
from keras import layers, ops

from pipeline.config import layer_specs


@keras.saving.register_keras_serializable(package="pipeline")
class HalfSquaredError(keras.losses.Loss):
    """1/2 * sum_k (y_pred - y_true)^2 per sample: the textbook cost (Keras has none with the 1/2)."""

    def __init__(self, reduction: str = "sum", name: str = "half_squared_error", dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return 0.5 * ops.sum(ops.square(y_pred - y_true), axis=-1)


def build(model_cfg: Mapping[str, Any], n_features: int, seed: int) -> keras.Sequential:
    """Build the configured MLP; each initializer gets its own seed derived from `seed`, so weights are reproducible."""
    stack: list[Any] = [keras.Input(shape=(n_features,))]
    for i, spec in enumerate(layer_specs(model_cfg)):
        stack.append(
            layers.Dense(
                units=spec["units"],
                activation=spec["activation"],
                use_bias=model_cfg.get("use_bias", True),
                kernel_initializer=seeded_initializer(model_cfg["kernel_initializer"], seed, 2 * i),
                bias_initializer=seeded_initializer(model_cfg["bias_initializer"], seed, 2 * i + 1),
                name=f"dense_{i}",
            )
        )
    return keras.Sequential(stack, name="mlp")


def seeded_model(model_cfg: Mapping[str, Any], n_features: int, seed: int) -> keras.Sequential:
    """`build` in a process seeded as a standalone run: Keras's global seed set, TensorFlow ops deterministic."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    return build(model_cfg, n_features, seed)


def seeded_initializer(spec: Any, seed: int, index: int) -> keras.initializers.Initializer:
    """The Keras initializer `spec`, with seed 1000*seed + index where it takes a seed."""
    initializer = keras.initializers.get(_plain(spec))
    config = initializer.get_config()
    if "seed" in config:
        config["seed"] = 1000 * int(seed) + index
        initializer = initializer.__class__.from_config(config)
    return initializer


def make_loss(loss_cfg: Mapping[str, Any]) -> keras.losses.Loss:
    """Instantiate the configured Keras loss."""
    return instantiate(loss_cfg)


def make_optimizer(optimizer_cfg: Mapping[str, Any]) -> keras.optimizers.Optimizer:
    """Instantiate the configured Keras optimizer."""
    return instantiate(optimizer_cfg)


def _plain(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value
