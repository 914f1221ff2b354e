"""Figure of the image-resolution chapter: Dice and landmark error against the image size, ours beside the
preprint's Tables 4-5."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd

from synthex_lib.figures.style import COLUMN_IN, DOMAIN_COLORS

#: marker of each source: ours filled, the paper's hollow
_MARKERS = {"ours": "o", "paper (preprint Tables 4-5)": "s"}


def plot_resolution(curves: pd.DataFrame) -> plt.Figure:
    """Two panels (Dice; landmark error of activated landmarks, mm) against the paper's image size that each of
    our sizes stands for (our sizes on the top axis), one line per method and source (``curves``:
    :func:`~synthex_lib.experiments.resolution_analysis.size_curves`): ours solid with filled markers, the
    paper's dotted with hollow ones, each domain in its colour."""
    fig, axes = plt.subplots(1, 2, figsize=(COLUMN_IN, 2.8))
    for (method, source), g in curves.groupby(["method", "source"], sort=False):
        g = g.sort_values("paper_px")
        color = DOMAIN_COLORS.get(method.split()[0], "black")
        ours = source == "ours"
        for ax, key in zip(axes, ("dice", "landmark_mm"), strict=True):
            ax.plot(g["paper_px"], g[key], ls="-" if ours else ":", marker=_MARKERS[source], color=color,
                    mfc=color if ours else "white", label=f"{method}, {source}")
    ticks = sorted(curves["paper_px"].unique())
    ours_px = dict(zip(curves["paper_px"], curves["px"], strict=True))
    for ax, title in zip(axes, ("Dice (higher is better)", "landmark error, mm (lower is better)"), strict=True):
        ax.set_xticks(ticks, [str(int(t)) for t in ticks])
        ax.set_xlabel("paper's image size, px")
        top = ax.secondary_xaxis("top")
        top.set_xticks(ticks, [str(int(ours_px[t])) for t in ticks], fontsize=7)
        top.set_xlabel("ours, px", fontsize=7)
        ax.set_title(title, fontsize=9)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=7)
    fig.tight_layout(rect=(0, 0.07 * ((len(labels) + 1) // 2), 1, 1))
    return fig
