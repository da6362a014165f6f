"""Times xor_relu16 (1000 full-batch epochs, imports excluded) with fit, compiled and the numpy backprop.

Run: python3 tools/uv.py run python bench/engines.py   (writes bench/engines.md)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, write_table  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from pipeline.config.overrides import compose_config  # noqa: E402
from pipeline.core import data  # noqa: E402
from pipeline.stages.generate import generate  # noqa: E402
from pipeline.stages.train import fit_model  # noqa: E402

# The numpy engine knows plain gradient descent only: same net and data, SGD instead of Adam.
VARIANTS = {
    "fit": ["trainer.engine=fit"],
    "compiled": ["trainer.engine=compiled"],
    "compiled, no snapshots": ["trainer.engine=compiled", "trainer.snapshots=0"],
    "numpy": ["trainer.engine=numpy", "optimizer=sgd", "optimizer.learning_rate=0.5"],
}
REPEATS = {"fit": 1, "compiled": 5, "compiled, no snapshots": 5, "numpy": 5}


def main() -> None:
    root = Path(tempfile.mkdtemp())
    rows, medians = [], {}
    for engine, overrides in VARIANTS.items():
        cfg = OmegaConf.to_container(
            compose_config([f"paths.root={root}", "experiment=xor_relu16", "tracking.enabled=false", *overrides]),
            resolve=True,
        )
        generate(cfg["dataset"], cfg["paths"]["data"])
        dataset = data.load(data.csv_path(cfg))
        walls, accuracy = [], None
        for _ in range(REPEATS[engine]):
            start = time.perf_counter()
            _, history = fit_model(cfg, dataset)
            walls.append(time.perf_counter() - start)
            accuracy = history.columns["accuracy"][-1]
        medians[engine] = statistics.median(walls)
        rows.append(
            [engine, str(len(walls)), f"{walls[0]:.3f}", f"{medians[engine]:.3f}", f"{medians[engine]:.3f}", f"{accuracy:.2f}"]
        )  # s per 1000 epochs = ms per epoch
    for row in rows:
        row.append(f"{medians['fit'] / medians[row[0]]:.0f}x")
    write_table(
        "engines",
        "Training engines: xor_relu16, 1000 epochs",
        ["engine", "runs", "first run (s)", "median (s)", "ms / epoch", "final train accuracy", "speed-up vs fit"],
        rows,
        notes=f"""Each time covers building the model from its seed and all 1000 epochs (graph tracing included
for `compiled`), in one process after the imports. `numpy` trains the same 2-16-1 net by hand-written
backprop with plain gradient descent (lr 0.5), since it has no Adam. `compiled` keeps weight snapshots at
about 30 log-spaced epochs (for the boundary-evolution GIF); the `no snapshots` row shows what they cost.
Reproduce: `python3 tools/uv.py run python bench/engines.py` from {ROOT.name}/.""",
    )


if __name__ == "__main__":
    main()
