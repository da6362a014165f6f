"""Datasets: shapes, dtypes, balance, reproducibility, loading, and the generate CLI's bad-input errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config, files_under

from pipeline.core import data
from pipeline.errors import ConfigError, DataError
from pipeline.stages.generate import generate
from pipeline.stages.generate import main as generate_main

SAMPLED = ["circles_heldout", "moons", "spiral", "gauss", "xor_noisy"]


def dataset_cfg(tmp_path, name, *overrides):
    return dict(compose_config(tmp_path, f"dataset={name}", *overrides).dataset)


def test_xor_tables_are_the_truth_table(tmp_path):
    xor = data.generate(dataset_cfg(tmp_path, "xor"))
    assert xor[["x1", "x2"]].to_numpy().tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert xor["label"].tolist() == [0, 1, 1, 0]
    assert set(xor["split"]) == {"train"}
    bias = data.generate(dataset_cfg(tmp_path, "xor_bias"))
    assert bias[["x1", "x2", "x3"]].to_numpy().tolist() == [[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]]


@pytest.mark.parametrize("name", SAMPLED)
def test_sampled_dataset_shapes_dtypes_balance_and_split(tmp_path, name):
    cfg = dataset_cfg(tmp_path, name)
    frame = data.generate(cfg)
    assert len(frame) == cfg["n_samples"] == 1000
    assert frame[["x1", "x2"]].dtypes.tolist() == [np.float32, np.float32]
    assert set(frame["label"]) == {0, 1}
    assert 0.4 <= frame["label"].mean() <= 0.6
    test = frame[frame["split"] == "test"]
    assert len(test) == 200
    # stratified: the test split keeps the class balance
    assert abs(test["label"].mean() - frame["label"].mean()) < 0.01
    loaded_x = frame[["x1", "x2"]].to_numpy()
    assert np.isfinite(loaded_x).all()


def test_circles_matches_scikit_learn_defaults(tmp_path):
    from sklearn.datasets import make_circles

    frame = data.generate(dataset_cfg(tmp_path, "circles"))
    x, y = make_circles(n_samples=1000, noise=0.1, factor=0.2, random_state=0)
    np.testing.assert_array_equal(frame[["x1", "x2"]].to_numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(frame["label"].to_numpy(), y)


@pytest.mark.parametrize("name", ["xor", "circles", "spiral", "xor_noisy"])
def test_same_seed_gives_byte_identical_files(tmp_path, name):
    cfg = dataset_cfg(tmp_path, name)
    first = generate(cfg, tmp_path / "a")
    second = generate(cfg, tmp_path / "b")
    for one, two in zip(first, second):
        assert one.read_bytes() == two.read_bytes()


def test_other_seed_gives_other_points(tmp_path):
    one = data.generate(dataset_cfg(tmp_path, "moons"))
    two = data.generate(dataset_cfg(tmp_path, "moons", "dataset.seed=1"))
    assert not np.array_equal(one[["x1", "x2"]].to_numpy(), two[["x1", "x2"]].to_numpy())


def test_load_round_trips_float32_and_uses_train_as_test_without_split(tmp_path):
    csv, _ = generate(dataset_cfg(tmp_path, "circles_heldout"), tmp_path)
    loaded = data.load(csv)
    frame = data.generate(dataset_cfg(tmp_path, "circles_heldout"))
    train = frame[frame["split"] == "train"]
    np.testing.assert_array_equal(loaded.x_train, train[["x1", "x2"]].to_numpy())
    assert loaded.has_test and loaded.x_test.shape == (200, 2) and loaded.y_train.shape == (800, 1)
    xor_csv, _ = generate(dataset_cfg(tmp_path, "xor"), tmp_path)
    xor = data.load(xor_csv)
    assert not xor.has_test and np.array_equal(xor.x_test, xor.x_train)


def test_bias_column_is_not_a_plot_feature(tmp_path):
    csv, _ = generate(dataset_cfg(tmp_path, "xor_bias"), tmp_path)
    assert data.load(csv).plot_features == [0, 1]


@pytest.mark.parametrize(
    ("name", "override", "key"),
    [
        ("circles", "dataset.n_samples=3", "dataset.n_samples"),
        ("circles", "dataset.n_samples=2.5", "dataset.n_samples"),
        ("moons", "dataset.noise=-0.1", "dataset.noise"),
        ("circles", "dataset.factor=1.0", "dataset.factor"),
        ("circles", "dataset.factor=-0.5", "dataset.factor"),
        ("gauss", "dataset.test_fraction=1.0", "dataset.test_fraction"),
        ("spiral", "dataset.test_fraction=-0.2", "dataset.test_fraction"),
        ("xor_noisy", "dataset.seed=-1", "dataset.seed"),
    ],
)
def test_bad_dataset_values_name_the_key(tmp_path, name, override, key):
    with pytest.raises(ConfigError) as error:
        data.generate(dataset_cfg(tmp_path, name, override))
    assert str(error.value).startswith(f"{key}=") and "\n" not in str(error.value)


def test_unknown_generator_name_lists_the_allowed(tmp_path):
    with pytest.raises(ConfigError, match=r"dataset.name='nope'.*circles"):
        data.check({"name": "nope"})


@pytest.mark.parametrize(
    ("args", "key"),
    [
        (["dataset=circles", "dataset.n_samples=0"], "dataset.n_samples"),
        (["dataset=circles", "dataset.noise=-1"], "dataset.noise"),
        (["dataset=circles", "dataset.factor=1.5"], "dataset.factor"),
        (["dataset=moons", "dataset.test_fraction=1"], "dataset.test_fraction"),
        (["dataset=squares"], "dataset"),
        (["dataset=circles", "dataset.seed=10000000000000"], "dataset.seed"),  # beyond 32 bits
        (["dataset=circles", "dataset.n_samples=10000000000"], "dataset.n_samples"),  # ~1.8 TiB: the memory estimate
    ],
)
def test_generate_cli_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path, args, key, monkeypatch, refused):
    monkeypatch.chdir(tmp_path)
    code, err = refused(generate_main, *args, "paths.root=.")
    assert code not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {key}="), lines
    assert files_under(tmp_path) == set()


def test_generate_cli_writes_csv_and_png(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["pipeline.stages.generate", "dataset=moons", "paths.root=."])
    generate_main()
    frame = pd.read_csv(tmp_path / "data" / "moons.csv")
    assert list(frame.columns) == ["x1", "x2", "label", "split"]
    assert (tmp_path / "data" / "moons.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (None, "no such data file"),
        ("", "not a readable CSV"),
        ("x1,x2,label,split\n0,0", "truncated or malformed"),
        ("x1,x2,label,split\n0,nan,1,train\n", "NaN"),
        ("x1,x2,label,split\n0,abc,1,train\n", "not numbers"),
        ("x1,x2,label,split\n0,0,2,train\n", "labels must be 0/1"),
        ("x1,x2,label,split\n0,0,1,train\n1,1,1,train\n0,1,0,test\n", "both 0 and 1"),  # one class to train on
    ],
)
def test_bad_data_files_name_the_file(tmp_path, content, problem):
    path = tmp_path / "bad.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DataError) as error:
        data.load(path)
    assert str(path) in str(error.value) and problem in str(error.value)


def test_generate_records_its_values_and_readers_refuse_other_values(tmp_path):
    cfg = dataset_cfg(tmp_path, "circles_heldout")
    csv, _ = generate(cfg, tmp_path)
    assert json.loads(data.record_path(csv).read_text())["generated_with"] == dict(cfg)
    data.check_record(cfg, csv)  # the same values: no error
    with pytest.raises(ConfigError) as error:
        data.check_record({**cfg, "test_fraction": 0.0}, csv)
    assert error.value.key == "dataset.test_fraction" and "0.2" in str(error.value)
    data.record_path(csv).write_text("{not json")
    with pytest.raises(DataError, match="circles_heldout.json: no readable record"):
        data.check_record(cfg, csv)
