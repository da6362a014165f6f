"""Hydra sweeps: each parallel job's share of the cores for TensorFlow's thread pools."""

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
