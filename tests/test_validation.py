"""Bad input to the train entry point: one line naming the key, non-zero exit, nothing written, no run left."""

from __future__ import annotations

import shutil

import pytest
from conftest import files_under

from pipeline.stages import train
from pipeline.stages.generate import generate

# (overrides, the key the one-line error must name)
CASES = [
    (["dataset=nope"], "dataset"),
    (["model=transformer"], "model"),
    (["optimizer=adamax"], "optimizer"),
    (["loss=hinge"], "loss"),
    (["experiment=nope"], "experiment"),
    (["tracking=cloud"], "tracking"),
    (["trainer.engine=jax"], "trainer.engine"),
    (["model.hidden.0.activation=swishy"], "model.hidden.0.activation"),
    (["model.output.activation=softmax2"], "model.output.activation"),
    (["model.hidden.0.units=0"], "model.hidden.0.units"),
    (["model.hidden.0.units=-3"], "model.hidden.0.units"),
    (["model.hidden.0.units=2.5"], "model.hidden.0.units"),
    (["model.output.units=2"], "model.output.units"),
    (["model.kernel_initializer=nope"], "model.kernel_initializer"),
    (["trainer.epochs=0"], "trainer.epochs"),
    (["trainer.epochs=-5"], "trainer.epochs"),
    (["trainer.epochs=ten"], "trainer.epochs"),
    (["trainer.batch_size=0"], "trainer.batch_size"),
    (["trainer.replicates=0"], "trainer.replicates"),
    (["trainer.seed=-1"], "trainer.seed"),
    (["trainer.seed=1000000000000"], "trainer.seed"),
    (["trainer.seed=4294967295", "trainer.replicates=2"], "trainer.seed"),
    (["dataset=circles", "dataset.seed=10000000000000"], "dataset.seed"),
    (["model.hidden=[]"], "model.hidden"),
    (["trainer.engine=numpy", "optimizer=sgd", "model.kernel_initializer=orthogonal"], "model.kernel_initializer"),
    (["dataset=circles", "dataset.n_samples=500"], "dataset.n_samples"),  # differs from the data file's
    (["dataset=circles_heldout", "dataset.test_fraction=0"], "dataset.test_fraction"),
    (["trainer.shuffle=maybe"], "trainer.shuffle"),
    (["trainer.epoch=5"], "trainer.epoch"),
    (["dataset=circles", "dataset.n_samples=0"], "dataset.n_samples"),
    (["dataset=circles", "dataset.n_samples=abc"], "dataset.n_samples"),
    (["dataset=moons", "dataset.noise=-0.1"], "dataset.noise"),
    (["dataset=circles", "dataset.factor=1"], "dataset.factor"),
    (["dataset=circles", "dataset.factor=-0.1"], "dataset.factor"),
    (["dataset=gauss", "dataset.test_fraction=1.0"], "dataset.test_fraction"),
    (["dataset=spiral", "dataset.test_fraction=-0.1"], "dataset.test_fraction"),
    (["optimizer.learning_rate=0"], "optimizer.learning_rate"),
    (["optimizer.learning_rate=-0.1"], "optimizer.learning_rate"),
    (["optimizer.learning_rate=inf"], "optimizer.learning_rate"),
    (["optimizer.learning_rate=nan"], "optimizer.learning_rate"),
    (["optimizer=sgd", "optimizer.momentum=1.5"], "optimizer.momentum"),
    (["model.input_features=3"], "model.input_features"),
    (["loss=binary_crossentropy", "model.output.activation=linear"], "model.output.activation"),
    (["loss=binary_crossentropy", "model.output.activation=relu"], "model.output.activation"),
    (["loss=binary_crossentropy", "loss.from_logits=true"], "model.output.activation"),
    (["trainer.engine=numpy"], "optimizer"),
    (["trainer.engine=numpy", "optimizer=sgd", "model.hidden.0.activation=elu"], "model.hidden.0.activation"),
    (["metrics=[precision]"], "metrics"),
    (["name=../escape"], "name"),
    (["name=a/b"], "name"),
    (["name=.."], "name"),
    (["name=résumé"], "name"),  # unquoted: Hydra's grammar rejects it
    (["trainer.epochs=[1,"], "trainer.epochs"),
    (["+foo=1"], "foo"),  # a new key nothing reads
    (["++foo=1"], "foo"),  # force-added: also a new key nothing reads
    (["++dataset=circles"], "dataset"),  # Hydra cannot force-add a group
    (["paths.results=/etc/hostname"], "paths.results"),
    (["paths.results=/sys/results"], "paths.results"),  # a folder no user may write in, root included
    (["model.hidden.0.units=1000000000"], "model.hidden.0.units"),  # ~745 GiB: the memory estimate
    (["trainer.replicates=100000000"], "trainer.replicates"),
]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """The datasets the cases read, generated once for the module."""
    from conftest import compose_config

    folder = tmp_path_factory.mktemp("datasets")
    for name in ("xor", "circles", "circles_heldout", "moons", "gauss", "spiral"):
        generate(dict(compose_config(folder, f"dataset={name}").dataset), folder)  # as conf/dataset/ describes them
    return folder


@pytest.fixture
def workdir(tmp_path, monkeypatch, datasets):
    """An empty project folder holding only the generated datasets; no MLflow store yet."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copytree(datasets, tmp_path / "data")
    return tmp_path


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize(("overrides", "key"), CASES, ids=[" ".join(o) for o, _ in CASES])
def test_bad_train_input(workdir, overrides, key, refused):
    before = files_under(workdir)
    code, err = refused(train.main, "paths.root=.", *overrides)
    assert code not in (0, None)
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ") and key in lines[0]
    assert files_under(workdir) == before  # no output, no Hydra folder, no MLflow store or run


def test_missing_data_file_names_the_file(workdir, refused):
    code, err = refused(train.main, "paths.root=.", "dataset=xor_bias")
    assert code == 2
    err = err.strip()
    assert len(err.splitlines()) == 1 and "data/xor_bias.csv" in err and "no such data file" in err


def test_a_good_override_passes_the_checks(workdir):
    from conftest import compose_config

    train.check(compose_config(workdir, "loss=binary_crossentropy", "loss.from_logits=true", "model.output.activation=linear"))


def test_hydra_flags_and_their_values_are_not_taken_for_overrides():
    from pipeline.config.overrides import check_overrides
    from pipeline.errors import ConfigError

    check_overrides(["experiment=xor_relu16", "--cfg", "hydra", "-p", "hydra.launcher", "--config-name", "config"])
    with pytest.raises(ConfigError, match="dataset"):
        check_overrides(["--cfg", "job", "dataset=nope"])
