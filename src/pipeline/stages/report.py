"""DVC stage `report`: reports/summary.md, one row per named experiment with its decision-boundary thumbnail."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from pipeline import files
from pipeline.stages import hydra_app

COLUMNS = ["experiment", "dataset", "architecture", "optimizer", "epochs", "train accuracy", "test accuracy", "train loss"]
COLUMNS += ["convergence epoch", "decision boundary"]


def row(entry: dict[str, Any]) -> list[str]:
    """One experiment's row, from the summary row its evaluate stage wrote."""
    name, test = entry["experiment"], entry.get("test_accuracy")
    scores = [f"{entry['train_accuracy']:.1%}", "no split" if test is None else f"{test:.1%}", f"{entry['train_loss']:.4g}"]
    thumbnail = f'<img src="../results/{name}/plots/decision_boundary.png" width="180">'
    setup = [f"`{name}`", entry["dataset"], entry["architecture"], entry["optimizer"], str(entry["epochs_run"])]
    return [*setup, *scores, str(entry["convergence_epoch"] or "never"), thumbnail]


def summary(names: list[str], rows: Path) -> str:
    """The Markdown summary table of every named experiment, from <rows>/<name>.json."""
    lines = [
        "# Named experiments",
        "",
        "One row per experiment of `params.yaml`, as `dvc repro` last trained it. Convergence epoch: the first",
        "epoch whose training accuracy is 100%. Pictures: `results/<experiment>/plots/`. Training times: MLflow.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    missing = "missing; run `dvc repro` first (the evaluate stage writes it)"
    lines += ["| " + " | ".join(row(files.read_json(rows / f"{name}.json", missing))) + " |" for name in names]
    return "\n".join(lines) + "\n"


def task(cfg: DictConfig) -> None:
    """Hydra task: write reports/summary.md for the experiments listed in params.yaml."""
    root = Path(cfg.paths.root)
    names = list(yaml.safe_load((root / "params.yaml").read_text())["experiments"])
    files.write_text(root / "reports" / "summary.md", summary(names, root / "reports" / "experiments"))
    print(f"wrote reports/summary.md ({len(names)} experiments)")


main = hydra_app(task, lambda cfg: None, "(after dvc repro: the experiments of params.yaml)")

if __name__ == "__main__":
    main()
