"""Multi-task network: a MONAI U-Net backbone with a segmentation head and a landmark heatmap head.

The heads follow the official SyntheX code (TransUNet + landmark head, ``lands_num_1x1=2``): the
decoder features are concatenated with the segmentation logits, then two bias-free 1x1
convolutions map them to one heatmap per landmark. The backbone here is MONAI's residual U-Net
of the profile's width, the CPU profiles' stand-in for the paper's TransUNet R50-ViT-B/16
pre-trained on ImageNet-21k (:mod:`~synthex_lib.learning.models.transunet`, network
``"transunet"`` of :func:`~synthex_lib.learning.models.build_model`).

Input: ``[B, 1, H, W]`` z-scored images (H, W divisible by ``2 ** (levels - 1)``).
Output: dict with ``seg_logits`` ``[B, C, H, W]`` and ``heatmaps`` ``[B, L, H, W]``.
"""

from __future__ import annotations

import torch
from monai.networks.nets import UNet
from torch import nn

from synthex_lib.core.errors import ConfigError
from synthex_lib.learning.models.heads import MultiTaskHeads


class MultiTaskUNet(nn.Module):
    def __init__(self, num_classes: int, num_landmarks: int, channels: tuple[int, ...] = (16, 32, 64, 128),
                 features: int = 16, num_res_units: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ConfigError(f"parameter 'unet_channels' needs at least 2 levels, got {channels}")
        self.num_classes = num_classes
        self.num_landmarks = num_landmarks
        self.levels = len(channels)
        self.backbone = UNet(
            spatial_dims=2, in_channels=1, out_channels=features, channels=tuple(channels),
            strides=(2,) * (len(channels) - 1), num_res_units=num_res_units, norm="INSTANCE", dropout=dropout,
        )
        self.act = nn.PReLU(features)
        self.heads = MultiTaskHeads(features, num_classes, num_landmarks)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.levels - 1)

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.act(self.backbone(image)))
