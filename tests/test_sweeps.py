"""Sweeps: joblib workers against the default SQLite store lose no run and no metric; Optuna; launcher presets;
a bad job fails the sweep before any job runs."""

from __future__ import annotations

import os

import pytest

from conftest import hydra_on_conf, run_cli, run_sweep

EPOCHS = 150


@pytest.mark.slow
def test_eight_joblib_jobs_on_two_workers_all_finish_under_one_parent(tmp_path):
    client, parent, children = run_sweep(
        tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.seed=range(8)", f"trainer.epochs={EPOCHS}"
    )
    assert len(children) == 8 and {c.info.status for c in children} == {"FINISHED"}
    assert sorted(int(c.data.params["trainer.seed"]) for c in children) == list(range(8))
    assert sorted(c.info.run_name for c in children)[0] == "xor_relu16[trainer.epochs=150,trainer.seed=0]"
    for child in children:  # no metric lost: every epoch of every series, and the finals
        for key in ("loss", "accuracy"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == list(range(1, EPOCHS + 1))
        assert {"train_loss", "train_accuracy", "train_seconds"} <= set(child.data.metrics)
    assert parent.data.metrics["children"] == 8


@pytest.mark.slow
def test_optuna_search_of_20_trials_logs_the_best_params_to_the_parent(tmp_path):
    _, parent, children = run_sweep(tmp_path, "hparams_search=xor_optuna", "evaluate_multirun_jobs=false")
    assert len(children) == 20
    best_units = parent.data.params["best.model.hidden.0.units"]
    assert best_units in {"2", "4", "8", "16", "32"} and float(parent.data.params["best.optimizer.learning_rate"]) > 0
    best_value = parent.data.metrics["best_value"]
    assert best_value == pytest.approx(min(c.data.metrics["train_loss"] for c in children), rel=1e-6)


def with_hydra_config(*overrides: str):
    """The real config composed with `overrides`, with its `hydra` node (launcher, callbacks)."""
    from hydra import compose

    with hydra_on_conf():
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.parametrize(
    ("launcher", "target"), [("ray_cluster", "ray_launcher.RayLauncher"), ("slurm", "submitit_launcher.SlurmLauncher")]
)
def test_cluster_launcher_presets_compose_onto_the_plugins_configs(launcher, target, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    cfg = with_hydra_config(f"hydra/launcher={launcher}", "tracking=server")
    assert cfg.hydra.launcher._target_.endswith(target)
    if launcher == "ray_cluster":
        assert cfg.hydra.launcher.ray.init.address == "10.0.0.5:6379"
        assert cfg.hydra.launcher.ray.init.object_store_memory is None
        assert cfg.hydra.launcher.ray.remote.num_cpus == 1
    else:
        assert cfg.hydra.launcher.cpus_per_task == 2 and cfg.hydra.launcher.timeout_min == 30
    assert cfg.tracking.uri.startswith("http://127.0.0.1")


@pytest.mark.parametrize(
    ("overrides", "cores", "threads"),
    [
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2, "1"),
        (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 8, "4"),
        (["hydra/launcher=joblib"], 8, "1"),  # n_jobs=-1: a worker per core
        (["hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_cpus=2"], 8, "2"),
        ([], 2, None),  # the basic launcher runs one job at a time: TensorFlow's own default
    ],
)
def test_a_parallel_job_gets_its_share_of_the_cores(overrides, cores, threads, monkeypatch):
    from pipeline.sweeps import ThreadsPerJob

    cfg = with_hydra_config(*overrides)
    (callback,) = [c for c in cfg.hydra.callbacks.values() if c._target_.endswith("ThreadsPerJob")]
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    ThreadsPerJob().on_job_start(cfg)
    assert os.environ.get("TF_NUM_INTRAOP_THREADS") == threads == os.environ.get("TF_NUM_INTEROP_THREADS")


@pytest.mark.slow
@pytest.mark.parametrize("bad", ["dataset=xor,nope", "trainer.nope=1,2"])
def test_a_sweep_with_a_job_that_cannot_be_composed_fails_before_any_job_runs(bad, tmp_path):
    assert run_cli("generate", "dataset=xor", "paths.root=.", cwd=tmp_path).returncode == 0
    result = run_cli(
        "train",
        "-m",
        "experiment=xor_relu16",
        "trainer.epochs=5",
        "tracking.enabled=false",
        bad,
        "paths.root=.",
        "hydra.sweep.dir=sweep",
        cwd=tmp_path,
    )
    assert result.returncode != 0 and "nope" in result.stderr
    assert not (tmp_path / "sweep" / "0").exists()  # Hydra's basic sweeper composes every job before the first runs
