"""Figures of the scaled-up chapter: the C-arm view distributions of the image sets (NMI Extended Data Fig. 4)
and the training-set size curve (NMI Extended Data Fig. 3)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synthex_lib.datasets.layout import list_groups, read_poses
from synthex_lib.figures.style import COLUMN_IN, DOMAIN_COLORS, GOLD
from synthex_lib.geometry import view_angles

#: the angles of :func:`synthex_lib.geometry.view_angles` and their axis labels
ANGLES = {"lao": "LAO (+) / RAO (-), deg", "cran": "cranial (+) / caudal (-), deg", "off_ap": "angle from AP, deg"}


def view_angles_of(path: Path, key: str = "P") -> dict[str, np.ndarray]:
    """The view angles (degrees, :func:`~synthex_lib.geometry.view_angles`) of every image of an image file,
    from its stored projections ``key`` (``P``: registered to the CT, as the paper reports them)."""
    P = np.concatenate([read_poses(path, g)[key] for g in list_groups(path)])
    return view_angles(P)


def plot_view_histograms(sets: Mapping[str, Mapping[str, np.ndarray]]) -> plt.Figure:
    """One panel per angle, one histogram (as a density, steps) per image set ``{name: view_angles}``: a set
    whose name starts with "real" in gold, the others in the scaled-up set's black; one legend below."""
    fig, axes = plt.subplots(1, len(ANGLES), figsize=(COLUMN_IN, 2.9))
    for ax, (key, label) in zip(axes, ANGLES.items(), strict=True):
        vals = [np.asarray(a[key], float) for a in sets.values()]
        lo, hi = min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)
        bins = np.linspace(np.floor(lo / 5) * 5, np.ceil(hi / 5) * 5 + 1e-9, 19)
        for name, a in sets.items():
            color = GOLD if name.startswith("real") else DOMAIN_COLORS["realistic-scaled"]
            ax.hist(np.asarray(a[key], float), bins=bins, density=True, histtype="step", lw=1.8, color=color,
                    label=f"{name} ({len(a[key])})")
        ax.set_xlabel(label)
        ax.set_yticks([])
    axes[0].set_ylabel("density")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), frameon=False, fontsize=8)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return fig


def plot_size_curve(curve: pd.DataFrame) -> plt.Figure:
    """Landmark error (mean ± std, activated landmarks), fraction activated and Dice (mean ± std) against the
    number of training images, log-scaled; runs that did not converge are drawn hollow."""
    fig, axes = plt.subplots(1, 3, figsize=(COLUMN_IN, 2.6))
    n = curve["training images"].to_numpy()
    conv = curve["converged"].to_numpy(bool)
    panels = (("landmark_mm_mean", "landmark_mm_std", "landmark error, mm"),
              ("detection_rate", None, "landmarks activated"), ("dice_mean", "dice_std", "Dice"))
    for ax, (mean, std, label) in zip(axes, panels, strict=True):
        y = curve[mean].to_numpy(float)
        ax.errorbar(n, y, yerr=None if std is None else curve[std].to_numpy(float), color="black", lw=1.2,
                    capsize=3, zorder=1)
        ax.scatter(n[conv], y[conv], color="black", zorder=2, label="converged")
        ax.scatter(n[~conv], y[~conv], facecolor="white", edgecolor="black", zorder=2, label="not converged")
        ax.set_xscale("log")
        ax.set_xticks(n, [str(int(v)) for v in n], fontsize=7)
        ax.minorticks_off()
        ax.set_xlabel("training images")
        ax.set_title(label, fontsize=9)
    axes[1].set_ylim(0, 1)
    axes[0].legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
