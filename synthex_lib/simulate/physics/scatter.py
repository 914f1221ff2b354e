"""Scatter estimate by scatter-kernel superposition (SKS; Ohnesorge et al., Med. Phys. 1999; Sun and
Star-Lack, Phys. Med. Biol. 2010).

Each pixel's pencil beam is treated as a scatter source whose strength depends on the primary transmission
``T`` through it: ``a = amplitude x T x (-ln T)^beta`` (zero for no object, rising with the water-equivalent
thickness, then falling as the object absorbs its own scatter); the scatter reaching the detector is ``a``
spread by a normalised 2D Gaussian kernel of width ``sigma_mm`` on the detector (constant padding: nothing
scatters from outside the irradiated field). The scatter-to-primary ratio this gives is about
``amplitude x (-ln T)`` under a broad uniform object (0.4 at ``-ln T = 4`` with the default amplitude 0.1,
a gridded C-arm at the pelvis). The kernel is broad, so it is applied on a downsampled image.
"""

from __future__ import annotations

import math

import kornia
import torch

DEFAULT_AMPLITUDE = 0.1
DEFAULT_BETA = 1.0
DEFAULT_SIGMA_MM = 40.0


def scatter_estimate(primary: torch.Tensor, transmission: torch.Tensor, pixel_mm: float,
                     amplitude: float = DEFAULT_AMPLITUDE, beta: float = DEFAULT_BETA,
                     sigma_mm: float = DEFAULT_SIGMA_MM) -> torch.Tensor:
    """Scatter signal ``[..., H, W]`` in the units of ``primary`` (the primary detector signal).

    Args:
        primary: primary signal ``[..., H, W]``.
        transmission: primary photon transmission ``T`` in (0, 1] ``[..., H, W]``.
        pixel_mm: detector pixel pitch (mm).
        amplitude, beta: SKS amplitude model ``amplitude x T x (-ln T)^beta`` (relative to the primary).
        sigma_mm: standard deviation of the Gaussian scatter kernel on the detector (mm).
    """

    if amplitude <= 0:
        return torch.zeros_like(primary)
    shape = primary.shape
    t = torch.clamp(transmission, min=1e-12, max=1.0)
    source = amplitude * primary * (-torch.log(t)) ** beta
    x = source.reshape(-1, 1, *shape[-2:])
    sigma_px = sigma_mm / pixel_mm
    factor = max(1, int(sigma_px // 4))  # keep >= 4 px per sigma after downsampling
    factor = min(factor, max(1, min(shape[-2:]) // 8))
    small = torch.nn.functional.avg_pool2d(x, factor, ceil_mode=True) if factor > 1 else x
    s = sigma_px / factor
    ksize = 2 * int(math.ceil(3 * s)) + 1
    blurred = kornia.filters.gaussian_blur2d(small, (ksize, ksize), (s, s), border_type="constant")
    if factor > 1:
        blurred = torch.nn.functional.interpolate(blurred, scale_factor=factor, mode="bilinear",
                                                  align_corners=False)[..., : shape[-2], : shape[-1]]
    return blurred.reshape(shape)
