"""Times circles_tanh4 (2 epochs, batch 32) on make_circles files of 1e3 to 1e6 points, engine by engine.

Each (engine, size) runs in its own process, so its peak memory is its own. Beside the engines runs the
reference: a plain tf.function loop (a shuffled permutation per epoch, batches gathered from it, Keras's
loss and optimizer), what the compiled engine must stay close to.

Run: python3 tools/uv.py run python bench/scaling.py   (writes bench/scaling.md; about 10 minutes)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_table  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)
EPOCHS = 2
VARIANTS = {  # name -> (overrides, copies)
    "fit": (["trainer.engine=fit"], 1),
    "fit, 1 inter-op thread": (["trainer.engine=fit"], 1),
    "compiled": (["trainer.engine=compiled"], 1),
    "reference loop": (["trainer.engine=compiled"], 1),
    "numpy": (["trainer.engine=numpy"], 1),
    "compiled x10": (["trainer.engine=compiled", "trainer.replicates=10"], 10),
    "numpy x10": (["trainer.engine=numpy", "trainer.replicates=10"], 10),
}


def config(root: Path, n: int, overrides: list[str]) -> dict:
    from omegaconf import OmegaConf

    from pipeline.config.overrides import compose_config

    return OmegaConf.to_container(
        compose_config(
            [
                f"paths.root={root}",
                "experiment=circles_tanh4",
                f"dataset.n_samples={n}",
                "dataset.test_fraction=0",  # n training points; per-epoch test metrics are not what is timed
                f"trainer.epochs={EPOCHS}",
                "trainer.snapshots=0",
                "tracking.enabled=false",
                *overrides,
            ]
        ),
        resolve=True,
    )


def reference_loop(cfg: dict, dataset) -> float:
    """Seconds for EPOCHS epochs of the plain tf.function loop, tracing included."""
    import tensorflow as tf

    from pipeline.core import keras_mlp as models

    model = models.seeded_model(cfg["model"], dataset.n_features, cfg["trainer"]["seed"])
    loss_fn, optimizer = models.make_loss(cfg["loss"]), models.make_optimizer(cfg["optimizer"])
    x, y = tf.constant(dataset.x_train), tf.constant(dataset.y_train)
    n, batch = len(dataset.x_train), cfg["trainer"]["batch_size"]
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function
    def epoch(seed: tf.Tensor) -> tf.Tensor:
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack([0, seed])))
        loss = tf.constant(0.0)
        for step in tf.range(-(-n // batch)):
            index = order[step * batch : (step + 1) * batch]
            with tf.GradientTape() as tape:
                loss = loss_fn(tf.gather(y, index), model(tf.gather(x, index), training=True))
            optimizer.apply(tape.gradient(loss, variables), variables)
        return loss

    start = time.perf_counter()
    for e in range(EPOCHS):
        epoch(tf.constant(e + 1)).numpy()
    return time.perf_counter() - start


def one(name: str, n: int, root: Path) -> dict:
    """Train variant `name` on the n-point file under `root`; its seconds and memory growth."""
    from pipeline import import_keras
    from pipeline.core import data, engines
    from pipeline.stages.train import fit_replicates
    from pipeline.stages.train import fit_model

    overrides, copies = VARIANTS[name]
    cfg = config(root, n, overrides)
    dataset = data.load(data.csv_path(cfg))
    import_keras()
    engines.engine(cfg["trainer"]["engine"])  # imported before the baseline: memory counts training only
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if name == "reference loop":
        from pipeline.core.engines.compiled import one_op_at_a_time

        one_op_at_a_time()  # the thread pools the compiled engine runs with
        seconds = reference_loop(cfg, dataset)
    elif copies > 1:
        seconds = fit_replicates(cfg, dataset).seconds
    else:
        seconds = fit_model(cfg, dataset)[1].seconds
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"seconds": seconds, "growth_mb": (peak - before) / 1024, "data_mb": dataset.x_train.nbytes * 1.5 / 2**20}


def main() -> None:
    from pipeline.core import data

    root = Path(tempfile.mkdtemp())
    results: dict[tuple[str, int], dict] = {}
    for n in SIZES:
        cfg = config(root, n, [])
        data.write(cfg["dataset"], cfg["paths"]["data"])
        for name in VARIANTS:
            env = os.environ | ({"TF_NUM_INTEROP_THREADS": "1"} if "1 inter-op" in name else {})
            out = subprocess.run(
                [sys.executable, __file__, "--one", name, str(n), str(root)], capture_output=True, text=True, check=True, env=env
            )
            results[name, n] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, n, results[name, n], flush=True)
    rows = []
    for name in VARIANTS:
        for i, n in enumerate(SIZES):
            r = results[name, n]
            per_sample = 1e6 * r["seconds"] / (EPOCHS * n)
            marginal = ""
            if i:
                previous = results[name, SIZES[i - 1]]["seconds"]
                marginal = f"{1e6 * (r['seconds'] - previous) / (EPOCHS * (n - SIZES[i - 1])):.2f}"
            versus_fit = results["fit", n]["seconds"] / r["seconds"]
            versus_reference = r["seconds"] / results["reference loop", n]["seconds"]
            rows.append(
                [
                    name,
                    f"{n:.0e}",
                    f"{r['seconds']:.2f}",
                    f"{per_sample:.2f}",
                    marginal,
                    f"{versus_fit:.1f}x",
                    f"{versus_reference:.2f}",
                    f"{r['growth_mb']:.0f}",
                    f"{r['data_mb']:.1f}",
                ]
            )
    write_table(
        "scaling",
        f"Scaling: circles_tanh4, {EPOCHS} epochs, batch 32, n training points",
        [
            "engine",
            "n",
            "train (s)",
            "µs / sample",
            "marginal µs / sample",
            "speed-up vs fit",
            "time / reference loop",
            "peak memory growth (MB)",
            "data (MB)",
        ],
        rows,
        notes=f"""`fit` runs as plain Keras does, with TensorFlow's default thread pools; the compiled engine (single
runs) and the reference loop run their ops on one inter-op thread (`engines.compiled.one_op_at_a_time`),
and `fit, 1 inter-op thread` shows `fit` with that setting too.
`train (s)`: the engine's own training seconds (graph tracing included; imports, data loading and
model building excluded), for all {EPOCHS} epochs. `µs / sample` = train / ({EPOCHS} x n); x10 rows train 10
copies, so theirs is per point for all ten. `marginal µs / sample`: the added time per added sample from
the row above, the cost that must stay flat for cost to be linear in n (the first rows carry fixed costs:
tracing, about a second). `peak memory growth`: peak RSS while training minus peak RSS before it, in a
fresh process per row; `data`: the training arrays (float32 x and y). Reproduce: `python3 tools/uv.py
run python bench/scaling.py` from {ROOT.name}/.""",
    )


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(one(sys.argv[2], int(sys.argv[3]), Path(sys.argv[4]))))
    else:
        main()
