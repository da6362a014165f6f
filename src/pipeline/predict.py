"""Predictions of a trained model, Keras or numpy, as probabilities; loss and accuracy on a split."""

from __future__ import annotations

from typing import Any

import numpy as np


def probabilities(model: Any, x: np.ndarray, from_logits: bool = False) -> np.ndarray:
    """P(class 1) for each row of `x`, shape (n, 1), in one batched call."""
    from pipeline.backprop import MLP, sigmoid

    if isinstance(model, MLP):
        out = model(x)
    else:
        out = np.asarray(model(np.asarray(x, np.float32), training=False), dtype=np.float64)
    return sigmoid(out) if from_logits else out


def loss_and_accuracy(model: Any, loss_cfg: dict[str, Any], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The configured loss and the binary accuracy of `model` on (x, y), from one forward pass."""
    from pipeline import backprop, models

    if isinstance(model, backprop.MLP):
        zs, a = model.forward(x)
        loss, out = backprop.Cost.from_config(loss_cfg).value(zs[-1], a[-1], y.astype(np.float64)), a[-1]
    else:
        out = model(np.asarray(x, np.float32), training=False)
        loss, out = models.make_loss(loss_cfg)(y, out), np.asarray(out, dtype=np.float64)
    p = backprop.sigmoid(out) if loss_cfg.get("from_logits") else out
    return round(float(loss), 8), round(float(np.mean((p > 0.5) == (y > 0.5))), 6)
