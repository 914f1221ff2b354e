"""X-ray tube spectra from ``spekpy`` (Poludniowski et al., SpekPy v2).

Default: 90 kVp, tungsten anode at 12 degrees, 4.0 mm aluminium total filtration. This mirrors DeepDRR's
default McGPU spectrum ``90KV_AL40`` (90 kVp, 4.0 mm Al): spekpy gives a mean energy of 48.7 keV, DeepDRR's
table 49.2 keV. Bins are the spekpy 1 keV bins (or coarser, ``bin_kev``), returned as bin-centre energies
and photon-fluence weights normalised to sum 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import spekpy

from synthex_lib.core.errors import ConfigError

DEFAULT_KVP = 90.0
DEFAULT_AL_MM = 4.0
DEFAULT_ANODE_DEG = 12.0


@dataclass(frozen=True)
class Spectrum:
    """A discrete photon spectrum: bin-centre energies (keV) and photon fractions (sum 1)."""

    energies_kev: np.ndarray
    weights: np.ndarray
    kvp: float
    al_mm: float

    @property
    def mean_energy_kev(self) -> float:
        """Photon-fluence-weighted mean energy (keV)."""
        return float(np.sum(self.energies_kev * self.weights))

    def __len__(self) -> int:
        return len(self.energies_kev)


@lru_cache(maxsize=32)
def _spekpy_spectrum(kvp: float, al_mm: float, anode_deg: float, dk: float) -> tuple[np.ndarray, np.ndarray]:
    s = spekpy.Spek(kvp=kvp, th=anode_deg, dk=dk)
    if al_mm > 0:
        s.filter("Al", al_mm)
    k, f = s.get_spectrum()
    return np.asarray(k, np.float64), np.asarray(f, np.float64)


def tube_spectrum(kvp: float = DEFAULT_KVP, al_mm: float = DEFAULT_AL_MM, anode_deg: float = DEFAULT_ANODE_DEG,
                  bin_kev: float = 1.0, min_fraction: float = 1e-4) -> Spectrum:
    """Photon spectrum of a tungsten-anode tube (spekpy), binned to ``bin_kev`` keV.

    Args:
        kvp: tube voltage (kV); 40-150.
        al_mm: aluminium filtration (mm).
        anode_deg: anode angle (degrees).
        bin_kev: width of the energy bins (keV; a multiple of spekpy's 0.5 keV is exact).
        min_fraction: bins holding less than this fraction of the photons are dropped (then renormalised).
    """
    if not (20.0 <= kvp <= 300.0):
        raise ConfigError(f"parameter 'kvp' must be within 20-300 kV, got {kvp!r}")
    if al_mm < 0 or bin_kev <= 0:
        raise ConfigError(f"parameters 'al_mm' (>= 0) and 'bin_kev' (> 0) are invalid: {al_mm!r}, {bin_kev!r}")
    k, f = _spekpy_spectrum(float(kvp), float(al_mm), float(anode_deg), 0.5)
    edges = np.arange(0.0, kvp + bin_kev, bin_kev)
    idx = np.clip(np.digitize(k, edges) - 1, 0, len(edges) - 2)
    w = np.bincount(idx, weights=f, minlength=len(edges) - 1)
    e = np.bincount(idx, weights=f * k, minlength=len(edges) - 1)
    keep = w > min_fraction * w.sum()
    energies = e[keep] / w[keep]
    weights = w[keep] / w[keep].sum()
    return Spectrum(energies_kev=energies, weights=weights, kvp=float(kvp), al_mm=float(al_mm))


def monoenergetic(energy_kev: float) -> Spectrum:
    """A single-line spectrum (for tests and the naive model)."""
    return Spectrum(np.array([float(energy_kev)]), np.array([1.0]), kvp=float(energy_kev), al_mm=0.0)
