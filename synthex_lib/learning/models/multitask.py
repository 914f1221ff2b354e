"""Multi-task network: a MONAI U-Net backbone with a segmentation head and a landmark heatmap head.

The heads follow the official SyntheX code (TransUNet + landmark head, ``lands_num_1x1=2``): the
decoder features are concatenated with the segmentation logits, then two bias-free 1x1
convolutions map them to one heatmap per landmark. The backbone here is MONAI's residual U-Net
of the profile's width, the CPU profiles' stand-in for the paper's TransUNet R50-ViT-B/16
pre-trained on ImageNet-21k (:mod:`~synthex_lib.learning.models.transunet`, network
``"transunet"`` of :func:`~synthex_lib.learning.models.build_model`).

Input: ``[B, 1, H, W]`` z-scored images (H, W divisible by ``2 ** (levels - 1)``).
Output: dict with ``seg_logits`` ``[B, C, H, W]`` and ``heatmaps`` ``[B, L, H, W]``.

**Fused execution** (``fused=True``, the default). The parameters are those of MONAI's ``UNet`` and
of :class:`~synthex_lib.learning.models.heads.MultiTaskHeads` (same names, shapes and initialisation,
so checkpoints load either way), and :meth:`MultiTaskUNet.reference_forward` runs them module by
module as MONAI does. The fused forward computes the same function with fewer, larger operations,
which on one CPU thread is what limits a training step:

* instance norm + PReLU of every ``Convolution`` as one autograd node
  (:func:`~synthex_lib.learning.models.fused.instance_norm_prelu`);
* the heads run with channel counts padded to multiples of 8
  (:meth:`~synthex_lib.learning.models.heads.MultiTaskHeads.fused_forward`).

Dropout > 0 in training falls back to the reference path for that layer. ``memory_format``
(``"contiguous"``, default, or ``"channels_last"``) is the layout the fused path computes in. On the
2-core AVX2 machine this was measured on (``python -m synthex_lib.bench train``), oneDNN's
convolutions alone are faster in channels-last, but the whole step is not (the instance-norm
statistics are strided reductions there, and PyTorch's fused batch-norm kernels, which compute
instance norm on a ``[1, B*C, H, W]`` view, need the contiguous layout), so contiguous is the default.
"""

from __future__ import annotations

import torch
from monai.networks.blocks import ADN, Convolution, ResidualUnit
from monai.networks.layers.simplelayers import SkipConnection
from monai.networks.nets import UNet
from torch import nn

from synthex_lib.core.errors import ConfigError
from synthex_lib.learning.models.fused import instance_norm_prelu, prelu
from synthex_lib.learning.models.heads import MultiTaskHeads

#: layouts the fused path computes in
MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}


class MultiTaskUNet(nn.Module):
    def __init__(self, num_classes: int, num_landmarks: int, channels: tuple[int, ...] = (16, 32, 64, 128),
                 features: int = 16, num_res_units: int = 2, dropout: float = 0.0, *, fused: bool = True,
                 memory_format: str = "contiguous") -> None:
        super().__init__()
        if len(channels) < 2:
            raise ConfigError(f"parameter 'unet_channels' needs at least 2 levels, got {channels}")
        if memory_format not in MEMORY_FORMATS:
            raise ConfigError(f"parameter 'memory_format' must be one of {sorted(MEMORY_FORMATS)}, "
                              f"got {memory_format!r}")
        self.num_classes = num_classes
        self.num_landmarks = num_landmarks
        self.levels = len(channels)
        self.fused = fused
        self.memory_format = memory_format
        self.backbone = UNet(
            spatial_dims=2, in_channels=1, out_channels=features, channels=tuple(channels),
            strides=(2,) * (len(channels) - 1), num_res_units=num_res_units, norm="INSTANCE", dropout=dropout,
        )
        self.act = nn.PReLU(features)
        self.heads = MultiTaskHeads(features, num_classes, num_landmarks)
        if fused and memory_format == "channels_last":
            # oneDNN picks a convolution's layout from its input and weight: both channels-last
            self.to(memory_format=torch.channels_last)

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2 ** (self.levels - 1)

    def reference_forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """The network module by module, as MONAI and the official heads compute it."""
        return self.heads(self.act(self.backbone(image)))

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.fused:
            return self.reference_forward(image)
        x = image.contiguous(memory_format=MEMORY_FORMATS[self.memory_format])
        feats = prelu(_run(self.backbone.model, x, self.training), self.act.weight)
        return self.heads.fused_forward(feats)


# --- the fused walk over MONAI's modules ---------------------------------------------------------

def _run(module: nn.Module, x: torch.Tensor, training: bool) -> torch.Tensor:
    if isinstance(module, ResidualUnit):
        return _residual_unit(module, x, training)
    if isinstance(module, Convolution):
        return _adn(module, module.conv(x), training)
    if isinstance(module, SkipConnection) and module.mode == "cat" and module.dim == 1:
        return torch.cat([x, _run(module.submodule, x, training)], dim=1)
    if type(module) is nn.Sequential:
        for child in module:
            x = _run(child, x, training)
        return x
    return module(x)


def _fusable_adn(adn: nn.Module | None, training: bool) -> bool:
    if not isinstance(adn, ADN) or list(adn._modules) != ["N", "D", "A"]:
        return False
    norm, drop, act = adn.N, adn.D, adn.A
    return (type(norm) is nn.InstanceNorm2d and not norm.affine and not norm.track_running_stats
            and type(act) is nn.PReLU and (not training or type(drop) is nn.Dropout and drop.p == 0))


def _adn(conv: Convolution, y: torch.Tensor, training: bool) -> torch.Tensor:
    adn = getattr(conv, "adn", None)
    if adn is None:
        return y
    if _fusable_adn(adn, training):
        return instance_norm_prelu(y, adn.A.weight, adn.N.eps)
    return adn(y)


def _residual_unit(unit: ResidualUnit, x: torch.Tensor, training: bool) -> torch.Tensor:
    cx = x
    for u in unit.conv:
        cx = _run(u, cx, training)
    return cx + unit.residual(x)
