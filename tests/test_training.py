"""Training: the tutorials' experiments, engine parity, outputs, and a multirun from the shell."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest
from conftest import run_cli
from omegaconf import OmegaConf

from pipeline.core import data
from pipeline.core import keras_mlp as models
from pipeline.core.backprop import MLP
from pipeline.core.engines import Schedule
from pipeline.errors import DivergedError
from pipeline.stages.train import fit_model, train


def plain(cfg):
    return OmegaConf.to_container(cfg, resolve=True)


def test_schedule_chunks_end_at_snapshots_and_cover_every_epoch():
    schedule = Schedule(epochs=1000, snapshot_epochs=(0, 1, 2, 5, 700))
    chunks = schedule.chunks()
    assert chunks[0] == (1, 1) and sum(count for _, count in chunks) == 1000
    ends = {first + count - 1 for first, count in chunks}
    assert {1, 2, 5, 700, 1000} <= ends


def test_xor_relu16_compiled_reaches_full_accuracy_for_seed_0(make_config, tmp_path):
    metrics = train(make_config("experiment=xor_relu16"), out=tmp_path / "out")
    assert metrics["train_accuracy"] == 1.0 and metrics["convergence_epoch"] is not None
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert len(history) == 1000 and list(history.columns) == ["epoch", "loss", "accuracy"]
    assert history["accuracy"].iloc[metrics["convergence_epoch"] - 1] == 1.0
    assert (history["accuracy"].iloc[: metrics["convergence_epoch"] - 1] < 1.0).all()
    model = keras.saving.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    xor = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    assert np.round(model.predict(xor, verbose=0)).ravel().tolist() == [0, 1, 1, 0]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved == metrics and "test_loss" not in saved and saved["epochs_run"] == 1000


def test_xor_bias_numpy_ends_with_predictions_rounding_to_xor(make_config, tmp_path):
    metrics = train(make_config("experiment=xor_bias_numpy"), out=tmp_path / "out")
    mlp = MLP.load(tmp_path / "out" / "model.npz")
    x = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], np.float64)
    assert np.round(mlp(x)).ravel().tolist() == [0, 1, 1, 0]
    assert mlp.b is None and metrics["epochs_run"] == 5000


def test_numpy_initial_weights_are_uniform_in_0_1(make_config):
    cfg = plain(make_config("experiment=xor_bias_numpy", "trainer.epochs=1"))
    _, history = fit_model(cfg, data.load(data.csv_path(cfg)))
    first = history.snapshots[0]
    assert [w.shape for w in first] == [(3, 5), (5, 1)]
    assert all(((w >= 0) & (w < 1)).all() for w in first)


def test_circles_tanh4_heldout_has_test_metrics_and_learns(make_config, tmp_path):
    metrics = train(make_config("experiment=circles_tanh4_heldout"), out=tmp_path / "out")
    history = pd.read_csv(tmp_path / "out" / "history.csv")
    assert list(history.columns) == ["epoch", "loss", "accuracy", "test_loss", "test_accuracy"]
    assert len(history) == 15 and metrics["test_accuracy"] > 0.95


@pytest.mark.parametrize("experiment", ["circles_tanh4_heldout", "xor_relu16"])  # a test split; none (no test metrics)
def test_final_metrics_are_keras_loss_and_accuracy_of_the_saved_model(make_config, tmp_path, experiment):
    cfg = plain(make_config(f"experiment={experiment}", "trainer.epochs=5"))
    metrics = train(OmegaConf.create(cfg), out=tmp_path / "out")
    model = keras.saving.load_model(tmp_path / "out" / "model.keras", safe_mode=True)
    dataset = data.load(data.csv_path(cfg))
    splits = [("train", dataset.x_train, dataset.y_train)] + [("test", dataset.x_test, dataset.y_test)] * dataset.has_test
    assert ("test_loss" in metrics) == dataset.has_test
    for split, x, y in splits:
        out = model(x)
        accuracy = keras.metrics.BinaryAccuracy()
        accuracy.update_state(y, out)
        assert metrics[f"{split}_loss"] == pytest.approx(float(models.make_loss(cfg["loss"])(y, out)), abs=1e-6)
        assert metrics[f"{split}_accuracy"] == pytest.approx(float(accuracy.result()), abs=1e-6)


def test_stop_at_convergence_stops_at_the_convergence_epoch(make_config, tmp_path):
    metrics = train(make_config("experiment=xor_relu16", "trainer.stop_at_convergence=true"), out=tmp_path / "o")
    assert metrics["epochs_run"] == metrics["convergence_epoch"] < 1000


def test_same_seed_same_weights_other_seed_other_weights(make_config):
    def first_weights(seed):
        cfg = plain(make_config("experiment=xor_relu16", "trainer.epochs=1", f"trainer.seed={seed}"))
        return fit_model(cfg, data.load(data.csv_path(cfg)))[1].snapshots[0]

    a, b, c = first_weights(0), first_weights(0), first_weights(1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("engine", ["compiled", "numpy"])
def test_divergence_stops_with_the_epoch(make_config, tmp_path, engine):
    overrides = ["experiment=xor_relu16", "optimizer.learning_rate=1e6"]
    if engine == "numpy":
        overrides = ["experiment=xor_bias_numpy", "optimizer.learning_rate=1e6"]
    with pytest.raises(DivergedError, match=r"diverged at epoch \d+"):
        train(make_config(*overrides), out=tmp_path / "out")
    assert not (tmp_path / "out" / "model.keras").exists() and not (tmp_path / "out" / "model.npz").exists()


@pytest.mark.integration  # 1000 epochs of model.fit: 25-35 s, too long for the unit tier
def test_compiled_and_fit_start_identical_and_agree_over_1000_full_batch_epochs(make_config):
    cfg = plain(make_config("experiment=xor_relu16"))
    dataset = data.load(data.csv_path(cfg))
    runs = {}
    for engine in ("compiled", "fit"):
        cfg["trainer"]["engine"] = engine
        runs[engine] = fit_model(cfg, dataset)[1]
    compiled, fitted = runs["compiled"], runs["fit"]
    for a, b in zip(compiled.snapshots[0], fitted.snapshots[0], strict=True):
        np.testing.assert_array_equal(a, b)
    assert compiled.epochs_run == fitted.epochs_run == 1000
    np.testing.assert_allclose(compiled.columns["loss"], fitted.columns["loss"], rtol=1e-5)
    assert compiled.convergence_epoch == fitted.convergence_epoch


@pytest.mark.parametrize(
    "overrides",
    [
        [
            "experiment=xor_relu16",
            "model.features=[x1,x2,x1_x2,sin_x1]",
            "model.regularization=l2",
            "model.regularization_rate=0.01",
        ],
        [
            "dataset=moons",
            "model.features=[x1_squared,x2_squared,sin_x2]",
            "model.regularization=l1",
            "trainer.batch_size=100",
            "trainer.shuffle=false",
        ],
    ],
)
def test_features_and_kernel_penalties_train_alike_in_compiled_and_keras_fit(make_config, overrides):
    cfg = plain(make_config(*overrides, "trainer.epochs=30"))
    dataset = data.load(data.csv_path(cfg))
    runs = {}
    for engine in ("compiled", "fit"):
        cfg["trainer"]["engine"] = engine
        runs[engine] = fit_model(cfg, dataset)
    (compiled_net, compiled), (fit_net, fitted) = runs["compiled"], runs["fit"]
    assert compiled_net.shapes()[0] == (len(cfg["model"]["features"]), 16)  # the first kernel takes the features
    np.testing.assert_allclose(compiled.columns["loss"], fitted.columns["loss"], rtol=2e-5)  # penalty included, as fit's
    x = dataset.x_train[:8]
    np.testing.assert_allclose(compiled_net.probabilities(x), fit_net.probabilities(x), rtol=1e-4)


@pytest.mark.integration
def test_shell_multirun_of_four_jobs_writes_four_result_folders(tmp_path):
    assert run_cli("generate", "dataset=xor", "paths.root=.", cwd=tmp_path).returncode == 0
    result = run_cli(
        "train",
        "-m",
        "experiment=xor_relu16",
        "model.hidden.0.units=2,4,8,16",
        "trainer.epochs=50",
        "tracking.enabled=false",
        "paths.root=.",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = sorted((tmp_path / "multirun").rglob("metrics.json"))
    assert len(metrics) == 4
    assert {p.parent.name for p in metrics} == {"0", "1", "2", "3"}
    assert all((p.parent / "model.keras").exists() and (p.parent / "history.csv").exists() for p in metrics)


def test_a_run_replaces_another_engines_model_so_evaluation_reads_its_own(make_config, tmp_path):
    from pipeline.core.nets import KerasNet
    from pipeline.core.nets import load as load_model

    out = tmp_path / "out"
    train(make_config("experiment=xor_bias_numpy", "trainer.epochs=20"), out=out)
    assert (out / "model.npz").is_file()
    train(make_config("experiment=xor_bias_sigmoid_sgd", "trainer.epochs=20"), out=out)
    assert not (out / "model.npz").exists() and isinstance(load_model(out), KerasNet)


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_written_files_get_the_umasks_mode_not_mkstemps_0600(tmp_path, mask):
    import os

    from pipeline import files

    previous = os.umask(mask)
    try:
        files.write_json(tmp_path / "metrics.json", {"a": 1})
        files.write_csv(tmp_path / "xor.csv", data.generate({"name": "xor", "test_fraction": 0.0}))
    finally:
        os.umask(previous)
    for name in ("metrics.json", "xor.csv"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~mask, name
