"""Procedural chest specimens for the COVID-19 lesion task.

Frame: LPS mm, origin on the midline near the carina (x = patient left, y = posterior,
z = superior). Structures: body outline with subcutaneous fat and, in female-like specimens,
breasts; lungs bounded by the rib cage, the mediastinum and the diaphragm domes (the right
dome higher); pulmonary vessel trees branching from the hila; trachea and main/lobar bronchi
(air with soft-tissue walls); heart, aorta, pulmonary trunk and superior vena cava; thoracic
spine (T1-L1); twelve pairs of ribs with costal cartilages; sternum; clavicles; scapulae;
liver, spleen and stomach (with its gas bubble) under the domes.

COVID-19 lesions (ground-glass opacities, about -620 HU, and consolidations, about -180 HU,
within -750..-100 HU with texture) are irregular blobs placed bilaterally, peripherally (4-25 mm
inside the pleura) with a lower-lobe predominance; every fifth specimen (index 4, 9, ...) is
clear. The 3D lesion mask is :attr:`Raster.lesion` / :attr:`Specimen.lesion_mask`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from synthex_lib.anatomy.raster import Anatomy, LatticeNoise, Part
from synthex_lib.anatomy.sdf import (
    SDF,
    Box,
    Capsule,
    Displaced,
    Ellipsoid,
    EllipticCylinder,
    EllipticLoft,
    HalfSpace,
    Intersection,
    Offset,
    RoundCone,
    Subtract,
    Union,
    fan_plate,
    frame_from_z,
    polyline_tube,
    unit,
)
from synthex_lib.anatomy.tissues import Tissue, tissue_tables
from synthex_lib.core.seeding import seeded_rng

#: 3D label ids of chest specimens
CHEST_LABELS: dict[int, str] = {0: "background", 1: "left-lung", 2: "right-lung", 3: "heart", 4: "airways", 5: "bone"}
LESION_GGO, LESION_CONSOLIDATION, LESION_MIXED = 0, 1, 2


@dataclass
class ChestParams:
    """Everything that defines one chest specimen (mm, deg; JSON-serializable)."""

    seed_keys: list[Any]
    size: float
    female: float
    fat_mm: float
    breast_mm: float  #: breast radius (0: none)
    dome_right_z: float  #: top of the right diaphragm dome
    dome_left_z: float
    heart: float  #: heart size factor
    muscle: float
    bone_density: float
    fat_hu: float
    muscle_hu: float
    gas_mm: float  #: stomach gas bubble radius
    clear: bool  #: no lesions
    lesions: list[list[float]] = field(default_factory=list)  #: x, y, z, rx, ry, rz, kind, displacement

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> ChestParams:
        return ChestParams(**d)


def sample_chest_params(*keys: Any) -> ChestParams:
    """Draw a chest specimen's parameters from ``seeded_rng(*keys)``."""
    rng = seeded_rng(*keys, "chest-params")
    female = float(np.clip((0.9 if rng.random() < 0.5 else 0.1) + rng.normal(0, 0.05), 0, 1))
    size = float(np.clip(rng.normal(1.0 - 0.05 * female, 0.04), 0.88, 1.1))
    dome_r = float(rng.normal(-62, 10) * size)
    index = int(keys[-1]) if keys and isinstance(keys[-1], int | np.integer) else 0
    p = ChestParams(
        seed_keys=[str(k) if not isinstance(k, int | np.integer) else int(k) for k in keys],
        size=size, female=female, fat_mm=float(rng.uniform(5, 28) * (1 + 0.2 * female)),
        breast_mm=float(rng.uniform(45, 85) if female > 0.5 else 0.0), dome_right_z=dome_r,
        dome_left_z=float(dome_r - rng.uniform(8, 25)), heart=float(rng.uniform(0.9, 1.15)),
        muscle=float(rng.uniform(0.9, 1.1)), bone_density=float(rng.uniform(0.75, 1.1)),
        fat_hu=float(rng.normal(-100, 5)), muscle_hu=float(rng.normal(50, 4)), gas_mm=float(rng.uniform(10, 30)),
        clear=index % 5 == 4,
    )
    if not p.clear:
        p.lesions = _sample_lesions(ChestAnatomy(p), rng)
    return p


def _sample_lesions(anatomy: ChestAnatomy, rng: np.random.Generator) -> list[list[float]]:
    """Lesion blobs: bilateral, peripheral (4-25 mm inside the lung surface), lower-lobe weighted."""
    n = 2 + int(rng.poisson(3.5))
    out: list[list[float]] = []
    for i in range(n):
        lung = anatomy.lung_sdf("l" if i % 2 == 0 else "r")
        lo, hi = lung.lo, lung.hi
        cand = rng.uniform(lo, hi, size=(3000, 3))
        d = lung(cand)
        ok = (d < -4) & (d > -25)
        pts = cand[ok]
        w = np.exp(-(pts[:, 2] - lo[2]) / (0.25 * (hi[2] - lo[2])))
        c = pts[rng.choice(len(pts), p=w / w.sum())]
        r = rng.uniform(12, 34)
        kind = float(rng.choice([LESION_GGO, LESION_CONSOLIDATION, LESION_MIXED], p=[0.55, 0.2, 0.25]))
        out.append([*c.tolist(), float(r * rng.uniform(0.7, 1.3)), float(r * rng.uniform(0.7, 1.3)),
                    float(r * rng.uniform(0.8, 1.5)), kind, float(rng.uniform(3, 7))])
    return out


def _vessel_tree(rng: np.random.Generator, root: np.ndarray, directions: list[np.ndarray], r0: float, l0: float,
                 depth: int) -> list[SDF]:
    """Branching round-cone trees (one Union per main branch)."""
    trees = []
    for d0 in directions:
        segs: list[SDF] = []
        stack = [(root, unit(d0), r0, l0, 0)]
        while stack:
            a, d, r, ln, lev = stack.pop()
            b = a + d * ln
            segs.append(RoundCone(a, b, r, r * 0.85))
            if lev < depth:
                for sgn in (-1, 1):
                    axis = unit(np.cross(d, rng.normal(size=3)))
                    ang = np.deg2rad(rng.uniform(20, 38)) * sgn
                    nd = d * np.cos(ang) + np.cross(axis, d) * np.sin(ang) + axis * (axis @ d) * (1 - np.cos(ang))
                    stack.append((b, unit(nd + rng.normal(0, 0.05, 3)), r * 0.72, ln * rng.uniform(0.65, 0.85),
                                  lev + 1))
        trees.append(Union(segs))
    return trees


class ChestAnatomy(Anatomy):
    """The continuous anatomy of one chest specimen (parameters in :class:`ChestParams`)."""

    kind = "chest"
    texture_fine_mm = 3.0

    def __init__(self, params: ChestParams) -> None:
        super().__init__()
        self.params = params

    @property
    def seed_keys(self) -> tuple[Any, ...]:
        return tuple(self.params.seed_keys)

    @property
    def marbling(self) -> dict[int, float]:  # type: ignore[override]
        return {Tissue.MUSCLE: 1.6}

    def tables(self):
        p = self.params
        return tissue_tables(bone_density=p.bone_density, fat_hu=p.fat_hu, muscle_hu=p.muscle_hu)

    # -- geometry ---------------------------------------------------------------------------------
    def _loft(self, name: str) -> EllipticLoft:
        s, p = self.params.size, self.params
        z = np.array([-190, -120, -50, 20, 90, 140, 180]) * s
        if name == "muscle":
            a = np.array([140, 145, 150, 155, 160, 172, 70]) * s * p.muscle
            b = np.array([100, 100, 98, 95, 90, 80, 60]) * s * p.muscle
            cy = np.array([10, 10, 8, 8, 12, 18, 15]) * s
            return EllipticLoft(z, np.zeros(7), cy, a, b, rounding=15 * s)
        if name == "body":
            m = self._loft("muscle")
            f = p.fat_mm
            return EllipticLoft(z, np.zeros(7), m.cy - 0.15 * f, m.a + f, m.b + 0.8 * f, rounding=15 * s)
        # thoracic cavity inside the ribs
        zc = np.array([-170, -90, -20, 40, 90, 125, 150]) * s
        a = np.array([118, 126, 130, 127, 112, 80, 45]) * s
        b = np.array([80, 86, 88, 84, 74, 58, 38]) * s
        cy = np.array([18, 16, 15, 15, 18, 24, 28]) * s
        return EllipticLoft(zc, np.zeros(7), cy, a, b, rounding=20 * s)

    def _spine_points(self) -> list[tuple[np.ndarray, float, float]]:
        """(centre, body half width, body half height) of T1..T12, L1 from the top."""
        s = self.params.size
        out = []
        for i in range(13):
            t = i / 12
            z = (165 - 28.5 * i) * s
            y = (48 + 10 * np.sin(np.pi * t)) * s
            out.append((np.array([0.0, y, z]), (14 + 8 * t) * s, (9 + 3.5 * t) * s))
        return out

    def _mediastinum(self) -> SDF:
        s = self.params.size
        heart = self._heart()
        column = EllipticCylinder([0, 62 * s, 0], 30 * s, 42 * s, 200 * s)
        front = Box([0, -45 * s, 40 * s], [22 * s, 50 * s, 90 * s], rounding=10 * s)
        trachea_zone = EllipticCylinder([0, 10 * s, 100 * s], 24 * s, 26 * s, 90 * s)
        aorta = polyline_tube(self._aorta_points(), 20 * s)
        return Union([Offset(heart, 4 * s), column, front, trachea_zone, aorta], k=12 * s)

    def _heart(self) -> SDF:
        p, s = self.params, self.params.size
        c = np.array([28, -28, p.dome_left_z / s + 30]) * s
        fr = frame_from_z(unit([0.65, -0.35, -0.65]), [1.0, 0.0, 0.3])
        return Ellipsoid(c, np.array([56, 50, 76]) * s * p.heart, fr)

    def _aorta_points(self) -> np.ndarray:
        s = self.params.size
        return np.array([[8, -30, -25], [6, -22, 40], [10, -5, 70], [24, 18, 64], [28, 38, 30], [24, 42, -60],
                         [16, 40, -150], [8, 38, -200]]) * s

    def lung_sdf(self, side: str) -> SDF:
        """The lung of ``side`` ("l" or "r") in LPS mm."""
        key = f"lung-{side}"
        if key in self._cache:
            return self._cache[key]
        p, s = self.params, self.params.size
        sg = 1.0 if side == "l" else -1.0
        cav = Offset(self._loft("cavity"), -4 * s)
        dome_z = p.dome_left_z if side == "l" else p.dome_right_z
        dome = Ellipsoid([sg * 55 * s, -25 * s, dome_z - 95 * s], np.array([115, 120, 95]) * s)
        half = HalfSpace([sg * 6 * s, 0, 0], [-sg, 0, 0])
        box = Box([sg * 75 * s, 15 * s, -10 * s], [80 * s, 110 * s, 170 * s])
        lung = Subtract(Intersection([cav, half, box], k=4 * s), [self._mediastinum(), dome], k=8 * s)
        self._cache[key] = lung
        return lung

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        if "bounds" not in self._cache:
            s = self.params.size
            body = Union([self._loft("body"), *self._breasts()[0]])
            z0, z1 = -185 * s, 170 * s
            axes = [np.arange(body.lo[i] - 4, body.hi[i] + 4, 6.0) for i in range(2)]
            zz = np.arange(z0, z1, 6.0)
            X, Y, Z = np.meshgrid(axes[0], axes[1], zz, indexing="ij")  # noqa: N806
            inside = body(np.stack([X, Y, Z], -1)) < 0
            lo = np.array([X[inside].min() - 12, Y[inside].min() - 12, z0])
            hi = np.array([X[inside].max() + 12, Y[inside].max() + 12, z1])
            self._cache["bounds"] = (lo, hi)
        return self._cache["bounds"]

    def _breasts(self) -> tuple[list[SDF], list[SDF]]:
        p, s = self.params, self.params.size
        if p.breast_mm <= 0:
            return [], []
        body = self._loft("body")
        r = p.breast_mm
        zc = -35 * s
        y_front = float(np.interp(zc, body.z, body.cy - body.b))
        outer, gland = [], []
        for sg in (-1, 1):
            c = np.array([sg * 70 * s, y_front + 0.2 * r, zc])
            fr = frame_from_z(unit([sg * 0.35, -1, -0.25]))
            outer.append(Ellipsoid(c, [0.95 * r, 0.95 * r, 0.7 * r], fr))
            gland.append(Ellipsoid(c - fr[:, 2] * 0.15 * r, [0.55 * r, 0.5 * r, 0.35 * r], fr))
        return outer, gland

    def _bones(self) -> list[tuple[str, SDF]]:
        s = self.params.size
        out: list[tuple[str, SDF]] = []
        verts = []
        sp = self._spine_points()
        for c, a, h in sp:
            b = 0.8 * a
            parts: list[SDF] = [EllipticCylinder(c, a, b, h, rounding=2 * s)]
            for sg in (-1, 1):
                parts += [Capsule(c + np.array([sg * 9 * s, 0.7 * b, 2 * s]),
                                  c + np.array([sg * 11 * s, b + 10 * s, 2 * s]), 4 * s),
                          Capsule(c + np.array([sg * 11 * s, b + 10 * s, 2 * s]),
                                  c + np.array([sg * 28 * s, b + 18 * s, 6 * s]), 4.5 * s),
                          Capsule(c + np.array([sg * 11 * s, b + 12 * s, 0]), c + np.array([0, b + 20 * s, -2 * s]),
                                  4 * s)]
            parts.append(Capsule(c + np.array([0, b + 20 * s, -2 * s]), c + np.array([0, b + 42 * s, -24 * s]),
                                 4 * s))
            verts.append(Union(parts, k=2 * s))
        out.append(("spine", Union(verts)))
        cav = self._loft("cavity")
        ribs, cart = [], []
        for i in range(12):
            c, _, _ = sp[i]
            drop = (35 + 40 * np.sin(np.pi * (i + 1) / 13)) * s
            th_end = np.deg2rad(160 if i < 7 else (140 if i < 10 else 105))
            ths = np.linspace(np.deg2rad(12), th_end, 14)
            for sg in (-1, 1):
                pts = [c + np.array([sg * 12 * s, 8 * s, 0])]
                for th in ths:
                    z = c[2] - drop * (1 - np.cos(th)) / 2 + 6 * s
                    a = float(np.interp(z, cav.z, cav.a)) + 6 * s
                    b = float(np.interp(z, cav.z, cav.b)) + 5 * s
                    cy = float(np.interp(z, cav.z, cav.cy))
                    pts.append(np.array([sg * a * np.sin(th), cy + b * np.cos(th), z]))
                r = (5.5 if i == 0 else 4.5 if i < 10 else 3.5) * s
                ribs.append(polyline_tube(np.array(pts), r, k=2 * s))
                if i < 10:
                    end = pts[-1]
                    tgt = np.array([sg * 16 * s, end[1] - 4 * s, (75 - 20 * min(i, 6)) * s]) if i < 7 else \
                        np.array([sg * 45 * s, end[1] - 5 * s, end[2] - 25 * s])
                    cart.append(Capsule(end, tgt, 4 * s))
        out.append(("ribs", Union(ribs)))
        y_st = float(np.interp(0, cav.z, cav.cy - cav.b)) - 8 * s
        sternum = Union([Box([0, y_st + 6 * s, 92 * s], [24 * s, 6 * s, 20 * s], rounding=4 * s),
                         Box([0, y_st, 5 * s], [15 * s, 6 * s, 65 * s], frame_from_z([0, 0.18, 1]),
                             rounding=4 * s)], k=3 * s)
        out.append(("sternum", sternum))
        clav = []
        scap = []
        for sg in (-1, 1):
            clav.append(polyline_tube(np.array([[sg * 20, -68, 118], [sg * 55, -74, 124], [sg * 95, -62, 128],
                                                [sg * 128, -34, 132], [sg * 150, -2, 134]]) * s,
                                      np.array([9, 7, 6, 6, 8]) * s, k=2 * s))
            sup, inf = np.array([sg * 72, 88, 128]) * s, np.array([sg * 88, 98, -40]) * s
            glen, lat = np.array([sg * 148, 38, 100]) * s, np.array([sg * 128, 72, 25]) * s
            hub = np.array([sg * 102, 86, 62]) * s
            scap.append(Union([fan_plate(hub, [sup, glen, lat, inf, sup], 1.8 * s),
                               polyline_tube(np.array([[sg * 78, 98, 98], [sg * 120, 85, 118],
                                                       [sg * 152, 55, 128]]) * s, np.array([4, 6, 7]) * s, k=2 * s),
                               Ellipsoid(glen, np.array([9, 16, 20]) * s),
                               polyline_tube(np.array([glen, lat, inf]), np.array([6, 5, 4]) * s, k=2 * s)], k=3 * s))
        out.append(("clavicles", Union(clav)))
        out.append(("scapulae", Union(scap)))
        out.append(("cartilage", Union(cart)))
        return out

    def _build(self) -> list[Part]:
        p, s = self.params, self.params.size
        rng = seeded_rng(*self.seed_keys, "chest-vessels")
        parts = [Part("body", self._loft("body"), Tissue.FAT, shell_mm=2.0, shell_tissue=Tissue.SKIN),
                 Part("muscle", self._loft("muscle"), Tissue.MUSCLE)]
        outer, gland = self._breasts()
        for i, (o, g) in enumerate(zip(outer, gland, strict=True)):
            parts.append(Part(f"breast-{i}", o, Tissue.FAT, shell_mm=2.0, shell_tissue=Tissue.SKIN,
                              only_over=(Tissue.AIR, Tissue.FAT, Tissue.SKIN)))
            parts.append(Part(f"gland-{i}", g, Tissue.GLAND, only_over=(Tissue.FAT,)))
        parts.append(Part("cavity", self._loft("cavity"), Tissue.FAT))
        # abdomen under the domes
        liver = Ellipsoid(np.array([-45 * s, 5 * s, p.dome_right_z - 70 * s]), np.array([115, 95, 80]) * s)
        spleen = Ellipsoid(np.array([85 * s, 45 * s, p.dome_left_z - 55 * s]), np.array([35, 45, 50]) * s)
        stomach_c = np.array([55 * s, -15 * s, p.dome_left_z - 50 * s])
        stomach = Ellipsoid(stomach_c, np.array([55, 45, 50]) * s)
        gas = Ellipsoid(stomach_c + np.array([0, -5 * s, 40 * s - p.gas_mm * 0.4]),
                        [p.gas_mm * 1.4, p.gas_mm * 1.1, p.gas_mm * 0.8])
        parts += [Part("liver", liver, Tissue.ORGAN), Part("spleen", spleen, Tissue.ORGAN),
                  Part("stomach", stomach, Tissue.BOWEL), Part("stomach-gas", gas, Tissue.AIR,
                                                               only_over=(Tissue.BOWEL,))]
        parts += [Part("lung-l", self.lung_sdf("l"), Tissue.LUNG, label=1),
                  Part("lung-r", self.lung_sdf("r"), Tissue.LUNG, label=2)]
        parts.append(Part("heart", self._heart(), Tissue.BLOOD, label=3, shell_mm=2.5, shell_tissue=Tissue.MUSCLE))
        vessels = [polyline_tube(self._aorta_points(), np.array([15, 15, 14, 13, 12, 12, 11, 11]) * s, k=3 * s),
                   polyline_tube(np.array([[5, -38, -15], [10, -15, 15], [-38, 2, 6]]) * s, np.array([13, 12, 10]) * s,
                                 k=3 * s),
                   polyline_tube(np.array([[10, -15, 15], [38, 6, 14]]) * s, 10 * s),
                   Capsule(np.array([-30, -15, 85]) * s, np.array([-28, -22, -15]) * s, 10 * s)]
        parts += [Part(f"vessel-{i}", v, Tissue.BLOOD) for i, v in enumerate(vessels)]
        dirs = [np.array(v, float) for v in ([0.15, 0.1, 1], [0.5, -0.7, -0.2], [0.25, 0.5, -1], [0.8, 0.1, -0.5],
                                             [0.9, 0.0, 0.3], [0.3, -0.8, 0.5])]
        for side, root in (("r", np.array([-42, 6, 2]) * s), ("l", np.array([42, 10, 8]) * s)):
            sg = 1 if side == "l" else -1
            ds = [d * np.array([sg, 1, 1]) for d in dirs]
            for j, tree in enumerate(_vessel_tree(rng, root, ds, 5.0 * s, 30 * s, 4)):
                parts.append(Part(f"pulmonary-{side}{j}", tree, Tissue.BLOOD, only_over=(Tissue.LUNG,)))
        airways = [polyline_tube(np.array([[0, -6, 185], [0, 0, 90], [0, 6, 22]]) * s, 9.5 * s, k=2 * s),
                   polyline_tube(np.array([[0, 6, 22], [-24, 9, 8], [-44, 10, -2]]) * s, np.array([7, 7, 5.5]) * s),
                   polyline_tube(np.array([[0, 6, 22], [26, 11, 14], [48, 12, 0]]) * s, np.array([6.5, 6, 5]) * s)]
        for side, root in (("r", np.array([-44, 10, -2]) * s), ("l", np.array([48, 12, 0]) * s)):
            sg = 1 if side == "l" else -1
            for d in dirs[:4]:
                airways.append(RoundCone(root, root + unit(d * np.array([sg, 1, 1])) * 28 * s, 4.5 * s, 3.2 * s))
        parts.append(Part("airways", Union(airways, k=2 * s), Tissue.AIR, label=4, shell_mm=1.8,
                          shell_tissue=Tissue.AIRWAY_WALL))
        parts += self._lesion_parts()
        for name, sdf in self._bones():
            if name == "cartilage":
                parts.append(Part(name, sdf, Tissue.DISC))
            else:
                parts.append(Part(name, sdf, Tissue.CANCELLOUS, label=5, shell_mm=1.2, shell_tissue=Tissue.CORTICAL))
        return parts

    def _lesion_parts(self) -> list[Part]:
        p = self.params
        if p.clear or not p.lesions:
            return []
        lo, hi = self.bounds
        noise = LatticeNoise((*self.seed_keys, "lesion-shape"), lo, hi, 9.0)
        parts = []
        for i, les in enumerate(p.lesions):
            c, r, kind, amp = np.array(les[:3]), np.array(les[3:6]), int(les[6]), les[7]
            blob = Displaced(Ellipsoid(c, r), noise.at, amp)
            if kind == LESION_CONSOLIDATION:
                parts.append(Part(f"lesion-{i}", blob, Tissue.CONSOLIDATION, only_over=(Tissue.LUNG,)))
            else:
                parts.append(Part(f"lesion-{i}", blob, Tissue.GGO, only_over=(Tissue.LUNG,)))
                if kind == LESION_MIXED:
                    core = Displaced(Ellipsoid(c, 0.5 * r), noise.at, 0.6 * amp)
                    parts.append(Part(f"lesion-{i}-core", core, Tissue.CONSOLIDATION, only_over=(Tissue.GGO,)))
        return parts

    def landmarks(self) -> dict[str, np.ndarray]:
        """Carina and the lung apices/dome tops (LPS mm): the chest task itself has no landmarks."""
        s = self.params.size
        return {"carina": np.array([0, 6, 22]) * s,
                "dome-r": np.array([-55 * s, -25 * s, self.params.dome_right_z]),
                "dome-l": np.array([55 * s, -25 * s, self.params.dome_left_z])}


__all__ = ["CHEST_LABELS", "ChestAnatomy", "ChestParams", "sample_chest_params"]
