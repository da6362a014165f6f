"""A memory estimate of a run before anything is allocated: a config that cannot fit stops with one line."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from typing import Any

from pipeline.errors import ConfigError

FLOAT = 4  # float32 bytes; the numpy engine's float64 is covered by the factors below
ROW_BYTES = 200  # per data point while generating and loading: float64 arrays, the CSV text, pandas frames
CHUNK = 65_536  # rows per forward pass over a whole split: the engines' memory stays copies x CHUNK x units


def available_bytes() -> int:
    """Memory the system can give this process now (Linux MemAvailable; else free physical pages)."""
    with contextlib.suppress(OSError, StopIteration), open("/proc/meminfo") as meminfo:
        return int(next(line for line in meminfo if line.startswith("MemAvailable:")).split()[1]) * 1024
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def training_bytes(
    model_cfg: Mapping[str, Any], n_features: int, n_samples: int, trainer_cfg: Mapping[str, Any]
) -> dict[str, int]:
    """The largest allocations of a training run, by the key that sizes them."""
    copies = int(trainer_cfg.get("replicates", 1))
    layers = [*model_cfg["hidden"], model_cfg["output"]]
    widths = [n_features] + [int(spec["units"]) for spec in layers]
    parameters = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    # weights, gradients and two optimizer slots (Adam), float64 in the numpy engine: 8 floats a parameter;
    # a single run also keeps about `snapshots` copies of its weights
    model = 8 * FLOAT * parameters * copies + FLOAT * parameters * int(trainer_cfg.get("snapshots", 0))
    rows = min(max(n_samples, 1), CHUNK)  # a forward pass over a split, chunked
    activations = 6 * FLOAT * copies * rows * sum(widths)
    return {"model": model, "activations": activations, "data": ROW_BYTES * n_samples}


def check_fits(key: str, value: Any, needed: int, available: int | None = None) -> None:
    """ConfigError naming `key` if `needed` bytes exceed what is available."""
    available = available_bytes() if available is None else available
    if needed > available:
        allowed = f"a size that fits in memory: this run needs about {gib(needed)}, {gib(available)} is available"
        raise ConfigError(key, value, allowed)


def check_training(cfg: Mapping[str, Any], n_features: int, n_samples: int) -> None:
    """Stop a run whose model, data or replicates would not fit in the memory available now."""
    parts = training_bytes(cfg["model"], n_features, n_samples, cfg["trainer"])
    widest = max(range(len(cfg["model"]["hidden"])), key=lambda i: cfg["model"]["hidden"][i]["units"])
    if cfg["trainer"].get("replicates", 1) > 1 and parts["model"] + parts["activations"] > parts["data"]:
        key, value = "trainer.replicates", cfg["trainer"]["replicates"]
    elif parts["data"] >= parts["model"] + parts["activations"]:
        key, value = "dataset.n_samples", n_samples
    else:
        key, value = f"model.hidden.{widest}.units", cfg["model"]["hidden"][widest]["units"]
    check_fits(key, value, sum(parts.values()))


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"
