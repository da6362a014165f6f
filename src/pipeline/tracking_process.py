"""MLflow runs written by a helper process, so importing MLflow and opening the store overlap training.

Hand-written because MLflow's asynchronous logging is a thread of the training process: importing MLflow and
opening the SQLite store (about 1.7 s) would still hold that process's interpreter while TensorFlow imports.
The helper also ends the run KILLED when the training process dies without a word (SIGKILL, out of memory).
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from multiprocessing.connection import Connection
from typing import Any

import pipeline
from pipeline.errors import TrackingError
from pipeline.tracking_store import tracking_uri

PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"  # set by the sweep callback; jobs become its children
PASSED_ENV = (PARENT_RUN_ENV, "DVC_STAGE")  # read when a run starts; MLFLOW_* variables travel too
RUN_METHODS = frozenset(
    {
        "log_config",
        "log_params",
        "log_metrics",
        "log_final_metrics",
        "log_series",
        "set_tags",
        "log_artifact",
        "log_text",
        "log_keras_model_file",
        "log_numpy_model_file",
        "log_dataset_file",
        "log_dataset",
    }
)  # tracking.Run's methods


def helper_tag(pid: int) -> str:
    """The tracking_helper tag of the runs the helper process `pid` opens: host and pid."""
    return f"{socket.gethostname()}:{pid}"


def passed(key: str) -> bool:
    """Whether an environment variable travels from the trainer to the helper with each run."""
    return key.startswith("MLFLOW_") or key in PASSED_ENV


class Helper:
    """The helper process and the connection to it; calls are sent without waiting, replies come in order.

    Where a socket cannot be handed to a child process (Windows), the helper is a thread of this process:
    same protocol and guarantees, without the overlap.
    """

    def __init__(self, in_thread: bool = os.name == "nt") -> None:
        self.pid, self.process, self.thread = os.getpid(), None, None
        self.unsettled: str | None = None  # a run ended without waiting for the helper (see RemoteRun.end)
        self.open_uri: str | None = None  # the store of the run the helper holds open, if any
        self.late_error: str | None = None  # what its logging failed on; the next run or the command raises it
        if in_thread:
            self.connection, theirs = multiprocessing.Pipe()
            self.thread = threading.Thread(target=serve, args=(theirs,), name="mlflow-helper", daemon=True)
            self.thread.start()
            return
        ours, theirs_socket = socket.socketpair()
        # A session of its own: Ctrl-C in a terminal reaches the training process, which ends the run itself.
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.tracking_process", str(theirs_socket.fileno())],
            pass_fds=[theirs_socket.fileno()],
            start_new_session=True,
        )
        theirs_socket.close()
        self.connection = Connection(ours.detach())
        threading.Thread(target=self.watch, name="mlflow-helper-watch", daemon=True).start()

    def watch(self) -> None:
        """If the helper dies holding a run open (SIGKILL, out of memory), end that run FAILED from this process."""
        assert self.process is not None
        code = self.process.wait()
        uri = self.open_uri
        if uri is None or self.pid != os.getpid():
            return
        from pipeline import tracking

        with contextlib.suppress(Exception):  # the store itself may be what failed; the trainer reports its error
            tracking.end_orphaned_runs(uri, helper_tag(self.process.pid), f"the tracking helper process died (exit {code})")

    def alive(self) -> bool:
        running = self.thread.is_alive() if self.thread else self.process is not None and self.process.poll() is None
        return self.pid == os.getpid() and not self.connection.closed and running

    def send(self, *message: Any) -> None:
        try:
            self.connection.send(message)
        except OSError as error:
            raise TrackingError(f"the tracking helper process is gone ({error})") from None

    def reply(self, kind: str) -> tuple[Any, ...]:
        """The next reply, which must be of `kind` ('started' or 'ended')."""
        if kind == "started":
            self.settle()  # replies come in order: that of a run ended without waiting comes first
        try:
            received, *values = self.connection.recv()
        except (EOFError, OSError):
            raise TrackingError("the tracking helper process is gone") from None
        except BaseException:  # e.g. Ctrl-C while waiting: replies would be out of step, so use a new helper next time
            self.close()
            raise
        assert received == kind, (received, kind)
        return tuple(values)

    def settle(self) -> None:
        """Wait until the helper has ended the run ended without waiting; keep its error as `late_error`."""
        if self.unsettled is None:
            return
        name, self.unsettled = self.unsettled, None
        (error,) = self.reply("ended")
        if error:
            self.late_error = f"run {name}: {error}"

    def raise_late_error(self) -> None:
        """Raise TrackingError if a settled run, ended without waiting, failed to log."""
        if self.late_error:
            error, self.late_error = self.late_error, None
            raise TrackingError(error)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.close()


_helper: Helper | None = None  # one per process, reused by every run it starts (e.g. sequential sweep jobs)


def helper() -> Helper:
    """This process's helper, started on first use (or again if it died)."""
    global _helper
    if _helper is None or not _helper.alive():
        _helper = Helper()
        atexit.register(_helper.close)
    return _helper


def settle() -> None:
    """Wait until every run this process ended has been logged and ended (a no-op without a helper)."""
    if _helper is not None and _helper.alive():
        _helper.settle()


def raise_late_error() -> None:
    """Settle, and raise TrackingError if a run ended without waiting failed to log (see `start`)."""
    if _helper is not None and _helper.alive():
        _helper.settle()
        _helper.raise_late_error()


def prestart(argv: list[str]) -> None:
    """Start the helper now, unless this command cannot use it: tracking off, or jobs run by another launcher."""
    if "tracking.enabled=false" not in argv and not any(arg.startswith("hydra/launcher=") for arg in argv):
        helper()


class RemoteRun:
    """A tracking.Run whose calls run in the helper process; errors surface when the run ends (see `end`)."""

    def __init__(self, channel: Helper, name: str) -> None:
        self.channel, self.name, self.ended = channel, name, False
        self._run_id: str | None = None

    @property
    def run_id(self) -> str:
        """The run's id; waits for the helper to have started the run, raising TrackingError if it could not."""
        if self._run_id is None:
            run_id, error = self.channel.reply("started")
            if error:
                self.ended = True
                self.channel.send("end", "FAILED", error)
                self.channel.reply("ended")
                raise TrackingError(error)
            self._run_id = run_id
            self.channel.raise_late_error()  # settled above; this run then ends FAILED with the reason
        return self._run_id

    def __getattr__(self, method: str) -> Any:
        if method not in RUN_METHODS:
            raise AttributeError(method)
        return lambda *args, **kwargs: self.channel.send("call", method, args, kwargs)

    def end(self, status: str, message: str | None = None, wait: bool = True) -> None:
        """End the run and wait until the helper has logged everything; raise TrackingError if a call failed.

        With `wait=False` the helper logs on while this process goes on (the next job of a sequential
        sweep); `settle` waits for it, and a failed call is raised by the next run or `raise_late_error`.
        """
        if self.ended:
            return
        self.ended = True
        if self._run_id is None:
            self.channel.reply("started")  # an error there is also in the 'ended' reply
        self.channel.send("end", status, message)
        if not wait:
            self.channel.unsettled = self.name
            return
        (error,) = self.channel.reply("ended")
        if error and status == "FINISHED":
            raise TrackingError(error)


@contextlib.contextmanager
def start(
    tracking_cfg: Mapping[str, Any], root: str, run_name: str, tags: Mapping[str, Any], wait_at_end: bool = True
) -> Iterator[RemoteRun]:
    """A run written by the helper process; ends FINISHED, FAILED or KILLED, never RUNNING.

    `wait_at_end=False`: a run that finishes does not wait for the helper (see RemoteRun.end); failures still do.
    """
    channel = helper()
    channel.raise_late_error()  # if settled already; else the run's id, once read, raises it
    env = {k: v for k, v in os.environ.items() if passed(k)}
    channel.send(
        "start",
        env,
        {
            "tracking_cfg": dict(tracking_cfg),
            "root": str(root),
            "run_name": run_name,
            "tags": {k: str(v) for k, v in tags.items()},
        },
    )
    run = RemoteRun(channel, run_name)
    channel.open_uri = tracking_uri(tracking_cfg, root)
    try:
        yield run
    except KeyboardInterrupt as error:
        with contextlib.suppress(TrackingError):
            run.end("KILLED", f"interrupted ({error or 'Ctrl-C'})")
        raise
    except BaseException as error:
        with contextlib.suppress(TrackingError):
            run.end("FAILED", str(error) or type(error).__name__)
        raise
    else:
        run.end("FINISHED", wait=wait_at_end)
    finally:
        channel.open_uri = None


def one_line(error: BaseException) -> str:
    """`Type: first line of the message`, as the trainer reports it."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:1000]


def serve(connection: Connection) -> None:
    """The helper's loop: start runs, apply their calls, end them; end a run KILLED if the trainer vanishes."""
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401  (1 s of the SQLite store's first open, done now)

    from pipeline import tracking

    run, error, warmed_up = None, None, False
    while True:
        if run is not None and not warmed_up and not connection.poll(0):
            pipeline.import_keras()  # while the trainer trains: its model, logged through MLflow's Keras flavour, comes last
            warmed_up = True
            continue
        try:
            kind, *args = connection.recv()
        except (EOFError, OSError):
            if run is not None:
                tracking.end_run(run.run_id, "KILLED", "the training process ended without ending its run")
            return
        if kind == "start":
            env, kwargs = args
            for key in [k for k in os.environ if passed(k) and k not in env]:
                del os.environ[key]
            os.environ.update(env)
            kwargs["tags"]["tracking_helper"] = helper_tag(os.getpid())  # so the trainer can end it if this process dies
            try:
                run, error = tracking.open_run(**kwargs, parent_run_id=os.environ.get(PARENT_RUN_ENV)), None
                connection.send(("started", run.run_id, None))
            except Exception as failure:  # noqa: BLE001  (reported to the trainer as one line)
                run, error = None, one_line(failure)
                connection.send(("started", None, error))
        elif kind == "call" and run is not None and error is None:
            method, call_args, call_kwargs = args
            try:
                getattr(run, method)(*call_args, **call_kwargs)
            except Exception as failure:  # noqa: BLE001
                error = f"{method}: {one_line(failure)}"
        elif kind == "end":
            status, message = args
            if run is not None:
                failed = error is not None and status == "FINISHED"
                tracking.end_run(run.run_id, "FAILED" if failed else status, error if failed else message)
            connection.send(("ended", error))
            run = None


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the trainer decides how its run ends
    serve(Connection(int(sys.argv[1])))
    os._exit(0)  # everything is committed; skipping TensorFlow's teardown frees the core for the trainer's own exit
