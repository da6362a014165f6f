"""DVC stage `report`: reports/summary.md, one row per named experiment with its decision-boundary thumbnail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from omegaconf import DictConfig

from pipeline import files
from pipeline.core import data
from pipeline.core.spec import layer_specs
from pipeline.config.overrides import compose_config, resolved
from pipeline.stages import hydra_app

COLUMNS = ["experiment", "dataset", "architecture", "optimizer", "epochs", "train accuracy", "test accuracy", "train loss"]
COLUMNS += ["convergence epoch", "training s", "decision boundary"]


def architecture(cfg: dict[str, Any], n_features: int) -> str:
    """`2-16relu-1sigmoid`: inputs, then units and activation of each layer."""
    layers = layer_specs(cfg["model"])
    return "-".join([str(n_features)] + [f"{spec['units']}{spec['activation']}" for spec in layers])


def row(name: str, root: Path) -> list[str]:
    """One experiment's row, read from its config and its results folder."""
    cfg = resolved(compose_config([f"experiment={name}", f"paths.root={root}", f"paths.results={root / 'results'}"]))
    folder = Path(cfg["paths"]["results"]) / name
    metrics, timing, evaluation = (
        files.read_json(folder / f, "missing; run `dvc repro` first") for f in ("metrics.json", "timing.json", "evaluation.json")
    )
    n_features = data.load_configured(cfg).n_features
    optimizer = cfg["optimizer"]["_target_"].rsplit(".", 1)[-1]
    thumbnail = f'<img src="../results/{name}/plots/decision_boundary.png" width="180">'
    return [
        f"`{name}`",
        cfg["dataset"]["name"],
        architecture(cfg, n_features),
        f"{optimizer} lr {cfg['optimizer']['learning_rate']:g}",
        str(metrics["epochs_run"]),
        f"{evaluation['train']['accuracy']:.1%}",
        f"{evaluation['test']['accuracy']:.1%}" if "test" in evaluation else "no split",
        f"{evaluation['train']['loss']:.4g}",
        str(metrics["convergence_epoch"] or "never"),
        f"{timing['train_seconds']:.2f}",
        thumbnail,
    ]


def summary(names: list[str], root: Path) -> str:
    """The Markdown summary table of every named experiment."""
    lines = [
        "# Named experiments",
        "",
        "One row per experiment of `params.yaml`, as `dvc repro` last trained it. Convergence epoch: the first",
        "epoch whose training accuracy is 100%. Pictures: `results/<experiment>/plots/`.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    lines += ["| " + " | ".join(row(name, root)) + " |" for name in names]
    return "\n".join(lines) + "\n"


def task(cfg: DictConfig) -> None:
    """Hydra task: write reports/summary.md for the experiments listed in params.yaml."""
    root = Path(cfg.paths.root)
    names = list(yaml.safe_load((root / "params.yaml").read_text())["experiments"])
    files.write_text(root / "reports" / "summary.md", summary(names, root))
    print(f"wrote reports/summary.md ({len(names)} experiments)")


main = hydra_app(task, lambda cfg: None)

if __name__ == "__main__":
    main()
