"""The X-ray session of a lab specimen: the cadaver as it lay under the C-arm, not in the CT.

DeepFluoro's cadavers were CT-scanned and imaged by fluoroscopy in another session, so the two
differ: the legs were repositioned, and Grupp et al. (IJCARS 2020) registered the pelvis and
*each femur* separately in every image (the dataset stores ``gt-poses/cam-to-pelvis-vol``,
``cam-to-left-femur-vol`` and ``cam-to-right-femur-vol``, and the 2D femur labels were projected
with the femur poses). A :class:`SessionAnatomy` is the specimen's anatomy as it lies in such a
session (:class:`SessionParams`):

* each femur rotated about its femoral head centre (flexion, abduction, internal rotation; the
  thigh's soft tissue follows the femur), the labels moving with the bone;
* the bowel gas re-drawn (gas moves between sessions: other stretches and loops filled);
* a small soft-tissue change: the subcutaneous fat layers a few mm thicker or thinner (the
  abdominal wall sagging or compressed);
* drapes: stacked cotton sheets over the front and sides of the body, their own tissue
  (:attr:`~synthex_lib.anatomy.tissues.Tissue.DRAPE`, the fat material class at a bulk density of
  0.3-0.6 g/cm^3), no label.

The pelvis, the spine, the landmarks and the tissue texture are those of the CT. For a femur,
``femur_from_ct()[label]`` maps a point of the CT's femur to where it lies in the session, so a
projection matrix of that femur in the session is ``P @ femur_from_ct()[label]``.

Frames: the specimen (LPS mm, CT table) frame throughout; rotations are composed in the pelvis
frame of :mod:`~synthex_lib.anatomy.hip` (x left, y posterior, z superior).
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from synthex_lib.anatomy.hip import LEFT_FEMUR, RIGHT_FEMUR, HipAnatomy
from synthex_lib.anatomy.hip_bowel import BowelContent, sample_gas
from synthex_lib.anatomy.raster import LatticeNoise, Part
from synthex_lib.anatomy.sdf import SDF, Displaced, HalfSpace, Intersection, Offset, Shell
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.anatomy.tissues import Tissue, tissue_tables
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.geometry import rot_x, rot_y

#: Ranges of the session draws (an assumption: a cadaver's legs repositioned on the table between
#: the CT and the fluoroscopy session move by a few degrees, up to about 10 deg): standard
#: deviation and clip (deg) of flexion, abduction and internal rotation of each femur.
FEMUR_SD_DEG = (4.0, 3.0, 5.0)
FEMUR_CLIP_DEG = 10.0
#: limit of any femur angle a SessionParams accepts (deg)
FEMUR_MAX_DEG = 30.0
#: subcutaneous fat change (mm): standard deviation and clip of the anterior layer (the abdominal
#: wall sagging or pressed) and of the lateral, posterior and buttock layers (an assumption)
FAT_SD_MM, FAT_CLIP_MM = (2.0, 1.0, 1.0, 1.0), 5.0
#: drapes (assumptions): total thickness of the stacked sheets (mm), lift off the skin (mm), bulk
#: density (g/cm^3), amplitude (mm) and size (mm) of their folds, and how far down the sides they
#: reach (fraction of the body's depth from its front; 1: to the table)
DRAPE_MM, DRAPE_GAP_MM, DRAPE_DENSITY = (1.5, 5.0), (0.0, 8.0), (0.3, 0.6)
DRAPE_FOLD_MM, DRAPE_FOLD_CELL_MM, DRAPE_COVER = (0.5, 2.0), 30.0, (0.55, 1.0)
_SIDES = (("l", 1, LEFT_FEMUR), ("r", -1, RIGHT_FEMUR))


def _finite(name: str, values: Any, n: int) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter {name!r} must be {n} number(s), got {values!r}") from None
    if len(out) != n or not all(np.isfinite(out)):
        raise ConfigError(f"parameter {name!r} must be {n} finite number(s), got {values!r}")
    return out


@dataclass(frozen=True)
class SessionParams:
    """What differs in the X-ray session from the CT (all zero / None: the CT's anatomy).

    Attributes:
        left_femur_deg, right_femur_deg: rotation of each femur about its head centre (deg):
            flexion (the distal femur moves anteriorly), abduction (it moves laterally), internal
            rotation (about the femur's long axis, the front turning medially); each within
            +-:data:`FEMUR_MAX_DEG`; sampled within +-:data:`FEMUR_CLIP_DEG`.
        gas: the bowel gas of the session (None: the CT's gas).
        fat_delta_mm: change of the subcutaneous fat (mm): anterior, lateral, posterior, buttock.
        drape_mm: total thickness of the drapes (mm; 0: no drapes).
        drape_gap_mm: their lift off the skin (mm).
        drape_density_g_cm3: their bulk density (g/cm^3, fat material class).
        drape_fold_mm: amplitude of their folds (mm): the sheet lies ``drape_gap_mm + 2 *
            drape_fold_mm`` off the skin on average, give or take the folds.
        drape_cover: how far down the sides they reach, as a fraction of the body's depth from its
            front (1: to the table).
        seed_keys: keys of the session's random fields (the drapes' folds).
    """

    left_femur_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    right_femur_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    gas: tuple[BowelContent, ...] | None = None
    fat_delta_mm: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    drape_mm: float = 0.0
    drape_gap_mm: float = 0.0
    drape_density_g_cm3: float = 0.45
    drape_fold_mm: float = 0.0
    drape_cover: float = 1.0
    seed_keys: tuple[Any, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("left_femur_deg", "right_femur_deg"):
            v = _finite(name, getattr(self, name), 3)
            if max(abs(a) for a in v) > FEMUR_MAX_DEG:
                raise ConfigError(f"parameter {name!r} must stay within +-{FEMUR_MAX_DEG:g} deg "
                                  f"(a repositioned leg), got {v}")
            object.__setattr__(self, name, v)
        object.__setattr__(self, "fat_delta_mm", _finite("fat_delta_mm", self.fat_delta_mm, 4))
        if self.gas is not None:
            object.__setattr__(self, "gas", tuple(BowelContent.from_any(g) for g in self.gas))
        for name in ("drape_mm", "drape_gap_mm", "drape_fold_mm", "drape_density_g_cm3", "drape_cover"):
            v = _finite(name, [getattr(self, name)], 1)[0]
            if v < 0:
                raise ConfigError(f"parameter {name!r} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, v)
        if not (0.05 <= self.drape_density_g_cm3 <= 1.5):
            raise ConfigError(f"parameter 'drape_density_g_cm3' must be within 0.05..1.5 g/cm^3 (cotton drapes: "
                              f"0.3-0.6), got {self.drape_density_g_cm3!r}")
        if not (0.0 < self.drape_cover <= 1.0):
            raise ConfigError(f"parameter 'drape_cover' must be within (0, 1], got {self.drape_cover!r}")
        object.__setattr__(self, "seed_keys", tuple(self.seed_keys))

    @property
    def is_identity(self) -> bool:
        """True when the session equals the CT (no change at all)."""
        return (not any(self.left_femur_deg) and not any(self.right_femur_deg) and self.gas is None
                and not any(self.fat_delta_mm) and self.drape_mm == 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["gas"] = None if self.gas is None else [g.to_dict() for g in self.gas]
        d["seed_keys"] = [int(k) if isinstance(k, int | np.integer) else str(k) for k in self.seed_keys]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> SessionParams:
        d = dict(d)
        if d.get("gas") is not None:
            d["gas"] = tuple(BowelContent.from_any(g) for g in d["gas"])
        return SessionParams(**d)


def _hip_of(anatomy_or_specimen: Any) -> HipAnatomy:
    anat = getattr(anatomy_or_specimen, "anatomy", anatomy_or_specimen)
    if isinstance(anat, SessionAnatomy):
        return anat.ct
    if not isinstance(anat, HipAnatomy):
        raise ConfigError(f"an X-ray session needs a lab hip specimen (or its HipAnatomy), got "
                          f"{type(anat).__name__}")
    return anat


def sample_session(anatomy_or_specimen: Any, *keys: Any) -> SessionParams:
    """Draw the X-ray session of a hip specimen (or its anatomy) from ``seeded_rng(*keys)``.

    Femur angles are normal with SD :data:`FEMUR_SD_DEG` clipped to +-:data:`FEMUR_CLIP_DEG`; the
    gas is drawn anew (:func:`~synthex_lib.anatomy.hip_bowel.sample_gas`); fat changes, drapes as
    the module constants say."""
    _hip_of(anatomy_or_specimen)
    if not keys:
        raise ConfigError("sample_session needs seed keys (e.g. seed, specimen id, 'xray-session')")
    rng = seeded_rng(*keys)

    def femur() -> tuple[float, float, float]:
        return tuple(float(np.clip(rng.normal(0, sd), -FEMUR_CLIP_DEG, FEMUR_CLIP_DEG))
                     for sd in FEMUR_SD_DEG)  # type: ignore[return-value]

    left, right = femur(), femur()
    fat = tuple(float(np.clip(rng.normal(0, sd), -FAT_CLIP_MM, FAT_CLIP_MM)) for sd in FAT_SD_MM)
    drape = dict(drape_mm=float(rng.uniform(*DRAPE_MM)), drape_gap_mm=float(rng.uniform(*DRAPE_GAP_MM)),
                 drape_density_g_cm3=float(rng.uniform(*DRAPE_DENSITY)),
                 drape_fold_mm=float(rng.uniform(*DRAPE_FOLD_MM)), drape_cover=float(rng.uniform(*DRAPE_COVER)))
    gas = tuple(sample_gas(rng))
    return SessionParams(left_femur_deg=left, right_femur_deg=right, gas=gas, fat_delta_mm=fat,  # type: ignore[arg-type]
                         seed_keys=tuple(keys), **drape)


class SessionAnatomy(HipAnatomy):
    """A hip specimen's anatomy as it lies in the X-ray session (see the module docstring).

    ``ct`` is the anatomy the CT scanned; ``session`` the :class:`SessionParams`. Picklable; the
    bounds are the CT convention (the skin's extent within the scanned z range), grown by the
    drapes; the tissue texture fields are the CT anatomy's."""

    def __init__(self, ct: HipAnatomy, session: SessionParams) -> None:
        ct = _hip_of(ct)
        if not isinstance(session, SessionParams):
            raise ConfigError(f"parameter 'session' must be a SessionParams, got {type(session).__name__}")
        super().__init__(ct.params)
        self.ct, self.session = ct, session

    # -- the changes --------------------------------------------------------------------------
    def femur_motion(self, side: str) -> np.ndarray | None:
        """Rotation (3x3, specimen frame) of the ``side`` femur about its head centre, or None."""
        deg = self.session.left_femur_deg if side == "l" else self.session.right_femur_deg
        if not any(deg):
            return None
        key = f"motion-{side}"
        if key not in self._cache:
            flex, abd, internal = deg
            sign = 1 if side == "l" else -1
            _, _, R_ct, _, ax = self.ct._skeleton()[f"femur-{side}"]
            Rg = self.ct.pelvis_rotation  # noqa: N806
            # long (mechanical) axis of the modelled femur: head centre to the distal shaft, pelvis frame
            s = self.params.size
            long_axis = Rg.T @ R_ct @ (ax["J"] + ax["s0"] * 260 * s)
            long_axis = -long_axis / np.linalg.norm(long_axis)  # pointing proximally
            # internal rotation turns the front medially: about the proximal axis by -sign * angle
            r_int = Rotation.from_rotvec(long_axis * np.deg2rad(-sign * internal)).as_matrix()
            rel = rot_x(-flex) @ rot_y(-sign * abd) @ r_int
            self._cache[key] = Rg @ rel @ Rg.T
        return self._cache[key]

    def bowel_gas(self) -> list[BowelContent]:
        return list(self.params.gas if self.session.gas is None else self.session.gas)

    def fat_mm(self) -> list[float]:
        if not any(self.session.fat_delta_mm):
            return list(self.params.fat_mm)
        return [max(1.0, f + d) for f, d in zip(self.params.fat_mm, self.session.fat_delta_mm, strict=True)]

    def drapes(self) -> SDF | None:
        """The drapes' signed-distance field (specimen frame, mm), or None without drapes."""
        sp = self.session
        if sp.drape_mm <= 0:
            return None
        body = self._body()[0]
        # the sheet's mid-surface: the gap plus half the thickness off the skin, lifted by the folds
        # (a unit-variance field, mostly within +-2: the sheet seldom touches the skin)
        mid = sp.drape_gap_mm + 0.5 * sp.drape_mm + 2.0 * sp.drape_fold_mm
        sheet: SDF = Offset(body, mid)
        if sp.drape_fold_mm > 0:
            folds = LatticeNoise((*self.seed_keys, *sp.seed_keys, "drape-folds"), body.lo - 40, body.hi + 40,
                                 DRAPE_FOLD_CELL_MM)
            sheet = Displaced(sheet, folds.at, sp.drape_fold_mm)
        y_hang = body.lo[1] + sp.drape_cover * (body.hi[1] - body.lo[1])
        return Intersection([Shell(sheet, sp.drape_mm), HalfSpace([0.0, y_hang, 0.0], [0.0, 1.0, 0.0])])

    def extra_parts(self) -> list[Part]:
        d = self.drapes()
        return [] if d is None else [Part("drapes", d, Tissue.DRAPE, only_over=(Tissue.AIR,))]

    # -- as an anatomy ------------------------------------------------------------------------
    def tables(self):
        p = self.params
        return tissue_tables(bone_density=p.bone_density, fat_hu=p.fat_hu, muscle_hu=p.muscle_hu,
                             drape_density_g_cm3=self.session.drape_density_g_cm3)

    def noise(self, which: str) -> LatticeNoise:
        """The CT anatomy's texture fields (the same tissue, wherever it now lies)."""
        return self.ct.noise(which)

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS box (mm): the skin's extent within the scanned z range (as the CT anatomy's), grown in
        x and y by the drapes' reach."""
        if "session-bounds" not in self._cache:
            lo, hi = (np.array(v, np.float64) for v in HipAnatomy.bounds.fget(self))  # type: ignore[attr-defined]
            sp = self.session
            if sp.drape_mm > 0:
                reach = sp.drape_gap_mm + sp.drape_mm + 5 * sp.drape_fold_mm + 2.0
                lo[:2] -= reach
                hi[:2] += reach
            self._cache["session-bounds"] = (lo, hi)
        return self._cache["session-bounds"]

    def femur_from_ct(self) -> dict[int, np.ndarray]:
        """For label 5 (left femur) and 6 (right femur): the 4x4 rigid transform (LPS mm,
        homogeneous) mapping a point of the CT's femur to where it lies in this session; the femoral
        head centre is its fixed point."""
        out = {}
        for side, _, label in _SIDES:
            T = np.eye(4)
            M = self.femur_motion(side)
            if M is not None:
                c = self.ct._skeleton()[f"femur-{side}"][3]
                T[:3, :3] = M
                T[:3, 3] = c - M @ c
            out[label] = T
        return out


def session_specimen(spec: Specimen, params: SessionParams) -> Specimen:
    """The specimen as imaged in an X-ray session: the same CT, labels and landmarks (the CT
    session's), its ``anatomy`` a :class:`SessionAnatomy`; ``meta["session"]`` records ``params``."""
    if not isinstance(spec, Specimen):
        raise ConfigError(f"parameter 'spec' must be a Specimen, got {type(spec).__name__}")
    anat = SessionAnatomy(_hip_of(spec), params)
    return dataclasses.replace(spec, anatomy=anat, meta={**spec.meta, "session": params.to_dict()})
