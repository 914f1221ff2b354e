"""Networks returning the multi-task outputs (``seg_logits``, ``heatmaps``), selected by name.

* ``"unet"``: :class:`MultiTaskUNet`, MONAI's residual U-Net of the profile's width (the CPU
  profiles' stand-in);
* ``"transunet"``: :class:`TransUNet` R50-ViT-B/16, the NMI version's network, initialised from the
  ImageNet-21k ``R50+ViT-B_16.npz`` (manifest ``transunet-weights``).
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from synthex_lib.core.errors import ConfigError
from synthex_lib.learning.models.multitask import MultiTaskUNet
from synthex_lib.learning.models.transunet import TransUNet, default_weights_path, load_vit_npz

#: The networks :func:`build_model` knows.
NETWORKS = ("unet", "transunet")


def build_model(num_classes: int, num_landmarks: int, channels: tuple[int, ...] = (16, 32, 64, 128),
                network: str = "unet", *, pretrained: bool | None = None,
                weights: str | os.PathLike[str] | None = None, **options: Any) -> nn.Module:
    """The multi-task network ``network`` (one of :data:`NETWORKS`).

    Args:
        channels: the U-Net's channels per level (ignored by ``"transunet"``).
        pretrained: load pretrained weights; the default is the paper's choice (TransUNet: the
            ImageNet-21k file, whose absence raises :class:`~synthex_lib.core.errors.DataError`;
            U-Net: none exist, ``True`` is a :class:`ConfigError`).
        weights: the npz file to load (default: where ``synthex data fetch transunet-weights`` puts it).
        options: constructor arguments of the network (e.g. ``img_size`` or a reduced ``num_layers``).
    """
    if network == "unet":
        if pretrained or weights is not None:
            raise ConfigError("parameter 'pretrained': the U-Net has no pretrained weights (use network='transunet')")
        return MultiTaskUNet(num_classes=num_classes, num_landmarks=num_landmarks, channels=tuple(channels), **options)
    if network == "transunet":
        model = TransUNet(num_classes, num_landmarks, **options)
        if pretrained is None or pretrained:
            load_vit_npz(model, weights)
        return model
    raise ConfigError(f"parameter 'network' must be one of {', '.join(map(repr, NETWORKS))}, got {network!r}")


__all__ = ["NETWORKS", "MultiTaskUNet", "TransUNet", "build_model", "default_weights_path", "load_vit_npz"]
