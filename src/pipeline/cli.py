"""Entry-point plumbing: Hydra composition, checks of group overrides, one-line user errors."""

from __future__ import annotations

import argparse
import atexit
import functools
import gc
import signal
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from pipeline.errors import ConfigError, Interrupted, PipelineError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
EXIT_USER_ERROR = 2


def group_options(conf_dir: Path = CONF_DIR) -> dict[str, list[str]]:
    """The options of each config group: {'dataset': ['circles', ...], ...}."""
    return {group.name: sorted(p.stem for p in group.glob("*.yaml")) for group in sorted(conf_dir.iterdir()) if group.is_dir()}


def command_line_overrides(args: list[str]) -> list[str]:
    """The overrides among a Hydra app's arguments, i.e. all but its flags and their values (`--cfg job`, `-p key`)."""
    # Hydra has no public parser of its command line; these are the flags of `--help` that take a value.
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    for flag in (
        ("--cfg", "-c"),
        ("--package", "-p"),
        ("--config-path", "-cp"),
        ("--config-name", "-cn"),
        ("--config-dir", "-cd"),
        ("--experimental-rerun",),
    ):
        parser.add_argument(*flag)
    parser.add_argument(
        "--info", "-i", nargs="?", choices=["all", "config", "defaults", "defaults-tree", "plugins", "searchpath"]
    )
    parser.add_argument("overrides", nargs="*")
    try:
        known, _flags = parser.parse_known_args(args)
    except argparse.ArgumentError:
        return []  # Hydra's own parser then reports it
    return list(known.overrides)


def check_overrides(args: list[str], conf_dir: Path = CONF_DIR) -> None:
    """Raise ConfigError for a group override naming an option that does not exist (e.g. dataset=foo)."""
    options = group_options(conf_dir)
    overrides = command_line_overrides(args)
    for override in OverridesParser.create().parse_overrides(overrides):
        group = override.key_or_group
        if group not in options or override.is_delete():
            continue
        values = list(override.sweep_string_iterator()) if override.is_sweep_override() else [override.value()]
        for value in values:
            if value is not None and str(value) not in options[group]:
                raise ConfigError(group, value, f"one of {', '.join(options[group])}")


def raise_on_sigterm() -> None:
    """Turn SIGTERM into an `Interrupted` exception in the main thread, like Ctrl-C."""

    def handler(signum: int, frame: types.FrameType | None) -> None:
        raise Interrupted(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def skip_final_collection() -> None:
    """At exit, spare the cycle collector's walk over TensorFlow's objects: about 1 s of every command."""
    # Safe because every output is written and closed before exit; frozen objects are only left uncollected.
    atexit.unregister(gc.freeze)  # once per process, however many jobs it runs
    atexit.register(gc.freeze)


def resolved(cfg: Any) -> dict[str, Any]:
    """A config node as plain dicts and lists, interpolations resolved."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    if not isinstance(plain, dict):
        raise TypeError(f"expected a config mapping, got {type(plain).__name__}")
    return {str(k): v for k, v in plain.items()}


def report(error: PipelineError) -> None:
    """Print a user error as one line on stderr and exit non-zero."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


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
        hint = " (no such key; `--cfg job` lists the keys)" if "not in struct" in message + cause else ""
        raise PipelineError(f"bad override: {first_line}{hint}") from None
    finally:
        GlobalHydra.instance().clear()


def hydra_app(task: Callable[[DictConfig], Any], check: Callable[[DictConfig], Any]) -> Callable[[], None]:
    """Turn `task(cfg)` into a console entry point composed by Hydra from conf/config.yaml.

    A single run is composed and checked by `check` before Hydra starts, so bad input writes nothing at
    all, not even Hydra's output folder; `task` checks again, since multirun jobs start without that.
    """

    @functools.wraps(task)
    def guarded(cfg: DictConfig) -> Any:
        skip_final_collection()  # also in launcher workers (joblib, Ray), whose exit ends a parallel sweep
        try:
            return task(cfg)
        except PipelineError as error:
            report(error)
        except KeyboardInterrupt as error:
            print(f"error: interrupted ({str(error) or 'Ctrl-C'})", file=sys.stderr)
            sys.exit(130)

    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")(guarded)

    def main() -> None:
        raise_on_sigterm()
        skip_final_collection()
        args = sys.argv[1:]
        try:
            check_overrides(args)
            if not any(arg.startswith("-") for arg in args):  # not --multirun, --cfg, --help, ...
                check(compose_config(args))
        except PipelineError as error:
            report(error)
        app()
        from pipeline import tracking_process

        try:
            tracking_process.raise_late_error()  # a sequential sweep's last run, which its job did not wait for
        except PipelineError as error:
            report(error)

    return main
