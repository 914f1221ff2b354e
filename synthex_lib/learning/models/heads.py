"""The multi-task heads of the official SyntheX code, shared by every backbone.

A 3x3 convolution maps the decoder features to segmentation logits; the features concatenated
with those logits pass two bias-free 1x1 convolutions (``lands_num_1x1=2``) that give one heatmap
per landmark. Input: features ``[B, F, H, W]``; output: ``{"seg_logits": [B, C, H, W],
"heatmaps": [B, L, H, W]}``.

:meth:`MultiTaskHeads.fused_forward` computes the same function faster on a CPU (same parameters):

* the segmentation convolution runs with its output channels zero-padded to a multiple of
  :data:`SIMD_CHANNELS` (odd counts such as the 7 hip classes fall off oneDNN's vectorised kernels)
  and the padding is sliced off; the padded channels are exact zeros;
* the two 1x1 convolutions have no nonlinearity between them, so they are one linear map
  ``W2 @ W1`` (``[L, F + C]``, formed from the parameters at every call, so both receive their exact
  gradients): one pass over the full-resolution features instead of two. For an ``[L, F + C]``
  matrix instead of ``[F + C + L] + [L]`` rows this also saves multiply-adds.

Only rounding differs from :meth:`MultiTaskHeads.forward` (a test compares values and gradients).
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

#: channel counts the fused heads pad to (8 float32 lanes of AVX2; oneDNN blocks channels by 8 or 16)
SIMD_CHANNELS = 8


def _pad_rows(w: torch.Tensor, multiple: int) -> torch.Tensor:
    extra = (-w.shape[0]) % multiple
    return F.pad(w, (0, 0) * (w.dim() - 1) + (0, extra)) if extra else w


class MultiTaskHeads(nn.Module):
    def __init__(self, features: int, num_classes: int, num_landmarks: int) -> None:
        super().__init__()
        self.seg_head = nn.Conv2d(features, num_classes, kernel_size=3, padding=1)
        with warnings.catch_warnings():  # a task without landmarks has an empty last layer, nothing to initialise
            warnings.filterwarnings("ignore", "Initializing zero-element tensors", UserWarning)
            self.land_head = nn.Sequential(
                nn.Conv2d(features + num_classes, num_landmarks + num_classes, kernel_size=1, bias=False),
                nn.Conv2d(num_landmarks + num_classes, num_landmarks, kernel_size=1, bias=False),
            )

    def _no_heatmaps(self, feats: torch.Tensor) -> torch.Tensor:
        """A task without landmarks (the lesion task): ``[B, 0, H, W]``."""
        b, _, h, w = feats.shape
        return feats.new_zeros((b, 0, h, w))

    def forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        seg = self.seg_head(feats)
        if self.land_head[1].out_channels == 0:
            return {"seg_logits": seg, "heatmaps": self._no_heatmaps(feats)}
        return {"seg_logits": seg, "heatmaps": self.land_head(torch.cat([feats, seg], dim=1))}

    def fused_forward(self, feats: torch.Tensor) -> dict[str, torch.Tensor]:
        """The same outputs as :meth:`forward` (``[B, C, H, W]`` and ``[B, L, H, W]`` views, in the layout
        of ``feats``), with SIMD-padded channels and the two 1x1 convolutions composed into one."""
        conv = self.seg_head
        c = conv.out_channels
        seg = F.conv2d(feats, _pad_rows(conv.weight, SIMD_CHANNELS), _pad_rows(conv.bias, SIMD_CHANNELS)
                       if conv.bias is not None else None, conv.stride, conv.padding)
        first, second = self.land_head
        if second.out_channels == 0:
            return {"seg_logits": seg[:, :c], "heatmaps": self._no_heatmaps(feats)}
        m = second.weight.flatten(1) @ first.weight.flatten(1)  # [L, F + C]: the two 1x1 maps composed
        m = F.pad(m, (0, seg.shape[1] - c))  # zero columns for the zero padded segmentation channels
        z = torch.cat([feats, seg], dim=1)  # [B, F + C_padded, H, W]
        m = _pad_rows(m, SIMD_CHANNELS)
        if z.is_contiguous(memory_format=torch.channels_last) and not z.is_contiguous():
            heat = F.linear(z.permute(0, 2, 3, 1), m).permute(0, 3, 1, 2)  # a GEMM over pixels
        else:
            heat = F.conv2d(z, m[:, :, None, None])
        return {"seg_logits": seg[:, :c], "heatmaps": heat[:, :self.land_head[1].out_channels]}
