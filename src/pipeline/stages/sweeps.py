"""Hydra sweeps: each parallel job's share of the cores for TensorFlow's thread pools; jobs that end with the sweep."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
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


class EndWithSweep(Callback):
    """Hydra callback: a job in a worker process (joblib) is interrupted, its run ended KILLED, when the sweep dies.

    A worker orphaned by a killed sweep would otherwise train on, its run RUNNING, to the job's end; nothing in
    joblib stops a task under way. A thread of the worker checks twice a second that the sweep's process lives.
    """

    sweep_pid, sweep_host = 0, ""  # the process that started the sweep (set there, pickled into each job)
    watching = False  # one watcher per worker process

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.sweep_pid, self.sweep_host = os.getpid(), socket.gethostname()

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        local = socket.gethostname() == self.sweep_host  # a Ray worker on another machine cannot see the process
        if not self.sweep_pid or not local or os.getpid() == self.sweep_pid or EndWithSweep.watching:
            return
        if threading.current_thread() is threading.main_thread():
            from pipeline.stages import raise_on_sigterm

            raise_on_sigterm()  # SIGTERM raises in the job, which ends its run KILLED
        EndWithSweep.watching = True
        threading.Thread(target=interrupt_when_gone, args=(self.sweep_pid,), daemon=True).start()


def interrupt_when_gone(pid: int, every: float = 0.5) -> None:
    """Send this process SIGTERM once process `pid` has ended."""
    while True:
        time.sleep(every)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGTERM)
            return
        except PermissionError:  # alive, another user's: cannot be ours
            pass


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
