"""Sweeps: joblib workers against the default SQLite store lose no run and no metric; Optuna; launcher presets;
the grid sweeper composes the config files once per choice of configs, as Hydra would."""

from __future__ import annotations

import os
import pickle

import pytest

from conftest import hydra_on_conf, run_sweep

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


@pytest.mark.parametrize(("launcher", "target"), [("ray_cluster", "ray_launcher.RayLauncher"),
                                                  ("slurm", "submitit_launcher.SlurmLauncher")])
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


@pytest.mark.parametrize(("overrides", "cores", "threads"), [
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2, "1"),
    (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 8, "4"),
    (["hydra/launcher=joblib"], 8, "1"),  # n_jobs=-1: a worker per core
    (["hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_cpus=2"], 8, "2"),
    ([], 2, None),  # the basic launcher runs one job at a time: TensorFlow's own default
])
def test_a_parallel_job_gets_its_share_of_the_cores(overrides, cores, threads, monkeypatch):
    from pipeline.sweeps import ThreadsPerJob

    cfg = with_hydra_config(*overrides)
    (callback,) = [c for c in cfg.hydra.callbacks.values() if c._target_.endswith("ThreadsPerJob")]
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(cores)))
    ThreadsPerJob().on_job_start(cfg)
    assert os.environ.get("TF_NUM_INTRAOP_THREADS") == threads == os.environ.get("TF_NUM_INTEROP_THREADS")


def test_the_size_of_a_grid_is_the_product_of_its_sweeps():
    from pipeline.sweeps import grid_size

    assert grid_size(["model.hidden.0.units=4,8", "trainer.seed=range(3)", "trainer.epochs=5"]) == 6
    assert grid_size(["trainer.epochs=5"]) == 1
    assert grid_size(["optimizer.learning_rate=interval(0.001, 0.1)"]) == float("inf")


@pytest.mark.slow
def test_joblib_workers_start_at_the_sweeps_start_and_then_run_its_jobs():
    from hydra.utils import instantiate
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed
    from omegaconf import open_dict, read_write
    from pipeline.sweeps import StartJoblibWorkers

    cfg = with_hydra_config("hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "tracking.enabled=false")
    with read_write(cfg), open_dict(cfg):
        cfg.hydra.overrides.task = ["trainer.seed=0,1,2", "trainer.epochs=5"]
    callback = StartJoblibWorkers()
    callback.on_multirun_start(cfg)
    started = set(callback.started)
    assert len(started) == 2  # one start per worker
    launcher = instantiate(cfg.hydra.launcher)  # as its launch(): Parallel(**its settings, backend="loky")
    settings = {**launcher.joblib, "backend": "loky"}
    process_joblib_cfg(settings)
    assert set(Parallel(**settings)(delayed(os.getpid)() for _ in range(6))) == started  # the same processes


def grid_sweep(tmp_path, monkeypatch, arguments: list[str], *overrides: str) -> tuple[list, int]:
    """Run the configured sweeper over `arguments`, each job recording its config; (configs, compositions)."""
    from hydra import compose
    from hydra._internal.callbacks import Callbacks
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.plugins import Plugins
    from hydra.types import HydraContext

    compose_job = ConfigLoaderImpl.load_sweep_config
    compositions = []
    monkeypatch.setattr(ConfigLoaderImpl, "load_sweep_config",
                        lambda self, *args, **kwargs: compositions.append(1) or compose_job(self, *args, **kwargs))
    tmp_path.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(tmp_path)
    jobs = []  # (the job's config, its number)
    with hydra_on_conf() as hydra:
        cfg = compose("config", return_hydra_config=True, overrides=[
            "hydra/job_logging=none", "hydra/hydra_logging=none", f"hydra.sweep.dir={tmp_path}", *overrides])
        context = HydraContext(config_loader=hydra.config_loader(), callbacks=Callbacks())
        sweeper = Plugins.instance().instantiate_sweeper(
            hydra_context=context, config=cfg, task_function=lambda job: jobs.append((job, HydraConfig.get().job.num)))
        sweeper.sweep(arguments)
    return jobs, len(compositions)


def test_the_grid_sweeper_composes_the_config_files_once_for_jobs_that_differ_in_values(tmp_path, monkeypatch):
    jobs, compositions = grid_sweep(tmp_path, monkeypatch, ["model.hidden.0.units=4,8", "trainer.seed=0,1"])
    assert [(job.model.hidden[0].units, job.trainer.seed, num) for job, num in jobs] == [
        (4, 0, 0), (4, 1, 1), (8, 0, 2), (8, 1, 3)]
    assert compositions == 1  # Hydra's basic sweeper: 8 (each job at validation, then again at launch)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0", "1", "2", "3", "multirun.yaml"]
    assert len({id(job) for job, _ in jobs}) == 4  # each job has a config of its own


def test_the_grid_sweeper_composes_once_per_choice_of_configs_up_to_max_compositions(tmp_path, monkeypatch):
    grid = ["dataset=xor,xor_noisy", "trainer.seed=0,1"]
    jobs, compositions = grid_sweep(tmp_path / "all", monkeypatch, grid)
    assert [(job.dataset.name, job.trainer.seed) for job, _ in jobs] == [
        ("xor", 0), ("xor", 1), ("xor_noisy", 0), ("xor_noisy", 1)]
    assert compositions == 2
    _, compositions = grid_sweep(tmp_path / "one", monkeypatch, grid, "hydra.sweeper.max_compositions=1")
    assert compositions == 1 + 2 + 2  # xor kept; each xor_noisy job composed at validation and at launch


def test_the_grid_sweeper_still_fails_before_any_job_when_one_cannot_be_composed(tmp_path, monkeypatch):
    from hydra.errors import ConfigCompositionException

    for folder, bad in (("group", "dataset=xor,nope"), ("value", "trainer.nope=1,2")):
        with pytest.raises(ConfigCompositionException, match="nope"):
            grid_sweep(tmp_path / folder, monkeypatch, [bad])
        assert [p.name for p in (tmp_path / folder).iterdir()] == ["multirun.yaml"]  # no job ran, not even the first


JOBS = [  # a job's overrides, as a sweeper hands them to the launcher
    ["model.hidden.0.units=8", "trainer.seed=3"],
    ["experiment=xor_relu16", "trainer.engine=fit", "trainer.epochs=7", "model.hidden.0.units=4"],
    ["dataset=circles", "optimizer=sgd", "optimizer.learning_rate=0.1", "model=mlp"],
    ["+extra.note=hi", "++trainer.epochs=3", "~model.use_bias", "trainer.seed=1", "trainer.seed=2"],
    ["dataset={name: xor, test_fraction: 0.0}", "model.hidden=[{units: 3, activation: tanh}]"],
    ["hydra.job.chdir=true", "hydra/launcher=joblib", "hydra.job.env_copy=[HOME]", "trainer.seed=5"],
    ["hydra.job.config.override_dirname.exclude_keys=[trainer.seed]", "trainer.seed=5", "trainer.epochs=9"],
]


@pytest.mark.parametrize("master", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=3", "hydra.sweep.dir=x"]])
def test_a_job_config_from_a_shared_composition_is_the_one_hydra_composes(master):
    from hydra.types import RunMode
    from pipeline.job_configs import JobConfigs
    from omegaconf import OmegaConf

    def described(config):
        return OmegaConf.to_yaml(config), OmegaConf.is_struct(config), OmegaConf.is_readonly(config.hydra)

    with hydra_on_conf() as hydra:
        loader = hydra.config_loader()
        master_config = loader.load_configuration("config", master, run_mode=RunMode.MULTIRUN)
        shared = JobConfigs(loader, max_compositions=100)
        for job in JOBS + JOBS:  # the second time from kept compositions
            assert described(shared.load_sweep_config(master_config, job)) == described(
                loader.load_sweep_config(master_config, job)), job


def test_the_grid_sweepers_config_loader_reaches_worker_processes_without_its_compositions():
    from hydra.types import RunMode
    from pipeline.job_configs import JobConfigs

    with hydra_on_conf() as hydra:
        configs = JobConfigs(hydra.config_loader(), max_compositions=10)
        master_config = configs.load_configuration("config", [], run_mode=RunMode.MULTIRUN)
        configs.load_sweep_config(master_config, ["trainer.seed=1"])
        shipped = pickle.loads(pickle.dumps(configs))
        assert len(configs.compositions) == 1 and shipped.compositions == {}  # a worker composes anew
        assert shipped.load_sweep_config(master_config, ["trainer.seed=2"]).trainer.seed == 2
    assert "xor" in shipped.get_group_options("dataset")


def test_a_worker_keeps_the_config_loader_of_its_first_job_for_the_sweeps_later_jobs():
    from hydra.core.singleton import Singleton
    from hydra.types import RunMode
    from pipeline.job_configs import JobConfigs

    with hydra_on_conf() as hydra:
        configs = JobConfigs(hydra.config_loader(), max_compositions=10)
        master_config = configs.load_configuration("config", [], run_mode=RunMode.MULTIRUN)
        shipped, next_sweep = pickle.dumps(configs), pickle.dumps(JobConfigs(hydra.config_loader(), max_compositions=10))
        first = pickle.loads(shipped)  # a worker's first job
        first.load_sweep_config(master_config, ["trainer.seed=1"])
        Singleton.set_state(Singleton.get_state())  # as joblib's launcher before each job: Hydra scans its plugins again
        later = pickle.loads(shipped)
        assert later is first and len(later.compositions) == 1
        assert later.load_sweep_config(master_config, ["trainer.seed=3"]).trainer.seed == 3
        assert len(later.compositions) == 1  # a copy of the first job's composition
        assert pickle.loads(next_sweep) is not first
