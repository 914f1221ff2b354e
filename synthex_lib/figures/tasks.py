"""Figures of the tool detection and COVID-19 lesion chapters: example images with their labels, and the
validation curves of every run of a study (Sim2Real and the Real2Real folds)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from synthex_lib.datasets.layout import list_groups, read_group
from synthex_lib.figures.overlay import draw_sample
from synthex_lib.figures.style import COLUMN_IN


def plot_task_examples(files: Mapping[str, Path], n: int = 4) -> plt.Figure:
    """One row per image file (``title -> real.h5 / realistic.h5``): the first image of each of its first ``n``
    groups (specimens), with the label map blended in (the tool or the lesion) and the landmarks as white dots."""
    fig, axes = plt.subplots(len(files), n, figsize=(COLUMN_IN, COLUMN_IN / n * len(files) + 0.4), squeeze=False)
    for row, (title, path) in enumerate(files.items()):
        groups = list_groups(path)
        for col in range(n):
            ax = axes[row, col]
            if col >= len(groups):
                ax.axis("off")
                continue
            g = read_group(path, groups[col], index=slice(0, 1))
            draw_sample(ax, g.projs[0], g.segs[0], g.landmarks_xy[0], g.visibility()[0],
                        title=f"{title}, {groups[col]}", label_style="fill", label_alpha=0.5)
    fig.tight_layout()
    return fig


def plot_validation_curves(records: list[dict[str, Any]]) -> plt.Figure:
    """The validation loss per epoch of each run (Sim2Real and each Real2Real fold), its kept (best) epoch marked,
    a dashed line for a run that did not meet the convergence criterion."""
    fig, ax = plt.subplots(figsize=(0.75 * COLUMN_IN, 3))
    for r in records:
        p, hist = r["parameters"], r.get("history", [])
        if not hist or "val_loss" not in hist[0]:
            continue
        name = "Sim2Real" if p["train_domain"] == "realistic" else f"Real2Real fold {p['fold']}"
        ep = np.array([h["epoch"] for h in hist])
        v = np.array([h["val_loss"] for h in hist])
        converged = bool(r["metrics"].get("converged"))
        line, = ax.plot(ep, v, "-" if converged else "--", lw=2.0 if p["train_domain"] == "realistic" else 1.0,
                        label=name + ("" if converged else " (not converged)"))
        k = int(np.argmin(v))
        ax.plot([ep[k]], [v[k]], "o", color=line.get_color())
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation loss (lower is better)")
    ax.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig
