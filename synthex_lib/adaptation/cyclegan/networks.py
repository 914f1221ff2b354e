"""The networks of CycleGAN (Zhu et al., "Unpaired image-to-image translation using cycle-consistent
adversarial networks", ICCV 2017, appendix 7.2), written from the paper's description.

* :class:`ResnetGenerator`: ``c7s1-k, d2k, d4k, R4k x n_blocks, u2k, uk, c7s1-1`` (Zhu et al.'s notation:
  7 x 7 and stride-2 3 x 3 convolutions with instance normalisation and ReLU, residual blocks of two
  3 x 3 convolutions, fractionally strided convolutions back up, reflection padding); the last layer is
  ``output_range * tanh``. Any input size: the input is reflect-padded to a multiple of
  ``2 ** n_downsampling`` and the output cropped back.
* :class:`PatchDiscriminator`: the 70 x 70 PatchGAN (``C64-C128-C256-C512``, 4 x 4 convolutions, leaky ReLU
  0.2, instance normalisation from the second layer, a 1-channel 4 x 4 convolution on top), one score per
  overlapping patch. :func:`receptive_field` computes the patch size from the layers (70 px for 3 layers).

Images are ``[B, 1, H, W]`` per-image standardised line integrals. Weights are drawn from N(0, 0.02) (Zhu et
al.) with a generator passed in, so they depend on the seed keys only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from synthex_lib.learning.inputs import pad_to_multiple

#: standard deviation of the initial weights (Zhu et al. 2017: Gaussian N(0, 0.02))
INIT_STD = 0.02


def init_weights(module: nn.Module, generator: torch.Generator) -> None:
    """Convolution weights ~ N(0, :data:`INIT_STD`), biases 0 (Zhu et al. 2017), drawn with ``generator``."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, INIT_STD, generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _norm(channels: int) -> nn.InstanceNorm2d:
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResidualBlock(nn.Module):
    """``x + [pad, conv3x3, IN, ReLU, pad, conv3x3, IN](x)`` with reflection padding."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels), nn.ReLU(True),
            nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _norm(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """Zhu et al.'s ResNet generator for 1-channel images: ``[B, 1, H, W]`` -> ``[B, 1, H, W]`` in
    ``(-output_range, output_range)``."""

    def __init__(self, ngf: int, n_blocks: int, n_downsampling: int = 2, output_range: float = 4.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.n_downsampling = n_downsampling
        self.output_range = float(output_range)
        layers: list[nn.Module] = [nn.ReflectionPad2d(3), nn.Conv2d(1, ngf, 7), _norm(ngf), nn.ReLU(True)]
        ch = ngf
        for _ in range(n_downsampling):
            layers += [nn.Conv2d(ch, 2 * ch, 3, stride=2, padding=1), _norm(2 * ch), nn.ReLU(True)]
            ch *= 2
        layers += [ResidualBlock(ch) for _ in range(n_blocks)]
        for _ in range(n_downsampling):
            layers += [nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1), _norm(ch // 2),
                       nn.ReLU(True)]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, 1, 7)]
        self.model = nn.Sequential(*layers)
        init_weights(self, generator if generator is not None else torch.Generator().manual_seed(0))

    @property
    def size_multiple(self) -> int:
        return 2 ** self.n_downsampling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xp, (h, w) = pad_to_multiple(x, self.size_multiple)
        return self.output_range * torch.tanh(self.model(xp)[..., :h, :w])


class PatchDiscriminator(nn.Module):
    """Zhu et al.'s PatchGAN: ``[B, 1, H, W]`` -> ``[B, 1, h, w]`` unbounded scores (least-squares GAN targets 1
    for real and 0 for generated images), one per receptive field of :func:`receptive_field` px."""

    def __init__(self, ndf: int, n_layers: int = 3, generator: torch.Generator | None = None) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        ch = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2 ** n, 8)
            stride = 2 if n < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1), _norm(out), nn.LeakyReLU(0.2, True)]
            ch = out
        layers += [nn.Conv2d(ch, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*layers)
        init_weights(self, generator if generator is not None else torch.Generator().manual_seed(0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def receptive_field(module: nn.Module) -> int:
    """The receptive field (px) of one output of a chain of convolutions (read from the module's Conv2d layers
    in order): ``r = 1``, then from the top layer down ``r = (r - 1) * stride + kernel``."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    r = 1
    for c in reversed(convs):
        r = (r - 1) * c.stride[0] + c.kernel_size[0]
    return r


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al., ICCV 2017; Zhu et al. 2017): mean ``(D(x) - 1)^2`` for ``real``,
    mean ``D(x)^2`` otherwise."""
    return F.mse_loss(scores, torch.full_like(scores, 1.0 if real else 0.0))
