"""Figures of the training and results chapters: loss curves, predictions, activation curves."""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from synthex_lib.figures.style import (
    COLUMN_IN,
    DOMAIN_STYLES,
    INVISIBLE_COLOR,
    LABEL_CMAP,
    LABEL_COLORS,
    LANDMARK_COLOR,
    book_style,
    domain_color,
    label_legend,
    landmark_handle,
)
from synthex_lib.learning.metrics import activation_curve

__all__ = ["LABEL_CMAP", "LABEL_COLORS", "book_style", "plot_activation_curves", "plot_activation_panels",
           "plot_history", "show_predictions"]


def plot_history(history: list[dict[str, float]], ax: plt.Axes | None = None) -> plt.Axes:
    """Training loss and its Dice / NCC parts per epoch, and the validation loss when recorded (its best
    epoch, the one the model keeps, marked)."""
    ax = ax or plt.subplots(figsize=(0.75 * COLUMN_IN, 3))[1]
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
    """Rows: image with ground truth, image with prediction (labels blended in the book's label colours,
    legend above; ground-truth landmarks white dots, activated predictions crosses)."""
    n = min(n, len(images))
    w = min(COLUMN_IN / n, 2.2)
    fig, axes = plt.subplots(2, n, figsize=(w * n, 2 * w + 0.5), squeeze=False)
    for i in range(n):
        for row, (lab, title) in enumerate(((gt_labels[i], "ground truth"), (pred_labels[i], "prediction"))):
            ax = axes[row, i]
            ax.imshow(images[i], cmap="gray")
            ax.imshow(np.ma.masked_equal(np.asarray(lab), 0), cmap=LABEL_CMAP, vmin=0, vmax=len(LABEL_COLORS),
                      alpha=0.45, interpolation="nearest")
            v = visible[i]
            if row == 0:
                ax.scatter(gt_xy[i, v, 0], gt_xy[i, v, 1], s=14, c=LANDMARK_COLOR, edgecolors="black", linewidths=0.6)
            else:
                a = activated[i]
                ax.scatter(pred_xy[i, a, 0], pred_xy[i, a, 1], s=16, marker="x", c=INVISIBLE_COLOR, linewidths=1)
            ax.set_title(f"{title} #{i}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    label_legend(fig, landmarks=True, extra=[landmark_handle("activated prediction", "x", INVISIBLE_COLOR)])
    return fig


def plot_activation_curves(curves: dict[str, dict[str, Any]], ax: plt.Axes | None = None) -> plt.Axes:
    """The paper's Fig. 4: mean landmark error against the fraction of landmarks activated, one
    curve per method (``curves[label] = {"distance_mm", "confidence", "visible"}`` arrays [N, L]).

    A label starting with an image domain (``"real strong DR"``) takes that domain's colour and line
    style (:data:`synthex_lib.figures.style.DOMAIN_COLORS`): Real2Real gold and thick, as in the paper."""
    ax = ax or plt.subplots(figsize=(0.75 * COLUMN_IN, 4))[1]
    for k, (label, c) in enumerate(curves.items()):
        cur = activation_curve(np.asarray(c["distance_mm"]), np.asarray(c["confidence"]),
                               np.asarray(c["visible"], bool))
        dom = label.split()[0] if label.split() else ""
        ax.plot(100 * cur["activated_fraction"], cur["mean_error_mm"], label=label, color=domain_color(label, k),
                ls=DOMAIN_STYLES.get(dom, "-"), lw=2.8 if dom == "real" else 1.8)
    ax.set_xlabel("landmarks activated (%)")
    ax.set_ylabel("mean landmark error (mm)")
    ax.legend(fontsize=8, frameon=False)
    return ax


def plot_activation_panels(curves: dict[str, dict[str, Any]], presets: list[str] | tuple[str, ...]) -> plt.Figure:
    """The paper's Fig. 4 at the book's column width: one panel per DR preset, each with the curves whose
    label ends in ``"<preset> DR"`` (the labels of ``notebooks/05_results_hip``). With more than four methods
    per panel, one legend for all panels goes below them, where it hides no curve."""
    n = max(len(presets), 1)
    per_panel = max([sum(k.endswith(f"{pre} DR") for k in curves) for pre in presets] or [0])
    below = per_panel > 4
    rows = -(-per_panel // 4) if below else 0
    fig, axes = plt.subplots(1, n, figsize=(COLUMN_IN, 3.6 + 0.2 * rows), squeeze=False, sharey=True)
    for ax, pre in zip(axes[0], presets, strict=False):
        plot_activation_curves({k: v for k, v in curves.items() if k.endswith(f"{pre} DR")}, ax=ax)
        ax.set_title(f"{pre} domain randomization")
    if below:
        handles, labels = axes[0][0].get_legend_handles_labels()
        for ax in axes[0]:
            if ax.get_legend() is not None:
                ax.get_legend().remove()
        names = [lab.removesuffix(f" {presets[0]} DR") for lab in labels]
        fig.legend(handles, names, loc="lower center", ncol=4, frameon=False, fontsize=8)
        fig.tight_layout(rect=(0, 0.2 * rows / (3.6 + 0.2 * rows) + 0.04, 1, 1))
    else:
        fig.tight_layout()
    return fig
