"""A playground try as the page's URL holds it, as the overrides `pipeline-train` takes for the same run, and as the
config they compose, checked as the CLI checks it."""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from pipeline.config.overrides import CONF_DIR, check_overrides, compose_config, resolved
from pipeline.core import data
from pipeline.errors import ConfigError, DataError

DATASETS = ("xor", "xor_noisy", "circles", "moons", "spiral", "gauss")  # the presets with two features, x1 and x2
# URL key -> the dataset key it sets, where the dataset's generator takes it (a preset without it ignores it).
DATASET_KNOBS = {"n": "n_samples", "noise": "noise", "test": "test_fraction", "dseed": "seed"}
DEFAULTS = {  # xor_relu16, the first tutorial
    "dataset": "xor",
    "features": "x1,x2",
    "hidden": "16:relu",
    "loss": "mean_squared_error",
    "optimizer": "adam",
    "lr": "0.001",
    "batch": "32",
    "epochs": "1000",
    "seed": "0",
    "reg": "none",
    "rate": "0.001",
}
KEYS = (*DEFAULTS, *DATASET_KNOBS)
# Which control a config key belongs to, for the message beside it.
CONTROL_OF = {
    "dataset.n_samples": "n", "dataset.noise": "noise", "dataset.test_fraction": "test", "dataset.seed": "dseed",
    "dataset": "dataset", "model.features": "features", "model.hidden": "hidden", "model.output": "loss",
    "model.regularization_rate": "rate", "model.regularization": "reg", "loss": "loss", "optimizer.learning_rate": "lr",
    "optimizer": "optimizer", "trainer.batch_size": "batch", "trainer.epochs": "epochs", "trainer.seed": "seed",
}  # fmt: skip
PLAIN = re.compile(r"[A-Za-z0-9_.+-]*")  # a value, and (with : and ,) the hidden layers: nothing Hydra's grammar reads
FRAMES = 50  # boundary frames a run is drawn in: one per chunk of epochs/FRAMES epochs (trainer.progress_every)
PLAYGROUND = ("tracking.experiment_name=playground", "paths.results=runs/playground", "paths.data=runs/playground/data")


def parse(query: Mapping[str, str]) -> dict[str, str]:
    """The try a URL's query describes: every control's value (the defaults for those it leaves out)."""
    if not isinstance(query, Mapping) or not all(isinstance(v, str | int | float) for v in query.values()):
        raise ConfigError("query", query, 'an object of the controls\' values, e.g. {"lr": "0.01"}')
    unknown = sorted(set(query) - {*KEYS, "play"})
    if unknown:
        raise ConfigError(unknown[0], query[unknown[0]], f"one of the playground's keys {', '.join(KEYS)} or play")
    state = DEFAULTS | {k: str(v).strip() for k, v in query.items() if k in KEYS}
    for key, value in state.items():
        pattern = r"[A-Za-z0-9_.+:,-]*" if key in ("hidden", "features") else PLAIN
        if not re.fullmatch(pattern, value):
            raise ConfigError(key, value, "letters, digits and _ . + - only" + (" (and : ,)" if pattern != PLAIN else ""))
    return state


def dataset_preset(name: str) -> dict[str, Any]:
    """The values of conf/dataset/<name>.yaml."""
    return yaml.safe_load((CONF_DIR / "dataset" / f"{name}.yaml").read_text())


def dataset_overrides(state: Mapping[str, str], preset: Mapping[str, Any]) -> list[str]:
    """`dataset=<name>` and its knobs that differ from the preset (a knob it does not take is an error)."""
    overrides = [f"dataset={state['dataset']}"]
    for knob, key in DATASET_KNOBS.items():
        if knob not in state:
            continue
        if key not in preset:
            raise ConfigError(f"dataset.{key}", state[knob], f"unset: dataset {state['dataset']} has no {key}")
        if state[knob] != str(preset[key]):
            overrides.append(f"dataset.{key}={state[knob]}")
    return overrides


def hidden_override(text: str) -> str:
    """`16:relu,8:tanh` as model.hidden=[{units:16,activation:relu},{units:8,activation:tanh}]."""
    layers = []
    for i, layer in enumerate(text.split(",")):
        units, _, activation = layer.partition(":")
        if not units or not activation:
            raise ConfigError(f"model.hidden.{i}", layer, "units:activation, e.g. 16:relu")
        layers.append(f"{{units:{units},activation:{activation}}}")
    return f"model.hidden=[{','.join(layers)}]"


def train_overrides(state: Mapping[str, str], preset: Mapping[str, Any]) -> list[str]:
    """The overrides of `pipeline-train` that train this try (`preset`: the dataset preset's values)."""
    features = [] if state["features"] == "x1,x2" else [f"model.features=[{state['features']}]"]
    reg = [] if state["reg"] == "none" else [f"model.regularization={state['reg']}", f"model.regularization_rate={state['rate']}"]
    loss = [f"loss={state['loss']}"]
    epochs = state["epochs"]
    every = -(-int(epochs) // FRAMES) if epochs.isdigit() and int(epochs) > 0 else 0
    return [
        *dataset_overrides(state, preset),
        hidden_override(state["hidden"]),
        *features,
        *reg,
        *loss,
        f"optimizer={state['optimizer']}",
        f"optimizer.learning_rate={state['lr']}",
        f"trainer.batch_size={state['batch']}",
        f"trainer.epochs={epochs}",
        f"trainer.seed={state['seed']}",
        f"trainer.progress_every={every}",  # one graph call per frame: the same numbers as any other chunking
        "trainer.snapshots=0",
        *PLAYGROUND,
    ]


def query_of(state: Mapping[str, str]) -> str:
    """The URL query of a state: the values that differ from the defaults."""
    return "&".join(f"{k}={v}" for k, v in state.items() if DEFAULTS.get(k) != v)


def command(args: list[str]) -> str:
    """The shell commands that make this try's data and train it as the playground did."""
    made = [o for o in args if o.startswith(("dataset", "paths.data"))]
    generate = " ".join(["pipeline-generate", *map(shlex.quote, made)])
    return f"{generate} && pipeline-train {' '.join(map(shlex.quote, args))}"


def control(key: str) -> str:
    """The control a config key belongs to ('' for none): the longest CONTROL_OF prefix of `key`."""
    matches = [k for k in CONTROL_OF if key == k or key.startswith(f"{k}.") or key.startswith(f"{k}=")]
    return CONTROL_OF[max(matches, key=len)] if matches else ""


@dataclass
class Try:
    """A checked try: its state, the overrides and config it trains with, its dataset and command line."""

    state: dict[str, str]
    overrides: list[str]
    cfg: Any  # the composed DictConfig
    dataset: data.Dataset
    command: str
    query: str  # the URL query, as query_of gives it
    plain: dict[str, Any]  # `cfg` resolved


def compose(query: Mapping[str, str], replace: Mapping[str, str] | None = None) -> tuple[dict[str, str], list[str], Any]:
    """The state a URL query describes, its overrides (`replace` swaps some values) and the config they compose;
    a PipelineError as the CLI prints it for a bad one."""
    chosen = parse(query)
    if chosen["dataset"] not in DATASETS:
        raise ConfigError("dataset", chosen["dataset"], f"one of {', '.join(DATASETS)}")
    overrides = train_overrides(chosen, dataset_preset(chosen["dataset"]))
    for key, value in (replace or {}).items():
        overrides = [o for o in overrides if not o.startswith(f"{key}=")] + [f"{key}={value}"]
    return chosen, overrides, composed(tuple(overrides))


@functools.lru_cache(maxsize=64)
def composed(overrides: tuple[str, ...]) -> Any:
    """The checked composition of `overrides`, kept: Hydra takes 0.23 s of a try's 0.36 s to its first frame here, and
    the page has checked the same controls before play is pressed (a DictConfig read-only, so no caller changes it)."""
    check_overrides(list(overrides))
    cfg = compose_config(list(overrides))
    OmegaConf.set_readonly(cfg, True)
    return cfg


def checked(query: Mapping[str, str]) -> tuple[dict[str, str], list[str], dict[str, Any]]:
    """The state, overrides and resolved config of a try, checked without writing anything (its data file included)."""
    from pipeline.config import checks

    chosen, overrides, cfg = compose(query)
    plain = resolved(cfg)
    checks.check_training(plain, n_features=2)
    return chosen, overrides, plain


def check(query: Mapping[str, str]) -> str:
    """Check a try without writing anything; return its command line."""
    return command(checked(query)[1])


def prepare(query: Mapping[str, str], replace: Mapping[str, str] | None = None) -> Try:
    """The try a URL query describes, made and checked as `pipeline-generate` and `pipeline-train` would; else the
    PipelineError they print (nothing is trained or tracked)."""
    from pipeline.stages import train  # Hydra and the stage's checks: imported by the app's warm-up

    chosen, overrides, cfg = compose(query, replace)
    plain = resolved(cfg)
    data_dir = Path(plain["paths"]["data"])
    try:
        data.check_record(plain["dataset"], data.csv_path(plain))
    except (ConfigError, DataError):  # no file yet, or made with other values: make it, as the command's generate does
        data.write(plain["dataset"], data_dir)
    dataset = train.check(cfg)
    return Try(chosen, overrides, cfg, dataset, command(overrides), query_of(chosen), plain)
