"""Validation of a composed config, before TensorFlow starts: one ConfigError naming key, value and what is allowed."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline import files
from pipeline.core import data, engines
from pipeline.core.spec import FEATURES, LOSSES, REGULARIZERS, initializer_name, layer_specs
from pipeline.errors import ConfigError
from pipeline.values import MAX_SEED, is_int, is_real

ACTIVATIONS = ("relu", "sigmoid", "tanh", "linear", "elu", "selu", "softplus", "swish", "gelu")
NUMPY_ACTIVATIONS = ("sigmoid", "tanh", "relu", "linear")
INITIALIZERS = ["glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform", "lecun_normal"]
INITIALIZERS += ["random_uniform", "random_normal", "truncated_normal", "orthogonal", "zeros", "ones"]
OPTIMIZERS = {f"keras.optimizers.{name}": name.lower() for name in ("Adam", "SGD", "RMSprop", "Adagrad", "AdamW", "Nadam")}
METRICS = ("binary_accuracy", "accuracy")
NUMPY_INITIALIZERS = ["random_uniform", "random_normal", "glorot_uniform", "he_uniform", "lecun_uniform"]
NUMPY_INITIALIZERS += ["zeros", "ones", "constant"]  # drawn from numpy's generator, as the numpy tutorial does
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.=,+-]*")


def check_results_folder(results: str, folder: str | Path | None = None) -> None:
    """ConfigError on paths.results if files cannot be created in `folder` (by default `results` itself)."""
    problem = files.unwritable(folder or results)
    if problem:
        raise ConfigError("paths.results", results, f"a folder this user can write ({problem})")


def check_training(cfg: Mapping[str, Any], n_features: int | None = None) -> None:
    """Check everything a training run reads: name, dataset, model, loss, optimizer, trainer."""
    check_name(cfg.get("name"))
    data.check(cfg["dataset"])
    check_model(cfg["model"], n_features)
    check_loss(cfg["loss"], cfg["model"]["output"]["activation"])
    check_optimizer(cfg["optimizer"])
    check_trainer(cfg["trainer"])
    metrics = cfg.get("metrics") or []
    if len(metrics) != 1 or metrics[0] not in METRICS:
        raise ConfigError("metrics", metrics, f"a one-item list, one of {', '.join(METRICS)}")
    if cfg["trainer"]["engine"] == "numpy":
        check_numpy_engine(cfg)


def check_name(name: Any) -> None:
    """A run name is one plain path component: it can never escape its output folder."""
    if not isinstance(name, str) or not NAME.fullmatch(name) or ".." in name or len(name) > 100:
        allowed = "at most 100 letters, digits and _ . = , + - (no '/' or '..'), starting with a letter or digit"
        raise ConfigError("name", name if not isinstance(name, str) or len(name) <= 100 else f"{name[:40]}...", allowed)


def check_model(model_cfg: Mapping[str, Any], n_features: int | None = None) -> None:
    if not isinstance(model_cfg.get("hidden"), list) or not model_cfg["hidden"]:
        raise ConfigError("model.hidden", model_cfg.get("hidden"), "a non-empty list of {units, activation}")
    for i, spec in enumerate(layer_specs(model_cfg)):
        key = f"model.hidden.{i}" if i < len(model_cfg["hidden"]) else "model.output"
        if not isinstance(spec, Mapping) or set(spec) != {"units", "activation"}:
            raise ConfigError(key, spec, "a mapping with exactly the keys units and activation")
        if not is_int(spec["units"]) or spec["units"] < 1:
            raise ConfigError(f"{key}.units", spec["units"], "a positive integer")
        if spec["activation"] not in ACTIVATIONS:
            raise ConfigError(f"{key}.activation", spec["activation"], f"one of {', '.join(ACTIVATIONS)}")
    if model_cfg["output"]["units"] != 1:
        raise ConfigError("model.output.units", model_cfg["output"]["units"], "1 (one probability per point)")
    for key in ("kernel_initializer", "bias_initializer"):
        spec = model_cfg[key]
        if not (spec in INITIALIZERS or isinstance(spec, Mapping) and "class_name" in spec):
            raise ConfigError(f"model.{key}", spec, f"one of {', '.join(INITIALIZERS)} or {{class_name, config}}")
    features = model_cfg.get("features")
    if features is not None:
        if (
            not isinstance(features, list)
            or not features
            or any(f not in FEATURES for f in features)
            or len(set(features)) < len(features)
        ):
            raise ConfigError("model.features", features, f"null or a list of distinct names among {', '.join(FEATURES)}")
        if n_features is not None and n_features != 2:
            raise ConfigError("model.features", features, f"null for a dataset of {n_features} columns (features need x1, x2)")
    if model_cfg.get("regularization") not in (None, *REGULARIZERS):
        raise ConfigError("model.regularization", model_cfg["regularization"], f"null or one of {', '.join(REGULARIZERS)}")
    rate = model_cfg.get("regularization_rate", 0.0)
    if not is_real(rate) or rate < 0:
        raise ConfigError("model.regularization_rate", rate, "a finite number >= 0")
    expected = model_cfg.get("input_features")
    if expected is not None and n_features is not None and expected != n_features:
        raise ConfigError("model.input_features", expected, f"{n_features}, the dataset's number of features")


def check_loss(loss_cfg: Mapping[str, Any], output_activation: str) -> None:
    target = loss_cfg.get("_target_")
    if target not in LOSSES:
        raise ConfigError("loss._target_", target, f"one of {', '.join(LOSSES)}")
    reduction = loss_cfg.get("reduction", "sum_over_batch_size")
    if reduction not in ("sum_over_batch_size", "sum"):
        raise ConfigError("loss.reduction", reduction, "sum_over_batch_size or sum")
    if LOSSES[target] != "binary_crossentropy":
        return
    if loss_cfg.get("from_logits"):
        if output_activation != "linear":
            raise ConfigError("model.output.activation", output_activation, "linear when loss.from_logits=true")
    elif output_activation != "sigmoid":
        raise ConfigError(
            "model.output.activation",
            output_activation,
            "sigmoid for binary_crossentropy (or linear with loss.from_logits=true)",
        )


def check_optimizer(optimizer_cfg: Mapping[str, Any]) -> None:
    target = optimizer_cfg.get("_target_")
    if target not in OPTIMIZERS:
        raise ConfigError("optimizer._target_", target, f"one of {', '.join(OPTIMIZERS)}")
    rate = optimizer_cfg.get("learning_rate")
    if not is_real(rate) or rate <= 0:
        raise ConfigError("optimizer.learning_rate", rate, "a positive finite number")
    for key in ("momentum", "rho", "beta_1", "beta_2"):
        value = optimizer_cfg.get(key, 0.0)
        if not is_real(value) or not 0 <= value < 1:
            raise ConfigError(f"optimizer.{key}", value, "a number in [0, 1)")


def check_trainer(trainer_cfg: Mapping[str, Any]) -> None:
    engines.engine_name(trainer_cfg.get("engine"))
    for key in ("epochs", "batch_size", "replicates"):
        value = trainer_cfg.get(key, 1)
        if not is_int(value) or value < 1:
            raise ConfigError(f"trainer.{key}", value, "a positive integer")
    for key in ("seed", "progress_every", "snapshots"):
        value = trainer_cfg.get(key, 0)
        if not is_int(value) or value < 0:
            raise ConfigError(f"trainer.{key}", value, "an integer >= 0")
    last = MAX_SEED - (trainer_cfg.get("replicates", 1) - 1)  # copies use seed .. seed + replicates - 1
    if trainer_cfg.get("seed", 0) > last:
        raise ConfigError("trainer.seed", trainer_cfg["seed"], f"an integer from 0 to {last} (NumPy and Keras seeds are 32-bit)")
    engines.check_copies(trainer_cfg["engine"], trainer_cfg.get("replicates", 1))
    if not is_real(trainer_cfg.get("max_weight", 1.0)) or trainer_cfg.get("max_weight", 1.0) <= 0:
        raise ConfigError("trainer.max_weight", trainer_cfg["max_weight"], "a positive finite number")
    for key in ("shuffle", "stop_at_convergence"):
        if not isinstance(trainer_cfg.get(key, False), bool):
            raise ConfigError(f"trainer.{key}", trainer_cfg[key], "true or false")


def check_numpy_engine(cfg: Mapping[str, Any]) -> None:
    """The hand-written backprop knows plain gradient descent and a few activations."""
    for key in ("kernel_initializer", "bias_initializer"):
        if initializer_name(cfg["model"][key]) not in NUMPY_INITIALIZERS:
            allowed = f"one of {', '.join(NUMPY_INITIALIZERS)} for trainer.engine=numpy (drawn from numpy's generator)"
            raise ConfigError(f"model.{key}", cfg["model"][key], allowed)
    if cfg["optimizer"]["_target_"] != "keras.optimizers.SGD" or cfg["optimizer"].get("momentum", 0.0) != 0:
        raise ConfigError("optimizer", cfg["optimizer"]["_target_"], "sgd with momentum 0 for trainer.engine=numpy")
    for key in ("features", "regularization"):
        if cfg["model"].get(key) is not None:
            raise ConfigError(f"model.{key}", cfg["model"][key], "null for trainer.engine=numpy (a Keras engine has it)")
    for i, spec in enumerate(layer_specs(cfg["model"])):
        if spec["activation"] not in NUMPY_ACTIVATIONS:
            key = f"model.hidden.{i}" if i < len(cfg["model"]["hidden"]) else "model.output"
            raise ConfigError(
                f"{key}.activation", spec["activation"], f"one of {', '.join(NUMPY_ACTIVATIONS)} for trainer.engine=numpy"
            )
