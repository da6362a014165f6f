"""DVC stage `generate`: write one dataset's CSV and scatter plot to data/."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline import data, plots
from pipeline.cli import hydra_app, resolved


def generate(dataset_cfg: dict, data_dir: str | Path) -> tuple[Path, Path]:
    """Generate the configured dataset into `data_dir`; return the CSV and PNG paths."""
    frame = data.generate(dataset_cfg)
    csv, png = Path(data_dir) / f"{dataset_cfg['name']}.csv", Path(data_dir) / f"{dataset_cfg['name']}.png"
    data.save(frame, csv)
    plots.dataset_scatter(frame, dataset_cfg["name"], png)
    return csv, png


def run(cfg: DictConfig) -> None:
    """Hydra task: generate `cfg.dataset` into `cfg.paths.data`."""
    csv, png = generate(resolved(cfg.dataset), cfg.paths.data)
    print(f"wrote {csv} and {png}")


def check(cfg: DictConfig) -> None:
    """Reject a bad `dataset` config before anything is written."""
    data.check(resolved(cfg.dataset))


main = hydra_app(run, check)

if __name__ == "__main__":
    main()
