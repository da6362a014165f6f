"""What the page draws of a try: P(class 1) over the plane and each hidden unit's map, from the weights of a chunk."""

from __future__ import annotations

import base64
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.core import data

if TYPE_CHECKING:
    from pipeline.playground.state import Try


class Frames:
    """A try's frames: P(class 1) over the plane and each hidden unit's activation, from the weights of a chunk."""

    def __init__(self, plain: dict[str, Any], dataset: data.Dataset, resolution: int = 48) -> None:
        import keras

        from pipeline.core import keras_mlp, plots

        grid = plots.Grid.spanning(np.vstack([dataset.x_train, dataset.x_test]), [0, 1], resolution)  # as the PNGs'
        self.extent = [float(v) for v in (grid.xx.min(), grid.xx.max(), grid.yy.min(), grid.yy.max())]
        self.grid = grid.points.reshape(resolution, resolution, 2)[::-1].reshape(-1, 2)  # row 0 at the top, as drawn
        model = keras_mlp.build(plain["model"], 2)
        dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
        self.probe = keras.Model(model.inputs, [layer.output for layer in dense])  # every layer's activations
        self.from_logits = bool(plain["loss"].get("from_logits"))
        self.resolution = resolution

    def frame(self, epoch: int, columns: Mapping[str, np.ndarray], parameters: list[np.ndarray]) -> dict[str, Any]:
        """The event the page draws: epoch, this chunk's per-epoch metrics, the boundary and unit maps as bytes."""
        self.probe.set_weights([p[0] for p in parameters])
        *hidden, output = (np.asarray(a) for a in self.probe([self.grid]))
        probability = 1 / (1 + np.exp(-output[:, 0])) if self.from_logits else output[:, 0]
        units = np.concatenate(hidden, axis=1)  # each unit's activation, scaled to [-1, 1] by its largest magnitude
        n = self.resolution
        units = units.reshape(n, n, -1)[::2, ::2].reshape(-1, units.shape[1])  # half the resolution: 16 units in 12 KB
        units = units / np.maximum(np.abs(units).max(axis=0), 1e-9)
        return {
            "epoch": epoch,
            "columns": {name: [float(v) for v in values[:, 0]] for name, values in columns.items() if name != "diverged"},
            "boundary": encode(probability),
            "units": [encode((units[:, j] + 1) / 2) for j in range(units.shape[1])],
        }


def encode(values: np.ndarray) -> str:
    """Values in [0, 1] as base64 bytes 0-255 (a 48x48 map is 3 KB)."""
    return base64.b64encode(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8).tobytes()).decode()


def start_event(chosen: Try, frames: Frames) -> dict[str, Any]:
    """What the page needs before the first frame: the points, the plane's extent, the units, the command."""
    d = chosen.dataset
    points = [[*map(float, x), int(y[0]), split] for xs, ys, split in ((d.x_train, d.y_train, 0), (d.x_test, d.y_test, 1))
              if split == 0 or d.has_test for x, y in zip(xs, ys)]  # fmt: skip
    units = [spec["units"] for spec in chosen.plain["model"]["hidden"]]
    return {
        "type": "start",
        "points": points,
        "extent": frames.extent,
        "resolution": frames.resolution,
        "unit_resolution": len(range(0, frames.resolution, 2)),
        "units": units,
        "epochs": chosen.plain["trainer"]["epochs"],
        "has_test": d.has_test,
        "command": chosen.command,
        "query": chosen.query,
    }


PICTURES = threading.Lock()  # Matplotlib's pyplot draws one figure at a time


def log_boundary(busy: Callable[[], bool], chosen: Try, model: Any, run_id: str) -> None:
    """Add the decision boundary of the try's model to its run, drawn as `pipeline-evaluate` draws it, once no try
    trains: its 0.3 s would otherwise delay the first frame of a try started right after this one."""
    from pipeline.core import plots
    from pipeline.tracking import runs

    time.sleep(0.2)
    while busy():
        time.sleep(0.1)
    with PICTURES, tempfile.TemporaryDirectory() as folder:
        picture = Path(folder) / "decision_boundary.png"
        plots.decision_boundary(model.probabilities, chosen.dataset, f"playground: {chosen.plain['name']}", picture)
        runs.log_pictures(chosen.plain, run_id, [picture])
