"""The configs of a multirun's jobs, each checked before the sweep starts (split from overrides.py for its size)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.config.overrides import CONF_DIR, command_line_overrides, compose_config, enumerable, group_options
from pipeline.config.overrides import parse_overrides, suggestion, swept_strings
from pipeline.errors import ConfigError, PipelineError

MULTIRUN_FLAGS = ("-m", "--multirun")
MAX_CHECKED_JOBS = 200  # about 20 ms each; beyond this many jobs, each swept value is checked once


def sweep_configs(args: list[str], conf_dir: Path = CONF_DIR) -> Iterator[DictConfig]:
    """The configs of a multirun's jobs, as Hydra's basic sweeper expands them (choices and ranges).

    Composition is what costs (about 0.1 s): each combination of swept config groups is composed once, and
    swept values of plain keys are set on a copy. Past MAX_CHECKED_JOBS jobs, each swept value is set once (the
    other keys at their first value). An interval Optuna samples is checked at its two ends, with Optuna's search
    space in the config (hparams_search) as on the command line.
    """
    options = group_options(conf_dir)
    parsed = parse_overrides(command_line_overrides(args))
    fixed = [str(o.input_line) for o in parsed if not o.is_sweep_override()]
    groups: list[list[str]] = []
    values: list[tuple[str, list[Any]]] = []
    for override in parsed + search_space(fixed, {o.key_or_group for o in parsed}, conf_dir):
        if not override.is_sweep_override():
            continue
        key = override.get_key_element()
        if not enumerable(override):  # an interval Optuna samples: both ends are checked
            sweep = override.value()
            choices: list[Any] = [int(end) if "int" in sweep.tags else end for end in (sweep.start, sweep.end)]
            values.append((key, choices))
        elif override.key_or_group in options or "/" in override.key_or_group:
            choices = [f"{key}={value}" for value in swept_strings(override, options)]
            groups.append(choices)
        else:
            choices = list(override.sweep_iterator())
            values.append((key, choices))
        if not choices:  # range(0), or a glob matching nothing: Hydra would record an empty sweep
            raise ConfigError(key, str(override.input_line).partition("=")[2], "a sweep of at least one value")
    if math.prod(len(v) for _, v in values) <= MAX_CHECKED_JOBS:
        settings = [list(zip([k for k, _ in values], combination)) for combination in itertools.product(*(v for _, v in values))]
    else:
        firsts = [(k, v[0]) for k, v in values]
        settings = [firsts] + [firsts[:i] + [(k, x)] + firsts[i + 1 :] for i, (k, v) in enumerate(values) for x in v[1:]]
    for combination in itertools.product(*groups):
        base = compose_config(fixed + list(combination), conf_dir)
        for setting in settings:
            cfg = base.copy()
            for key, value in setting:
                set_value(cfg, key, value, fixed + list(combination), conf_dir)
            yield cfg


def set_value(cfg: DictConfig, key: str, value: Any, overrides: list[str], conf_dir: Path) -> None:
    """Apply one job's `key=value` (`+key=value` adds a key) as composition would; an unknown key is a PipelineError."""
    from omegaconf.errors import OmegaConfBaseException

    path = key.lstrip("+~")
    try:
        if key.startswith("+"):
            with open_dict(cfg):
                OmegaConf.update(cfg, path, value, force_add=True)
        else:
            OmegaConf.update(cfg, path, value)
    except OmegaConfBaseException:
        hint = suggestion(path, overrides, conf_dir) or " (no such key; `--cfg job` lists the keys)"
        raise PipelineError(f"bad override: Could not override '{path}'.{hint}") from None


def search_space(fixed: list[str], given: set[str], conf_dir: Path = CONF_DIR) -> list[Any]:
    """The sweeps of Optuna's `hydra.sweeper.params` (an hparams_search preset) for keys the command line leaves."""
    if not any(o.startswith(("hparams_search=", "hydra.sweeper")) for o in fixed):
        return []
    params = compose_config(fixed, conf_dir, hydra=True).hydra.sweeper.get("params") or {}
    return parse_overrides([f"{key}={value}" for key, value in params.items() if key not in given])
