"""Label and landmark overlays, and the static domain-randomization gallery.

Images are drawn in grey (one window per gallery row, :func:`synthex_lib.figures.style.shared_window`,
so that effects can be compared; a lone panel gets its own robust window), the 2D label map as
coloured outlines or a colour blend in the book's label colours (labels 1-6 of the hip task; 0
transparent) with a legend, visible landmarks as white dots at their (x = col, y = row) pixel
positions. Invisible landmarks are not drawn.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch

from synthex_lib.figures.style import (
    COLUMN_IN,
    LABEL_CMAP,
    LABEL_COLORS,
    LANDMARK_COLOR,
    label_legend,
    robust_window,
    shared_window,
)
from synthex_lib.randomization import DomainRandomization, preset_config

__all__ = ["LABEL_CMAP", "LABEL_COLORS", "as_batch", "batch_item", "draw_sample", "effect_gallery", "effect_rows",
           "label_outlines"]


def _np(x: Any) -> np.ndarray | None:
    if x is None:
        return None
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def label_outlines(labels: np.ndarray) -> np.ndarray:
    """[H, W] label map keeping only the pixels on a label's border (4-neighbourhood), 0 elsewhere."""
    lab = np.asarray(labels)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[1:, :] |= lab[1:, :] != lab[:-1, :]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
    edge[:, :-1] |= lab[:, :-1] != lab[:, 1:]
    return np.where(edge, lab, 0)


def draw_sample(ax: plt.Axes, image: Any, labels: Any = None, landmarks: Any = None, visible: Any = None,
                title: str | None = None, label_style: str = "outline", label_alpha: float = 0.35,
                window: tuple[float, float] | None = None) -> plt.Axes:
    """Draw one sample: ``image`` [H, W] or [1, H, W] in grey over ``window`` (lo, hi) in image units
    (default: the image's own robust window); ``labels`` [H, W] ints, drawn as coloured
    ``"outline"``s (the image stays readable) or ``"fill"`` (blended with ``label_alpha``);
    ``landmarks`` [L, 2] (x, y) pixels; ``visible`` [L] bool (default: finite coordinates)."""
    img = _np(image)
    img = img[0] if img.ndim == 3 else img
    lo, hi = robust_window(img) if window is None else window
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    lab = _np(labels)
    if lab is not None:
        if label_style == "outline":
            ax.imshow(np.ma.masked_equal(label_outlines(lab), 0), cmap=LABEL_CMAP, vmin=0, vmax=len(LABEL_COLORS),
                      interpolation="nearest")
        else:
            ax.imshow(np.ma.masked_equal(lab, 0), cmap=LABEL_CMAP, vmin=0, vmax=len(LABEL_COLORS),
                      alpha=label_alpha, interpolation="nearest")
    lm = _np(landmarks)
    if lm is not None and len(lm):
        vis = _np(visible)
        vis = np.isfinite(lm).all(-1) if vis is None else vis.astype(bool)
        ax.scatter(lm[vis, 0], lm[vis, 1], s=12, c=LANDMARK_COLOR, edgecolors="black", linewidths=0.6)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def batch_item(batch: dict[str, Any], i: int) -> dict[str, Any]:
    """Sample ``i`` of a batch dict (the keys :func:`draw_sample` uses)."""
    return {k: batch[k][i] for k in ("image", "labels", "landmarks", "visible") if batch.get(k) is not None}


def as_batch(sample: dict[str, Any], n: int) -> dict[str, torch.Tensor]:
    """``n`` copies of one sample (image [H, W] or [1, H, W]) as a randomization batch, index 0..n-1."""
    img = torch.as_tensor(_np(sample["image"]), dtype=torch.float32)
    img = img[None] if img.dim() == 2 else img
    out: dict[str, torch.Tensor] = {"image": img[None].expand(n, -1, -1, -1).contiguous(),
                                    "index": torch.arange(n)}
    if sample.get("labels") is not None:
        out["labels"] = torch.as_tensor(_np(sample["labels"]).astype(np.int64))[None].expand(n, -1, -1).contiguous()
    if sample.get("landmarks") is not None:
        lm = torch.as_tensor(_np(sample["landmarks"]), dtype=torch.float32)
        out["landmarks"] = lm[None].expand(n, -1, -1).contiguous()
        vis = sample.get("visible")
        vis = torch.isfinite(lm).all(-1) if vis is None else torch.as_tensor(_np(vis).astype(bool))
        out["visible"] = vis[None].expand(n, -1).contiguous()
    return out


def effect_rows(preset: str = "strong") -> list[tuple[str, dict[str, Any]]]:
    """(row title, single-step config) for every effect of ``preset``, each forced to fire (p = 1);
    crops are left out of the per-effect rows so that all panels keep the input size."""

    rows: list[tuple[str, dict[str, Any]]] = []

    def walk(steps: list[dict[str, Any]]) -> None:
        for st in steps:
            if "effect" in st:
                if st["effect"] != "crop":
                    rows.append((st.get("name", st["effect"]), {"steps": [{**copy.deepcopy(st), "p": 1.0}]}))
            else:
                walk(st.get("some_of", st.get("sequence", [])))

    walk(preset_config(preset)["steps"])
    return rows


def effect_gallery(sample: dict[str, Any], presets: tuple[str, ...] = ("regular", "strong"), copies: int = 4,
                   seed: int = 0, effects_from: str = "strong", epoch: int = 0,
                   only: tuple[str, ...] | None = None, width_in: float = COLUMN_IN) -> plt.Figure:
    """Static gallery: the input, then one row per full preset (``presets``) and one row per effect
    of ``effects_from`` applied alone (or only the effects named in ``only``), each with ``copies``
    random draws (sample keys 0..copies-1), labels and landmarks overlaid, a legend of the label
    colours on top. The figure is ``width_in`` inches wide (the book's column).

    Each row is drawn with ONE grey window (:func:`synthex_lib.figures.style.shared_window` over the
    row's input and outputs), so a multiplied image looks darker or brighter than the input and
    dropped-out pixels or warp padding show black instead of washing the panel out."""

    rows: list[tuple[str, Any]] = [(f"preset '{p}'", DomainRandomization.from_preset(p, seed=seed)) for p in presets]
    rows += [(title, DomainRandomization.from_config(cfg, seed=seed)) for title, cfg in effect_rows(effects_from)
             if only is None or title in only]
    batch = as_batch(sample, copies)
    ncols = copies + 1
    panel = width_in / ncols
    fig, axes = plt.subplots(len(rows), ncols, figsize=(width_in, (panel + 0.28) * len(rows) + 0.3), squeeze=False)
    wrap = max(int(panel * 72 / 8 / 0.55), 8)  # characters of 8 pt text that fit one panel
    for r, (title, dr) in enumerate(rows):
        out = dr({**batch, "epoch": epoch})
        fired = dr.fired(range(copies), epoch)
        window = shared_window([_np(batch["image"][0])] + [_np(out["image"][c]) for c in range(copies)])
        draw_sample(axes[r, 0], **batch_item(batch, 0), title="input" if r == 0 else None, window=window)
        axes[r, 0].set_ylabel(title.replace("_", " "), fontsize=8)
        for c in range(copies):
            names = [n for n in fired[c] if n not in ("crop", "noise", "gamma")] if r < len(presets) else []
            label = textwrap.fill(", ".join(n.replace("_", " ") for n in names), wrap) if names else None
            draw_sample(axes[r, c + 1], **batch_item(out, c), title=label, window=window)
    fig.tight_layout(pad=0.3, h_pad=0.6, w_pad=0.3)
    label_legend(fig, landmarks=True, ncol=4)
    return fig
