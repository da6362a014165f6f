"""A sweep's job configs from one composition per choice of config files, copied with each job's values.

Hydra composes every job's config from the YAML files, twice: when its basic sweeper validates all jobs up front,
then when the launcher runs each (0.13-0.2 s a time on a 2-core machine, a third of a short job's overhead). Yet
jobs that choose the same configs (config groups) differ only in values, which Hydra applies after composing. So
here each choice of configs is composed once and a job's config is a copy of it with the job's values applied, as
Hydra applies them. Hydra offers no way to share compositions, hence this loader (the grid sweeper in
src/hydra_plugins/pipeline_sweeper hands it to Hydra). It lives outside `hydra_plugins` because Hydra executes
every module there again at each job of a joblib worker (its plugin scan), which would empty a worker's cache.
"""

from __future__ import annotations

import copy
import os
import uuid
from typing import Any

from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
from hydra.core.config_loader import ConfigLoader
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from omegaconf import DictConfig, OmegaConf, open_dict


class JobConfigs:
    """A config loader for a sweep's jobs: one composition per choice of configs, copied with each job's values."""

    def __init__(self, loader: ConfigLoader, max_compositions: int) -> None:
        self.sweep = uuid.uuid4().hex  # names this sweep's loader in worker processes (see `received`)
        self.loader = loader
        self.max_compositions = max_compositions  # about 0.25 MB each; jobs with further choices compose as Hydra does
        self.compositions: dict[tuple[str, ...], DictConfig] = {}
        self.repository: Any = None  # Hydra's config repository with the sweep's search path: which keys are groups

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        """The job's config, as Hydra's `load_sweep_config` composes it."""
        overrides = OverridesParser.create().parse_overrides(list(sweep_overrides))
        if any(o.key_or_group.startswith("hydra.searchpath") for o in overrides):  # it moves the config groups
            return self.loader.load_sweep_config(master_config, list(sweep_overrides))
        is_value = [self.is_value(master_config, o) for o in overrides]
        values = [o for o, value in zip(overrides, is_value) if value]
        choices = tuple(o.input_line for o, value in zip(overrides, is_value) if not value)
        composed = self.compositions.get(choices)
        if composed is None:
            composed = self.loader.load_sweep_config(master_config, list(choices))
            if len(self.compositions) < self.max_compositions:
                self.compositions[choices] = composed
        config = copy.deepcopy(composed)
        ConfigLoaderImpl._apply_overrides_to_config(values, config)
        # What Hydra sets once the overrides are applied (ConfigLoaderImpl._load_configuration_impl), for all of them:
        with open_dict(config.hydra):
            for key in config.hydra.job.env_copy:
                config.hydra.job.env_set[key] = os.environ[key]
        task = [o for o in overrides if not o.is_hydra_override()]
        config.hydra.overrides.hydra = [*master_config.hydra.overrides.hydra,
                                        *(o.input_line for o in overrides if o.is_hydra_override())]
        config.hydra.overrides.task = [o.input_line for o in task]
        dirname = config.hydra.job.config.override_dirname
        config.hydra.job.override_dirname = get_overrides_dirname(
            overrides=task, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys)
        OmegaConf.copy_cache(from_config=master_config, to_config=config)
        return config

    def is_value(self, master_config: DictConfig, override: Override) -> bool:
        """Whether Hydra applies this override after composing (a key's value) rather than choosing a config with it."""
        if self.repository is None:
            _, self.repository = self.loader._parse_overrides_and_create_caching_repo(  # type: ignore[attr-defined]
                master_config.hydra.job.config_name, list(master_config.hydra.overrides.hydra))
        # Hydra's own rule (hydra._internal.defaults_list.Overrides)
        return isinstance(override.value(), dict) or not self.repository.group_exists(override.key_or_group)

    def __getattr__(self, name: str) -> Any:
        if "loader" not in self.__dict__:  # before `received` sets its state
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __reduce__(self) -> tuple[Any, ...]:
        # Launchers ship the loader to their workers with every job (joblib, Ray, submitit): without compositions,
        # and a worker keeps the first it receives, whose compositions then serve its later jobs.
        return received, ({**vars(self), "compositions": {}, "repository": None},)


_received: dict[str, JobConfigs] = {}  # in a worker process: the JobConfigs of the sweep whose jobs it runs


def received(state: dict[str, Any]) -> JobConfigs:
    """The JobConfigs this process already received for the sweep `state` names, else a new one from `state`."""
    if state["sweep"] not in _received:
        _received.clear()  # a later sweep's jobs: the earlier one's compositions are of no use
        configs = _received[state["sweep"]] = JobConfigs.__new__(JobConfigs)
        vars(configs).update(state)
    return _received[state["sweep"]]
