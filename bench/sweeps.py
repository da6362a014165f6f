"""A 24-job XOR grid (4 widths x 3 learning rates x 2 seeds, tracked) run sequentially in one process, with
joblib on 2 workers and on a local 2-CPU Ray cluster; per-job overhead beyond training. Three job sizes: 1000
epochs of the compiled engine (under a second of training), 200 epochs of Keras's model.fit (~5 s, the tutorials' loop),
and 1000 seeds per job in one graph (trainer.replicates, ~2.5 s: a convergence distribution per grid cell).

Run: python3 tools/uv.py run python bench/sweeps.py   (writes bench/sweeps.md; about 45 minutes on 2 cores)
     python3 tools/uv.py run python bench/sweeps.py "compiled, 1000 epochs"   (those job sizes only; the
     other rows are kept from the committed table, with their date)
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import write_table  # noqa: E402

GRID = ["model.hidden.0.units=4,8,16,32", "optimizer.learning_rate=0.001,0.01,0.1"]  # x 2 seeds
ONE = ["model.hidden.0.units=4", "optimizer.learning_rate=0.001", "trainer.seed=0"]
JOBS = {  # label: (the job's overrides, its two seeds)
    "compiled, 1000 epochs": (["trainer.engine=compiled", "trainer.epochs=1000"], "0,1"),
    "model.fit, 200 epochs": (["trainer.engine=fit", "trainer.epochs=200"], "0,1"),
    "compiled, 1000 epochs, 1000 replicates": (["trainer.engine=compiled", "trainer.replicates=1000"], "0,1000"),
}
REPEATS = 2  # each sweep runs this many times and the fastest counts: this machine's noise only adds time
RAY_PORT = 6391
LAUNCHERS = {  # label: (launcher overrides, workers)
    "basic (sequential, one process)": ([], 1),
    "joblib, 2 workers": (["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"], 2),
    "ray, local cluster of 2 CPUs": (["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{RAY_PORT}"], 2),
}


def sweep(launcher: list[str], grid: list[str]) -> tuple[float, list[float]]:
    """Wall seconds of the whole multirun command, in a new folder with XOR generated, and each job's training seconds."""
    root = Path(tempfile.mkdtemp())
    try:
        subprocess.run(
            [sys.executable, "-m", "pipeline.stages.generate", "dataset=xor", "paths.root=."],
            cwd=root,
            check=True,
            capture_output=True,
        )
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pipeline.stages.train",
                "-m",
                *launcher,
                "experiment=xor_relu16",
                *grid,
                "evaluate_multirun_jobs=false",
                f"paths.root={root}",
                f"hydra.sweep.dir={root}/multirun",
            ],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - start
        return wall, [json.loads(p.read_text())["train_seconds"] for p in (root / "multirun").rglob("timing.json")]
    finally:
        shutil.rmtree(root)


def ray(*args: str) -> None:
    """Run the `ray` command of this environment."""
    subprocess.run([str(Path(sys.executable).parent / "ray"), *args], check=True, capture_output=True)


def measure(label: str, launcher: list[str], workers: int, job: list[str], seeds: str) -> tuple[float, list[str]]:
    """The 24-job and the 1-job sweep with `launcher`, each the faster of REPEATS runs; (24-job wall, table row)."""
    one_wall, one_train = min(sweep(launcher, job + ONE) for _ in range(REPEATS))
    wall, trains = min(sweep(launcher, job + GRID + [f"trainer.seed={seeds}"]) for _ in range(REPEATS))
    extra = len(trains) - 1
    per_job = (wall - one_wall) / extra
    # Seconds each extra job held a worker without training: the extra wall on every worker, less the extra training.
    overhead = (workers * (wall - one_wall) - (sum(trains) - one_train[0])) / extra
    print(
        label, f"wall {one_wall:.2f} -> {wall:.2f}, training {one_train[0]:.3f} -> mean {statistics.mean(trains):.3f}", flush=True
    )
    return wall, [
        label,
        str(len(trains)),
        f"{wall:.1f}",
        f"{one_wall:.1f}",
        f"{statistics.mean(trains):.3f}",
        f"{per_job:.3f}",
        f"{overhead:.3f}",
    ]


def main(selected: list[str]) -> None:
    ray(
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={RAY_PORT}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    )
    rows = []
    try:
        for job_label, (job, seeds) in JOBS.items():
            if selected and job_label not in selected:
                rows += kept_rows(job_label)
                continue
            results = [
                measure(f"{job_label}: {label}", launcher, workers, job, seeds)
                for label, (launcher, workers) in LAUNCHERS.items()
            ]
            sequential = results[0][0]
            rows += [row + [f"{sequential / wall:.2f}x"] for wall, row in results]
    finally:
        ray("stop", "--force")
    print(json.dumps(rows), flush=True)
    write(rows)


def kept_rows(job_label: str) -> list[list[str]]:
    """The committed table's rows for `job_label`, labelled with that table's date."""
    text = (Path(__file__).resolve().parent / "sweeps.md").read_text()
    date = text.split("Machine: ", 1)[1].split("\n", 1)[0].rsplit("; ", 1)[1]
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith(f"| {job_label}: ")]
    return [[f"{row[0]} (not rerun: {date})", *row[1:]] for row in rows]


def write(rows: list[list[str]]) -> None:
    """Write bench/sweeps.md from the measured rows (printed as JSON by `main`, so the notes can be edited apart)."""
    write_table(
        "sweeps",
        "Sweeps: 24-job XOR grid (xor_relu16; 4 widths x 3 learning rates x 2 seeds; SQLite tracking)",
        [
            "jobs: launcher",
            "jobs",
            "24-job sweep (s)",
            "1-job sweep (s)",
            "mean training (s)",
            "wall per extra job (s)",
            "overhead per job beyond training (worker-s)",
            "speed-up vs sequential",
        ],
        rows,
        notes="""Each sweep is the whole `python -m pipeline.stages.train -m ...` command, with MLflow tracking (parent and child
runs in the SQLite store; the Ray workers are on this machine, so they share it) and without per-job
evaluation pictures. Wall per extra job = (24-job wall - 1-job wall) / 23, so process start-up and imports
are not counted. Overhead per job beyond training = (workers x (24-job wall - 1-job wall) - (training of the
24 jobs - training of the 1 job)) / 23: the seconds each extra job held a worker without training (model
build, outputs, tracking, Hydra's job setup, for parallel launchers also dispatch and idle workers). The Ray
cluster is started beforehand (`ray start --head`, not timed); the sweep joins it by address. Training
includes Keras's and autograph's tracing of each job's new model (most of a 1000-epoch compiled job's 0.8 s).

Each sweep runs twice and the faster run counts (this machine's noise only adds time). A job of a
sequential sweep does not wait for its tracking helper to log its run (per-epoch history, model): the
next job trains meanwhile and the sweep's end waits for the last. The sweeper is Hydra's own basic
sweeper, with the launchers as their plugins ship them: Hydra composes each job's config twice (when it
validates the grid, then at launch), and joblib's workers start when the first jobs arrive. (The table
of 2026-11-24 had a grid sweeper built on Hydra's private classes, composing once per choice of configs,
and a callback that started joblib's workers with the sweep through the launcher's private module; both
went for public APIs only.) A process imports Keras and TensorFlow with the cycle collector off, then freezes
the objects alive at that point (`pipeline.import_keras`), so that the collector does not walk
TensorFlow's ~400k objects in every full collection.

Parallel jobs get their share of the cores for TensorFlow's thread pools (`sweeps.ThreadsPerJob`: 1 thread
each for 2 joblib workers or Ray tasks of 1 CPU on 2 cores; same numbers, tested).

Why 2 workers do not reach 2x on these 2 cores: a `model.fit` job trained 12% slower on 2 joblib workers
than alone in a sequential sweep (12.10 s against 10.79 s; Ray tasks 12.56 s), so a perfect split would
read about 1.78x. Two `model.fit` processes at once leave 10-18% of the 2 cores idle: Keras feeds numpy
inputs through a tf.data pipeline whose threads hand each batch over (62 ms wall against 50 ms CPU per
epoch; one process pinned to one core alone: 68 ms); TensorFlow's thread settings make no difference. For
many seeds of one tiny net, `trainer.replicates` in one process beats any launcher (`bench/replicates.md`);
a 1000-replicate job's overhead is mostly its own work: Keras's seeded initializers called once per copy
and weight (so copy r starts where a standalone run with seed seed+r does) and the convergence picture.

Against the previous table (2026-11-24, an AMD EPYC host where a `model.fit` job trained in 10.8 s
against 13.0 s here): the sequential overhead per job beyond training went from 0.28 to 0.59 s (compiled)
and from 0.37 to 0.64 s (`model.fit`), above the 0.5 s goal. Most of it is the second composition of
every job's config (about 0.15-0.2 s each on 2 cores, measured with cProfile over a 12-job sweep), which
Hydra's basic sweeper does by design and which only a sweeper of our own, or Hydra's private classes,
could avoid; the rest is this host. joblib's overhead per job went from 0.39 to 1.82 worker-s on
`model.fit` (1.64x -> 1.42x) and from 0.95 to 1.36 on compiled jobs, without the warm start. The Ray
`model.fit` row (1.00x) is this host: two tracked `model.fit` jobs at once trained 1.8x slower than one,
and the code before this change, run the same way here (6 jobs of 100 epochs on 2 Ray workers), trained
its jobs in 11.9-19.0 s against 10.2-11.6 s with tracking off.""",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
