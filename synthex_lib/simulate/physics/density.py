"""CT numbers to physical quantities: water-equivalent fraction, mass density, threshold material decomposition.

All functions work element-wise on numpy arrays or torch tensors of Hounsfield units (HU) and return the same
type. Densities are in g/cm^3.
"""

from __future__ import annotations

import numpy as np
import torch

#: Threshold material decomposition of DeepDRR (identical in its versions 0.1 to 1.2.2):
#: air HU <= -800 < soft tissue HU <= 350 < bone.
MATERIALS: tuple[str, ...] = ("air", "soft tissue", "bone")
AIR_SOFT_HU = -800.0
SOFT_BONE_HU = 350.0

Array = np.ndarray | torch.Tensor


def _lib(x: Array):
    return torch if isinstance(x, torch.Tensor) else np


def water_fraction(hu: Array) -> Array:
    """``max(1 + HU / 1000, 0)``: the attenuation relative to water of the linear CT model (unitless).

    Its line integral is the water-equivalent path length in mm (``water-path-mm``); HU below -1000 (padding)
    are clamped to 0 (vacuum).
    """
    lib = _lib(hu)
    return lib.clip(1.0 + hu / 1000.0, 0.0, None) if lib is np else torch.clamp(1.0 + hu / 1000.0, min=0.0)


def heuristic_mu(hu: Array, hu_lower: float = -130.0, mu_water: float = 0.02683, mu_air: float = 2.485e-6) -> Array:
    """xreg's ``HUToLinAtt`` with a lower HU threshold: ``max(HU - hu_lower, 0) (mu_water - mu_air) / 1000`` in 1/mm.

    Defaults are xreg's constants (``mu_water`` = 0.02683 /mm is NIST's water at 40 keV) and the threshold of
    ``xreg-pao-create-synth-fluoro`` (-130 HU: air, lung and fat become transparent, soft tissue is shifted
    down relative to bone). With ``hu_lower = -1000`` it is the usual linear map ``mu_water (1 + HU/1000)``.
    """
    lib = _lib(hu)
    shifted = hu - hu_lower
    shifted = lib.clip(shifted, 0.0, None) if lib is np else torch.clamp(shifted, min=0.0)
    return shifted * ((mu_water - mu_air) / 1000.0)


def hu_to_density(hu: Array) -> Array:
    """DeepDRR's piecewise-linear HU -> mass density (g/cm^3):
    ``max(0, min(0.001029 HU + 1.030, 0.0005886 HU + 1.03))``.

    So rho(-1000) = 0.001, rho(0) = 1.03, rho(1000) = 1.62; the first branch holds below 0 HU, the second
    (a shallower bone slope) above.
    """
    a = 0.001029 * hu + 1.030
    b = 0.0005886 * hu + 1.03
    if isinstance(hu, torch.Tensor):
        return torch.clamp(torch.minimum(a, b), min=0.0)
    return np.maximum(0.0, np.minimum(a, b))


def material_fractions(hu: Array, thresholds: tuple[float, float] = (AIR_SOFT_HU, SOFT_BONE_HU)) -> Array:
    """Threshold decomposition into :data:`MATERIALS`: a stack ``[3, *hu.shape]`` of 0/1 fractions
    (air ``HU <= -800``, soft tissue ``-800 < HU <= 350``, bone ``HU > 350``) that sums to 1.

    The fractions become fractional where the ray marcher interpolates between voxels of different materials
    (it integrates density x fraction, so mass is conserved at boundaries).
    """
    lo, hi = thresholds
    if isinstance(hu, torch.Tensor):
        air = (hu <= lo).to(hu.dtype if hu.is_floating_point() else torch.float32)
        bone = (hu > hi).to(air.dtype)
        return torch.stack([air, 1.0 - air - bone, bone])
    air = (hu <= lo).astype(np.float32)
    bone = (hu > hi).astype(np.float32)
    return np.stack([air, 1.0 - air - bone, bone])


def material_index(hu: Array, thresholds: tuple[float, float] = (AIR_SOFT_HU, SOFT_BONE_HU)) -> Array:
    """uint8 index into :data:`MATERIALS` per voxel (0 air, 1 soft tissue, 2 bone) by the same thresholds as
    :func:`material_fractions` (for :func:`synthex_lib.simulate.raymarch.material_line_integrals`)."""
    lo, hi = thresholds
    if isinstance(hu, torch.Tensor):
        return (hu > lo).to(torch.uint8) + (hu > hi).to(torch.uint8)
    return (hu > lo).astype(np.uint8) + (hu > hi).astype(np.uint8)


def material_density_channels(hu: Array, thresholds: tuple[float, float] = (AIR_SOFT_HU, SOFT_BONE_HU)) -> Array:
    """``[3, *hu.shape]``: mass density (g/cm^3) of each of :data:`MATERIALS`, i.e. ``rho(HU) x fraction``.

    Their line integrals (in g/cm^3 x mm; divide by 10 for g/cm^2) are the per-material area densities that
    :func:`synthex_lib.simulate.physics.detector.polychromatic_signal` expects.
    """
    return hu_to_density(hu)[None] * material_fractions(hu, thresholds)
