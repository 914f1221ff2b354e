"""Gaussian landmark heatmaps (training targets), built after augmentation from 2D landmarks.

Landmarks are (x = col, y = row) pixels, the centre of the top-left pixel at (0, 0). As in the
official code the target is the normalised 2D Gaussian pdf ``exp(-r^2 / 2 sigma^2) / (2 pi sigma^2)``;
invisible landmarks get an all-zero heatmap.
"""

from __future__ import annotations

import math

import torch


def gaussian_heatmaps(landmarks_xy: torch.Tensor, visible: torch.Tensor, size_hw: tuple[int, int],
                      sigma_px: float) -> torch.Tensor:
    """landmarks_xy [B, L, 2], visible bool [B, L] -> float32 heatmaps [B, L, H, W]."""
    h, w = size_hw
    dev = landmarks_xy.device
    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, 1, w)
    lx = landmarks_xy[..., 0].float().nan_to_num(0.0)[..., None, None]
    ly = landmarks_xy[..., 1].float().nan_to_num(0.0)[..., None, None]
    r2 = (xs - lx) ** 2 + (ys - ly) ** 2
    hm = torch.exp(-r2 / (2 * sigma_px**2)) / (2 * math.pi * sigma_px**2)
    return hm * visible.to(hm.dtype)[..., None, None]
