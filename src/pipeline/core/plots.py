"""Pictures: datasets, decision boundaries, learning curves, boundary evolution GIFs, neuron maps.

Every picture takes a `predict` function, so Keras models, numpy models and weight snapshots share it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window: runs headless in DVC stages and CI
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.core.data import Dataset  # noqa: E402
from pipeline.core.nets import Predict  # noqa: E402
from pipeline.files import atomic_path  # noqa: E402

# No software/date stamps, so the same data give byte-identical PNGs.
PNG_METADATA = {"Software": None}


def scatter_classes(ax: plt.Axes, x: np.ndarray, y: np.ndarray, label_suffix: str = "", **style) -> None:
    """Draw class 0 as blue dots and class 1 as red crosses on `ax`, white-edged to stand out on any background."""
    y = np.ravel(y)
    size = 80 if len(y) <= 50 else 22  # the 4-row tables need visible points
    edges: dict[str, Any] = {"edgecolors": "white", "linewidths": 0.6} | style
    ax.scatter(x[y == 0, 0], x[y == 0, 1], c="tab:blue", marker="o", s=size, label=f"class 0{label_suffix}", **edges)
    ax.scatter(x[y == 1, 0], x[y == 1, 1], c="tab:red", marker="X", s=size * 1.3, label=f"class 1{label_suffix}", **edges)


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


@dataclass(frozen=True)
class Grid:
    """A square grid over two plotted features; other (constant) features keep their value."""

    xx: np.ndarray
    yy: np.ndarray
    points: np.ndarray  # (resolution**2, n_features), float32

    @classmethod
    def spanning(cls, x: np.ndarray, features: list[int], resolution: int = 200, margin: float = 0.25) -> Grid:
        """A grid covering the data with a margin of `margin` times its range on each side."""
        low, high = x[:, features].min(axis=0), x[:, features].max(axis=0)
        pad = margin * np.maximum(high - low, 1e-6)
        axes = [np.linspace(lo - p, hi + p, resolution) for lo, hi, p in zip(low, high, pad)]
        xx, yy = np.meshgrid(*axes)
        points = np.repeat(x[:1], xx.size, axis=0).astype(np.float32)  # constant columns keep their value
        points[:, features[0]], points[:, features[1]] = xx.ravel(), yy.ravel()
        return cls(xx, yy, points)

    def surface(self, predict: Predict) -> np.ndarray:
        """P(class 1) on the grid, from one batched call."""
        return np.asarray(predict(self.points), dtype=np.float64).reshape(self.xx.shape)


def draw_boundary(ax: plt.Axes, grid: Grid, probability: np.ndarray, dataset: Dataset, colorbar: bool = True):
    """contourf of P(class 1), the 0.5 contour, train points (filled) and test points (hollow) on `ax`."""
    f0, f1 = dataset.plot_features[:2]
    filled = ax.contourf(grid.xx, grid.yy, probability, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.5)
    ax.contour(grid.xx, grid.yy, probability, levels=[0.5], colors="k", linewidths=1.5)
    scatter_classes(ax, dataset.x_train[:, [f0, f1]], dataset.y_train, " (train)")
    if dataset.has_test:
        test = dataset.x_test[:, [f0, f1]]
        y = np.ravel(dataset.y_test)
        hollow: dict[str, Any] = {
            "facecolors": "none",
            "edgecolors": "k",
            "linewidths": 0.8,
        }  # test points: outlines on any background
        ax.scatter(test[y == 0, 0], test[y == 0, 1], marker="o", s=26, label="class 0 (test)", **hollow)
        ax.scatter(test[y == 1, 0], test[y == 1, 1], marker="X", s=34, label="class 1 (test)", **hollow)
    ax.set(xlabel=f"x{f0 + 1}", ylabel=f"x{f1 + 1}")
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, label="P(class 1)")
    return filled


def decision_boundary(predict: Predict, dataset: Dataset, title: str, path: str | Path, resolution: int = 200) -> None:
    """Save the decision boundary: probability surface, 0.5 contour, train and test points."""
    grid = Grid.spanning(np.vstack([dataset.x_train, dataset.x_test]), dataset.plot_features[:2], resolution)
    fig, ax = plt.subplots(figsize=(6, 5))
    draw_boundary(ax, grid, grid.surface(predict), dataset)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    save_figure(fig, path)


def learning_curves(history: pd.DataFrame, convergence_epoch: int | None, title: str, path: str | Path) -> None:
    """Save loss and accuracy per epoch (train and test), the convergence epoch marked."""
    fig, (loss_ax, accuracy_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for ax, column in ((loss_ax, "loss"), (accuracy_ax, "accuracy")):
        ax.plot(history["epoch"], history[column], label=f"train {column}")
        if f"test_{column}" in history:
            ax.plot(history["epoch"], history[f"test_{column}"], label=f"test {column}", linestyle="--")
        if convergence_epoch:
            ax.axvline(convergence_epoch, color="green", linestyle=":", label=f"100% train accuracy (epoch {convergence_epoch})")
        ax.set(xlabel="epoch", ylabel=column, title=f"{title}: {column}")
        ax.legend(fontsize=8)
    loss_ax.set_yscale("log")
    accuracy_ax.set_ylim(-0.02, 1.02)
    save_figure(fig, path)


def boundary_evolution(
    frames: list[tuple[int, Predict]], dataset: Dataset, title: str, path: str | Path, resolution: int = 80
) -> None:
    """Save an animated GIF of the decision boundary at each (epoch, predict) frame."""
    from PIL import Image

    grid = Grid.spanning(np.vstack([dataset.x_train, dataset.x_test]), dataset.plot_features[:2], resolution)
    images = []
    for epoch, predict in frames:
        fig, ax = plt.subplots(figsize=(4.5, 4))
        draw_boundary(ax, grid, grid.surface(predict), dataset, colorbar=False)
        ax.set_title(f"{title}: epoch {epoch}")
        fig.subplots_adjust(left=0.16, right=0.96, bottom=0.12, top=0.92)  # labels inside; tight_layout: +3 s a GIF
        fig.canvas.draw()
        rgba = np.asarray(fig.canvas.buffer_rgba())  # type: ignore[attr-defined]  # the Agg canvas, selected above
        images.append(Image.fromarray(rgba).convert("P", palette=Image.Palette.ADAPTIVE))
        plt.close(fig)
    with atomic_path(path) as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=250, loop=0)


def neuron_maps(
    activations: Callable[[np.ndarray], np.ndarray], dataset: Dataset, title: str, path: str | Path, resolution: int = 60
) -> None:
    """Save one map per unit of the first hidden layer: its activation over the input plane, on one colour scale.

    A unit constant over the whole plane (a dead relu) is marked as such instead of drawn as a middle colour.
    """
    grid = Grid.spanning(np.vstack([dataset.x_train, dataset.x_test]), dataset.plot_features[:2], resolution)
    values = np.asarray(activations(grid.points))
    units, columns = values.shape[1], min(values.shape[1], 8)
    rows = -(-units // columns)
    reach = max(float(np.abs(values).max()), 1e-9)
    # tanh, linear: 0 in the middle of a diverging scale; relu, sigmoid (never below 0): 0 at the bottom
    scale = (
        {"cmap": "RdBu_r", "vmin": -reach, "vmax": reach} if values.min() < 0 else {"cmap": "viridis", "vmin": 0, "vmax": reach}
    )
    size = (1.7 * columns + 1.2, 1.7 * rows + 0.6)
    fig, axes = plt.subplots(rows, columns, figsize=size, squeeze=False, sharex=True, sharey=True, layout="constrained")
    image = None
    for unit, ax in enumerate(axes.flat):
        if unit >= units:
            ax.axis("off")
            continue
        unit_values = values[:, unit].reshape(grid.xx.shape)
        if np.ptp(unit_values) < 1e-9:  # the same output everywhere: no boundary of its own
            ax.set_facecolor("0.85")
            ax.text(
                0.5, 0.5, f"constant\n{unit_values.flat[0]:.3g}", ha="center", va="center", transform=ax.transAxes, fontsize=7
            )
        else:
            image = ax.pcolormesh(grid.xx, grid.yy, unit_values, shading="auto", **scale)
        ax.set_title(f"unit {unit}", fontsize=8)
        ax.tick_params(labelsize=6)
    f0, f1 = dataset.plot_features[:2]
    for ax in axes[-1]:
        ax.set_xlabel(f"x{f0 + 1}", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"x{f1 + 1}", fontsize=7)
    if image is not None:
        fig.colorbar(image, ax=axes, label="activation", shrink=0.9)
    fig.suptitle(f"{title}: first hidden layer, each unit's activation over the input plane", fontsize=9)
    save_figure(fig, path)


def survival_curve(ax: plt.Axes, km, epochs: int, label: str, **style) -> None:
    """Kaplan-Meier share of copies not yet at 100% training accuracy, against epoch (a step curve)."""
    times = np.concatenate([[0], km.sf.quantiles, [epochs]]) if km is not None else np.array([0, epochs])
    share = np.concatenate([[1.0], km.sf.probabilities, [km.sf.probabilities[-1]]]) if km is not None else np.ones(2)
    ax.step(times, share, where="post", label=label, **style)
    ax.set(xlabel="epoch", ylabel="share not yet at 100% accuracy", ylim=(-0.02, 1.02))


def convergence(table: pd.DataFrame, km, epochs: int, title: str, path: str | Path) -> None:
    """Save the convergence picture of a replicated run: Kaplan-Meier curve, convergence epoch, final loss and accuracy."""
    fig, axes = plt.subplots(1, 4, figsize=(18, 4))
    copies, converged = len(table), table["converged"].to_numpy()
    survival_curve(axes[0], km, epochs, f"{copies} copies")
    axes[0].set_title(f"{title}: Kaplan-Meier ({converged.mean():.0%} converged)")
    reached = table.loc[converged, "convergence_epoch"]
    axes[1].hist(reached, bins=40, color="tab:green", label="converged")
    if (~converged).any():
        axes[1].axvline(epochs, color="tab:red", linestyle="--", label=f"{(~converged).sum()} censored at the end")
    axes[1].set(xlabel="epoch of 100% training accuracy", ylabel="copies", title="convergence epoch")
    axes[1].legend(fontsize=8)
    loss = table["train_loss"].to_numpy()
    positive = loss[loss > 0]
    bins = np.geomspace(positive.min(), positive.max(), 40) if positive.size and positive.max() > positive.min() else 40
    axes[2].hist(loss, bins=bins, color="tab:purple")
    scale = "log" if positive.size == loss.size else "linear"
    axes[2].set(xscale=scale, xlabel="final training loss", ylabel="copies", title="final loss")
    values, counts = np.unique(np.round(table["train_accuracy"], 4), return_counts=True)
    axes[3].bar([f"{v:.0%}" if len(values) <= 8 else f"{v:.3f}" for v in values], counts, color="tab:orange")
    axes[3].set(xlabel="final training accuracy", ylabel="copies", title="final accuracy")
    save_figure(fig, path)


def sweep_heatmap(table: pd.DataFrame, rows: str, columns: str, metric: str) -> Figure:
    """A heatmap of the median of `metric` over two swept keys (other keys, e.g. seeds, pooled), in numeric order."""
    parsed = {key: pd.to_numeric(table[key], errors="coerce") for key in (rows, columns)}
    table = table.assign(**{k: v for k, v in parsed.items() if v.notna().all()})  # params come as text: "16" < "4"
    grid = table.pivot_table(index=rows, columns=columns, values=metric, aggfunc="median")
    fig, ax = plt.subplots(figsize=(1.2 * len(grid.columns) + 3, 0.6 * len(grid.index) + 2))
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(grid.columns)), [str(c) for c in grid.columns])
    ax.set_yticks(range(len(grid.index)), [str(i) for i in grid.index])
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        ax.text(j, i, f"{value:.3g}", ha="center", va="center", color="w", fontsize=8)
    ax.set(xlabel=columns, ylabel=rows, title=f"median {metric}")
    fig.colorbar(image, ax=ax, label=metric)
    fig.tight_layout()
    return fig
