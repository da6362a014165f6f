"""Times a whole 1000-epoch xor_relu16 run (train(), outputs included) with and without MLflow tracking.

Run: python3 tools/uv.py run python bench/tracking_overhead.py   (writes bench/tracking_overhead.md)
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_table  # noqa: E402

from pipeline.cli import compose_config  # noqa: E402
from pipeline.generate import generate  # noqa: E402
from pipeline.train import train  # noqa: E402

REPEATS = 5
COMMAND_REPEATS = 10


def timed_runs(root: Path, tracking: bool) -> list[float]:
    cfg = compose_config([f"paths.root={root}", "experiment=xor_relu16", f"tracking.enabled={str(tracking).lower()}"])
    generate(dict(cfg.dataset), cfg.paths.data)
    walls = []
    for i in range(REPEATS + 1):  # the first run warms up imports and the store; not counted
        start = time.perf_counter()
        train(cfg, out=root / f"out{i}")
        walls.append(time.perf_counter() - start)
    return walls[1:]


def timed_commands(root: Path) -> tuple[list[float], list[float]]:
    """Wall times of the whole `python -m pipeline.train experiment=xor_relu16` command, as a user runs it,
    without and with tracking, alternating so that both see the same machine."""
    walls: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(COMMAND_REPEATS):
        for tracking in (False, True):
            start = time.perf_counter()
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pipeline.train",
                    "experiment=xor_relu16",
                    f"paths.root={root}",
                    f"tracking.enabled={str(tracking).lower()}",
                ],
                check=True,
                capture_output=True,
            )
            walls[tracking].append(time.perf_counter() - start)
    return walls[False], walls[True]


def row(label: str, walls: list[float], base: float | None) -> list[str]:
    median = statistics.median(walls)
    overhead = "-" if base is None else f"{median - base:+.3f} s ({100 * (median - base) / base:+.1f}%)"
    return [label, str(len(walls)), f"{median:.3f}", f"{min(walls):.3f}", f"{max(walls):.3f}", overhead]


def main() -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    root = Path(tempfile.mkdtemp())
    off, on = timed_runs(root / "off", False), timed_runs(root / "on", True)
    cli_off, cli_on = timed_commands(root / "on")
    write_table(
        "tracking_overhead",
        "MLflow tracking overhead: xor_relu16, 1000 epochs, SQLite store",
        ["what is timed", "runs", "median (s)", "min (s)", "max (s)", "tracking overhead"],
        [
            row("whole command, tracking off", cli_off, None),
            row("whole command, tracking on", cli_on, statistics.median(cli_off)),
            row("train() in process, tracking off", off, None),
            row("train() in process, tracking on", on, statistics.median(off)),
        ],
        notes="""Whole command: `python -m pipeline.train experiment=xor_relu16` from start to exit, imports
included, tracking off and on alternately. With tracking, the helper process (`tracking_process.py`)
starts first and imports MLflow and opens the SQLite store on the second core while the trainer imports
TensorFlow and trains; once the run is open it imports Keras too, then logs the `.keras` file the trainer
saved through MLflow's Keras flavour (public APIs only), and the trainer waits for the last calls: the
1000-step histories of loss and accuracy (log_batch, 1000 per call), final metrics, model (Keras flavour
with signature and input example), dataset input and result files, then the run's end.
`train()` in process: checks, data loading, model build, 1000 compiled epochs (~0.3 s), output files,
and with tracking those same calls, waited for; imports and a first warm-up run are excluded, so
nothing hides the calls' own cost there.

Against the goal of +10%: the previous table (2026-11-23, AMD EPYC host) read +0.341 s (+6.3%) on the
whole command, when the helper wrote the Keras flavour's folder itself around the `.keras` file, never
importing Keras, through MLflow's private `_save_example`, `_process_pip_requirements` and `_PythonEnv`.
Public APIs only, the helper must import Keras (`mlflow.keras.save_model` imports it and saves the model
object): about 4-5 s of CPU that overlap TensorFlow's import in the trainer only in part, hence +3.1 s
(+45%) here. The in-process row is the cost per run once both imports are done (a sweep's later jobs).
An alternative, estimated from its measured parts: the trainer saving the model folder itself with
`mlflow.keras.save_model` would cost its process MLflow's import (1.0 s) and the save (0.5 s), about
+1.5 s, and the helper would have to merge that folder's MLmodel into the logged model's by hand. Meeting +10% would take a
public MLflow call that writes a Keras model folder from a saved `.keras` file without Keras, which
MLflow does not have.""",
    )


if __name__ == "__main__":
    main()
