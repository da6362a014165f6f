"""The numpy engine's MLP as an MLflow pyfunc model, logged as code (MLflow's models-from-code): nothing pickled."""

from __future__ import annotations

from typing import Any

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel

from pipeline.core.backprop import MLP


class NumpyMLP(PythonModel):
    """`predict` gives P(class 1) per row; the weights are the model's `weights` artifact (model.npz)."""

    def load_context(self, context: Any) -> None:
        self.mlp = MLP.load(context.artifacts["weights"])

    # MLflow reads the signature from these hints (rows of numbers, JSON's integers included) and checks inputs.
    def predict(self, context: Any, model_input: list[list[float | int]], params: dict[str, Any] | None = None) -> list[float]:
        return np.ravel(self.mlp.probabilities(np.asarray(model_input, dtype=np.float64))).tolist()


mlflow.models.set_model(NumpyMLP())
