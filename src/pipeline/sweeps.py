"""Hydra sweeps: thread shares for parallel jobs, the swept keys, the heatmap of a two-key sweep (for tracking.sweep)."""

from __future__ import annotations

import os
from typing import Any

from hydra.experimental.callback import Callback


class ThreadsPerJob(Callback):
    """Hydra callback: each job of a parallel launcher gets its share of the cores for TensorFlow's thread pools.

    TensorFlow sizes its pools to every core, so 2 joblib workers on 2 cores would run 2 pools each and slow
    each other down (tests/test_determinism.py checks that one thread gives the same numbers).
    """

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        threads = job_threads(config.hydra.launcher, available_cores())
        if threads is not None:  # read when TensorFlow starts, i.e. at this worker's first job
            share_cores(threads)


def available_cores() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def job_threads(launcher: Any, cores: int) -> int | None:
    """Threads per job under `launcher`: cores / joblib's n_jobs, a Ray task's num_cpus; None when jobs run one at a time."""
    target = str(launcher.get("_target_", ""))
    if target.endswith("JoblibLauncher"):
        return max(1, cores // joblib_workers(launcher, cores))
    if target.endswith("RayLauncher"):
        cpus = (launcher.get("ray", {}).get("remote") or {}).get("num_cpus")
        return max(1, int(cpus)) if cpus else None
    return None


def share_cores(threads: int) -> None:
    """Size TensorFlow's thread pools to `threads` when it starts in this process; a user's value wins."""
    for key in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(key, str(threads))


def joblib_workers(launcher: Any, cores: int) -> int:
    """How many worker processes joblib's launcher runs: n_jobs, or with joblib's rule for negatives (-1: every core)."""
    n_jobs = launcher.get("n_jobs") or -1
    return n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)


def sweep_heatmap(table: Any, rows: str, columns: str, metric: str) -> Any:
    """A heatmap of the median of `metric` over two swept keys (other keys, e.g. seeds, pooled)."""
    import numpy as np

    from pipeline import plots

    grid = table.pivot_table(index=rows, columns=columns, values=metric, aggfunc="median")
    fig, ax = plots.plt.subplots(figsize=(1.2 * len(grid.columns) + 3, 0.6 * len(grid.index) + 2))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel=columns, ylabel=rows, title=f"median {metric}")
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    return fig


def sweep_keys(overrides: list[str]) -> list[str]:
    """The config keys a multirun sweeps over (those given several values), as flat param names."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [o.key_or_group for o in parsed if o.is_sweep_override()]
