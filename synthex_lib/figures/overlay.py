"""Label and landmark overlays, and the static domain-randomization gallery.

Images are drawn in grey (each panel scaled to its own min-max), the 2D label map as coloured
outlines or a colour blend (labels 1-6 of the hip task; 0 transparent), visible landmarks as
white-edged dots at their (x = col, y = row) pixel positions. Invisible landmarks are not drawn.
"""

from __future__ import annotations

import copy
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.colors import ListedColormap

from synthex_lib.randomization import DomainRandomization, preset_config

#: colours of the hip labels 1..6 (left/right hemipelvis, vertebrae, upper sacrum, left/right femur);
#: the same palette as :mod:`synthex_lib.figures.plots`
LABEL_COLORS = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4"]
LABEL_CMAP = ListedColormap(["#00000000", *LABEL_COLORS])


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
                title: str | None = None, label_style: str = "outline", label_alpha: float = 0.35) -> plt.Axes:
    """Draw one sample: ``image`` [H, W] or [1, H, W]; ``labels`` [H, W] ints, drawn as coloured
    ``"outline"``s (the image stays readable) or ``"fill"`` (blended with ``label_alpha``);
    ``landmarks`` [L, 2] (x, y) pixels; ``visible`` [L] bool (default: finite coordinates)."""
    img = _np(image)
    img = img[0] if img.ndim == 3 else img
    ax.imshow(img, cmap="gray", interpolation="nearest")
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
        ax.scatter(lm[vis, 0], lm[vis, 1], s=12, c="#00e5ff", edgecolors="w", linewidths=0.6)
    if title:
        ax.set_title(title, fontsize=7)
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
                   only: tuple[str, ...] | None = None) -> plt.Figure:
    """Static gallery: the input, then one row per full preset (``presets``) and one row per effect
    of ``effects_from`` applied alone (or only the effects named in ``only``), each with ``copies``
    random draws (sample keys 0..copies-1), labels and landmarks overlaid."""

    rows: list[tuple[str, Any]] = [(f"preset '{p}'", DomainRandomization.from_preset(p, seed=seed)) for p in presets]
    rows += [(title, DomainRandomization.from_config(cfg, seed=seed)) for title, cfg in effect_rows(effects_from)
             if only is None or title in only]
    batch = as_batch(sample, copies)
    fig, axes = plt.subplots(len(rows), copies + 1, figsize=(1.45 * (copies + 1), 1.5 * len(rows)), squeeze=False)
    for r, (title, dr) in enumerate(rows):
        out = dr({**batch, "epoch": epoch})
        fired = dr.fired(range(copies), epoch)
        draw_sample(axes[r, 0], **batch_item(batch, 0), title="input" if r == 0 else None)
        axes[r, 0].set_ylabel(title, fontsize=7, rotation=0, ha="right", va="center")
        for c in range(copies):
            names = [n for n in fired[c] if n not in ("crop", "noise", "gamma")] if r < len(presets) else []
            draw_sample(axes[r, c + 1], **batch_item(out, c), title=", ".join(names) or None)
    fig.tight_layout(pad=0.3)
    return fig
