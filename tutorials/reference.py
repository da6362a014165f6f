"""DVC stage `tutorial_reference`: the make_circles tutorial's own code, epoch 1, for seeds 0..N-1.

The claims report compares the compiled engine's epoch-1 accuracies (its own shuffle) with these
(Keras's `model.fit` shuffle) by a two-sample KS test. ~1 s a seed, so N processes share the seeds.
Usage: python tutorials/reference.py [seeds] [out.csv]
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def epoch_one(seeds: list[int]) -> list[tuple[int, float, float]]:
    """(seed, accuracy, loss) after the tutorial's first epoch."""
    import warnings

    warnings.filterwarnings("ignore", message="Do not pass an `input_shape`")
    import keras_circles  # this folder is sys.path[0]

    rows = []
    for seed in seeds:
        history = keras_circles.run(seed, epochs=1)["history"]
        rows.append((seed, history["accuracy"][0], history["loss"][0]))
    return rows


def main() -> None:
    import pandas as pd

    seeds = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "reports/tutorial_circles.csv")
    workers = max(1, min(len(os.sched_getaffinity(0)), 8))
    parts = [list(range(seeds))[i::workers] for i in range(workers)]
    with ProcessPoolExecutor(workers) as pool:
        rows = sorted(row for part in pool.map(epoch_one, parts) for row in part)
    table = pd.DataFrame(rows, columns=["seed", "accuracy_epoch_1", "loss_epoch_1"])
    tmp = out.with_name(f".{out.name}.tmp")  # whole or absent; not pipeline.files, so that no change there reruns this
    table.to_csv(tmp, index=False, float_format="%.9g", lineterminator="\n")
    os.replace(tmp, out)
    print(f"wrote {out}: epoch-1 accuracy median {table['accuracy_epoch_1'].median():.3f} over {seeds} seeds")


if __name__ == "__main__":
    main()
