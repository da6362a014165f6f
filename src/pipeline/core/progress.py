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
        self.printed = False

    def update(self, epoch: int, loss: Any, accuracy: Any, final: bool = False) -> None:
        """Report the state after `epoch`; `loss` and `accuracy` are numbers, or one value per copy."""
        if not self.due(final):
            return
        if np.ndim(loss):
            state = f"median loss {np.median(loss):.4g}  copies at 100% {np.mean(np.asarray(accuracy) >= 1.0):.1%}"
        else:
            state = f"loss {float(loss):.4g}  accuracy {float(accuracy):.3f}"
        self.show(epoch, f"  {state}", final)

    def count(self, done: int, final: bool = False) -> None:
        """Report `done` units of the total, with no state (a long preparation)."""
        if self.due(final):
            self.show(done, "", final)

    def due(self, final: bool) -> bool:
        now = time.perf_counter()
        if now - self.last < self.interval and not (final and self.printed):
            return False
        self.last, self.printed = now, True
        return True

    def show(self, done: int, state: str, final: bool) -> None:
        elapsed = self.last - self.start
        rate = done / elapsed if elapsed > 0 else float("inf")
        eta = "" if final or done >= self.epochs else f", ETA {(self.epochs - done) / rate:.0f} s"
        units = "copies" if self.unit == "copy" else f"{self.unit}s"
        print(
            f"[{self.label}] {self.unit} {done}/{self.epochs}{state}  ({elapsed:.1f} s, {rate:.3g} {units}/s{eta})",
            file=sys.stderr,
            flush=True,
        )
