"""Image formation at the detector: polychromatic Beer-Lambert, energy-integrating signal, saturation, log.

Units: area densities in g/cm^2; mass attenuation in cm^2/g; energies in keV. The detector signal is the
expected energy (keV) deposited per photon emitted towards the pixel by an ideal energy-integrating
detector (DeepDRR's convention); the flat field (no object) equals the spectrum's mean energy. Photon
transmission ("photon probability") is the expected fraction of emitted photons that reach the pixel.
"""

from __future__ import annotations

import numpy as np
import torch

from synthex_lib.simulate.physics.spectrum import Spectrum


def polychromatic_signal(area_density_g_cm2: torch.Tensor, mu_rho_cm2_g: np.ndarray | torch.Tensor,
                         spectrum: Spectrum, chunk: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Polychromatic Beer-Lambert per energy bin.

    Args:
        area_density_g_cm2: ``[..., M, H, W]`` area density of each of M materials along each ray (g/cm^2).
        mu_rho_cm2_g: ``[M, E]`` mass attenuation of the materials at the spectrum's energies (cm^2/g).
        spectrum: E bins (keV) with photon fractions summing to 1.
        chunk: energy bins processed at once (bounds memory).

    Returns:
        ``(signal, transmission)`` each ``[..., H, W]``: ``signal = sum_b E_b p_b exp(-sum_m mu_mb A_m)`` (keV per
        emitted photon, energy-integrating) and ``transmission = sum_b p_b exp(-sum_m mu_mb A_m)``.
    """
    A = area_density_g_cm2
    mu = torch.as_tensor(np.asarray(mu_rho_cm2_g), dtype=A.dtype, device=A.device)
    e = torch.as_tensor(spectrum.energies_kev, dtype=A.dtype, device=A.device)
    p = torch.as_tensor(spectrum.weights, dtype=A.dtype, device=A.device)
    A_last = A.movedim(-3, -1)  # noqa: N806  [..., H, W, M]
    signal = torch.zeros(A.shape[:-3] + A.shape[-2:], dtype=A.dtype, device=A.device)
    trans = torch.zeros_like(signal)
    for s0 in range(0, len(e), chunk):
        s1 = min(len(e), s0 + chunk)
        att = torch.exp(-(A_last @ mu[:, s0:s1]))  # [..., H, W, e]
        trans += att @ p[s0:s1]
        signal += att @ (p[s0:s1] * e[s0:s1])
    return signal, trans


def flat_field_signal(spectrum: Spectrum) -> float:
    """Signal with nothing in the beam: the spectrum's mean energy (keV per emitted photon)."""
    return spectrum.mean_energy_kev


def monoenergetic_transmission(mu_per_mm: float, path_mm: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """Beer-Lambert ``I / I0 = exp(-mu L)`` for a uniform material of linear attenuation ``mu`` (1/mm)."""
    if isinstance(path_mm, torch.Tensor):
        return torch.exp(-mu_per_mm * path_mm)
    return np.exp(-mu_per_mm * np.asarray(path_mm))


def saturate(signal: torch.Tensor, upper: float | None) -> torch.Tensor:
    """Detector saturation: clip the signal to ``[0, upper]`` (``upper=None``: only the lower bound)."""
    return torch.clamp(signal, min=0.0, max=upper)


def neglog(signal: torch.Tensor, flat: float | torch.Tensor, floor: float = 1e-6) -> torch.Tensor:
    """The log transform ``-log(I / I0)``: the line-integral domain (bone bright).

    ``I`` is clipped below at ``floor x I0`` so that fully absorbed or zero-count pixels stay finite.
    """
    flat_t = torch.as_tensor(flat, dtype=signal.dtype, device=signal.device)
    return -torch.log(torch.clamp(signal / flat_t, min=floor))
