"""The multi-task heads of the official SyntheX code, shared by every backbone.

A 3x3 convolution maps the decoder features to segmentation logits; the features concatenated
with those logits pass two bias-free 1x1 convolutions (``lands_num_1x1=2``) that give one heatmap
per landmark. Input: features ``[B, F, H, W]``; output: ``{"seg_logits": [B, C, H, W],
"heatmaps": [B, L, H, W]}``.
"""

from __future__ import annotations

import torch
from torch import nn


class MultiTaskHeads(nn.Module):
    def __init__(self, features: int, num_classes: int, num_landmarks: int) -> None:
        super().__init__()
        self.seg_head = nn.Conv2d(features, num_classes, kernel_size=3, padding=1)
        self.land_head = nn.Sequential(
            nn.Conv2d(features + num_classes, num_landmarks + num_classes, kernel_size=1, bias=False),
            nn.Conv2d(num_landmarks + num_classes, num_landmarks, kernel_size=1, bias=False),
        )

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        seg = self.seg_head(feats)
        return {"seg_logits": seg, "heatmaps": self.land_head(torch.cat([feats, seg], dim=1))}
