"""The progress line long training prints to stderr: epoch, rate, ETA, and the state of the copies."""

from __future__ import annotations

import sys
import time
from typing import Any

import numpy as np


class Progress:
    """A line at most once a second while training (epoch, rate, ETA; copies: median loss, share at 100%).

    Quiet on short runs: nothing is printed before `interval` seconds have passed. `unit` names what is
    counted: epochs, or the copies whose initial weights a large replicated run creates first.
    """

    def __init__(self, epochs: int, label: str, interval: float = 1.0, unit: str = "epoch") -> None:
        self.epochs, self.label, self.interval, self.unit = epochs, label, interval, unit
        self.start = self.last = time.perf_counter()
        self.first: tuple[int, float] | None = None  # the first report: the ETA's rate leaves out the warm-up before it
        self.shown = -1  # the count the last printed line gave

    def update(self, epoch: int, loss: Any, accuracy: Any, final: bool = False) -> None:
        """Report the state after `epoch`; `loss` and `accuracy` are numbers, or one value per copy."""
        if not self.due(epoch, final):
            return
        if np.size(loss) > 1:
            state = f"median loss {np.median(loss):.4g}  copies at 100% {np.mean(np.asarray(accuracy) >= 1.0):.1%}"
        else:  # a single run, or one copy
            state = f"loss {float(np.ravel(loss)[0]):.4g}  accuracy {float(np.ravel(accuracy)[0]):.3f}"
        self.show(epoch, f"  {state}", final)

    def count(self, done: int, final: bool = False) -> None:
        """Report `done` units of the total, with no state (a long preparation)."""
        if self.due(done, final):
            self.show(done, "", final)

    def due(self, done: int, final: bool) -> bool:
        """Whether to print now: a second since the last line, or the end of a run that printed (once)."""
        now = time.perf_counter()
        first, self.first = self.first, self.first or (done, now)
        if final:
            if self.shown in (-1, done):  # quiet so far, or this very line was printed
                return False
        elif first is None or now - self.last < self.interval:  # the first report only marks the warm-up's end
            return False
        self.last, self.shown = now, done
        return True

    def show(self, done: int, state: str, final: bool) -> None:
        elapsed = self.last - self.start
        rate = done / elapsed if elapsed > 0 else float("inf")
        assert self.first is not None
        since, then = done - self.first[0], self.last - self.first[1]
        eta = (
            ""
            if final or done >= self.epochs or since <= 0 or then <= 0
            else f", ETA {(self.epochs - done) * then / since:.0f} s"
        )
        units = "copies" if self.unit == "copy" else f"{self.unit}s"
        print(
            f"[{self.label}] {self.unit} {done}/{self.epochs}{state}  ({elapsed:.1f} s, {rate:.3g} {units}/s{eta})",
            file=sys.stderr,
            flush=True,
        )
