"""Composition and override checks: Hydra's config for a command line, or one `error:` line naming what is wrong."""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

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


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """Dotted keys for a nested config, lists indexed (`model.hidden.0.units`), each value as text (MLflow params)."""
    if isinstance(config, Mapping):
        items = [(f"{prefix}{k}", v) for k, v in config.items()]
    elif isinstance(config, (list, tuple)):
        items = [(f"{prefix}{i}", v) for i, v in enumerate(config)]
    else:
        return {prefix.rstrip("."): str(config)}
    flat: dict[str, str] = {}
    for key, value in items:
        flat.update(flatten(value, f"{key}.") if isinstance(value, (Mapping, list, tuple)) and value else {key: str(value)})
    return flat


def resolved(cfg: Any) -> dict[str, Any]:
    """A config node as plain dicts and lists, interpolations resolved; one that cannot resolve is a ConfigError."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as error:
        key = str(getattr(error, "full_key", "") or "config")
        value = OmegaConf.to_container(cfg, resolve=False)
        for part in key.split(".") if key != "config" else []:
            value = value.get(part) if isinstance(value, dict) else None
        problem = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(key, value, f"an interpolation that resolves ({problem})") from None
    if not isinstance(plain, dict):
        raise TypeError(f"expected a config mapping, got {type(plain).__name__}")
    return {str(k): v for k, v in plain.items()}


def compose_config(
    overrides: list[str], conf_dir: Path = CONF_DIR, config_name: str = "config", hydra: bool = False
) -> DictConfig:
    """Compose conf/<config_name>.yaml with `overrides` as Hydra would (with its `hydra` node if asked); composition
    errors become one error line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(conf_dir)):
            return compose(config_name, overrides=overrides, return_hydra_config=hydra)
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
