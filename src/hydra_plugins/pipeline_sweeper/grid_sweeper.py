"""Hydra's basic grid sweeper, composing each job's config once: its launcher reuses what validation composed.

Hydra's basic sweeper composes every job up front to fail before any job runs, then its launcher composes each
job again (0.15-0.2 s a job on a 2-core machine, a third of a short job's overhead). Hydra offers no way to
share the two, hence this plugin (Hydra only instantiates plugins from the `hydra_plugins` package).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_loader import ConfigLoader
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class ComposedConfigs:
    """A config loader that hands each validated job's composed config to the first launch that asks for it."""

    def __init__(self, loader: ConfigLoader, keep: int) -> None:
        self.loader = loader
        self.keep = keep  # at most this many configs wait in memory (about 0.25 MB each); the rest compose again
        self.composed: dict[tuple[str, ...], DictConfig] = {}

    def validate(self, master_config: DictConfig, sweep_overrides: Sequence[str]) -> None:
        """Compose a job's config (raising what composing it raises) and keep it for its launch."""
        config = self.loader.load_sweep_config(master_config, list(sweep_overrides))
        if len(self.composed) < self.keep:
            self.composed.setdefault(tuple(sweep_overrides), config)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The config validation composed for these overrides (once), else a newly composed one."""
        config = self.composed.pop(tuple(sweep_overrides), None)
        return config if config is not None else self.loader.load_sweep_config(master_config, sweep_overrides)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.loader, name)

    def __reduce__(self) -> tuple[Any, tuple[ConfigLoader]]:
        # A launcher that ships the loader to its workers ships Hydra's own, without the kept configs: joblib's
        # and submitit's workers compose their jobs themselves (Ray's launcher composes here, then ships).
        return _unwrapped, (self.loader,)


def _unwrapped(loader: ConfigLoader) -> ConfigLoader:
    """The loader itself (what a pickled ComposedConfigs becomes)."""
    return loader


class GridSweeper(BasicSweeper):
    """Hydra's basic sweeper (same grid, batches and up-front validation); each job's config is composed once."""

    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None, keep_composed: int = 1000):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.keep_composed = keep_composed

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Give the sweeper and its launcher one config loader that keeps the validated configs."""
        self.configs = ComposedConfigs(hydra_context.config_loader, self.keep_composed)
        shared = HydraContext(config_loader=self.configs, callbacks=hydra_context.callbacks)  # type: ignore[arg-type]
        super().setup(hydra_context=shared, task_function=task_function, config=config)

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job of the batch before any runs, as Hydra does, keeping the configs."""
        assert self.config is not None
        for overrides in batch:
            self.configs.validate(self.config, overrides)
