"""Trained models, Keras or numpy, as one `Net`: probabilities, hidden activations, metrics, files.

Prediction, evaluation, plots and tracking use `Net` only; these two adapters are the one place that knows
which kind of model a run holds.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline import files
from pipeline.core.backprop import MLP, Cost, sigmoid
from pipeline.errors import DataError

Predict = Callable[[np.ndarray], np.ndarray]  # features (n, d) -> P(class 1), shape (n,) or (n, 1)


class Net(Protocol):
    """A trained model, Keras or numpy (adapters in pipeline.core.nets), as prediction, evaluation and plots use it."""

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(class 1) for each row of `x`, shape (n, 1), in one batched call."""

    def hidden(self, x: np.ndarray) -> np.ndarray:
        """The first hidden layer's activations, (n, units)."""

    def loss_and_accuracy(self, loss_cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """The configured loss and the binary accuracy on (x, y), from one forward pass."""

    def at(self, weights: list[np.ndarray]) -> Predict:
        """The probabilities of this net with other weights (a snapshot), in Keras's get_weights() order."""

    def shapes(self) -> list[tuple[int, ...]]:
        """The shapes of its weights, in Keras's get_weights() order (what a snapshot must match)."""

    def save(self, folder: Path) -> Path:
        """Write the model file into `folder`, atomically; return its path."""


def _accuracy(probability: np.ndarray, y: np.ndarray) -> float:
    return round(float(np.mean((probability > 0.5) == (y > 0.5))), 6)


class KerasNet:
    """A Keras model; `from_logits` when its output is a logit (the loss says so)."""

    FILE = "model.keras"

    def __init__(self, model: Any, from_logits: bool = False) -> None:
        self.model, self.from_logits = model, from_logits
        self.replica: KerasNet | None = None  # one clone serves every snapshot: each predict sets its weights

    def outputs(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(np.asarray(x, np.float32), training=False), dtype=np.float64)

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        out = self.outputs(x)
        return sigmoid(out) if self.from_logits else out

    def hidden(self, x: np.ndarray) -> np.ndarray:
        import keras

        first = next(layer for layer in self.model.layers if isinstance(layer, keras.layers.Dense))  # after any Features
        return np.asarray(keras.Model(self.model.inputs, first.output)([np.asarray(x, np.float32)]))

    def loss_and_accuracy(self, loss_cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        from pipeline.core import keras_mlp

        out = self.model(np.asarray(x, np.float32), training=False)
        loss = keras_mlp.make_loss(loss_cfg)(y, out)
        out = np.asarray(out, dtype=np.float64)
        return round(float(loss), 8), _accuracy(sigmoid(out) if loss_cfg.get("from_logits") else out, y)

    def at(self, weights: list[np.ndarray]) -> Predict:
        import keras

        if self.replica is None:
            self.replica = KerasNet(keras.models.clone_model(self.model), self.from_logits)
        replica = self.replica

        def predict(x: np.ndarray) -> np.ndarray:
            replica.model.set_weights(weights)
            return replica.probabilities(x)

        return predict

    def shapes(self) -> list[tuple[int, ...]]:
        return [tuple(w.shape) for w in self.model.get_weights()]

    def save(self, folder: Path) -> Path:
        with files.atomic_path(folder / self.FILE) as tmp:
            self.model.save(tmp)
            files.undated_zip(tmp, reproducible_member)
        return folder / self.FILE

    @classmethod
    def load(cls, path: Path, from_logits: bool = False) -> KerasNet:
        from pipeline import import_keras

        keras = import_keras()
        import pipeline.core.keras_mlp  # noqa: F401  (registers the custom loss a compiled model may name)

        try:
            return cls(keras.saving.load_model(path, safe_mode=True), from_logits)
        except Exception as error:  # Keras raises many types for a damaged archive
            raise DataError(path, f"not a readable Keras model ({type(error).__name__})") from None


def reproducible_member(name: str, data: bytes) -> bytes:
    """A .keras archive's member without what differs between two saves of the same model: the save time in
    metadata.json (informational), and in config.json the memory addresses Keras numbers shared objects with
    (only matched within the file, so renumbered in order of appearance)."""
    if name == "metadata.json":
        return json.dumps(json.loads(data) | {"date_saved": "unrecorded"}).encode()
    if name == "config.json":
        numbers: dict[bytes, int] = {}
        shared = rb'"shared_object_id": (\d+)'
        return re.sub(shared, lambda m: b'"shared_object_id": %d' % numbers.setdefault(m[1], len(numbers) + 1), data)
    return data


class NumpyNet:
    """The hand-written backprop's MLP (float64)."""

    FILE = "model.npz"

    def __init__(self, mlp: MLP, from_logits: bool = False) -> None:
        self.mlp, self.from_logits = mlp, from_logits

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return self.mlp.probabilities(x, self.from_logits)

    def hidden(self, x: np.ndarray) -> np.ndarray:
        return self.mlp.forward(x)[1][1]

    def loss_and_accuracy(self, loss_cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        zs, a = self.mlp.forward(x)
        loss = Cost.from_config(loss_cfg).value(zs[-1], a[-1], y.astype(np.float64))
        return round(float(loss), 8), _accuracy(sigmoid(a[-1]) if loss_cfg.get("from_logits") else a[-1], y)

    def at(self, weights: list[np.ndarray]) -> Predict:
        frame = MLP.from_parameters(weights, self.mlp.b is not None, self.mlp.activations)
        return lambda x: frame.probabilities(x, self.from_logits)

    def shapes(self) -> list[tuple[int, ...]]:
        return [w.shape for w in self.mlp.parameters()]

    def save(self, folder: Path) -> Path:
        self.mlp.save(folder / self.FILE)
        return folder / self.FILE

    @classmethod
    def load(cls, path: Path, from_logits: bool = False) -> NumpyNet:
        return cls(MLP.load(path), from_logits)


KINDS: tuple[type[KerasNet] | type[NumpyNet], ...] = (NumpyNet, KerasNet)


def model_files(folder: Path) -> list[Path]:
    """The model files a run may have written into `folder`."""
    return [folder / kind.FILE for kind in KINDS]


def input_width(model_file: Path) -> int | None:
    """The number of features the model file takes, read without loading it (None if unreadable: `load` says why)."""
    try:
        if model_file.suffix == ".npz":
            with np.load(model_file, allow_pickle=False) as archive:
                return int(archive["W0"].shape[-2])
        with zipfile.ZipFile(model_file) as archive:  # the .keras format: config.json beside the weights
            return int(json.loads(archive.read("config.json"))["config"]["layers"][0]["config"]["batch_shape"][-1])
    except (OSError, ValueError, KeyError, IndexError, TypeError, zipfile.BadZipFile):
        return None


def load(folder: Path, from_logits: bool = False) -> Net:
    """The trained model in `folder`: model.npz (numpy engine) or model.keras (Keras, safe mode)."""
    for kind in KINDS:
        if (folder / kind.FILE).is_file():
            return kind.load(folder / kind.FILE, from_logits)
    raise DataError(folder / KerasNet.FILE, "no such model file; train first (`dvc repro` or `python -m pipeline.stages.train`)")
