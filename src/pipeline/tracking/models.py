"""Trained models in MLflow: a `.keras` file under MLflow's Keras flavour, a numpy `model.npz` as code; registry versions."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.tracking import MlflowClient

logging.getLogger("mlflow.types.type_hints").setLevel(logging.ERROR)  # NumpyMLP's `float | int` is meant loose
logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)  # "failed to resolve pip version": pins are explicit
NUMPY_MODEL_CODE = Path(__file__).with_name("numpy_model.py")


class KerasFile:
    """Model.log's `flavor`: MLflow's Keras flavour around a saved `.keras` file, which is copied, never loaded.

    Hand-written because `mlflow.keras.save_model` takes a model object: it would import Keras and
    TensorFlow into this process again only to save what the trainer has saved.
    """

    __name__ = "mlflow.keras"

    def __init__(self, path: Path, signature: ModelSignature) -> None:
        self.path, self.signature = path, signature

    def save_model(self, path: str, mlflow_model: Model, **kwargs: Any) -> None:
        import mlflow.pyfunc

        data = Path(path) / "data"
        data.mkdir(parents=True)
        shutil.copyfile(self.path, data / "model.keras")
        (Path(path) / "requirements.txt").write_text("\n".join(pinned("keras", "tensorflow-cpu", "tensorflow", "numpy")) + "\n")
        keras = {"keras_version": metadata.version("keras"), "keras_backend": "tensorflow", "save_exported_model": False}
        mlflow_model.add_flavor("keras", data="data", **keras)
        mlflow.pyfunc.add_to_model(mlflow_model, loader_module="mlflow.keras")
        mlflow_model.signature = self.signature
        mlflow_model.save(str(Path(path) / "MLmodel"))


def log_model(path: Path, example: np.ndarray, output: np.ndarray, name: str) -> str:
    """Log the model file `path` (model.keras or model.npz) to the active run as model `name`; return its id."""
    if path.suffix == ".keras":
        signature = infer_signature(np.asarray(example, np.float32), np.asarray(output, np.float32))
        info = Model.log(None, name=name, flavor=KerasFile(path, signature))
    else:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # copying model.npz: no bar in `dvc repro`
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(NUMPY_MODEL_CODE), artifacts={"weights": str(path)}, pip_requirements=pinned("numpy")
        )
    return info.model_id


def register(model_id: str, name: str, description: str, tags: Mapping[str, Any]) -> None:
    """A new version of registered model `name`: the logged model, described, tagged with metrics and config."""
    version = mlflow.register_model(f"models:/{model_id}", name, tags={k: str(v) for k, v in tags.items()})
    MlflowClient().update_model_version(name, version.version, description=description)


def pinned(*names: str) -> list[str]:
    """`name==version` for each of these packages that is installed."""
    pins = []
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            pins.append(f"{name}=={metadata.version(name)}")
    return pins
