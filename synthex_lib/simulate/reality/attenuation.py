"""Photon interaction cross sections of the lab's materials from their elemental composition.

Every anatomy material class (:class:`synthex_lib.anatomy.tissues.Material`) is an ICRU-44 elemental
mixture (:data:`synthex_lib.anatomy.tissues.ICRU44_MASS_FRACTIONS`; air, the nickel-titanium metal and
the CsI scintillator by their stoichiometry). Its mass attenuation is the mass-fraction-weighted sum
of the per-element cross sections (Bragg additivity):

    mu/rho(E) = sum_i w_i (mu/rho)_i(E),   (mu/rho)_i = photo_i + incoh_i + coh_i     [cm^2/g]

with the per-element photoelectric, incoherent (Compton) and coherent (Rayleigh) cross sections of
the Elam, Ravel & Sieber tables (Radiat. Phys. Chem. 2002) that ``xraydb.mu_elam`` returns. The
coherent form factor used to sample Rayleigh angles is the independent-atom mixture
``sum_i (w_i / A_i) f0_i(q)^2`` of the Waasmaier & Kirfel (Acta Cryst. A 1995) form factors
(``xraydb.f0``, q = sin(theta/2) / lambda in 1/Angstrom).

This is the emulated scanner's own material code: it shares nothing with the training
simulators' :mod:`synthex_lib.simulate.physics` (and uses no CT number); a test checks it against
NIST's tabulated water (0.2059 cm^2/g) and ICRU-44 cortical bone (0.3148 cm^2/g) at 60 keV
(Hubbell & Seltzer, NIST X-ray mass attenuation coefficients, NISTIR 5632, 1995).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

import numpy as np
import xraydb

from synthex_lib.anatomy.tissues import ICRU44_MASS_FRACTIONS, Material
from synthex_lib.core.errors import ConfigError

#: interaction kinds of :func:`cross_sections`, in this order
KINDS = ("photo", "incoh", "coh")

#: dry air near sea level (NIST composition, mass fractions)
AIR_FRACTIONS = {"C": 0.000124, "N": 0.755268, "O": 0.231781, "Ar": 0.012827}
#: water (H2O by mass)
WATER_FRACTIONS = {"H": 0.111898, "O": 0.888102}
#: caesium iodide scintillator (CsI by mass), density 4.51 g/cm^3
CSI_FRACTIONS = {"Cs": 0.511549, "I": 0.488451}
CSI_DENSITY = 4.51


def stoichiometric_fractions(atoms: Mapping[str, float]) -> dict[str, float]:
    """Mass fractions of a compound from its atom counts (``{"Ni": 1, "Ti": 1}``), standard atomic masses."""
    mass = {e: float(n) * float(xraydb.atomic_mass(e)) for e, n in atoms.items()}
    total = sum(mass.values())
    return {e: m / total for e, m in mass.items()}


#: anatomy material id -> elemental mass fractions (ICRU-44 names of
#: :data:`~synthex_lib.anatomy.tissues.ICRU44_MASS_FRACTIONS`; lesions are lung tissue, the metal class NiTi)
MATERIAL_FRACTIONS: dict[int, dict[str, float]] = {
    int(Material.AIR): AIR_FRACTIONS,
    int(Material.LUNG): ICRU44_MASS_FRACTIONS["lung"],
    int(Material.FAT): ICRU44_MASS_FRACTIONS["adipose"],
    int(Material.SOFT): ICRU44_MASS_FRACTIONS["soft"],
    int(Material.CANCELLOUS): ICRU44_MASS_FRACTIONS["spongiosa"],
    int(Material.CORTICAL): ICRU44_MASS_FRACTIONS["cortical"],
    int(Material.METAL): stoichiometric_fractions({"Ni": 1, "Ti": 1}),
    int(Material.LESION): ICRU44_MASS_FRACTIONS["lung"],
}


def fractions_of(material: int | Mapping[str, float]) -> dict[str, float]:
    """Elemental mass fractions of an anatomy material id, or a mapping given directly (normalised to 1)."""
    if isinstance(material, Mapping):
        fr = {str(e): float(w) for e, w in material.items()}
    else:
        if int(material) not in MATERIAL_FRACTIONS:
            raise ConfigError(f"unknown material id {material!r}: choose one of {sorted(MATERIAL_FRACTIONS)}")
        fr = dict(MATERIAL_FRACTIONS[int(material)])
    total = sum(fr.values())
    if not fr or total <= 0 or any(w < 0 for w in fr.values()):
        raise ConfigError(f"material mass fractions must be non-negative and sum > 0, got {fr!r}")
    return {e: w / total for e, w in fr.items()}


@lru_cache(maxsize=512)
def _element_xs(element: str, kind: str, energies_kev: tuple[float, ...]) -> np.ndarray:
    e_ev = np.asarray(energies_kev, np.float64) * 1000.0
    return np.asarray(xraydb.mu_elam(element, e_ev, kind=kind), np.float64)


def _energies(energies_kev: float | np.ndarray) -> np.ndarray:
    e = np.atleast_1d(np.asarray(energies_kev, np.float64))
    if e.size == 0 or not np.all(np.isfinite(e)) or np.any(e < 1.0) or np.any(e > 500.0):
        raise ConfigError("parameter 'energies_kev' must be finite photon energies within 1-500 keV")
    return e


def cross_sections(material: int | Mapping[str, float], energies_kev: float | np.ndarray) -> np.ndarray:
    """Mass cross sections ``[3, E]`` (cm^2/g): photoelectric, incoherent, coherent (:data:`KINDS`).

    Bragg additivity over the elements of ``material`` (an anatomy material id or mass fractions).
    """
    fr = fractions_of(material)
    e = _energies(energies_kev)
    key = tuple(float(v) for v in e)
    out = np.zeros((len(KINDS), len(e)))
    for k, kind in enumerate(KINDS):
        for element, w in fr.items():
            out[k] += w * _element_xs(element, kind, key)
    return out


def mass_attenuation(material: int | Mapping[str, float], energies_kev: float | np.ndarray) -> np.ndarray:
    """Total mass attenuation ``mu/rho`` (cm^2/g) at ``energies_kev``, shape ``[E]`` (coherent included)."""
    return cross_sections(material, energies_kev).sum(axis=0)


def material_mu_rho(material_id: int, energies_kev: np.ndarray) -> np.ndarray:
    """Mass attenuation (cm^2/g) of an anatomy material class (elemental ICRU-44 mixture)."""
    return mass_attenuation(int(material_id), energies_kev)


def csi_absorption(energies_kev: np.ndarray, thickness_mm: float, cos_incidence: float | np.ndarray = 1.0
                   ) -> np.ndarray:
    """Fraction of photons absorbed in a CsI layer: ``1 - exp(-mu(E) t / cos(alpha))`` (``[E]`` or broadcast)."""
    if thickness_mm <= 0:
        raise ConfigError(f"parameter 'thickness_mm' must be positive, got {thickness_mm!r}")
    mu_mm = mass_attenuation(CSI_FRACTIONS, energies_kev) * CSI_DENSITY / 10.0
    return 1.0 - np.exp(-mu_mm * thickness_mm / np.asarray(cos_incidence, np.float64))


#: 1/Angstrom per keV: q_max = 1 / lambda = E / (h c), h c = 12.398 keV Angstrom
INV_HC_PER_KEV = 1.0 / 12.39842
#: q range (1/Angstrom) of the Waasmaier-Kirfel fits; beyond it F^2 falls off as q^-4 (assumption, negligible weight)
WK_QMAX = 6.0


def form_factor_squared(material: int | Mapping[str, float], q: np.ndarray) -> np.ndarray:
    """Independent-atom coherent form factor ``sum_i (w_i / A_i) f0_i(q)^2`` (electrons^2 mol/g), ``q`` in 1/A."""
    fr = fractions_of(material)
    q = np.asarray(q, np.float64)
    qc = np.minimum(q, WK_QMAX)
    out = np.zeros_like(q)
    for element, w in fr.items():
        f0 = np.asarray(xraydb.f0(element, qc), np.float64)
        out += w / float(xraydb.atomic_mass(element)) * f0**2
    tail = np.where(q > WK_QMAX, (WK_QMAX / np.maximum(q, 1e-12)) ** 4, 1.0)
    return out * tail


def form_factor_cdf(material: int | Mapping[str, float], q_grid: np.ndarray) -> np.ndarray:
    """Cumulative ``C(q) = int_0^q F^2(q') d(q'^2)`` on ``q_grid`` (uniform, from 0), trapezoidal rule.

    The coherent angular distribution is ``(1 + cos^2 theta) / 2 x F^2(q)`` per unit ``q^2``
    (``q^2 = (1 - cos theta) / (2 lambda^2)``), so ``q^2`` is sampled from ``C`` and the Thomson factor
    by rejection.
    """
    f2 = form_factor_squared(material, q_grid)
    q2 = np.asarray(q_grid, np.float64) ** 2
    inc = 0.5 * (f2[1:] + f2[:-1]) * np.diff(q2)
    return np.concatenate([[0.0], np.cumsum(inc)])
