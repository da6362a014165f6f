"""Datasets: a registry of generators, the seeded stratified split, CSV files and their loading."""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline import files
from pipeline.core import memory
from pipeline.errors import ConfigError, DataError
from pipeline.values import MAX_SEED, is_int, is_real

Arrays = tuple[np.ndarray, np.ndarray]
TRUTH_TABLE = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)


def xor() -> Arrays:
    """The XOR truth table."""
    return TRUTH_TABLE.copy(), np.array([0, 1, 1, 0])


def xor_bias() -> Arrays:
    """The XOR truth table with a constant column of ones, the hand-written backprop's bias input."""
    x, y = xor()
    return np.hstack([x, np.ones((4, 1), np.float32)]), y


def circles(n_samples: int, noise: float, factor: float, seed: int) -> Arrays:
    """scikit-learn's two concentric circles; the inner one is class 1."""
    from sklearn import datasets as skdatasets  # imported here: a sweep's parent process never needs it (1.4 s)

    return skdatasets.make_circles(n_samples=n_samples, noise=noise, factor=factor, random_state=seed)


def moons(n_samples: int, noise: float, seed: int) -> Arrays:
    """scikit-learn's two interleaving half moons."""
    from sklearn import datasets as skdatasets

    return skdatasets.make_moons(n_samples=n_samples, noise=noise, random_state=seed)


def spiral(n_samples: int, noise: float, seed: int) -> Arrays:
    """Two interleaved spirals, as in TensorFlow Playground (no library generates them)."""
    rng = np.random.default_rng(seed)
    sizes = (n_samples - n_samples // 2, n_samples // 2)
    points, labels = [], []
    for label, (size, turn) in enumerate(zip(sizes, (0.0, math.pi))):
        t = np.linspace(0.0, 1.0, size, endpoint=False)
        radius, angle = 5.0 * t, 1.75 * 2 * math.pi * t + turn
        xy = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)])
        points.append(xy + rng.normal(0.0, noise, xy.shape))
        labels.append(np.full(size, label))
    return np.vstack(points), np.concatenate(labels)


def gauss(n_samples: int, noise: float, seed: int) -> Arrays:
    """Two Gaussian clusters centred at (-2, -2) (class 0) and (2, 2) (class 1), std `noise`."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], [n_samples - n_samples // 2, n_samples // 2])
    centres = np.where(y[:, None] == 1, 2.0, -2.0)
    return centres + rng.normal(0.0, noise, (n_samples, 2)), y


def xor_noisy(n_samples: int, noise: float, seed: int) -> Arrays:
    """Points uniform in [-5, 5]^2 labelled 1 where x1*x2 < 0, then jittered by `noise`."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-5.0, 5.0, (n_samples, 2))
    y = (x[:, 0] * x[:, 1] < 0).astype(int)
    return x + rng.normal(0.0, noise, x.shape), y


GENERATORS: dict[str, Callable[..., Arrays]] = {f.__name__: f for f in (xor, xor_bias, circles, moons, spiral, gauss, xor_noisy)}


def check(cfg: Mapping[str, Any]) -> None:
    """Raise ConfigError naming the first `dataset.*` key whose value is not allowed."""
    name = generator_name(cfg)
    if name not in GENERATORS:
        key = "dataset.generator" if "generator" in cfg else "dataset.name"
        raise ConfigError(key, name, f"one of {', '.join(GENERATORS)}")
    if "generator" in cfg and not (isinstance(cfg.get("name"), str) and cfg["name"].isidentifier()):
        raise ConfigError("dataset.name", cfg.get("name"), "a file name of letters, digits and _")
    params = inspect.signature(GENERATORS[name]).parameters
    missing = [k for k in params if k not in cfg]
    if missing:
        raise ConfigError(f"dataset.{missing[0]}", None, f"dataset '{name}' needs it set")
    if "n_samples" in params:
        _require(cfg, "n_samples", is_int(cfg["n_samples"]) and cfg["n_samples"] >= 4, "an integer >= 4")
        memory.check_fits("dataset.n_samples", cfg["n_samples"], memory.ROW_BYTES * cfg["n_samples"])
    if "noise" in params:
        _require(cfg, "noise", is_real(cfg["noise"]) and cfg["noise"] >= 0, "a finite number >= 0")
    if "factor" in params:
        _require(cfg, "factor", is_real(cfg["factor"]) and 0 <= cfg["factor"] < 1, "a number in [0, 1)")
    if "seed" in params:
        _require(cfg, "seed", is_int(cfg["seed"]) and 0 <= cfg["seed"] <= MAX_SEED, f"an integer from 0 to {MAX_SEED} (32-bit)")
    fraction = cfg.get("test_fraction", 0.0)
    _require(cfg, "test_fraction", is_real(fraction) and 0 <= fraction < 1, "a number in [0, 1)")


def generator_name(cfg: Mapping[str, Any]) -> Any:
    """The generator a dataset config names: `generator`, else its `name` (e.g. circles_heldout uses circles)."""
    return cfg.get("generator", cfg.get("name"))


def csv_path(cfg: Mapping[str, Any]) -> Path:
    """The dataset CSV a run reads: <paths.data>/<dataset.name>.csv."""
    return Path(cfg["paths"]["data"]) / f"{cfg['dataset']['name']}.csv"


def generate(cfg: Mapping[str, Any]) -> pd.DataFrame:
    """Generate the configured dataset as a table: x1..xd (float32), label (0/1), split (train/test)."""
    check(cfg)
    generator = GENERATORS[generator_name(cfg)]
    x, y = generator(**{k: cfg[k] for k in inspect.signature(generator).parameters})
    x, y = np.asarray(x, np.float32), np.asarray(y, np.int64)
    split = np.full(len(y), "train", dtype=object)
    fraction = float(cfg.get("test_fraction", 0.0))
    if fraction > 0:
        from sklearn.model_selection import train_test_split

        try:
            _, test_index = train_test_split(np.arange(len(y)), test_size=fraction, stratify=y, random_state=cfg.get("seed", 0))
        except ValueError as error:
            raise ConfigError("dataset.test_fraction", fraction, f"a split scikit-learn accepts ({error})") from None
        split[test_index] = "test"
    frame = pd.DataFrame(x, columns=[f"x{i + 1}" for i in range(x.shape[1])])
    frame["label"], frame["split"] = y, split
    return frame


def write(dataset_cfg: Mapping[str, Any], data_dir: str | Path) -> tuple[Path, pd.DataFrame]:
    """Generate the dataset into <data_dir>/<name>.csv beside its record <name>.json; return the CSV path and table."""
    frame = generate(dataset_cfg)
    csv = Path(data_dir) / f"{dataset_cfg['name']}.csv"
    files.write_csv(csv, frame)  # floats keep every float32 digit
    features = [column for column in frame.columns if column.startswith("x")]
    files.write_json(record_path(csv), {"generated_with": dict(dataset_cfg), "features": features})
    return csv, frame


def record_path(csv: Path) -> Path:
    """<name>.json beside <name>.csv: the dataset config the file was generated with, and its feature columns."""
    return csv.with_suffix(".json")


def load_configured(cfg: Mapping[str, Any]) -> Dataset:
    """The data file `cfg` names, once its record shows it was generated with `cfg.dataset`'s values and columns."""
    csv = csv_path(cfg)
    features = check_record(cfg["dataset"], csv) if csv.is_file() else []
    dataset = load(csv, cfg["dataset"]["name"])
    if dataset.n_features != len(features):  # a column removed or added since: a net of another width would train
        problem = f"has {dataset.n_features} feature columns, but was generated with {len(features)} ({', '.join(features)})"
        raise DataError(csv, f"{problem}; regenerate it (`dvc repro`)")
    return dataset


def check_record(dataset_cfg: Mapping[str, Any], csv: Path) -> list[str]:
    """The feature columns `csv` was generated with; ConfigError naming the first dataset key whose value differs."""
    record = record_path(csv)
    try:
        made = json.loads(record.read_text())
        made_with, features = made["generated_with"], made["features"]
        assert isinstance(made_with, dict) and isinstance(features, list) and all(isinstance(f, str) for f in features)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        problem = f"no readable record of the values {csv.name} was made with; regenerate it (`dvc repro`)"
        raise DataError(record, problem) from None
    for key in sorted(set(dataset_cfg) | set(made_with)):
        if dataset_cfg.get(key) != made_with.get(key):
            regenerate = f"python -m pipeline.stages.generate dataset={dataset_cfg['name']} dataset.{key}=... paths.data=DIR"
            raise ConfigError(
                f"dataset.{key}",
                dataset_cfg.get(key),
                f"{made_with.get(key)!r}, the value {csv} was generated with (for other data: `{regenerate}`, "
                "then train with the same paths.data)",
            )
    return features


@dataclass(frozen=True)
class Dataset:
    """Train and test arrays: features float32 (n, d), labels float32 (n, 1)."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    has_test: bool

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]

    @property
    def plot_features(self) -> list[int]:
        """Columns that vary: a constant bias column is not a feature to plot against."""
        x = np.vstack([self.x_train, self.x_test])
        return [j for j in range(x.shape[1]) if np.ptp(x[:, j]) > 0]


def load(path: str | Path, name: str | None = None) -> Dataset:
    """Read a dataset CSV; without a test split, test is the training set (the 4-row tables)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(path, "a folder, not a data file")
    if not path.is_file():
        raise DataError(path, "no such data file; run `dvc repro` or `python -m pipeline.stages.generate` first")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(path, f"not a readable CSV ({str(error).splitlines()[0]})") from None
    features = [c for c in frame.columns if c.startswith("x")]
    if not features or not {"label", "split"} <= set(frame.columns) or frame.empty:
        raise DataError(path, "truncated or malformed: expected columns x1.., label, split and at least one row")
    try:
        values = frame[features + ["label"]].to_numpy(np.float64)
    except ValueError:
        raise DataError(path, "holds values that are not numbers") from None
    if not np.isfinite(values).all() or frame["split"].isna().any():
        raise DataError(path, "holds NaN, infinite or missing values (truncated or malformed?)")
    if not np.isin(values[:, -1], (0, 1)).all() or not frame["split"].isin(["train", "test"]).all():
        raise DataError(path, "labels must be 0/1 and split must be train/test")
    x, y = values[:, :-1].astype(np.float32), values[:, -1:].astype(np.float32)
    train = (frame["split"] == "train").to_numpy()
    if not train.any():
        raise DataError(path, "has no training rows")
    if len(np.unique(y[train])) < 2:
        raise DataError(path, f"its training rows are all of class {int(y[train][0, 0])}: a classifier needs both 0 and 1")
    has_test = bool((~train).any())
    test = ~train if has_test else train
    return Dataset(name or path.stem, x[train], y[train], x[test], y[test], has_test)


def _require(cfg: Mapping[str, Any], key: str, ok: bool, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"dataset.{key}", cfg[key], allowed)
