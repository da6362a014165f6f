"""User-facing errors: each prints as one line that names the key or file and what is allowed."""

from __future__ import annotations

from typing import Any


class PipelineError(Exception):
    """An error caused by the user's input, reported as one line without a traceback."""


class ConfigError(PipelineError):
    """A config key holds a value that is not allowed."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r} is not allowed: {allowed}")


class DataError(PipelineError):
    """A data or model file is missing, truncated or holds values that cannot be used."""

    def __init__(self, path: Any, problem: str) -> None:
        self.path = str(path)
        super().__init__(f"{self.path}: {problem}")


class TrackingError(PipelineError):
    """MLflow refused or failed a call of a run, or its store cannot be used."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"tracking: {problem}")


class DivergedError(PipelineError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch
        super().__init__(f"diverged at epoch {epoch}: the loss is NaN or infinite, or a weight passed trainer.max_weight")


class Interrupted(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so runs end KILLED and temporary files are removed."""
