"""Everything that talks to MLflow: the store (`store`), runs (`runs`), models (`models`), the `watchdog`.

The stages import `runs` only when a run is tracked; nothing else in the package imports MLflow.
"""

import contextlib
import signal
import threading
from collections.abc import Iterator

PARENT_RUN_ENV = "PIPELINE_PARENT_RUN_ID"  # set by the sweep callback: runs started then are its children
HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Deliver Ctrl-C and SIGTERM once the block's MLflow calls are done, not inside them.

    Measured: Ctrl-C inside the final logging left an SQLite write transaction open in this process, so the
    run's own end waited 15 s for the lock, failed with a 167-line traceback and left the run RUNNING.
    """
    if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
        yield
        return
    caught: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: caught.append(signum)) for signum in HELD}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if caught:
            signal.raise_signal(caught[0])  # now, to the handler that was there: KeyboardInterrupt, Interrupted
