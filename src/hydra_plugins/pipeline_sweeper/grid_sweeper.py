"""Hydra's basic grid sweeper, composing a grid's config files once per choice of configs, not once per job.

Hydra only instantiates plugins from the `hydra_plugins` package; the composing lives in pipeline.job_configs.
"""

from __future__ import annotations

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig

from pipeline.job_configs import JobConfigs


class GridSweeper(BasicSweeper):
    """Hydra's basic sweeper (same grid, batches, up-front validation of every job); its configs come from JobConfigs."""

    def __init__(self, max_batch_size: int | None, params: dict[str, str] | None = None, max_compositions: int = 100):
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.max_compositions = max_compositions

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        """Give the sweeper and its launcher one JobConfigs in place of Hydra's config loader."""
        self.configs = JobConfigs(hydra_context.config_loader, self.max_compositions)
        shared = HydraContext(config_loader=self.configs, callbacks=hydra_context.callbacks)  # type: ignore[arg-type]
        super().setup(hydra_context=shared, task_function=task_function, config=config)
