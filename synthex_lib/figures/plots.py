"""Figures of the training and results chapters: loss curves, predictions, activation curves."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap

from synthex_lib.learning.metrics import activation_curve

#: colours of the hip labels 1..6 (left/right hemipelvis, vertebrae, upper sacrum, left/right femur)
LABEL_COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4"]
LABEL_CMAP = ListedColormap(["#00000000", *LABEL_COLORS])


def plot_history(history: list[dict[str, float]], ax: plt.Axes | None = None) -> plt.Axes:
    """Training loss and its Dice / NCC parts per epoch, and the validation loss when recorded (its best
    epoch, the one the model keeps, marked)."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    ep = [h["epoch"] for h in history]
    for key, style in (("loss", "-"), ("dice_loss", "--"), ("ncc_loss", ":"), ("val_loss", "-")):
        if history and key in history[0]:
            label = "validation loss" if key == "val_loss" else key.replace("_", " ")
            ax.plot(ep, [h[key] for h in history], style, label=label, lw=2.2 if key == "val_loss" else 1.2)
    if history and "val_loss" in history[0]:
        best = min(history, key=lambda h: h["val_loss"])
        ax.plot([best["epoch"]], [best["val_loss"]], "o", color="black", label=f"kept (epoch {best['epoch']})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (−1 is perfect)")
    ax.legend(frameon=False)
    return ax


def show_predictions(images: np.ndarray, gt_labels: np.ndarray, pred_labels: np.ndarray, gt_xy: np.ndarray,
                     pred_xy: np.ndarray, visible: np.ndarray, activated: np.ndarray, n: int = 4) -> plt.Figure:
    """Rows: image with ground truth, image with prediction (labels blended, landmarks as dots:
    ground truth white circles, activated predictions crosses)."""
    n = min(n, len(images))
    fig, axes = plt.subplots(2, n, figsize=(2.6 * n, 5.4), squeeze=False)
    for i in range(n):
        for row, (lab, title) in enumerate(((gt_labels[i], "ground truth"), (pred_labels[i], "prediction"))):
            ax = axes[row, i]
            ax.imshow(images[i], cmap="gray")
            ax.imshow(lab, cmap=LABEL_CMAP, vmin=0, vmax=6, alpha=0.45, interpolation="nearest")
            v = visible[i]
            if row == 0:
                ax.scatter(gt_xy[i, v, 0], gt_xy[i, v, 1], s=14, facecolors="none", edgecolors="w", linewidths=1)
            else:
                a = activated[i]
                ax.scatter(pred_xy[i, a, 0], pred_xy[i, a, 1], s=16, marker="x", c="cyan", linewidths=1)
            ax.set_title(f"{title} #{i}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    return fig


def plot_activation_curves(curves: dict[str, dict[str, Any]], ax: plt.Axes | None = None) -> plt.Axes:
    """The paper's Fig. 4: mean landmark error against the fraction of landmarks activated, one
    curve per method (``curves[label] = {"distance_mm", "confidence", "visible"}`` arrays [N, L])."""
    ax = ax or plt.subplots(figsize=(5.5, 4))[1]
    for label, c in curves.items():
        cur = activation_curve(np.asarray(c["distance_mm"]), np.asarray(c["confidence"]),
                               np.asarray(c["visible"], bool))
        ax.plot(100 * cur["activated_fraction"], cur["mean_error_mm"], label=label,
                color="goldenrod" if label.startswith("real ") else None, lw=2.5 if label.startswith("real ") else 1.5)
    ax.set_xlabel("landmarks activated (%)")
    ax.set_ylabel("mean landmark error (mm)")
    ax.legend(fontsize=7, frameon=False)
    return ax
