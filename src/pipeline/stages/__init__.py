"""The DVC stages, thin Hydra apps, and what they share: an app that checks before it starts, one-line user errors."""

from __future__ import annotations

import atexit
import functools
import gc
import signal
import sys
import types
from collections.abc import Callable
from typing import Any

import hydra
from omegaconf import DictConfig

from pipeline.config.overrides import CONF_DIR, MULTIRUN_FLAGS, check_overrides, compose_config, sweep_configs
from pipeline.errors import Interrupted, PipelineError

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


def exit_with(error: PipelineError) -> None:
    """Print a user error as one line on stderr and exit non-zero."""
    print(f"error: {error}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


HELP = """{prog} (or python -m pipeline.stages.{module}): {summary}

Usage: {prog} [key=value ...]        one run, e.g. experiment=xor_relu16 optimizer.learning_rate=0.01
       {prog} -m [key=a,b ...]       a sweep: every combination, one MLflow parent run with the jobs nested
       {prog} --cfg job [key=value]  print the composed config and stop
Shell completion (bash): eval "$({prog} -sc install=bash)"
"""


def hydra_app(
    task: Callable[[DictConfig], Any], check: Callable[[DictConfig], Any], config_name: str = "config"
) -> Callable[[], None]:
    """Turn `task(cfg)` into a console entry point composed by Hydra from conf/<config_name>.yaml.

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
        except PipelineError as error:
            exit_with(error)
        except KeyboardInterrupt as error:
            print(f"error: interrupted ({str(error) or 'Ctrl-C'})", file=sys.stderr)
            sys.exit(130)

    app = hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name=config_name)(guarded)

    def main() -> None:
        raise_on_sigterm()
        skip_final_collection()
        args = sys.argv[1:]
        flags = {arg for arg in args if arg.startswith("-")}
        if flags & {"--help", "-h"}:
            print(HELP.format(prog=prog, module=prog.removeprefix("pipeline-"), summary=summary))
        try:
            check_overrides(args)
            if not flags:
                check(compose_config(args, config_name=config_name))
            elif flags <= set(MULTIRUN_FLAGS):  # every job, before the sweep starts and opens its MLflow run
                for cfg in sweep_configs(args):
                    check(cfg)
        except PipelineError as error:
            exit_with(error)
        app()

    return main
