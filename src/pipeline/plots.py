"""Pictures: dataset scatter plots (class 0 blue dots, class 1 red crosses)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: runs headless in DVC stages and CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.files import atomic_path  # noqa: E402

# No software/date stamps, so the same data give byte-identical PNGs.
PNG_METADATA = {"Software": None}


def scatter_classes(ax: plt.Axes, x: np.ndarray, y: np.ndarray, label_suffix: str = "", **style) -> None:
    """Draw class 0 as blue dots and class 1 as red crosses on `ax`."""
    y = np.ravel(y)
    ax.scatter(x[y == 0, 0], x[y == 0, 1], c="tab:blue", marker="o", s=18, label=f"class 0{label_suffix}", **style)
    ax.scatter(x[y == 1, 0], x[y == 1, 1], c="tab:red", marker="x", s=22, label=f"class 1{label_suffix}", **style)


def dataset_scatter(frame: pd.DataFrame, title: str, path: str | Path) -> None:
    """Save a scatter plot of a dataset table's two classes (first two varying features)."""
    features = [c for c in frame.columns if c.startswith("x") and frame[c].nunique() > 1][:2]
    x, y = frame[features].to_numpy(), frame["label"].to_numpy()
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    scatter_classes(ax, x, y)
    ax.set(title=f"{title} ({len(frame)} points)", xlabel=features[0], ylabel=features[1])
    ax.legend(loc="best", fontsize=8)
    ax.set_aspect("equal", adjustable="datalim")
    save_figure(fig, path)


def save_figure(fig: plt.Figure, path: str | Path) -> None:
    """Save `fig` as a PNG atomically and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png", metadata=PNG_METADATA)
    plt.close(fig)
