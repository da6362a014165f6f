"""DVC stages `measure` and `claims`: each tutorial's own setup as 2000 seeded copies, then every anecdote judged.

`measure=<setup>` trains conf/tutorial/<setup>.yaml, the tutorial's setup pinned where an edit of the named
experiment cannot reach it, as copies seeded seed..seed+N-1 into results/claims/<setup>/: two setups' copy r
share a seed and compare pairwise. Without it, the claims are judged on those tables and the report written:
reports/claims.md (which says where a named experiment now differs from its tutorial), claims.png, claims.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from omegaconf import DictConfig

from pipeline import files
from pipeline.config.overrides import compose_config, flatten, resolved
from pipeline.core import data
from pipeline.core.claims_report import claims_metrics, markdown, picture
from pipeline.core.verdicts import KINDS, judge
from pipeline.errors import ConfigError, DataError
from pipeline.stages import hydra_app

UNCOMPARED = ("paths", "tracking", "hydra")  # where a run is written and logged: not what a claim is about


def setups(cfg: dict[str, Any]) -> list[str]:
    """The tutorial setups the claims name, baselines first."""
    return list(dict.fromkeys(n for c in cfg["claims"] for n in (c.get("baseline"), c["experiment"]) if n))


def measure(cfg: dict[str, Any], setup: str) -> dict[str, Any]:
    """Train the tutorial's setup `setup` as cfg['replicates'] copies (in this process); return its metrics."""
    from pipeline.stages import train
    from pipeline.stages.train import train_replicates

    overrides = [f"+tutorial={setup}", f"trainer.replicates={cfg['replicates']}", f"trainer.seed={cfg['seed']}"]
    overrides += [f"paths.root={cfg['paths']['root']}", f"tracking.enabled={str(cfg['track']).lower()}"]
    overrides += [
        "tracking.experiment_name=claims",  # apart from the experiment's training runs and their charts
        "tracking.description='The claims stage: each tutorial setup as seeded copies, one run each (reports/claims.md).'",
    ]
    train_cfg = compose_config(overrides)
    dataset = train.check(train_cfg)
    out = Path(cfg["paths"]["results"]) / setup
    with files.staged(out, train.RUN_FILES) as stage, train.tracked_run(train_cfg, overrides=[]) as run:
        return train_replicates(resolved(train_cfg), dataset, stage, run, final=out)


def measured(cfg: dict[str, Any], setup: str, tutorial: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A measured setup's per-copy table and metrics, with its epochs and XOR inputs (DataError if not measured);
    `tutorial` is the setup's composed config."""
    folder = Path(cfg["paths"]["results"]) / setup
    missing = f"not measured; run `dvc repro measure@{setup}` or `python -m pipeline.stages.claims measure={setup}`"
    metrics = files.read_json(folder / "metrics.json", missing)
    try:
        table = pd.read_csv(folder / "replicates.csv")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        raise DataError(folder / "replicates.csv", missing) from None
    dataset = data.load_configured(tutorial)
    inputs = [tuple(int(v) if float(v).is_integer() else v for v in row) for row in dataset.x_train[:, dataset.plot_features]]
    return table, metrics | {"epochs": metrics["epochs_run"], "inputs": inputs}


def differences(setup: str, tutorial: dict[str, Any], root: str) -> list[str]:
    """Where the named experiment `setup` differs from its tutorial's setup (composed: `tutorial`), as
    `key: value (tutorial: value)`."""
    experiment = resolved(compose_config([f"experiment={setup}", f"paths.root={root}"]))
    ours, theirs = flatten(experiment), flatten(tutorial)
    keys = sorted(k for k in ours.keys() | theirs.keys() if k.split(".")[0] not in UNCOMPARED and ours.get(k) != theirs.get(k))
    return [f"{key}: {ours.get(key, 'unset')} (tutorial: {theirs.get(key, 'unset')})" for key in keys]


def check(cfg: dict[str, Any]) -> None:
    """Reject a malformed claims config before anything trains."""
    if not isinstance(cfg.get("replicates"), int) or cfg["replicates"] < 2:
        raise ConfigError("replicates", cfg.get("replicates"), "an integer >= 2")
    if not isinstance(cfg.get("blocks"), int) or not 1 <= cfg["blocks"] <= cfg["replicates"] // 2:
        raise ConfigError("blocks", cfg.get("blocks"), f"an integer from 1 to replicates/2 ({cfg['replicates'] // 2})")
    for i, claim in enumerate(cfg["claims"]):
        if claim.get("kind") not in KINDS:
            raise ConfigError(f"claims.{i}.kind", claim.get("kind"), f"one of {', '.join(KINDS)}")
        for j, kind in enumerate(claim.get("stricter", [])):
            if kind not in ("converged_by", "stable_from", "loss_at_most"):
                raise ConfigError(f"claims.{i}.stricter.{j}", kind, "one of converged_by, stable_from, loss_at_most")
        if claim["kind"] in ("faster_than", "slower_than") and "baseline" not in claim:
            raise ConfigError(f"claims.{i}.baseline", None, "the experiment this claim compares with")
    if cfg.get("measure") is not None and cfg["measure"] not in setups(cfg):
        raise ConfigError("measure", cfg["measure"], f"a setup the claims name: {', '.join(setups(cfg))}")


def run(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """Judge every claim on the measured setups and write the report; return the rows."""
    check(cfg)
    tables, metrics, changed = {}, {}, {}
    for name in setups(cfg):
        tutorial = resolved(compose_config([f"+tutorial={name}", f"paths.root={cfg['paths']['root']}"]))
        tables[name], metrics[name] = measured(cfg, name, tutorial)
        changed[name] = differences(name, tutorial, cfg["paths"]["root"])
    path = Path(cfg["paths"]["tutorial_reference"])  # the tutorial code's own epoch-1 accuracies, where measured
    reference = pd.read_csv(path) if path.is_file() else None
    rows = [row for claim in cfg["claims"] for row in judge(claim, tables, metrics, cfg, reference)]
    reports = Path(cfg["paths"]["reports"])
    picture(cfg, cfg["claims"], tables, metrics, reports / "claims.png")
    files.write_text(reports / "claims.md", markdown(cfg, rows, cfg["claims"], changed))
    files.write_json(reports / "claims.json", claims_metrics(rows))
    for row in rows:
        blocks_text = ", ".join(f"{p['seeds']}: {p['verdict']}" for p in row["blocks"])
        label = f"claim {row['claim']} ({row['figure']}, {row['reading']})"
        print(f"{label}: holds for {row['share']:.1%} -> {row['verdict']} ({blocks_text})")
    return rows


def task(cfg: DictConfig) -> Any:
    """Hydra task: measure one tutorial setup (`measure=<setup>`), or judge every claim of conf/claims.yaml."""
    plain = resolved(cfg)
    if plain.get("measure") is not None:
        check(plain)
        return measure(plain, plain["measure"])
    return run(plain)


main = hydra_app(task, lambda cfg: check(resolved(cfg)), "measure=xor_relu16 replicates=200 track=false", config_name="claims")

if __name__ == "__main__":
    main()
