"""A Hydra multirun in MLflow: a parent run, its jobs as children, a summary table, the best child tagged."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import signal
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from pipeline.tracking import PARENT_RUN_ENV

# A job's final values as metrics.json names them (runs log them as final_<name>); the last two: replicated jobs.
SUMMARY: tuple[str, ...] = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "convergence_epoch")
SUMMARY += ("train_seconds", "converged_share", "convergence_median")


class SweepCallback(Callback):
    """Hydra callback: the parent run at the sweep's start, its summary at the end.

    Hydra pickles its callbacks into every job, whatever the launcher (joblib workers, Ray tasks on other
    machines), so `on_job_start` hands each job the parent's id and the tracking URI in its own process.
    """

    def __init__(self, metric: str = "train_loss", mode: str = "min") -> None:
        self.metric, self.mode = metric, mode
        self.run_id: str | None = None

    def __getstate__(self) -> dict[str, Any]:  # jobs open their own clients and watchdogs
        return {k: v for k, v in vars(self).items() if k not in ("client", "watcher")}

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from mlflow.tracking import MlflowClient
        from omegaconf import OmegaConf

        from pipeline.config.overrides import resolved
        from pipeline.tracking import runs, store, watchdog

        tracking, root = resolved(config.tracking), config.paths.root
        if not tracking.get("enabled", True):
            return
        self.uri = store.tracking_uri(tracking, root)
        self.client = MlflowClient(self.uri)
        overrides = list(config.hydra.overrides.task)
        searched = list((OmegaConf.select(config, "hydra.sweeper.params") or {}).keys())  # Optuna's search space
        self.swept = sweep_keys(overrides) + [k for k in searched if k not in sweep_keys(overrides)]
        self.sweep_dir = Path(config.hydra.sweep.dir)
        experiment_id = runs.experiment_for(self.client, tracking["experiment_name"], root, tracking.get("description"))
        tags = {"mlflow.source.git.commit": runs.git(root, "rev-parse", "HEAD") or "", "sweep": "true"}
        name = runs.run_name(f"{config.name} sweep", overrides, [])
        self.run_id = self.client.create_run(
            experiment_id, run_name=name, tags=tags | {"overrides": " ".join(overrides)}
        ).info.run_id
        for key, value in {"keys": ",".join(self.swept) or "-", "metric": self.metric, "mode": self.mode}.items():
            self.client.log_param(self.run_id, f"sweep.{key}", value)
        self.watcher = watchdog.watch(self.run_id, self.uri)  # ends it KILLED if this process is killed
        atexit.register(self.end, "FAILED")  # a job's error ends the sweep before on_multirun_end
        self.interrupted = False
        for signum in (signal.SIGINT, signal.SIGTERM):  # an interrupted sweep ends KILLED, not FAILED
            previous = signal.getsignal(signum)
            if callable(previous):
                signal.signal(signum, functools.partial(self.note_interrupt, previous))

    def note_interrupt(self, previous: Any, signum: int, frame: Any) -> None:
        """Remember that the sweep was interrupted, then let the previous handler raise as it would."""
        self.interrupted = True
        previous(signum, frame)

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        """In the job's process: runs started now are children of the sweep's parent, in the same store."""
        if self.run_id is not None:
            os.environ[PARENT_RUN_ENV] = self.run_id
            os.environ["MLFLOW_TRACKING_URI"] = self.uri

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.run_id is not None:
            try:
                print(self.log_summary(self.run_id))
            finally:
                self.end("FINISHED")

    def log_summary(self, run_id: str) -> str:
        """Every child's swept params and final values as summary.csv; the best child; an Optuna study's result.

        Returns the line that tells the user so."""
        import pandas as pd
        import yaml

        from pipeline.core.plots import sweep_heatmap

        experiment_id = self.client.get_run(run_id).info.experiment_id
        children = self.client.search_runs([experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=10000)
        table = pd.DataFrame(
            {"run_id": r.info.run_id, "run_name": r.info.run_name, "status": r.info.status}
            | {k: r.data.params.get(k) for k in self.swept}
            | {m: r.data.metrics.get(f"final_{m}", r.data.metrics.get(m)) for m in (*SUMMARY, self.metric)}
            for r in children
        )
        self.client.log_text(run_id, table.to_csv(index=False), "summary.csv")
        self.client.log_metric(run_id, "children", len(table))
        # Only finished children rank: a Ray task whose worker died is rerun, its first attempt left KILLED.
        ranked = table[table["status"] == "FINISHED"].dropna(subset=[self.metric]) if self.metric in table else table.iloc[:0]
        said = f"sweep: {len(table)} jobs, {len(ranked)} ranked by {self.metric}"
        if not ranked.empty:
            best = ranked.sort_values(self.metric, ascending=self.mode == "min").iloc[0]
            said += f"; best {best[self.metric]:.6g}: run {best['run_name']!r} ({best['run_id']})"
            self.client.log_metric(run_id, f"best_{self.metric}", float(best[self.metric]))
            self.client.set_tag(run_id, "best_run_id", best["run_id"])
            self.client.set_tag(best["run_id"], "best_in_sweep", "true")
            if len(self.swept) >= 2:
                heatmap = sweep_heatmap(ranked, self.swept[0], self.swept[1], self.metric)
                self.client.log_figure(run_id, heatmap, "sweep_heatmap.png")
        if (path := self.sweep_dir / "optimization_results.yaml").is_file():  # Optuna's best params and value
            result = yaml.safe_load(path.read_text())
            for key, value in result.get("best_params", {}).items():
                self.client.log_param(run_id, f"best.{key}", value)
            self.client.log_metric(run_id, "best_value", float(result["best_value"]))
            self.client.log_artifact(run_id, str(path))
        return f"{said}; summary.csv in the parent run {run_id} (`mlflow ui`), job folders in {self.sweep_dir}"

    def end(self, status: str) -> None:
        """End the parent run, and any child still RUNNING (a worker the launcher killed), unless ended; free its watchdog.

        An interrupted sweep ends KILLED. Its children's own watchdogs may have been killed with their worker's
        process tree (joblib's loky terminates it), so the parent ends them here.
        """
        from pipeline.tracking import watchdog

        status = "KILLED" if status == "FAILED" and getattr(self, "interrupted", False) else status
        with contextlib.suppress(Exception):
            if self.run_id and self.client.get_run(self.run_id).info.status == "RUNNING":
                experiment_id = self.client.get_run(self.run_id).info.experiment_id
                running = f"tags.mlflow.parentRunId = '{self.run_id}' and attributes.status = 'RUNNING'"
                for child in self.client.search_runs([experiment_id], running, max_results=10000):
                    self.client.set_tag(child.info.run_id, "error", f"the sweep ended {status} while it ran")
                    self.client.set_terminated(child.info.run_id, "KILLED")
                self.client.set_terminated(self.run_id, status)
        watchdog.release(self.watcher)


def sweep_keys(overrides: list[str]) -> list[str]:
    """The config keys a multirun sweeps over (those given several values), as flat param names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if o.is_sweep_override()]
