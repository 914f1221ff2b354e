"""The parameters of a procedural hip specimen and their sampling.

:class:`HipParams` (with one :class:`SideParams` per side) holds everything that defines one hip
specimen, JSON-serializable; :func:`sample_hip_params` draws them from the seeded generator of
the specimen. Dimensions follow adult averages (femoral head radius 21-26 mm, neck-shaft angle
about 128 deg, anteversion about 13 deg).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from synthex_lib.anatomy.hip_bowel import BowelContent, sample_faeces, sample_gas
from synthex_lib.core.seeding import seeded_rng

#: Nominal sacral foramina, S1..S4: (height, width) diameters in mm of the anterior (pelvic) and
#: the posterior (dorsal) foramina. S1 and S2 from Saluja et al., J Clin Diagn Res 2018 (108 dry
#: sacra: ASF1 13.0 x 12.2, ASF2 12.9 x 13.1, PSF1 10.4 x 7.7, PSF2 7.1 x 7.3 mm); S3 and S4 are an
#: assumption (the foramina narrow caudally).
FORAMEN_DIAMETERS_MM: tuple[tuple[tuple[float, float], tuple[float, float]], ...] = (
    ((13.0, 12.2), (10.4, 7.7)), ((12.9, 13.1), (7.1, 7.3)), ((10.0, 9.0), (6.0, 5.5)), ((8.0, 7.0), (5.0, 4.5)))

def sample_foramina(rng: np.random.Generator) -> list[list[float]]:
    """Per-specimen shapes of the 8 sacral foramina (S1..S4, right then left): for each, the
    anterior semi-axes (mm, long then short), its long-axis angle (deg, from the cranial axis in
    the foramen's plane), then the same for the posterior foramen. Sizes scatter about
    :data:`FORAMEN_DIAMETERS_MM` by 8 % per specimen, 5 % per level and 4 % between the sides
    (clipped at 2.5 SD), the posterior at most 0.85 times the anterior (assumptions); each is an
    ellipse of axis ratio 1.15..1.6 (real foramina are oval or irregular, seldom circular)."""

    def factor(sd: float) -> float:
        return float(np.clip(rng.normal(1.0, sd), 1 - 2.5 * sd, 1 + 2.5 * sd))

    specimen = factor(0.08)
    out = []
    for (ant, post) in FORAMEN_DIAMETERS_MM:
        level = [specimen * factor(0.05) for _ in (ant, post)]
        for _ in (-1, 1):
            row: list[float] = []
            for d, f in zip((ant, post), level, strict=True):
                size = 0.25 * (d[0] + d[1]) * f * factor(0.04)
                if row:  # the dorsal opening stays smaller than the pelvic one
                    size = min(size, 0.85 * float(np.sqrt(row[0] * row[1])))
                ratio = float(rng.uniform(1.15, 1.6))
                row += [float(size * np.sqrt(ratio)), float(size / np.sqrt(ratio)), float(rng.normal(0, 25))]
            out.append(row)
    return out


@dataclass
class SideParams:
    """Per-side parameters (mm, deg)."""

    fh_radius: float
    nsa_deg: float  #: femoral neck-shaft angle
    anteversion_deg: float  #: femoral anteversion
    flexion_deg: float  #: hip flexion (distal femur moves anteriorly)
    abduction_deg: float  #: hip abduction (distal femur moves laterally)
    neck_mm: float  #: head centre to shaft axis along the neck
    asym: float  #: small size asymmetry factor of the hemipelvis


@dataclass
class HipParams:
    """Everything that defines one hip specimen (JSON-serializable)."""

    seed_keys: list[Any]
    size: float  #: overall scale of the skeleton
    female: float  #: 0 = male-like, 1 = female-like pelvic shape
    tilt_deg: float  #: pelvic tilt (about the left axis)
    obliquity_deg: float  #: pelvic obliquity (about the posterior axis)
    rotation_deg: float  #: axial rotation of the pelvis (about the superior axis)
    lordosis_deg: float  #: L2-S1 lordosis
    sacral_slope_deg: float
    left: SideParams
    right: SideParams
    fat_mm: list[float]  #: subcutaneous fat: anterior, lateral, posterior, buttock
    muscle: float  #: muscle bulk factor
    visceral_fat: float  #: 0..1, fraction of the abdomen that is fat
    bone_density: float  #: scales bone HU (osteoporotic cadavers < 1)
    fat_hu: float
    muscle_hu: float
    bladder: list[float]  #: bladder semi-axes (mm)
    #: bowel gas collections (:class:`~synthex_lib.anatomy.hip_bowel.BowelContent`, kind ``"gas"``)
    gas: list[BowelContent] = field(default_factory=list)
    #: faecal fillings (kind ``"faeces"``), mottled with gas bubbles
    faeces: list[BowelContent] = field(default_factory=list)
    #: sacral foramina shapes (:func:`sample_foramina`); empty: the nominal sizes, elliptic-free
    foramina: list[list[float]] = field(default_factory=list)
    z_range: list[float] = field(default_factory=lambda: [-160.0, 240.0])  #: scanned range (mm, world z)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> HipParams:
        d = dict(d)
        d["left"], d["right"] = SideParams(**d["left"]), SideParams(**d["right"])
        for key in ("gas", "faeces"):
            d[key] = [BowelContent.from_any(g) for g in d.get(key, [])]
        return HipParams(**d)


def sample_hip_params(*keys: Any) -> HipParams:
    """Draw a hip specimen's parameters from ``seeded_rng(*keys)``."""
    rng = seeded_rng(*keys, "hip-params")
    female = float(np.clip((0.85 if rng.random() < 0.5 else 0.15) + rng.normal(0, 0.1), 0, 1))
    size = float(np.clip(rng.normal(1.0 - 0.03 * female, 0.04), 0.9, 1.1))

    def side() -> SideParams:
        return SideParams(
            fh_radius=float(np.clip(rng.normal(24.5 - 2.5 * female, 0.8), 20.5, 27.5)),
            nsa_deg=float(np.clip(rng.normal(128, 5), 115, 142)),
            anteversion_deg=float(np.clip(rng.normal(13, 7), -5, 35)),
            flexion_deg=float(rng.uniform(-5, 20)),
            abduction_deg=float(rng.normal(3, 5)),
            neck_mm=float(rng.normal(52, 3)),
            asym=float(rng.normal(1.0, 0.01)),
        )

    left, right = side(), side()
    # the two femoral heads of one person differ by well under a millimetre
    right.fh_radius = float(np.clip(left.fh_radius + rng.normal(0, 0.3), 20.5, 27.5))
    fat_base = rng.uniform(6, 28) * (1 + 0.3 * female)
    fat = [fat_base * rng.uniform(0.8, 1.5), fat_base * rng.uniform(0.5, 1.0), fat_base * rng.uniform(0.5, 1.0),
           fat_base * rng.uniform(0.9, 1.5) * (1 + 0.3 * female)]
    # the bowel and the sacral foramina draw from their own generators
    gas = sample_gas(seeded_rng(*keys, "bowel-gas"))
    faeces = sample_faeces(seeded_rng(*keys, "faeces"))
    foramina = sample_foramina(seeded_rng(*keys, "sacral-foramina"))
    return HipParams(
        seed_keys=[str(k) if not isinstance(k, int | np.integer) else int(k) for k in keys],
        size=size, female=female,
        tilt_deg=float(rng.normal(0, 6)), obliquity_deg=float(rng.normal(0, 2.5)),
        rotation_deg=float(rng.normal(0, 3)), lordosis_deg=float(np.clip(rng.normal(38, 8), 18, 58)),
        sacral_slope_deg=float(np.clip(rng.normal(36, 6), 22, 50)),
        left=left, right=right, fat_mm=[float(f) for f in fat], muscle=float(rng.uniform(0.85, 1.15)),
        visceral_fat=float(rng.uniform(0.15, 0.6)), bone_density=float(rng.uniform(0.7, 1.1)),
        fat_hu=float(rng.normal(-100, 5)), muscle_hu=float(rng.normal(50, 4)),
        bladder=[float(v) for v in rng.uniform(0.6, 1.2) * np.array([42.0, 30.0, 32.0])], gas=gas,
        faeces=faeces, foramina=foramina,
    )
