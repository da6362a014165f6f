"""Hydra sweeps in MLflow: a parent run per multirun, its jobs as children, a summary table and heatmap; thread shares
for parallel jobs."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from pipeline.tracking_process import PARENT_RUN_ENV


class SweepCallback(Callback):
    """Hydra callback: a parent MLflow run per multirun, its jobs as children, a summary table at the end.

    Hydra pickles its callbacks into every job, whatever the launcher (joblib workers, Ray tasks on other
    machines), so `on_job_start` hands each job the parent's id and the tracking URI in its own process.
    """

    SUMMARY_METRICS = (
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "convergence_epoch",
        "train_seconds",
        "converged_share",
        "convergence_median",
    )  # as in metrics.json; the last two: replicated jobs

    @staticmethod
    def logged(metrics: dict[str, float], name: str) -> float | None:
        """A job's final value of `name`, as train.log_run names it (`final_<name>`) or a replicated job (`<name>`)."""
        return metrics.get(f"final_{name}", metrics.get(name))

    def __init__(self, metric: str = "train_loss", mode: str = "min") -> None:
        self.metric, self.mode = metric, mode
        self.run_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Jobs get the callback without the parent's MLflow client: a job process then never imports MLflow
        # (1.6 s), since its runs are logged by the tracking helper.
        return {k: v for k, v in vars(self).items() if k != "client"}

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient
        from omegaconf import OmegaConf

        from pipeline.cli import resolved
        from pipeline.tracking import experiment_for, flatten, git_tags, tracking_uri

        tracking_cfg = resolved(config.tracking)
        if not tracking_cfg.get("enabled", True):
            return
        root = config.paths.root
        uri = tracking_uri(tracking_cfg, root)
        self.uri, self.client = uri, MlflowClient(uri)
        overrides = list(config.hydra.overrides.task)
        searched = list((OmegaConf.select(config, "hydra.sweeper.params") or {}).keys())  # Optuna's search space
        self.swept = sweep_keys(overrides) + [k for k in searched if k not in sweep_keys(overrides)]
        self.sweep_dir = Path(config.hydra.sweep.dir)
        experiment_id = experiment_for(tracking_cfg["experiment_name"], uri, root, tracking_cfg.get("description"))
        tags = {**git_tags(root), "sweep": "true", "overrides": " ".join(overrides)}
        name = f"{config.name}-sweep"
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        self.client.log_batch(
            self.run_id,
            params=[
                Param(k, v)
                for k, v in flatten(
                    {"sweep": {"keys": ",".join(self.swept) or "-", "metric": self.metric, "mode": self.mode}}
                ).items()
            ],
        )
        import atexit

        atexit.register(self._end_if_running, "FAILED")

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        """In the job's process: runs started now are children of the sweep's parent, in the same store."""
        if self.run_id is not None:
            os.environ[PARENT_RUN_ENV] = self.run_id
            os.environ["MLFLOW_TRACKING_URI"] = self.uri

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.run_id is None:
            return
        from pipeline import tracking_process

        tracking_process.settle()  # the last in-process job's run is ended (its error is the command's to raise)
        try:
            self.log_summary()
            self.log_search_result()
        finally:
            self._end_if_running("FINISHED")

    def log_summary(self) -> None:
        """Log every child's swept params and final metrics as summary.csv, and tag the best child."""
        run_id = self.parent_run_id()
        import pandas as pd
        from mlflow.entities import Metric, RunTag

        children = self.client.search_runs(
            [self.client.get_run(run_id).info.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
            max_results=10000,
        )
        rows = [
            {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status}
            | {k: r.data.params.get(k) for k in self.swept}
            | {m: self.logged(r.data.metrics, m) for m in (*self.SUMMARY_METRICS, self.metric)}
            for r in children
        ]
        table = pd.DataFrame(rows)
        self.client.log_text(run_id, table.to_csv(index=False), "summary.csv")
        # Only finished children rank: a Ray task whose worker died is rerun, its first attempt left KILLED.
        ranked = table[table["status"] == "FINISHED"].dropna(subset=[self.metric]) if self.metric in table else table.iloc[:0]
        if not ranked.empty:
            best = ranked.sort_values(self.metric, ascending=self.mode == "min").iloc[0]
            self.client.log_batch(
                run_id,
                metrics=[Metric(f"best_{self.metric}", float(best[self.metric]), int(time.time() * 1000), 0)],
                tags=[RunTag("best_run_id", best["run_id"])],
            )
            self.client.set_tag(best["run_id"], "best_in_sweep", "true")
        self.client.log_batch(run_id, metrics=[Metric("children", len(table), int(time.time() * 1000), 0)])
        if len(self.swept) >= 2 and not ranked.empty:
            self.client.log_figure(run_id, sweep_heatmap(ranked, self.swept[0], self.swept[1], self.metric), "sweep_heatmap.png")

    def log_search_result(self) -> None:
        """Log an Optuna study's best params (`best.<key>`) and value to the parent run."""
        run_id = self.parent_run_id()
        import yaml
        from mlflow.entities import Metric, Param

        path = self.sweep_dir / "optimization_results.yaml"
        if not path.is_file():
            return
        result = yaml.safe_load(path.read_text())
        params = {f"best.{k}": v for k, v in result.get("best_params", {}).items()}
        self.client.log_batch(
            run_id,
            params=[Param(k, str(v)) for k, v in params.items()],
            metrics=[Metric("best_value", float(result["best_value"]), int(time.time() * 1000), 0)],
        )
        self.client.log_artifact(run_id, str(path))

    def parent_run_id(self) -> str:
        """The sweep's parent run, once `on_multirun_start` has opened it."""
        if self.run_id is None:
            raise RuntimeError("the sweep has no parent run")
        return self.run_id

    def _end_if_running(self, status: str) -> None:
        with contextlib.suppress(Exception):
            if self.run_id and self.client.get_run(self.run_id).info.status == "RUNNING":
                self.client.set_terminated(self.run_id, status)


class ThreadsPerJob(Callback):
    """Hydra callback: each job of a parallel launcher gets its share of the cores for TensorFlow's thread pools.

    TensorFlow sizes its pools to every core, so 2 joblib workers on 2 cores would run 2 pools each and slow
    each other down (tests/test_determinism.py checks that one thread gives the same numbers).
    """

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        threads = job_threads(config.hydra.launcher, available_cores())
        if threads is not None:  # read when TensorFlow starts, i.e. at this worker's first job
            share_cores(threads)


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_threads(launcher: Any, cores: int) -> int | None:
    """Threads per job under `launcher`: cores / joblib's n_jobs, a Ray task's num_cpus; None when jobs run one at a time."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        return max(1, cores // joblib_workers(launcher, cores))
    if target.endswith("RayLauncher"):
        cpus = (launcher.get("ray", {}).get("remote") or {}).get("num_cpus")
        return max(1, int(cpus)) if cpus else None
    return None


def share_cores(threads: int) -> None:
    """Size TensorFlow's thread pools to `threads` when it starts in this process; a user's value wins."""
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(key, str(threads))


def joblib_workers(launcher: Any, cores: int) -> int:
    """How many worker processes joblib's launcher runs: n_jobs, or with joblib's rule for negatives (-1: every core)."""
    n_jobs = launcher.get("n_jobs") or -1
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def sweep_heatmap(table: Any, rows: str, columns: str, metric: str) -> Any:
    """A heatmap of the median of `metric` over two swept keys (other keys, e.g. seeds, pooled)."""
    import numpy as np

    from pipeline import plots

    grid = table.pivot_table(index=rows, columns=columns, values=metric, aggfunc="median")
    fig, ax = plots.plt.subplots(figsize=(1.2 * len(grid.columns) + 3, 0.6 * len(grid.index) + 2))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel=columns, ylabel=rows, title=f"median {metric}")
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    return fig


def sweep_keys(overrides: list[str]) -> list[str]:
    """The config keys a multirun sweeps over (those given several values), as flat param names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if o.is_sweep_override()]
