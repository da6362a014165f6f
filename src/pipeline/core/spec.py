"""What a model config describes, for every backend: its layers, parameter shapes, initializers, loss."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

LOSSES = {"keras.losses.MeanSquaredError": "mean_squared_error", "keras.losses.BinaryCrossentropy": "binary_crossentropy"}
LOSSES["pipeline.core.keras_mlp.HalfSquaredError"] = "half_squared_error"
# TensorFlow Playground's input features of a point (x1, x2); `model.features` picks some (null: the raw columns).
FEATURES = ("x1", "x2", "x1_squared", "x2_squared", "x1_x2", "sin_x1", "sin_x2")
REGULARIZERS = ("l1", "l2")  # `model.regularization`: rate * sum|w| or rate * sum w^2 over every kernel, as Keras's


def input_width(model_cfg: Mapping[str, Any], n_features: int) -> int:
    """The first Dense layer's input width: the configured features', else the data's."""
    return len(model_cfg["features"]) if model_cfg.get("features") else n_features


def layer_specs(model_cfg: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every Dense layer's {units, activation}, hidden layers first, output last."""
    return [*model_cfg["hidden"], model_cfg["output"]]


def parameter_shapes(model_cfg: Mapping[str, Any], n_features: int) -> list[tuple[int, ...]]:
    """Kernel (n_in, units) and bias (units,) shapes per layer, in get_weights() order."""
    shapes: list[tuple[int, ...]] = []
    n_in = input_width(model_cfg, n_features)
    for spec in layer_specs(model_cfg):
        shapes.append((n_in, spec["units"]))
        if model_cfg.get("use_bias", True):
            shapes.append((spec["units"],))
        n_in = spec["units"]
    return shapes


def initializer_specs(model_cfg: Mapping[str, Any]) -> list[Any]:
    """Kernel then bias initializer per layer, in get_weights() order (the order Dense creates them)."""
    per_layer = [model_cfg["kernel_initializer"], model_cfg["bias_initializer"]][: 2 if model_cfg.get("use_bias", True) else 1]
    return per_layer * len(layer_specs(model_cfg))


def initializer_name(spec: Any) -> str:
    """`glorot_uniform` for "glorot_uniform" or {class_name: GlorotUniform, ...}."""
    name = spec.get("class_name", "") if isinstance(spec, Mapping) else str(spec)
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
