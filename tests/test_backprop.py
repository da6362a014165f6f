"""The numpy engine: backprop gradients equal TensorFlow's autodiff, and the tutorial's run."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from hydra.utils import instantiate

from pipeline.core import keras_mlp as models
from pipeline.core.backprop import MLP, Cost

CASES = [
    (["sigmoid"], "sigmoid", {"_target_": "keras.losses.MeanSquaredError"}),
    (["tanh", "relu"], "sigmoid", {"_target_": "keras.losses.BinaryCrossentropy"}),
    (["relu", "tanh", "sigmoid"], "sigmoid", {"_target_": "keras.losses.MeanSquaredError", "reduction": "sum"}),
    (["sigmoid"], "sigmoid", {"_target_": "pipeline.core.keras_mlp.HalfSquaredError"}),
    (["tanh"], "linear", {"_target_": "keras.losses.BinaryCrossentropy", "from_logits": True}),
    (["relu"], "linear", {"_target_": "keras.losses.MeanSquaredError"}),
]
NAMES = {
    "keras.losses.MeanSquaredError": "mean_squared_error",
    "keras.losses.BinaryCrossentropy": "binary_crossentropy",
    "pipeline.core.keras_mlp.HalfSquaredError": "half_squared_error",
}


@pytest.fixture
def float64():
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")  # else the float64 policy Keras cached outlives the test


@pytest.mark.parametrize(("hidden", "output", "loss_cfg"), CASES)
def test_backprop_gradients_equal_tensorflow_autodiff(float64, hidden, output, loss_cfg):
    model_cfg = {
        "hidden": [{"units": 5, "activation": a} for a in hidden],
        "output": {"units": 1, "activation": output},
        "use_bias": True,
        "kernel_initializer": "glorot_uniform",
        "bias_initializer": "random_normal",
    }
    model = models.seeded_model(model_cfg, n_features=3, seed=7)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 3)), rng.integers(0, 2, size=(9, 1)).astype(np.float64)
    loss = instantiate(loss_cfg)
    with tf.GradientTape() as tape:
        expected_loss = loss(tf.constant(y), model(tf.constant(x)))
    expected = [g.numpy() for g in tape.gradient(expected_loss, model.trainable_variables)]

    dense = [layer for layer in model.layers if layer.weights]  # the same weights as a numpy MLP
    weights = [w.numpy() for layer in dense for w in (layer.kernel, layer.bias) if layer.use_bias or w is layer.kernel]
    mlp = MLP.from_parameters(weights, all(layer.use_bias for layer in dense), [layer.activation.__name__ for layer in dense])
    cost = Cost(NAMES[loss_cfg["_target_"]], loss.reduction, bool(loss_cfg.get("from_logits")))
    value, dW, db = mlp.gradients(x, y, cost)
    ours = [g for pair in zip(dW, db) for g in pair]

    assert value == pytest.approx(float(expected_loss), rel=1e-9)
    for mine, theirs in zip(ours, expected, strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=1e-10)


def test_save_and_load_round_trip(tmp_path):
    mlp = MLP([np.ones((3, 5)), np.full((5, 1), 0.5)], None, ["sigmoid", "sigmoid"])
    mlp.save(tmp_path / "model.npz")
    loaded = MLP.load(tmp_path / "model.npz")
    x = np.eye(3)
    np.testing.assert_array_equal(loaded(x), mlp(x))
    assert loaded.activations == ["sigmoid", "sigmoid"] and loaded.b is None


def test_load_names_a_missing_or_corrupt_file(tmp_path):
    from pipeline.errors import DataError

    with pytest.raises(DataError, match="missing.npz"):
        MLP.load(tmp_path / "missing.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="corrupt.npz"):
        MLP.load(tmp_path / "corrupt.npz")
