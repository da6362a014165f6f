"""DVC stage `generate`: write one dataset's CSV, its record (the values it was made with) and scatter plot to data/."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from pipeline.config.overrides import resolved
from pipeline.core import data, plots
from pipeline.stages import hydra_app


def generate(dataset_cfg: dict, data_dir: str | Path) -> tuple[Path, Path]:
    """Generate the configured dataset into `data_dir` (CSV, record, scatter plot); return the CSV and PNG paths."""
    csv, frame = data.write(dataset_cfg, data_dir)
    png = csv.with_suffix(".png")
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
