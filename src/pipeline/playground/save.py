"""Save a playground try as a named experiment: conf/experiment/<name>.yaml and its entry in params.yaml."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pipeline import files
from pipeline.config.overrides import CONF_DIR
from pipeline.errors import ConfigError
from pipeline.playground import state as states

NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")  # a file name, a params.yaml key and a DVC stage key (train@<name>)
PARAMS = CONF_DIR.parent / "params.yaml"


def check_name(name: Any) -> str:
    """The experiment name, or a ConfigError: no paths, nothing DVC or a shell would read otherwise."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError("name", name, "a lowercase letter, then up to 63 lowercase letters, digits and _ (no paths)")
    return name


def preset_text(name: str, cfg: Mapping[str, Any], choices: Mapping[str, str], query: str) -> str:
    """The preset, stating every hyperparameter the try set (the way conf/experiment/*.yaml do)."""
    model = {key: cfg["model"][key] for key in ("hidden", "output", "features", "regularization", "regularization_rate")}
    trainer = {key: cfg["trainer"][key] for key in ("engine", "epochs", "batch_size", "shuffle", "seed")}
    body = {
        "defaults": [{f"override /{group}": option} for group, option in choices.items()],
        "name": name,
        "model": model,
        "optimizer": {"learning_rate": cfg["optimizer"]["learning_rate"]},
        "metrics": list(cfg["metrics"]),
        "trainer": trainer,
    }
    header = f"# @package _global_\n# Saved from the playground: /?{query}\n"
    return header + yaml.safe_dump(body, sort_keys=False, default_flow_style=None)


def params_with(text: str, name: str, dataset: str) -> str:
    """params.yaml's text with `name` added at the end of its `experiments:` block (its comments kept)."""
    lines = text.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith("experiments:"))
    end = start + 1
    while end < len(lines) and (lines[end].startswith(" ") or not lines[end].strip()):
        end += 1
    while not lines[end - 1].strip():  # before the blank lines that close the block
        end -= 1
    return "".join([*lines[:end], f"  {name}: {{dataset: {dataset}, model: model.keras}}\n", *lines[end:]])


def save(query: Mapping[str, str], name: Any, overwrite: bool = False) -> dict[str, Any]:
    """Write the preset and params.yaml entry; {"exists": True} (nothing written) if either is there and not `overwrite`."""
    name = check_name(name)
    chosen, overrides, plain = states.checked(query)
    if changed := [o for o in overrides if o.startswith("dataset.")]:
        key, _, value = changed[0].partition("=")
        allowed = f"the value of conf/dataset/{chosen['dataset']}.yaml, which `dvc repro` generates (try other data here)"
        raise ConfigError(key, value, allowed)
    preset, text = CONF_DIR / "experiment" / f"{name}.yaml", PARAMS.read_text()
    listed = (yaml.safe_load(text) or {}).get("experiments") or {}
    if (preset.exists() or name in listed) and not overwrite:
        return {"exists": True, "name": name}
    choices = {group: chosen[group] for group in ("dataset", "loss", "optimizer")}  # the config groups it chose
    files.write_text(preset, preset_text(name, plain, choices, states.query_of(chosen)))
    if name not in listed:
        files.write_text(PARAMS, params_with(text, name, chosen["dataset"]))
    return {"saved": str(Path("conf/experiment") / f"{name}.yaml"), "name": name, "command": f"dvc repro train@{name}"}
