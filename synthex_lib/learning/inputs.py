"""Network inputs: per-image normalisation and padding to the network's size multiple.

Images are [B, 1, H, W] float tensors in the log domain (bone bright).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zscore(image: torch.Tensor) -> torch.Tensor:
    """Per-image z-scoring of [B, 1, H, W] (the official normalisation)."""
    m = image.mean(dim=(1, 2, 3), keepdim=True)
    s = image.std(dim=(1, 2, 3), keepdim=True)
    return (image - m) / (s + 1e-6)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims at the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode if min(h, w) > max(ph, pw) else "replicate")
    return x, (h, w)
