"""The tutorials' own code (tutorials/) against the project's runs with the same seeds."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from conftest import run_cli
from omegaconf import OmegaConf

from pipeline.core import data
from pipeline.stages.train import fit_model
from tutorials import keras_circles, keras_xor, numpy_xor

SEEDS = (0, 1, 2)


def project_run(make_config, *overrides: str):
    """(history, initial weights) of the project's single run with `overrides`."""
    cfg = OmegaConf.to_container(make_config(*overrides, "trainer.snapshots=1"), resolve=True)
    _, history = fit_model(cfg, data.load_configured(cfg))
    return history, history.snapshots[0]


def convergence_epoch(accuracy: list[float]) -> int:
    return int(np.argmax(np.asarray(accuracy) >= 1.0)) + 1


@pytest.fixture(autouse=True)
def quiet_input_shape_warning():
    with warnings.catch_warnings():  # the tutorials pass input_dim/input_shape to Dense, as Keras 2 wanted
        warnings.filterwarnings("ignore", message="Do not pass an `input_shape`")
        yield


@pytest.mark.parametrize("seed", SEEDS)
def test_xor_relu16_reaches_100_percent_at_the_tutorial_codes_epoch(make_config, seed):
    history, initial = project_run(make_config, "experiment=xor_relu16", f"trainer.seed={seed}")  # compiled engine
    assert history.convergence_epoch is not None
    # The tutorial's model.fit (~25 ms an epoch) runs up to our epoch: its epochs are the same in a longer run.
    tutorial = keras_xor.run(seed, epochs=history.convergence_epoch)
    for ours, theirs in zip(initial, tutorial["initial"], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    accuracy = tutorial["history"]["binary_accuracy"]
    assert accuracy[-1] >= 1.0 and convergence_epoch(accuracy) == history.convergence_epoch


@pytest.mark.parametrize("seed", SEEDS)
def test_circles_with_keras_fit_has_the_tutorial_codes_accuracy_every_epoch(make_config, seed):
    tutorial = keras_circles.run(seed)
    history, initial = project_run(make_config, "experiment=circles_tanh4", "trainer.engine=fit", f"trainer.seed={seed}")
    for ours, theirs in zip(initial, tutorial["initial"], strict=True):
        np.testing.assert_array_equal(ours, theirs)
    assert history.columns["accuracy"][0] == tutorial["history"]["accuracy"][0]  # what the tutorial printed
    assert history.columns["accuracy"] == tutorial["history"]["accuracy"]  # and every epoch after it


@pytest.mark.parametrize("seed", SEEDS)
def test_numpy_net_starts_from_the_tutorials_draws_and_ends_at_its_outputs(make_config, seed, capsys):
    tutorial = numpy_xor.run(seed)
    cfg = OmegaConf.to_container(make_config("experiment=xor_bias_numpy", f"trainer.seed={seed}"), resolve=True)
    dataset = data.load_configured(cfg)
    cfg["trainer"]["snapshots"] = 1
    model, history = fit_model(cfg, dataset)
    for ours, theirs in zip(history.snapshots[0], tutorial["initial"], strict=True):
        np.testing.assert_array_equal(ours, theirs.astype(np.float32))  # snapshots are kept as float32
    for ours, theirs in zip(model.mlp.parameters(), tutorial["final"], strict=True):  # after 5000 updates
        np.testing.assert_allclose(ours, theirs, rtol=1e-9)


def test_replicate_copies_start_where_standalone_seeded_runs_start(make_config):
    from pipeline.core import keras_mlp as models
    from pipeline.core.engines.numpy_backprop import numpy_weights
    from pipeline.core.engines.compiled import StackedMLP

    cfg = OmegaConf.to_container(make_config("experiment=xor_relu16x2"), resolve=True)
    stacked = StackedMLP(cfg["model"], 2, np.array([5, 6, 7]))
    for r, seed in enumerate((5, 6, 7)):
        for copy, single in zip(stacked.variables, models.seeded_model(cfg["model"], 2, seed).get_weights(), strict=True):
            np.testing.assert_array_equal(copy.numpy()[r], single)
    numpy_cfg = OmegaConf.to_container(make_config("experiment=xor_bias_numpy"), resolve=True)
    np.random.seed(9)
    expected = [np.random.random((3, 5)), np.random.random((5, 1))]
    for ours, theirs in zip(numpy_weights(numpy_cfg["model"], 3, 9), expected, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_a_dataset_value_other_than_the_files_is_a_one_line_error(tmp_path, make_config, refused):
    from pipeline.stages import train

    make_config("dataset=circles_heldout")  # data/circles_heldout.csv made with test_fraction 0.2
    code, err = refused(train.main, "experiment=circles_tanh4_heldout", "dataset.test_fraction=0", f"paths.root={tmp_path}")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("error: dataset.test_fraction=0 is not allowed: 0.2, the value ")
    assert not (tmp_path / "runs").exists()


@pytest.mark.integration
def test_circles_tanh4_with_test_fraction_0_trains_on_all_1000_points(tmp_path, make_config):
    make_config("dataset=circles")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ("experiment=circles_tanh4", "dataset.test_fraction=0", f"paths.root={tmp_path}", "tracking.enabled=true")
    result = run_cli("train", *args, cwd=tmp_path, env={"MLFLOW_TRACKING_URI": uri})
    assert result.returncode == 0, result.stderr
    out = tmp_path / "runs" / "circles_tanh4"
    assert "test_accuracy" not in json.loads((out / "metrics.json").read_text())  # no 0.2 split: all points train
    from mlflow import MlflowClient

    run = MlflowClient(uri).get_run(json.loads((out / "run.json").read_text())["run_id"])
    assert float(run.data.params["dataset.test_fraction"]) == 0 and run.data.params["dataset.n_samples"] == "1000"
    (dataset_input,) = run.inputs.dataset_inputs
    assert json.loads(dataset_input.dataset.profile)["num_rows"] == 1000
