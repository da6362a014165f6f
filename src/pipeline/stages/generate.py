"""DVC stage `generate`: write one dataset's CSV, its record (the values it was made with) and scatter plot to data/."""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from omegaconf import DictConfig

from pipeline import files
from pipeline.config.overrides import resolved
from pipeline.core import data, plots
from pipeline.errors import ConfigError
from pipeline.stages import hydra_app


def generate(dataset_cfg: dict, data_dir: str | Path) -> tuple[Path, Path]:
    """Generate the configured dataset into `data_dir` (CSV, record, scatter plot); return the CSV and PNG paths."""
    csv, frame = data.write(dataset_cfg, data_dir)
    png = csv.with_suffix(".png")
    plots.dataset_scatter(frame, dataset_cfg["name"], png)
    return csv, png


def run(cfg: DictConfig) -> None:
    """Hydra task: generate `cfg.dataset` into `cfg.paths.data` (from the shell, never over a `dvc repro` output)."""
    folder = data_dir(cfg)
    csv, png = generate(resolved(cfg.dataset), folder)
    print(f"wrote {csv} and {png}")
    if str(folder) != str(cfg.paths.data):
        print(f"({cfg.paths.data} holds dvc repro's datasets; train on this one with paths.data={folder})")


def data_dir(cfg: DictConfig) -> str:
    """`paths.data`, or `<paths.results>/data` where a shell run would overwrite a dataset `dvc repro` made."""
    csv = Path(cfg.paths.data) / f"{cfg.dataset.name}.csv"
    if "DVC_STAGE" not in os.environ and csv.resolve() in dvc_outputs(Path(cfg.paths.root)):  # DVC sets it for stages
        return f"{cfg.paths.results}/data"
    return str(cfg.paths.data)


def check(cfg: DictConfig) -> None:
    """Reject a bad `dataset` config, or a data folder that cannot take its files, before anything is written."""
    data.check(resolved(cfg.dataset))
    folder = data_dir(cfg)
    csv = Path(folder) / f"{cfg.dataset.name}.csv"
    problem = files.unwritable(folder) or (f"{csv} is a folder" if csv.is_dir() else None)
    if problem:
        raise ConfigError("paths.data", folder, f"a folder this user can write the dataset into ({problem})")


def dvc_outputs(root: Path) -> set[Path]:
    """The files `dvc repro` writes, as <root>/dvc.lock lists them (none without one)."""
    lock = root / "dvc.lock"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.is_file() else {}
    return {(root / out["path"]).resolve() for stage in stages.values() for out in stage.get("outs", [])}


main = hydra_app(run, check, "dataset=spiral dataset.noise=0.3", ("dataset",))

if __name__ == "__main__":
    main()
