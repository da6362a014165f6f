"""Ends a run KILLED when the process that opened it dies without ending it (SIGKILL, out of memory).

A process of its own because nothing runs in a process killed by SIGKILL. It waits on a pipe from that
process and imports MLflow only if the pipe closes without the word `ended`: about 0.03 s of CPU per run
otherwise (bench/tracking_overhead.md).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

ENDED = b"ended"


def watch(run_id: str, uri: str) -> subprocess.Popen:
    """The watchdog process that ends the run KILLED if this process dies before `release`."""
    return subprocess.Popen(
        [sys.executable, "-m", __name__, run_id],
        stdin=subprocess.PIPE,
        env=os.environ | {"MLFLOW_TRACKING_URI": uri},
        start_new_session=True,  # Ctrl-C reaches this process, which ends its run itself
    )


def release(watcher: subprocess.Popen, ended: bool = True) -> None:
    """Tell the watchdog the run has ended, or (`ended` False) leave the run's end to it once this process exits."""
    if watcher.stdin is None or watcher.stdin.closed:  # told already: a sweep ends at its end, and again at exit
        return
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        if ended:
            watcher.communicate(ENDED, timeout=10)
        elif watcher.stdin:
            watcher.stdin.close()


def main(run_id: str) -> None:
    if sys.stdin.buffer.read() == ENDED:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient()  # MLFLOW_TRACKING_URI: set by runs.watch
    if client.get_run(run_id).info.status == "RUNNING":
        client.set_tag(run_id, "error", "the process that ran it died without ending it (killed?)")
        client.set_terminated(run_id, "KILLED")


if __name__ == "__main__":
    main(sys.argv[1])
