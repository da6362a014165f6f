"""What MLflow tracking adds to a user's commands: one xor_relu16 training, and a 4-job joblib sweep on 2 workers.

Run: python3 tools/uv.py run python bench/tracking_overhead.py   (writes bench/tracking_overhead.md)
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_table  # noqa: E402

COMMAND_REPEATS = 8
SWEEP_REPEATS = 3
TRAIN = [sys.executable, "-m", "pipeline.stages.train", "experiment=xor_relu16"]
SWEEP = [sys.executable, "-m", "pipeline.stages.train", "-m", "experiment=xor_relu16", "hydra/launcher=joblib"]
SWEEP += ["hydra.launcher.n_jobs=2", "trainer.seed=0,1,2,3", "evaluate_multirun_jobs=false"]


def timed(command: list[str], root: Path) -> tuple[float, float]:
    """Wall and CPU seconds (user + system, its processes included) of `command` run in `root`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([*command, "paths.root=."], cwd=root, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def alternated(command: list[str], root: Path, repeats: int) -> dict[bool, list[tuple[float, float]]]:
    """`command` with tracking off and on, one after the other `repeats` times, so both see the same machine."""
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for _ in range(repeats):
        for tracking in (False, True):
            times[tracking].append(timed([*command, f"tracking.enabled={str(tracking).lower()}"], root))
    return times


def rows(label: str, times: dict[bool, list[tuple[float, float]]]) -> list[list[str]]:
    wall = {t: statistics.median(w for w, _ in times[t]) for t in times}
    cpu = {t: statistics.median(c for _, c in times[t]) for t in times}
    on = [f"{wall[True]:.2f}", f"{cpu[True]:.2f}", f"{100 * (wall[True] / wall[False] - 1):+.1f}%"]
    on.append(f"{100 * (cpu[True] / cpu[False] - 1):+.1f}%")
    return [
        [f"{label}, tracking off", str(len(times[False])), f"{wall[False]:.2f}", f"{cpu[False]:.2f}", "-", "-"],
        [f"{label}, tracking on", str(len(times[True])), *on],
    ]


def main() -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = Path(tempfile.mkdtemp())
    subprocess.run([sys.executable, "-m", "pipeline.stages.generate", "dataset=xor", "paths.root=."], cwd=root, check=True)
    timed([*TRAIN, "tracking.enabled=true"], root)  # creates the store: every timed run finds it there
    command, sweep = alternated(TRAIN, root, COMMAND_REPEATS), alternated(SWEEP, root, SWEEP_REPEATS)
    write_table(
        "tracking_overhead",
        "MLflow tracking overhead: whole commands, SQLite store, tracking off and on alternated",
        ["command", "runs", "median wall (s)", "median CPU (s)", "wall overhead", "CPU overhead"],
        rows("`pipeline.stages.train experiment=xor_relu16`", command) + rows("4-job joblib sweep, 2 workers", sweep),
        notes="""CPU is user + system time of the command and every process it waited for (joblib's workers,
the watchdogs), from `getrusage(RUSAGE_CHILDREN)`. The store exists before the first timed run, as it
does after a user's first run. The sweep: `-m hydra/launcher=joblib hydra.launcher.n_jobs=2
trainer.seed=0,1,2,3 evaluate_multirun_jobs=false`, a parent run and 4 child runs.

A tracked run, in the training process itself: the MLflow import, the SQLite store's first open
(SQLAlchemy and MLflow's table classes), the run with the config as params, then after training the
1000-epoch histories (one log_batch), the dataset, the model (`Model.log` with a flavour object that
copies the saved `.keras` file: Keras is not saved again), final metrics, result files, the run's end.
A watchdog process per run (`python -m pipeline.tracking.watchdog`, ~0.03 s of CPU) ends the run
KILLED if the trainer is killed; it imports MLflow only then.

Where the overhead goes (measured in the trainer after TensorFlow's import, 2026-12-03): importing
MLflow ~0.5 s and opening the SQLite store ~0.6 s of CPU, then ~0.3 s of logging; a thread cannot overlap
them with TensorFlow's import (both hold the interpreter: 4.0 s together against 3.5 s one after the other),
and a second process, as the former tracking helper, adds its own interpreter and imports (~0.4 s more CPU).
A sweep's workers import MLflow once each, so its share shrinks with the number of jobs.""",
    )


if __name__ == "__main__":
    main()
