"""An MLP trained by backpropagation written out by hand, equation by equation (the numpy engine's math).

Notation: layer l computes z[l] = a[l-1] @ W[l] + b[l] and a[l] = f_l(z[l]), with a[0] = x.
Backward, with C the cost: delta[L] = dC/dz[L]; delta[l-1] = (delta[l] @ W[l].T) * f'(z[l-1]);
dC/dW[l] = a[l-1].T @ delta[l]; dC/db[l] = sum_n delta[l]. Plain gradient descent: W -= lr * dC/dW.
Every array may carry a leading copy axis (W [copies, n_in, n_out]): `.T` and sums act on the last two
axes, so the same equations train many seeded copies at once (the numpy engine, engines/numpy_backprop.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError
from pipeline.files import write_npz


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))  # a diverged net's z < -709: exp(-z) = inf, 1 / inf = 0, the right limit


# name -> (f(z), f'(z) written with a = f(z) where that is the textbook form)
ACTIVATIONS: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {
    "sigmoid": (sigmoid, lambda z, a: a * (1.0 - a)),
    "tanh": (np.tanh, lambda z, a: 1.0 - a**2),
    "relu": (lambda z: np.maximum(z, 0.0), lambda z, a: (z > 0).astype(z.dtype)),
    "linear": (lambda z: z, lambda z, a: np.ones_like(z)),
}


@dataclass(frozen=True)
class Cost:
    """C = s * sum_n l_n, with s = 1/N (Keras's sum_over_batch_size) or 1 (sum); l_n is the per-sample loss."""

    name: str
    reduction: str = "sum_over_batch_size"
    from_logits: bool = False

    @classmethod
    def from_config(cls, loss_cfg: dict) -> Cost:
        """The cost a `conf/loss` entry describes, with its Keras class's default reduction."""
        from pipeline.core.spec import LOSSES

        name = LOSSES[loss_cfg["_target_"]]
        default = "sum" if name == "half_squared_error" else "sum_over_batch_size"
        return cls(name, loss_cfg.get("reduction", default), bool(loss_cfg.get("from_logits")))

    def scale(self, n: int) -> float:
        return 1.0 / n if self.reduction == "sum_over_batch_size" else 1.0

    def value(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """C for the output layer's pre-activation z and activation a (one value per copy)."""
        return self.scale(y.shape[-2]) * np.sum(self.per_sample(z, a, y), axis=-1)

    def per_sample(self, z: np.ndarray, a: np.ndarray, y: np.ndarray) -> np.ndarray:
        """l_n for each sample (the last axis but one of z, a, y)."""
        k = y.shape[-1]
        if self.name == "mean_squared_error":
            return np.sum((a - y) ** 2, axis=-1) / k
        if self.name == "half_squared_error":
            return 0.5 * np.sum((a - y) ** 2, axis=-1)
        return np.sum(np.logaddexp(0.0, z) - y * z, axis=-1) / k  # binary cross-entropy from the logits z

    def delta(self, z: np.ndarray, a: np.ndarray, y: np.ndarray, derivative) -> np.ndarray:
        """delta[L] = dC/dz[L]."""
        s, k = self.scale(y.shape[-2]), y.shape[-1]
        if self.name == "binary_crossentropy":  # d(softplus(z) - y*z)/dz = sigmoid(z) - y
            return s * (sigmoid(z) - y) / k
        dc_da = 2.0 * (a - y) / k if self.name == "mean_squared_error" else a - y
        return s * dc_da * derivative(z, a)


class MLP:
    """Weights W[l] (n_in, n_out), optional biases b[l], activations f_l; float64 throughout."""

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray] | None, activations: list[str]) -> None:
        self.W = [np.array(w, dtype=np.float64) for w in weights]
        self.b = None if biases is None else [np.array(b, dtype=np.float64) for b in biases]
        self.activations = list(activations)

    @classmethod
    def from_parameters(cls, parameters: list[np.ndarray], use_bias: bool, activations: list[str]) -> MLP:
        """The inverse of `parameters()`: W[0], b[0], W[1], b[1], ... (or W only without biases)."""
        return cls(parameters[::2], parameters[1::2], activations) if use_bias else cls(parameters, None, activations)

    def parameters(self) -> list[np.ndarray]:
        """W[0], b[0], W[1], b[1], ... in Keras's `get_weights()` order."""
        return list(self.W) if self.b is None else [p for pair in zip(self.W, self.b) for p in pair]

    def forward(self, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Pre-activations z[1..L] and activations a[0..L]."""
        zs, activations = [], [np.asarray(x, dtype=np.float64)]
        for l, (W, name) in enumerate(zip(self.W, self.activations)):
            z = activations[-1] @ W + (self.b[l][..., None, :] if self.b is not None else 0.0)
            zs.append(z)
            activations.append(ACTIVATIONS[name][0](z))
        return zs, activations

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)[1][-1]

    def gradients(self, x: np.ndarray, y: np.ndarray, cost: Cost) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """C, dC/dW[l] and dC/db[l] by backpropagation."""
        return self.backward(*self.forward(x), y, cost)

    def backward(
        self, zs: list[np.ndarray], a: list[np.ndarray], y: np.ndarray, cost: Cost
    ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
        """C, dC/dW[l] and dC/db[l] from a forward pass's z[1..L] and a[0..L]."""
        L = len(self.W)
        delta = cost.delta(zs[-1], a[-1], y, ACTIVATIONS[self.activations[-1]][1])
        dW: list[np.ndarray] = [np.empty(0)] * L
        db: list[np.ndarray] = [np.empty(0)] * L
        for l in reversed(range(L)):
            dW[l] = _T(a[l]) @ delta
            db[l] = delta.sum(axis=-2)
            if l > 0:
                delta = (delta @ _T(self.W[l])) * ACTIVATIONS[self.activations[l - 1]][1](zs[l - 1], a[l])
        return cost.value(zs[-1], a[-1], y), dW, db

    def step(self, dW: list[np.ndarray], db: list[np.ndarray], learning_rate: float) -> None:
        """Gradient descent: W -= lr * dC/dW, b -= lr * dC/db."""
        for l in range(len(self.W)):
            self.W[l] -= learning_rate * dW[l]
            if self.b is not None:
                self.b[l] -= learning_rate * db[l]

    def probabilities(self, x: np.ndarray, from_logits: bool = False) -> np.ndarray:
        """P(class 1) for each row of x."""
        out = self(x)
        return sigmoid(out) if from_logits else out

    def save(self, path: str | Path) -> None:
        """Write W0, W1, ... (and b0, b1, ...) plus `activations` to an .npz file, atomically."""
        arrays: dict[str, Any] = {"activations": np.array(self.activations)} | {f"W{l}": W for l, W in enumerate(self.W)}
        if self.b is not None:
            arrays |= {f"b{l}": b for l, b in enumerate(self.b)}
        write_npz(path, arrays)

    @classmethod
    def load(cls, path: str | Path) -> MLP:
        """Read an .npz written by `save` (no pickles are ever loaded)."""
        try:
            with np.load(path, allow_pickle=False) as archive:
                n = sum(1 for k in archive.files if k.startswith("W"))
                biases = [archive[f"b{l}"] for l in range(n)] if "b0" in archive.files else None
                mlp = cls([archive[f"W{l}"] for l in range(n)], biases, [str(s) for s in archive["activations"]])
        except FileNotFoundError:
            raise DataError(path, "no such model file") from None
        except (OSError, ValueError, KeyError) as error:
            raise DataError(path, f"not a readable numpy model ({error})") from None
        widths = [w.shape for w in mlp.W]
        chained = all(len(a) == 2 and a[1] == b[0] for a, b in zip(widths, widths[1:] + [(1,)]))
        biased = mlp.b is None or all(b.shape == w.shape[1:] for w, b in zip(mlp.W, mlp.b))
        if not (n and chained and biased and len(mlp.activations) == n):
            raise DataError(path, f"weights of mismatched shapes {widths} for one output; train again")
        return mlp


def _T(a: np.ndarray) -> np.ndarray:
    """The transpose of the last two axes (of each copy's matrix)."""
    return np.swapaxes(a, -1, -2)


def predicted_class(zs: list[np.ndarray], a: list[np.ndarray], cost: Cost) -> np.ndarray:
    """Class 0/1 from a forward pass: P(class 1) = a[L], or sigmoid(z[L]) for logits."""
    probability = sigmoid(zs[-1]) if cost.from_logits else a[-1]
    return (probability > 0.5).astype(np.float64)
