"""Evaluation and pictures: metrics, the decision-boundary grid, files, MLflow artifacts, bad model files."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from PIL import Image

from pipeline.core import data, plots
from pipeline.errors import DataError
from pipeline.core.nets import load as load_model
from pipeline.stages.evaluate import PICTURES, evaluate_folder
from pipeline.stages.train import train


def trained(make_config, tmp_path, *overrides, tracking=False):
    cfg = make_config(*overrides, tracking=tracking)
    out = tmp_path / "results" / cfg.name
    train(cfg, out=out)
    return OmegaConf.to_container(cfg, resolve=True), out


def test_grid_predictions_equal_model_predict(make_config, tmp_path):
    cfg, out = trained(make_config, tmp_path, "experiment=circles_tanh4")
    model, dataset = load_model(out), data.load(data.csv_path(cfg))
    grid = plots.Grid.spanning(np.vstack([dataset.x_train, dataset.x_test]), dataset.plot_features, resolution=200)
    surface = grid.surface(model.probabilities)
    assert surface.shape == (200, 200)
    expected = model.model.predict(grid.points, verbose=0, batch_size=4096).reshape(200, 200)
    np.testing.assert_allclose(surface, expected, rtol=1e-5, atol=1e-6)
    # the grid spans the data with a margin
    assert grid.xx.min() < dataset.x_train[:, 0].min() and grid.yy.max() > dataset.x_train[:, 1].max()


def test_bias_column_datasets_are_plotted_over_their_two_features(make_config, tmp_path):
    cfg, out = trained(make_config, tmp_path, "experiment=xor_bias_numpy", "trainer.epochs=50")
    dataset = data.load(data.csv_path(cfg))
    grid = plots.Grid.spanning(dataset.x_train, dataset.plot_features, resolution=10)
    assert grid.points.shape == (100, 3) and (grid.points[:, 2] == 1).all()


@pytest.mark.integration
def test_evaluation_writes_metrics_and_pictures_and_logs_them_to_the_training_run(make_config, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg, out = trained(make_config, tmp_path, "experiment=xor_relu16", tracking=True)
    metrics = evaluate_folder(cfg, out)
    assert metrics["rounded_predictions"] == "0 1 1 0"
    assert metrics["train"]["accuracy"] == 1.0 and metrics["train"]["roc_auc"] == 1.0
    assert metrics["train"]["confusion"] == {"tn": 2, "fp": 0, "fn": 0, "tp": 2}
    assert "test" not in metrics  # XOR has no test split
    assert json.loads((out / "evaluation.json").read_text()) == metrics
    for name in PICTURES:
        assert (out / "plots" / name).stat().st_size > 1000
    gif = Image.open(out / "plots" / "boundary_evolution.gif")
    assert gif.n_frames >= 20
    run_id = json.loads((out / "run.json").read_text())["run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logged = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert logged == {f"plots/{name}" for name in PICTURES}
    run = client.get_run(run_id)
    assert run.data.metrics["eval_train_f1"] == 1.0 and run.info.status == "FINISHED"


def test_the_sweep_heatmap_orders_swept_numbers_as_numbers_and_leaves_names_as_they_are():
    import pandas as pd

    # as MLflow gives them back: params as text, so "16" would sort before "4"
    table = pd.DataFrame({"units": ["16", "4", "8", "16"], "act": ["tanh", "relu", "relu", "relu"], "loss": [1.0, 2, 3, 4]})
    ax = plots.sweep_heatmap(table, "units", "act", "loss").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["4", "8", "16"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["relu", "tanh"]
    plots.plt.close("all")


def test_missing_or_corrupt_model_names_the_file(tmp_path):
    with pytest.raises(DataError, match="model.keras"):
        load_model(tmp_path)
    (tmp_path / "model.keras").write_bytes(b"not a zip archive")
    with pytest.raises(DataError) as error:
        load_model(tmp_path)
    assert str(tmp_path / "model.keras") in str(error.value) and "\n" not in str(error.value)


def test_evaluate_cli_without_a_model_is_one_line_and_writes_nothing(tmp_path, monkeypatch, refused):
    from conftest import files_under

    from pipeline.stages import evaluate

    monkeypatch.chdir(tmp_path)
    code, stderr = refused(evaluate.main, "experiment=xor_relu16", "paths.root=.")
    assert code == 2
    err = stderr.strip().splitlines()
    assert len(err) == 1 and "runs/xor_relu16/model.keras" in err[0]
    assert files_under(tmp_path) == set()


def test_saved_keras_model_loads_in_safe_mode(make_config, tmp_path):
    _, out = trained(make_config, tmp_path, "experiment=xor_relu16", "trainer.epochs=5")
    assert isinstance(keras.saving.load_model(out / "model.keras", safe_mode=True), keras.Model)


def test_report_has_a_row_with_thumbnail_per_experiment(make_config, tmp_path):
    from pipeline.stages import evaluate, report

    cfg = make_config("experiment=xor_relu16", "trainer.epochs=30", f"paths.summary_rows={tmp_path / 'rows'}")
    train(cfg)
    evaluate.run(cfg)  # as the DVC stage runs it: its row beside the others, git-tracked
    text = report.summary(["xor_relu16"], tmp_path / "rows")
    row = next(line for line in text.splitlines() if line.startswith("| `xor_relu16`"))
    assert "2-16relu-1sigmoid" in row and "Adam lr 0.001" in row and "| 30 |" in row
    assert '<img src="../results/xor_relu16/plots/decision_boundary.png"' in row
    with pytest.raises(DataError, match="xor_relu32.json: missing; run `dvc repro` first"):
        report.summary(["xor_relu16", "xor_relu32"], tmp_path / "rows")
