"""One playground try at a time: checked as the CLI checks it, trained by `stages.train.train` in a worker thread.

A thread, not a process: the page's frames come from the engine's own chunks (a `Watch`), and a warm process keeps
TensorFlow, Hydra and MLflow imported, so a try's first frame comes 0.06-0.2 s after play (bench/playground.md).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipeline import files
from pipeline.errors import ConfigError, Interrupted, PipelineError
from pipeline.playground.state import Try, control, prepare
from pipeline.playground.frames import Frames, log_boundary, start_event

Publish = Callable[[dict[str, Any]], None]
FRAME_SECONDS = 1 / 30  # frames are drawn at most this often: a 1000-epoch XOR run takes 50 frames, ~1.7 s


class Session:
    """The app's one try at a time: play, pause, step, reset; events go to `publish` (any thread)."""

    def __init__(self, publish: Publish, mlflow_ui: str) -> None:
        self.publish, self.mlflow_ui = publish, mlflow_ui
        self.worker: threading.Thread | None = None
        self.running, self.stopping = threading.Event(), threading.Event()
        self.steps_left: int | None = None  # None: play on; n: n more frames, then pause
        self.due = 0.0
        self.frames: Frames | None = None

    @property
    def busy(self) -> bool:
        return self.worker is not None and self.worker.is_alive()

    def play(self, query: Mapping[str, str], paused: bool = False) -> Try:
        """Check the try (a PipelineError: nothing runs), stop the one running, and start this one."""
        chosen = prepare(query)
        self.start(self.train, chosen, 1 if paused else None)
        return chosen

    def seeds(self, query: Mapping[str, str], copies: int = 1000) -> Try:
        """Check the try, then train it as `copies` seeded replicates (one tracked run); the page gets a `seeds` event."""
        replace = {"trainer.replicates": str(copies), "paths.results": "runs/playground/seeds"}
        chosen = prepare(query, replace)
        self.start(self.measure, chosen, None)
        return chosen

    def start(self, target: Callable[[Try], None], chosen: Try, steps: int | None) -> None:
        self.reset()
        self.stopping.clear()
        self.steps_left = steps
        self.running.set()
        self.worker = threading.Thread(target=target, args=(chosen,), name="playground-try", daemon=True)
        self.worker.start()

    def pause(self) -> None:
        self.running.clear()

    def resume(self) -> None:
        self.steps_left = None
        self.running.set()

    def step(self) -> None:
        """One more frame (a chunk of epochs), then pause."""
        self.steps_left = 1
        self.running.set()

    def reset(self, timeout: float = 30.0) -> None:
        """Stop the try at its next chunk (its run ends KILLED, its files are dropped) and wait for it."""
        self.stopping.set()
        self.running.set()
        if self.worker is not None:
            self.worker.join(timeout)

    def watch(self, epoch: int, columns: dict[str, np.ndarray], parameters: list[np.ndarray]) -> None:
        """The engine's callback after each chunk: publish a frame, keep the pace, hold while paused."""
        if self.stopping.is_set():
            raise Interrupted("reset")
        if epoch == 0:  # drawn already
            return
        assert self.frames is not None, "set before training starts"
        event = self.frames.frame(epoch, columns, parameters)
        if (wait := self.due - time.perf_counter()) > 0:
            self.stopping.wait(wait)
        self.publish({"type": "frame", **event})
        self.due = time.perf_counter() + FRAME_SECONDS
        if self.steps_left is not None:
            self.steps_left -= 1
            if self.steps_left <= 0:
                self.running.clear()
                self.publish({"type": "paused", "epoch": epoch})
        while not self.running.wait(0.05):
            pass
        if self.stopping.is_set():
            raise Interrupted("reset")

    def train(self, chosen: Try) -> None:
        from pipeline.core import keras_mlp, nets
        from pipeline.stages import train
        from pipeline.tracking import runs

        started = time.perf_counter()
        try:
            self.frames = Frames(chosen.plain, chosen.dataset)
            self.publish(start_event(chosen, self.frames))
            # Epoch 0 now, from the weights the engine starts with, rather than after the MLflow run has started.
            seed = chosen.plain["trainer"]["seed"]
            initial = keras_mlp.initial_weights(chosen.plain["model"], chosen.dataset.n_features, [seed])[0]
            self.publish({"type": "frame", **self.frames.frame(0, {}, [w[None] for w in initial])})
            self.due = time.perf_counter() + FRAME_SECONDS
            metrics = train.train(chosen.cfg, overrides=chosen.overrides, watch=self.watch)
            folder = train.output_dir(chosen.cfg)
            run_id = files.read_json(folder / "run.json")["run_id"]
            experiment_id = runs.tag_run(chosen.plain, run_id, {"source": "playground", "playground_query": chosen.query})
            link = f"{self.mlflow_ui}/#/experiments/{experiment_id}/runs/{run_id}"
            seconds = round(time.perf_counter() - started, 3)
            self.publish({"type": "done", "metrics": metrics, "run_id": run_id, "mlflow": link, "seconds": seconds})
            model = nets.load(folder, bool(chosen.plain["loss"].get("from_logits")))  # before a next try replaces it
            threading.Thread(
                target=log_boundary, args=(lambda: self.busy, chosen, model, run_id), name="playground-picture"
            ).start()
        except Interrupted:
            self.publish({"type": "reset"})
        except PipelineError as error:
            self.publish(error_event(error))
        except Exception as error:  # a bug: the page says so instead of waiting; the traceback goes to the terminal
            self.publish({"type": "error", "message": f"error: the try failed ({type(error).__name__}: {error})", "control": ""})
            raise

    def measure(self, chosen: Try) -> None:
        """Train the replicates; publish the share of seeds at 100% by epoch and where this try's seed falls."""
        import pandas as pd

        from pipeline.core import convergence
        from pipeline.stages import train

        started = time.perf_counter()
        self.publish({"type": "measuring", "copies": chosen.plain["trainer"]["replicates"]})
        try:
            metrics = train.train(chosen.cfg, overrides=chosen.overrides)
        except PipelineError as error:
            self.publish(error_event(error))
            return
        folder = train.output_dir(chosen.cfg)
        table = pd.read_csv(folder / "replicates.csv")
        converged = table["converged"].to_numpy(bool)
        curve: list[list[float]] = []
        if converged.any():
            km = convergence.kaplan_meier(table["observed_epochs"].to_numpy(), converged)
            curve = [[float(t), float(p)] for t, p in zip(km.cdf.quantiles, km.cdf.probabilities)]
        mine = table.loc[table["seed"] == chosen.plain["trainer"]["seed"], "convergence_epoch"].iloc[0]
        self.publish({
            "type": "seeds",
            "copies": len(table),
            "epochs": chosen.plain["trainer"]["epochs"],
            "curve": curve,
            "seed": chosen.plain["trainer"]["seed"],
            "seed_epoch": None if pd.isna(mine) else int(mine),
            "converged_share": metrics["converged_share"],
            "median": metrics["convergence_median"],
            "run_id": files.read_json(folder / "run.json")["run_id"],
            "seconds": round(time.perf_counter() - started, 2),
        })  # fmt: skip


def error_event(error: PipelineError) -> dict[str, str]:
    """A user error as the page shows it: its one line, beside the control it is about ('' when none)."""
    return {
        "type": "error",
        "message": f"error: {error}",
        "control": control(error.key) if isinstance(error, ConfigError) else "",
    }
