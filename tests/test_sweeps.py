"""Sweeps: joblib workers against the default SQLite store lose no run and no metric; Optuna; launcher presets;
a bad job fails the sweep before any job runs."""

from __future__ import annotations

import os

import pytest
from conftest import hydra_on_conf, run_sweep

EPOCHS = 150


@pytest.mark.integration
def test_eight_joblib_jobs_on_two_workers_all_finish_under_one_parent(tmp_path):
    client, parent, children = run_sweep(
        tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "trainer.seed=range(8)", f"trainer.epochs={EPOCHS}"
    )
    assert len(children) == 8 and {c.info.status for c in children} == {"FINISHED"}
    assert sorted(int(c.data.params["trainer.seed"]) for c in children) == list(range(8))
    assert sorted(c.info.run_name for c in children)[0] == "xor_relu16 trainer.seed=0 trainer.epochs=150"
    for child in children:  # no metric lost: every epoch of every series, and the finals
        for key in ("epoch_loss", "epoch_accuracy"):
            assert [m.step for m in client.get_metric_history(child.info.run_id, key)] == list(range(1, EPOCHS + 1))
        assert {"final_train_loss", "final_train_accuracy", "train_seconds"} <= set(child.data.metrics)
    assert parent.data.metrics["children"] == 8


@pytest.mark.integration
def test_optuna_search_of_20_trials_logs_the_best_params_to_the_parent(tmp_path):
    _, parent, children = run_sweep(tmp_path, "hparams_search=xor_optuna", "evaluate_multirun_jobs=false")
    assert len(children) == 20
    best_units = parent.data.params["best.model.hidden.0.units"]
    assert best_units in {"2", "4", "8", "16", "32"} and float(parent.data.params["best.optimizer.learning_rate"]) > 0
    best_value = parent.data.metrics["best_value"]
    assert best_value == pytest.approx(min(c.data.metrics["final_train_loss"] for c in children), rel=1e-6)


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
    from pipeline.stages.sweeps import ThreadsPerJob

    cfg = with_hydra_config(*overrides)
    (callback,) = [c for c in cfg.hydra.callbacks.values() if c._target_.endswith("ThreadsPerJob")]
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    ThreadsPerJob().on_job_start(cfg)
    assert os.environ.get("TF_NUM_INTRAOP_THREADS") == threads == os.environ.get("TF_NUM_INTEROP_THREADS")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("model.hidden.0.units=4,8,abc", "error: model.hidden.0.units='abc' is not allowed: a positive integer"),
        ("dataset=xor,nope", "error: dataset='nope' is not allowed: one of "),
        ("trainer.epocs=1,2", "error: bad override: Could not override 'trainer.epocs'. (did you mean trainer.epochs?)"),
        ("optimizer=adam,sgd optimizer.learning_rate=0.1,-1", "error: optimizer.learning_rate=-1 is not allowed"),
    ],
)
def test_a_sweep_with_a_bad_last_job_fails_before_any_job_runs_and_leaves_no_run(
    bad, message, tmp_path, make_config, monkeypatch, refused
):
    from pipeline.stages import train

    make_config("dataset=xor")  # data/xor.csv under tmp_path
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    args = ["-m", "experiment=xor_relu16", "trainer.epochs=5", *bad.split(), "paths.root=.", "hydra.sweep.dir=sweep"]
    code, err = refused(train.main, *args)
    assert code == 2 and err.startswith(message), err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "mlflow.db").exists()  # no job, no MLflow run


def test_every_job_of_a_sweep_is_checked_and_long_sweeps_check_each_value_once():
    from pipeline.config.jobs import MAX_CHECKED_JOBS, sweep_configs

    jobs = list(sweep_configs(["-m", "experiment=xor_relu16", "optimizer=adam,sgd", "trainer.seed=range(3)", "+tag=a,b"]))
    assert len(jobs) == 12
    assert {(c.optimizer._target_, c.trainer.seed, c.tag) for c in jobs} == {
        (f"keras.optimizers.{o}", s, t) for o in ("Adam", "SGD") for s in range(3) for t in "ab"
    }
    assert jobs[0].trainer.epochs == 1000 and jobs[0].name == "xor_relu16"
    many = list(sweep_configs(["-m", f"trainer.seed=range({MAX_CHECKED_JOBS})", "model.hidden.0.units=4,8"]))
    assert len(many) == MAX_CHECKED_JOBS + 1  # every seed with 4 units, then 8 units once
    assert [c.model.hidden[0].units for c in many[-2:]] == [4, 8]
    ends = [c.optimizer.learning_rate for c in sweep_configs(["-m", "optimizer.learning_rate=interval(0.001,0.1)"])]
    assert ends == [0.001, 0.1]  # an interval Optuna samples: checked at both ends
    searched = list(sweep_configs(["-m", "experiment=xor_relu16", "hparams_search=xor_optuna", "trainer.epochs=9"]))
    units_and_rates = {(c.model.hidden[0].units, c.optimizer.learning_rate) for c in searched}
    assert units_and_rates == {(u, r) for u in (2, 4, 8, 16, 32) for r in (0.001, 0.1)}  # the preset's search space


def test_a_glob_over_a_group_sweeps_its_options_and_force_adds_of_existing_keys_pass():
    from pipeline.config.jobs import sweep_configs
    from pipeline.config.overrides import check_overrides

    args = ["-m", "optimizer=glob(*,exclude=sgd)", "++trainer.epochs=3,4"]
    check_overrides(args)  # ++ of an existing key overrides it: allowed
    jobs = {(c.optimizer._target_, c.trainer.epochs) for c in sweep_configs(args)}
    assert jobs == {(f"keras.optimizers.{o}", e) for o in ("Adam", "RMSprop") for e in (3, 4)}
