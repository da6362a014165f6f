"""The playground's state, checks and save, in-process: the URL as overrides, the CLI's own error line, the preset."""

from __future__ import annotations

import shutil

import pytest
import yaml

from pipeline.config.overrides import compose_config, resolved
from pipeline.errors import ConfigError
from pipeline.playground import save, state
from pipeline.stages import train

CIRCLES = {"dataset": "circles", "hidden": "8:tanh", "loss": "binary_crossentropy", "optimizer": "sgd", "lr": "0.5"}


@pytest.mark.parametrize(
    ("query", "control"),
    [
        ({"lr": "-1"}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"hidden": "0:relu"}, "hidden"),
        ({"hidden": "16:relu,4:softmax"}, "hidden"),
        ({"epochs": "0"}, "epochs"),
        ({"batch": "many"}, "batch"),
        ({"seed": "-3"}, "seed"),
        ({**CIRCLES, "noise": "-0.1"}, "noise"),
        ({**CIRCLES, "test": "1.5"}, "test"),
        ({**CIRCLES, "n": "2"}, "n"),
        ({"features": "x1,x3"}, "features"),
        ({"features": "x1,x1"}, "features"),
        ({"reg": "l3"}, "reg"),
        ({"reg": "l2", "rate": "-1"}, "rate"),
        ({"loss": "binary_crossentropy", "hidden": "4:tanh", "lr": "0.1", "dataset": "moons"}, None),
    ],
)
def test_a_bad_value_gets_the_line_the_cli_prints_beside_its_control(query, control, refused, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # paths are relative: nothing may be written anywhere, here included
    if control is None:
        assert state.check(query).startswith("pipeline-generate dataset=moons")
        return
    with pytest.raises(ConfigError) as raised:
        state.check(query)
    assert state.control(raised.value.key) == control
    _, overrides, _ = state.compose(query)
    status, stderr = refused(train.main, *overrides)
    assert status == 2
    assert stderr.strip() == f"error: {raised.value}"  # one line, the same
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "query",
    [{"foo": "1"}, {"lr": "0.1 paths.root=/"}, {"hidden": "16:relu}],+x=1"}, {"dataset": "../xor"}, {"dataset": "xor_bias"}],
)
def test_a_url_holds_the_controls_keys_and_plain_values_only(query):
    with pytest.raises(ConfigError) as raised:
        state.check(query)
    assert "\n" not in str(raised.value)


def test_a_state_is_the_cli_overrides_with_the_dataset_values_that_differ_from_its_preset():
    preset = yaml.safe_load((save.CONF_DIR / "dataset" / "circles.yaml").read_text())
    chosen = state.parse({**CIRCLES, "noise": "0.2", "n": "1000", "features": "x1,x2,x1_squared"})
    overrides = state.train_overrides(chosen, preset)
    assert overrides[:3] == ["dataset=circles", "dataset.noise=0.2", "model.hidden=[{units:8,activation:tanh}]"]
    assert "model.features=[x1,x2,x1_squared]" in overrides and "trainer.progress_every=20" in overrides
    assert not any(o.startswith("dataset.n_samples") for o in overrides)  # the preset's value
    assert state.query_of(chosen).startswith("dataset=circles&features=x1,x2,x1_squared&hidden=8:tanh&loss=")
    with pytest.raises(ConfigError, match="dataset.n_samples"):
        state.train_overrides(state.parse({"n": "100"}), {"name": "xor", "test_fraction": 0.0})  # XOR has 4 points


def test_the_command_line_trains_the_same_config(tmp_path):
    _, overrides, cfg = state.compose(CIRCLES)
    command = state.check(CIRCLES)
    train_args = command.split(" && ")[1].split()[1:]
    assert resolved(compose_config([a.strip("'") for a in train_args])) == resolved(cfg)


@pytest.fixture
def conf_copy(tmp_path, monkeypatch):
    """save's conf/ and params.yaml, copied under tmp_path."""
    conf = tmp_path / "conf"
    shutil.copytree(save.CONF_DIR, conf)
    shutil.copy(save.PARAMS, tmp_path / "params.yaml")
    monkeypatch.setattr(save, "CONF_DIR", conf)
    monkeypatch.setattr(save, "PARAMS", tmp_path / "params.yaml")
    return conf


def test_save_writes_a_preset_that_composes_to_the_tried_config_and_asks_before_overwriting(conf_copy):
    query = {**CIRCLES, "features": "x1,x2,sin_x1", "reg": "l2", "rate": "0.0001", "epochs": "20", "seed": "3"}
    before = save.PARAMS.read_text()
    assert save.save(query, "circles_sin") == {
        "saved": "conf/experiment/circles_sin.yaml", "name": "circles_sin", "command": "dvc repro train@circles_sin"
    }  # fmt: skip
    params = save.PARAMS.read_text()
    assert params.startswith(before.split("\n\ntutorials:")[0])  # comments and entries kept, the new one last
    assert yaml.safe_load(params)["experiments"]["circles_sin"] == {"dataset": "circles", "model": "model.keras"}
    saved = resolved(compose_config(["experiment=circles_sin"], conf_dir=conf_copy))
    _, _, tried = state.compose(query)
    tried = resolved(tried)
    for key in ("dataset", "model", "loss", "optimizer", "metrics"):
        assert saved[key] == tried[key], key
    for key in ("epochs", "batch_size", "seed", "shuffle", "engine"):
        assert saved["trainer"][key] == tried["trainer"][key], key
    preset = (conf_copy / "experiment" / "circles_sin.yaml").read_text()
    assert save.save({**query, "lr": "0.1"}, "circles_sin") == {"exists": True, "name": "circles_sin"}
    assert (conf_copy / "experiment" / "circles_sin.yaml").read_text() == preset
    save.save({**query, "lr": "0.1"}, "circles_sin", overwrite=True)
    assert "learning_rate: 0.1" in (conf_copy / "experiment" / "circles_sin.yaml").read_text()
    assert save.PARAMS.read_text() == params  # listed once


@pytest.mark.parametrize("name", ["../evil", "a/b", "/tmp/x", "Circles", "", "x" * 65, "xor.relu", None, 3])
def test_save_refuses_a_name_that_is_not_a_plain_experiment_name(name, conf_copy):
    before = {p.name for p in (conf_copy / "experiment").iterdir()}
    with pytest.raises(ConfigError, match=r"^name="):
        save.save(CIRCLES, name)
    assert {p.name for p in (conf_copy / "experiment").iterdir()} == before


def test_save_refuses_data_values_dvc_does_not_generate(conf_copy):
    with pytest.raises(ConfigError, match=r"dataset.noise='0.3' is not allowed: the value of conf/dataset/circles.yaml"):
        save.save({**CIRCLES, "noise": "0.3"}, "circles_noisy")
    assert not (conf_copy / "experiment" / "circles_noisy.yaml").exists()
