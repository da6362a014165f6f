"""The DVC stages, thin Hydra apps, and what they share: an app that checks before it starts, one-line user errors."""

from __future__ import annotations

import atexit
import contextlib
import errno
import functools
import gc
import shutil
import signal
import sys
import types
from pathlib import Path
from collections.abc import Callable
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig

from pipeline import files
from pipeline.config.jobs import MULTIRUN_FLAGS, sweep_configs
from pipeline.config.overrides import CONF_DIR, check_overrides, command_line_overrides, compose_config, group_options
from pipeline.errors import ConfigError, Interrupted, PipelineError

EXIT_USER_ERROR = 2


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


def exit_with(error: PipelineError) -> NoReturn:
    """Print a user error as one line on stderr and exit non-zero."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


HELP = """{prog} (or python -m pipeline.stages.{module}): {summary}

Usage: {prog} [key=value ...]        e.g. {prog} {example}
{sweep}       {prog} --cfg job [key=value]  print the composed config, every key, and stop
{groups}Shell completion (bash): eval "$({prog} -sc install=bash)"; Hydra's own options: --hydra-help"""
SWEEP = "       {prog} -m [key=a,b ...]       a sweep: every combination, one MLflow parent run with the jobs nested\n"


def interrupted(error: KeyboardInterrupt) -> NoReturn:
    """Print an interruption (Ctrl-C, SIGTERM) as one line on stderr and exit 130, as a shell reports SIGINT."""
    print(f"error: interrupted ({str(error) or 'Ctrl-C'})", file=sys.stderr)
    sys.exit(130)


def discard_hydra_output() -> None:
    """Remove what Hydra wrote for a single run that failed (.hydra/, its log, then empty folders): nothing is left."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.RUN:  # a sweep's folders hold the other jobs' records
        return
    out = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.output_subdir:
        shutil.rmtree(out / hydra_cfg.output_subdir, ignore_errors=True)
    (out / f"{hydra_cfg.job.name}.log").unlink(missing_ok=True)
    for folder in [out, *out.parents][:3]:  # outputs/<name>/<time>, never the folder the command ran in
        if folder == Path.cwd().absolute():
            break
        with contextlib.suppress(OSError):
            folder.rmdir()


def check_hydra_settings(overrides: list[str]) -> None:
    """ConfigError for a Hydra output folder this user cannot write, or a joblib launcher with no workers."""
    for key, _, value in (override.partition("=") for override in overrides):
        if key in ("hydra.run.dir", "hydra.sweep.dir") and (problem := files.unwritable(value.split("${")[0] or ".")):
            raise ConfigError(key, value, f"a folder this user can write ({problem})")
        if key == "hydra.launcher.n_jobs" and not (value.lstrip("-").isdigit() and int(value) != 0):
            raise ConfigError(key, value, "a number of worker processes: 1 or more, or -1 for one per core")


def hydra_app(
    task: Callable[[DictConfig], Any],
    check: Callable[[DictConfig], Any],
    example: str,
    groups: tuple[str, ...] = (),
    config_name: str = "config",
) -> Callable[[], None]:
    """Turn `task(cfg)` into a console entry point composed by Hydra from conf/<config_name>.yaml; `--help` shows
    `example` and the options of the config `groups` it reads (train's sweeps too).

    A single run is composed and checked by `check` before Hydra starts, so bad input writes nothing at
    all, not even Hydra's output folder; `task` checks again, since multirun jobs start without that.
    """

    module = sys.modules[task.__module__]
    prog = "pipeline-" + module.__name__.rsplit(".", 1)[-1]
    summary = (module.__doc__ or "").strip().splitlines()[0]

    @functools.wraps(task)
    def guarded(cfg: DictConfig) -> Any:
        skip_final_collection()  # also in launcher workers (joblib, Ray), whose exit ends a parallel sweep
        try:
            return task(cfg)
        except (PipelineError, KeyboardInterrupt) as error:
            stopped: PipelineError | KeyboardInterrupt = error
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            stopped = PipelineError(f"{error.filename or 'disk'}: {error.strerror}; free some space (earlier results are kept)")
        discard_hydra_output()
        if isinstance(stopped, KeyboardInterrupt):
            interrupted(stopped)
        exit_with(stopped)

    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(guarded)

    def main() -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # KeyboardInterrupt again, after the imports
        raise_on_sigterm()
        skip_final_collection()
        args = sys.argv[1:]
        flags = {arg for arg in args if arg.startswith("-")}
        if flags & {"--help", "-h"}:
            options = group_options()
            listed = "".join(f"  {group}: {', '.join(options[group])}\n" for group in groups)
            listed = f"Config groups it reads (group=option):\n{listed}" if listed else ""
            sweep = SWEEP.format(prog=prog) if "experiment" in groups else ""
            module = prog.removeprefix("pipeline-")
            print(HELP.format(prog=prog, module=module, summary=summary, example=example, sweep=sweep, groups=listed))
            return
        try:
            check_overrides(args)
            check_hydra_settings(command_line_overrides(args))
            if not flags:
                check(compose_config(args, config_name=config_name))
            elif flags <= set(MULTIRUN_FLAGS):  # every job, before the sweep starts and opens its MLflow run
                for cfg in sweep_configs(args):
                    check(cfg)
            app()
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a late Ctrl-C must not turn exit status 0 into 130
        except PipelineError as error:
            exit_with(error)
        except KeyboardInterrupt as error:  # while checking, or a sweep's parent: Hydra's launchers let it through
            interrupted(error)

    return main
