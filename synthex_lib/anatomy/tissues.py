"""Tissues of the virtual lab and the material classes the emulated scanners image.

A *tissue* (internal, fine-grained: skin, muscle, marrow, ...) decides the true Hounsfield value
and texture of a voxel; each tissue belongs to one *material* class, the coarse composition that
physics-based projectors turn into energy-dependent attenuation:

==  ================  =============================================================
id  material          tissues
==  ================  =============================================================
0   air               outside air, bowel gas, trachea and bronchi
1   lung              inflated lung parenchyma
2   fat               subcutaneous, visceral and intermuscular fat, yellow marrow, drapes
3   soft tissue       muscle, skin, organs, blood, fluid, bowel content, stool, discs, gland
4   cancellous bone   trabecular bone (red marrow included)
5   cortical bone     compact bone
6   metal             nitinol (the continuum manipulator), stainless steel (drills, wires)
7   lesion            COVID-19 ground-glass opacity and consolidation
==  ================  =============================================================

True HU of the metals are computed from their composition with xraydb at the 70 keV effective
energy of :data:`synthex_lib.core.constants.MU_WATER_PER_MM` (nitinol about 2.6e4 HU): CT scanners
clip them at 3071 HU, the anatomy keeps the true value.
"""

from __future__ import annotations

from enum import IntEnum
from functools import cache

import numpy as np
import xraydb


class Material(IntEnum):
    """Material classes of :attr:`Raster.materials` (see the module table)."""

    AIR = 0
    LUNG = 1
    FAT = 2
    SOFT = 3
    CANCELLOUS = 4
    CORTICAL = 5
    METAL = 6
    LESION = 7


#: material id -> name
MATERIAL_NAMES: dict[int, str] = {int(m): m.name.lower() for m in Material}
#: standard atomic weights (g/mol) of the elements of the tissue compositions
_ATOMIC_MASS = {"H": 1.0078, "C": 12.011, "N": 14.007, "O": 15.999, "Na": 22.9898, "Mg": 24.305, "P": 30.9738,
                "S": 32.06, "Cl": 35.453, "K": 39.0983, "Ca": 40.078, "Fe": 55.845}


def formula_from_mass_fractions(fractions: dict[str, float]) -> str:
    """A chemical formula (atom proportions, as ``xraydb`` reads formulas) from elemental mass
    fractions (as ICRU-44 tabulates tissues): ``n_i = w_i / A_i``, normalized."""
    atoms = {e: w / _ATOMIC_MASS[e] for e, w in fractions.items()}
    total = sum(atoms.values())
    return "".join(f"{e}{n / total:.5f}" for e, n in atoms.items())


#: ICRU-44 elemental mass fractions of the tissue materials
ICRU44_MASS_FRACTIONS: dict[str, dict[str, float]] = {
    "lung": {"H": 0.103, "C": 0.105, "N": 0.031, "O": 0.749, "Na": 0.002, "P": 0.002, "S": 0.003, "Cl": 0.003,
             "K": 0.002},
    "adipose": {"H": 0.114, "C": 0.598, "N": 0.007, "O": 0.278, "Na": 0.001, "S": 0.001, "Cl": 0.001},
    "soft": {"H": 0.102, "C": 0.143, "N": 0.034, "O": 0.708, "Na": 0.002, "P": 0.003, "S": 0.003, "Cl": 0.002,
             "K": 0.003},
    "spongiosa": {"H": 0.085, "C": 0.404, "N": 0.028, "O": 0.367, "Na": 0.001, "Mg": 0.001, "P": 0.034, "S": 0.002,
                  "Cl": 0.002, "K": 0.001, "Ca": 0.074, "Fe": 0.001},
    "cortical": {"H": 0.034, "C": 0.155, "N": 0.042, "O": 0.435, "Na": 0.001, "Mg": 0.002, "P": 0.103, "S": 0.003,
                 "Ca": 0.225},
}

#: material id -> (chemical formula in atom proportions that xraydb reads, nominal density g/cm^3).
#: The nominal densities give, at 70 keV, about the lab's nominal HU of each material (lung -850,
#: fat -100, soft tissue +45, cancellous +290, cortical +1560, lesion -500); the emulated scanners
#: scale the density with each voxel's true HU relative to that nominal HU.
MATERIAL_COMPOSITION: dict[int, tuple[str, float]] = {
    Material.AIR: ("air", 0.0012),
    Material.LUNG: (formula_from_mass_fractions(ICRU44_MASS_FRACTIONS["lung"]), 0.15),
    Material.FAT: (formula_from_mass_fractions(ICRU44_MASS_FRACTIONS["adipose"]), 0.925),
    Material.SOFT: (formula_from_mass_fractions(ICRU44_MASS_FRACTIONS["soft"]), 1.05),
    Material.CANCELLOUS: (formula_from_mass_fractions(ICRU44_MASS_FRACTIONS["spongiosa"]), 1.18),
    Material.CORTICAL: (formula_from_mass_fractions(ICRU44_MASS_FRACTIONS["cortical"]), 1.92),
    Material.METAL: ("NiTi", 6.45),
    Material.LESION: (formula_from_mass_fractions(ICRU44_MASS_FRACTIONS["lung"]), 0.5),
}


class Tissue(IntEnum):
    """Fine tissue classes used while building a specimen (:attr:`Raster.tissues`)."""

    AIR = 0
    LUNG = 1
    FAT = 2
    SKIN = 3
    MUSCLE = 4
    ORGAN = 5
    BLOOD = 6
    FLUID = 7
    BOWEL = 8
    DISC = 9
    MARROW = 10
    CANCELLOUS = 11
    CORTICAL = 12
    NITINOL = 13
    STEEL = 14
    GGO = 15
    CONSOLIDATION = 16
    GLAND = 17
    AIRWAY_WALL = 18
    FAECES = 19
    DRAPE = 20


N_TISSUES = len(Tissue)

#: tissue -> material class
TISSUE_MATERIAL: dict[int, Material] = {
    Tissue.AIR: Material.AIR, Tissue.LUNG: Material.LUNG, Tissue.FAT: Material.FAT, Tissue.SKIN: Material.SOFT,
    Tissue.MUSCLE: Material.SOFT, Tissue.ORGAN: Material.SOFT, Tissue.BLOOD: Material.SOFT,
    Tissue.FLUID: Material.SOFT, Tissue.BOWEL: Material.SOFT, Tissue.DISC: Material.SOFT,
    Tissue.MARROW: Material.FAT, Tissue.CANCELLOUS: Material.CANCELLOUS, Tissue.CORTICAL: Material.CORTICAL,
    Tissue.NITINOL: Material.METAL, Tissue.STEEL: Material.METAL, Tissue.GGO: Material.LESION,
    Tissue.CONSOLIDATION: Material.LESION, Tissue.GLAND: Material.SOFT, Tissue.AIRWAY_WALL: Material.SOFT,
    Tissue.FAECES: Material.SOFT, Tissue.DRAPE: Material.FAT,
}

#: Nominal true HU (before per-specimen variation) and texture amplitudes (HU, standard deviation of
#: the fine and coarse texture fields). Sources: usual clinical CT ranges (fat -120..-80, muscle
#: 35..60, cancellous 150..400, cortical 1000..1900, lung -900..-800, GGO -750..-300,
#: consolidation -300..-100).
TISSUE_HU: dict[int, tuple[float, float, float]] = {
    Tissue.AIR: (-1000.0, 0.0, 0.0),
    Tissue.LUNG: (-860.0, 18.0, 12.0),
    Tissue.FAT: (-100.0, 6.0, 5.0),
    Tissue.SKIN: (45.0, 5.0, 3.0),
    Tissue.MUSCLE: (50.0, 6.0, 4.0),
    Tissue.ORGAN: (45.0, 5.0, 4.0),
    Tissue.BLOOD: (40.0, 3.0, 2.0),
    Tissue.FLUID: (8.0, 2.0, 2.0),
    Tissue.BOWEL: (25.0, 12.0, 10.0),
    Tissue.DISC: (85.0, 6.0, 4.0),
    Tissue.MARROW: (-40.0, 15.0, 10.0),
    Tissue.CANCELLOUS: (260.0, 70.0, 40.0),
    Tissue.CORTICAL: (1450.0, 60.0, 60.0),
    Tissue.NITINOL: (np.nan, 0.0, 0.0),
    Tissue.STEEL: (np.nan, 0.0, 0.0),
    Tissue.GGO: (-620.0, 50.0, 40.0),
    Tissue.CONSOLIDATION: (-180.0, 35.0, 25.0),
    Tissue.GLAND: (35.0, 8.0, 5.0),
    Tissue.AIRWAY_WALL: (30.0, 3.0, 2.0),
    # stool: soft-tissue density, heterogeneous (an assumption); its gas bubbles are painted as AIR
    Tissue.FAECES: (10.0, 25.0, 15.0),
    # surgical drapes: set from their density by tissue_tables
    Tissue.DRAPE: (np.nan, 0.0, 0.0),
}

#: effective energy (keV) at which the true HU of metals are computed
EFFECTIVE_KEV = 70.0
#: bulk density (g/cm^3) of stacked cotton surgical drapes, air between the threads and layers
#: included: an assumption (woven cotton of about 150-250 g/m^2 in sheets about half a millimetre
#: thick); drapes are tagged as the fat material class, the closest composition to cellulose
DRAPE_DENSITY_G_CM3 = 0.45


#: compositions (formula, g/cm^3) of the metals
NITINOL = ("NiTi", 6.45)
STEEL = ("Fe0.7Cr0.19Ni0.11", 7.9)
#: their true HU, ``metal_hu(*NITINOL)`` and ``metal_hu(*STEEL)`` rounded (stored to spare the
#: xraydb import; a test checks them against xraydb)
NITINOL_HU = 25731.0
STEEL_HU = 32257.0


@cache
def metal_hu(formula: str, density_g_cm3: float, kev: float = EFFECTIVE_KEV) -> float:
    """True HU of a material from its linear attenuation (xraydb) relative to water at ``kev``."""

    mu = xraydb.material_mu(formula, kev * 1000.0, density=density_g_cm3)
    mu_w = xraydb.material_mu("H2O", kev * 1000.0, density=1.0)
    return float(1000.0 * (mu - mu_w) / mu_w)


def drape_hu(density_g_cm3: float = DRAPE_DENSITY_G_CM3) -> float:
    """True HU of drapes of bulk density ``density_g_cm3`` (g/cm^3) with the composition of the fat
    material class, so that an emulated scanner, scaling the class's nominal density by
    ``(1000 + HU) / (1000 + HU_nominal)``, recovers exactly ``density_g_cm3``."""
    formula, _ = MATERIAL_COMPOSITION[Material.FAT]
    return metal_hu(formula, float(density_g_cm3))


def tissue_tables(bone_density: float = 1.0, fat_hu: float = -100.0, muscle_hu: float = 50.0,
                  drape_density_g_cm3: float = DRAPE_DENSITY_G_CM3
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lookup tables indexed by tissue id: (true HU, fine texture SD, coarse texture SD, material id).

    ``bone_density`` scales the HU of cancellous and cortical bone (elderly specimens: below 1);
    ``drape_density_g_cm3`` sets the HU of surgical drapes (:func:`drape_hu`).
    """
    hu = np.zeros(256, np.float32)
    fine = np.zeros(256, np.float32)
    coarse = np.zeros(256, np.float32)
    mat = np.zeros(256, np.uint8)
    for t, (h, a, b) in TISSUE_HU.items():
        hu[t], fine[t], coarse[t] = h, a, b
        mat[t] = TISSUE_MATERIAL[t]
    hu[Tissue.NITINOL] = NITINOL_HU
    hu[Tissue.STEEL] = STEEL_HU
    hu[Tissue.CANCELLOUS] *= bone_density
    hu[Tissue.CORTICAL] = 1000.0 + (hu[Tissue.CORTICAL] - 1000.0) * bone_density
    hu[Tissue.FAT] = fat_hu
    hu[Tissue.MARROW] = fat_hu + 60.0
    hu[Tissue.MUSCLE] = muscle_hu
    hu[Tissue.DRAPE] = drape_hu(drape_density_g_cm3)
    return hu, fine, coarse, mat
