"""Times 1000 seeds of xor_relu16 (1000 epochs each): one replicated run vs sequential compiled and fit runs.

Run: python3 tools/uv.py run python bench/replicates.py   (writes bench/replicates.md)
"""

from __future__ import annotations

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
from pipeline.stages.train import fit_replicates  # noqa: E402
from pipeline.stages.train import fit_model  # noqa: E402

COPIES = 1000


def config(root: Path, *overrides: str) -> dict:
    return OmegaConf.to_container(
        compose_config(
            [f"paths.root={root}", "experiment=xor_relu16", "tracking.enabled=false", "trainer.snapshots=0", *overrides]
        ),
        resolve=True,
    )


def sequential(cfg: dict, dataset, runs: int) -> tuple[float, float]:
    """Seconds for `runs` standalone runs (seeds 0..runs-1), and of those the first run's."""
    walls = []
    for seed in range(runs):
        start = time.perf_counter()
        fit_model(cfg | {"trainer": cfg["trainer"] | {"seed": seed}}, dataset)
        walls.append(time.perf_counter() - start)
    return sum(walls), walls[0]


def main() -> None:
    root = Path(tempfile.mkdtemp())
    cfg = config(root, f"trainer.replicates={COPIES}")
    generate(cfg["dataset"], cfg["paths"]["data"])
    dataset = data.load(data.csv_path(cfg))
    rows = []
    for attempt in ("first in process", "second"):
        start = time.perf_counter()
        replicates = fit_replicates(cfg, dataset)
        wall = time.perf_counter() - start
        rows.append(
            [
                f"replicated, {COPIES} copies ({attempt})",
                str(COPIES),
                f"{wall:.2f}",
                f"{replicates.seconds:.2f}",
                f"{wall:.2f}",
                f"{(replicates.columns['accuracy'][-1] >= 1).mean():.1%}",
            ]
        )
    for engine, runs in (("compiled", 10), ("fit", 3)):
        total, first = sequential(config(root, f"trainer.engine={engine}"), dataset, runs)
        rows.append(
            [f"{engine}, {runs} sequential runs", str(runs), f"{total:.2f}", f"{total:.2f}", f"{total / runs * COPIES:.0f}", "-"]
        )
    base = float(rows[1][4])
    for row in rows:
        row.append(f"{float(row[4]) / base:.0f}x" if row is not rows[1] else "1x")
    write_table(
        "replicates",
        f"{COPIES} seeds of xor_relu16, 1000 epochs each",
        [
            "how",
            "seeds run",
            "wall (s)",
            "training loop (s)",
            f"wall scaled to {COPIES} seeds (s)",
            "copies at 100% after 1000 epochs",
            "cost vs replicated",
        ],
        rows,
        notes=f"""One process, imports excluded. `wall` covers building the weights of every seed (the same Keras
initializer calls a standalone run makes), graph tracing and all epochs; `training loop` is the part
`train_seconds` reports (the epochs, tracing included). Sequential rows run seeds 0..N-1 one after the
other and are scaled linearly to {COPIES} seeds. The replicated copies' per-epoch losses equal the
standalone `compiled` runs' bit for bit (tests/test_replicates.py).
Reproduce: `python3 tools/uv.py run python bench/replicates.py` from {ROOT.name}/.""",
    )


if __name__ == "__main__":
    main()
