"""Composition and override checks: Hydra's config for a command line, or one `error:` line naming what is wrong."""

from __future__ import annotations

import argparse
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf, open_dict

from pipeline.errors import ConfigError, PipelineError

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """The options of each config group: {'dataset': ['circles', ...], ...}."""
    return {group.name: sorted(p.stem for p in group.glob("*.yaml")) for group in sorted(conf_dir.iterdir()) if group.is_dir()}


def command_line_overrides(args: list[str]) -> list[str]:
    """The overrides among a Hydra app's arguments, i.e. all but its flags and their values (`--cfg job`, `-p key`)."""
    # Hydra has no public parser of its command line; these are the flags of `--help` that take a value.
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    flags = "--cfg -c|--package -p|--config-path -cp|--config-name -cn|--config-dir -cd|--experimental-rerun"
    for flag in flags.split("|"):
        parser.add_argument(*flag.split())
    info = ["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"]
    parser.add_argument("--info", "-i", nargs="?", choices=info)
    parser.add_argument("overrides", nargs="*")
    try:
        known, _flags = parser.parse_known_args(args)
    except argparse.ArgumentError:
        return []  # Hydra's own parser then reports it
    return list(known.overrides)


def parse_overrides(overrides: list[str]) -> list[Any]:
    """Hydra's parsed overrides; one that its grammar rejects is a ConfigError naming it."""
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for line in overrides:
        try:
            parser.parse_overrides([line])
        except OverrideParseException as error:
            key, _, value = line.partition("=")
            problem = str(error).strip().splitlines()[0]
            allowed = f"a value Hydra's override grammar reads ({problem}); quote it: '{key}=\"...\"'"
            raise ConfigError(key, value, allowed) from None
    return parser.parse_overrides(overrides)


def check_overrides(args: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise ConfigError for an override Hydra cannot parse, a group option that does not exist (dataset=foo),
    or a new key (`+foo=1`: nothing would read it)."""
    options = group_options(conf_dir)
    parsed = parse_overrides(command_line_overrides(args))
    forced = any(o.is_force_add() and o.key_or_group not in options for o in parsed)
    known = existing_keys(parsed, options, conf_dir) if forced else set()  # `++key=1` sets an existing key, or adds one
    for override in parsed:
        group = override.key_or_group
        value = str(override.input_line).partition("=")[2] if override.is_sweep_override() else override.value()
        new_key = group not in options and not group.startswith("hydra")
        if new_key and (override.is_add() or (override.is_force_add() and group not in known)):
            plus = "+" if override.is_add() else "++"
            allowed = f"an existing key (drop the `{plus}`: a new key is read by nothing; `--cfg job` lists the keys)"
            raise ConfigError(group, value, allowed)
        if override.is_force_add() and group in options:
            raise ConfigError(group, value, f"`{group}=...` without the `++` (Hydra cannot force-add a config group)")
        if group not in options or override.is_delete():
            continue
        values = swept_strings(override, options) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is not None and str(value) not in options[group]:
                raise ConfigError(group, value, f"one of {', '.join(options[group])}")


def existing_keys(parsed: list[Any], options: dict[str, list[str]], conf_dir: Path = CONF_DIR) -> set[str]:
    """The dotted keys of the config the overrides compose, without those that force-add (`++key=value`)."""
    others = []
    for override in parsed:
        if override.is_force_add():
            continue
        line = str(override.input_line)
        if override.is_sweep_override():  # a sweep's first value: composition takes no sweeps
            first = next(iter(swept_strings(override, options)), None) if enumerable(override) else None
            if first is None:
                continue
            line = f"{override.get_key_element()}={first}"
        others.append(line)
    return set(dotted_keys(OmegaConf.to_container(compose_config(others, conf_dir), resolve=False)))


MULTIRUN_FLAGS = ("-m", "--multirun")
MAX_CHECKED_JOBS = 200  # about 20 ms each; beyond this many jobs, each swept value is checked once


def sweep_configs(args: list[str], conf_dir: Path = CONF_DIR) -> Iterator[DictConfig]:
    """The configs of a multirun's jobs, as Hydra's basic sweeper expands them (choices and ranges).

    Composition is what costs (about 0.1 s): each combination of swept config groups is composed once, and
    swept values of plain keys are set on a copy. Past MAX_CHECKED_JOBS jobs, each swept value is set once (the
    other keys at their first value). Sweeps a sweeper samples (Optuna's intervals) are left to the sweeper.
    """
    options = group_options(conf_dir)
    parsed = parse_overrides(command_line_overrides(args))
    fixed = [str(o.input_line) for o in parsed if not o.is_sweep_override()]
    groups: list[list[str]] = []
    values: list[tuple[str, list[Any]]] = []
    for override in parsed:
        if not override.is_sweep_override() or not enumerable(override):
            continue
        key = override.get_key_element()
        if override.key_or_group in options or "/" in override.key_or_group:
            groups.append([f"{key}={value}" for value in swept_strings(override, options)])
        else:
            values.append((key, list(override.sweep_iterator())))
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


def swept_strings(override: Any, options: dict[str, list[str]]) -> list[str]:
    """A sweep override's values as strings; a group's `glob(*)` matched against its options, as Hydra does."""
    from hydra.core.override_parser.types import Glob

    value = override.value()
    if isinstance(value, Glob):
        return value.filter(options.get(override.key_or_group, []))
    return list(override.sweep_string_iterator())


def enumerable(override: Any) -> bool:
    """Whether a sweep override lists its values (a choice, range or glob), as opposed to an interval a sweeper samples."""
    from hydra.core.override_parser.types import Glob

    if isinstance(override.value(), Glob):
        return True
    try:
        next(iter(override.sweep_iterator()), None)
    except Exception:  # noqa: BLE001  (Hydra raises for intervals)
        return False
    return True


def suggestion(key: str, overrides: list[str], conf_dir: Path = CONF_DIR) -> str:
    """` (did you mean <key>?)` for a mistyped config key, if a key of the composed config is close to it."""
    import difflib

    others = [o for o in overrides if not o.lstrip("+~").startswith(f"{key}=")]
    try:
        keys = dotted_keys(OmegaConf.to_container(compose_config(others, conf_dir), resolve=False))
    except PipelineError:
        return ""
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.75)
    return f" (did you mean {close[0]}?)" if close else ""


def dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a plain config, dotted (`trainer.epochs`, `model.hidden.0.units`)."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    keys = []
    for key, value in items:
        keys += [f"{prefix}{key}", *dotted_keys(value, f"{prefix}{key}.")]
    return keys


def resolved(cfg: Any) -> dict[str, Any]:
    """A config node as plain dicts and lists, interpolations resolved."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(plain, dict):
        raise TypeError(f"expected a config mapping, got {type(plain).__name__}")
    return {str(k): v for k, v in plain.items()}


def compose_config(overrides: list[str], conf_dir: Path = CONF_DIR, config_name: str = "config") -> DictConfig:
    """Compose conf/<config_name>.yaml with `overrides` as Hydra would; composition errors become one error line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
            return compose(config_name, overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        message = str(error).strip()
        first_line = message.splitlines()[0] if message else type(error).__name__
        cause = str(error.__cause__ or "")
        hint = ""
        if "not in struct" in message + cause:
            key = re.search(r"override '([^']+)'", first_line)
            hint = suggestion(key.group(1), overrides, conf_dir) if key else ""
            hint = hint or " (no such key; `--cfg job` lists the keys)"
        raise PipelineError(f"bad override: {first_line}{hint}") from None
    finally:
        GlobalHydra.instance().clear()
