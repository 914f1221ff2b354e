"""Figures of the domain-adaptation chapter: CycleGAN translations beside their synthetic input and the real
image at the same pose, and the training curves of CycleGAN and ADDA."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.figures.style import COLUMN_IN, robust_window


def translation_rows(files: Mapping[str, tuple[Path, Path]], real: Path, group: str, indices: list[int]
                     ) -> dict[str, list[np.ndarray]]:
    """Per synthetic domain: [synthetic, CycleGAN output, real] images (float [H, W], log domain) of specimen
    ``group`` at each pose index; ``files`` maps a domain to (its file, its translated file)."""
    out: dict[str, list[np.ndarray]] = {}
    real_imgs = ImageDataset(real, [group]).images
    for dom, (src, cyc) in files.items():
        s, c = ImageDataset(src, [group]).images, ImageDataset(cyc, [group]).images
        for i in indices:
            out[f"{dom} #{i}"] = [s[i], c[i], real_imgs[i]]
    return out


def plot_translations(rows: Mapping[str, list[np.ndarray]]) -> plt.Figure:
    """One row per (domain, pose): the synthetic image, its CycleGAN translation and the real image of the same
    pose, each in its own robust grey window (CycleGAN outputs are in units of the image's standard deviation)."""
    n = max(len(rows), 1)
    w = COLUMN_IN / 3
    fig, axes = plt.subplots(n, 3, figsize=(COLUMN_IN, w * n + 0.3), squeeze=False)
    for r, (name, imgs) in enumerate(rows.items()):
        dom = name.split(" #")[0]
        for c, (img, title) in enumerate(zip(imgs, (f"{dom}", "CycleGAN output", "real (emulated)"), strict=True)):
            lo, hi = robust_window(img)
            axes[r, c].imshow(img, cmap="gray", vmin=lo, vmax=hi)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0 or c == 0:
                axes[r, c].set_title(title if r == 0 else "", fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=8)
    fig.tight_layout()
    return fig


def plot_adaptation_curves(cyclegan: Mapping[str, list[dict[str, Any]]],
                           adda: Mapping[str, list[dict[str, Any]]]) -> plt.Figure:
    """Left: the cycle-consistency and generator losses of each CycleGAN per epoch. Right: the ADDA
    discriminator's pixel-pair ranking accuracy per epoch (0.5 is chance: the features are aligned)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(COLUMN_IN, 3))
    for name, hist in cyclegan.items():
        ep = [h["epoch"] for h in hist]
        line = a.plot(ep, [h["cycle"] for h in hist], "-", label=f"{name}: cycle L1")[0]
        a.plot(ep, [h["gan_g"] for h in hist], ":", color=line.get_color(), label=f"{name}: generator GAN")
    a.set_xlabel("epoch")
    a.set_ylabel("loss")
    a.set_title("CycleGAN", fontsize=9)
    a.legend(frameon=False, fontsize=7)
    for name, hist in adda.items():
        b.plot([h["epoch"] for h in hist], [h.get("disc_acc", np.nan) for h in hist], "-o", ms=3, label=name)
    b.axhline(0.5, color="grey", lw=0.8, ls="--")
    b.set_xlabel("epoch")
    b.set_ylabel("discriminator accuracy")
    b.set_title("ADDA", fontsize=9)
    b.legend(frameon=False, fontsize=7)
    fig.tight_layout()
    return fig
