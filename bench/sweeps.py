"""A 24-job XOR grid (4 widths x 3 learning rates x 2 seeds, 1000 epochs, tracked) run sequentially
in one process and with joblib on 2 workers; per-job overhead beyond training.

Run: python3 tools/uv.py run python bench/sweeps.py   (writes bench/sweeps.md)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_table  # noqa: E402

GRID = ["model.hidden.0.units=4,8,16,32", "optimizer.learning_rate=0.001,0.01,0.1", "trainer.seed=0,1"]
ONE = ["model.hidden.0.units=4", "optimizer.learning_rate=0.001", "trainer.seed=0"]
LAUNCHERS = {"basic (sequential, one process)": [], "joblib, 2 workers": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]}


def sweep(root: Path, launcher: list[str], grid: list[str]) -> tuple[float, list[float]]:
    """Wall seconds of the whole multirun command and each job's training seconds."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.train", "-m", *launcher, "experiment=xor_relu16", *grid,
                    "evaluate_multirun_jobs=false", "paths.root=."], cwd=root, env=env, check=True,
                   capture_output=True)
    wall = time.perf_counter() - start
    trains = [json.loads(p.read_text())["train_seconds"] for p in (root / "multirun").rglob("timing.json")]
    return wall, trains


def main() -> None:
    rows, walls = [], {}
    for label, launcher in LAUNCHERS.items():
        base = Path(tempfile.mkdtemp())
        for name in ("one", "grid"):
            (base / name).mkdir()
            subprocess.run([sys.executable, "-m", "pipeline.generate", "dataset=xor", "paths.root=."],
                           cwd=base / name, check=True, capture_output=True)
        one_wall, _ = sweep(base / "one", launcher, ONE)
        wall, trains = sweep(base / "grid", launcher, GRID)
        walls[label] = wall
        per_job = (wall - one_wall) / (len(trains) - 1)
        rows.append([label, str(len(trains)), f"{wall:.1f}", f"{one_wall:.1f}", f"{statistics.mean(trains):.3f}",
                     f"{per_job:.3f}", f"{per_job - statistics.mean(trains):.3f}"])
    sequential = walls["basic (sequential, one process)"]
    for row in rows:
        row.append(f"{sequential / walls[row[0]]:.2f}x")
    write_table(
        "sweeps", "Sweeps: 24-job XOR grid (xor_relu16, 1000 epochs, SQLite tracking)",
        ["launcher", "jobs", "24-job sweep (s)", "1-job sweep (s)", "mean training (s)", "wall per extra job (s)",
         "overhead per job beyond training (s)", "speed-up vs sequential"],
        rows,
        notes="""Each sweep is the whole `python -m pipeline.train -m ...` command, with MLflow tracking (parent and child
runs) and without per-job evaluation pictures. Wall per extra job = (24-job wall - 1-job wall) / 23, so
process start-up and imports are not counted; overhead beyond training = that minus the mean training
seconds (model build, outputs, tracking, Hydra's job setup; for joblib the wall is shared by 2 workers).
The Ray launcher (hydra-ray-launcher) is not set up yet, so it has no row.""",
    )


if __name__ == "__main__":
    main()
