"""Procedural hip specimens: pelvis, sacrum, lumbar spine, femurs and soft tissue.

Frames: the *pelvis frame* is LPS-aligned with its origin midway between the femoral head
centres (x = patient left, y = posterior, z = superior). The specimen (world, LPS mm) frame is
the CT table frame: bones are placed by the pelvic tilt/obliquity/rotation, the femurs in
addition by each hip's flexion and abduction; the body outline stays aligned with the table.

The shapes are built from signed-distance primitives (:mod:`synthex_lib.anatomy.sdf`): thin
fan plates with rim tubes for the iliac wings, round cones for rami and femoral necks, a
cylinder cut for the greater sciatic notch, an ellipsoid cut for the obturator foramen, and a
sphere cut for the acetabular socket. The 14 landmarks are then found *on the generated
surfaces* by ray casting, following their anatomical definitions (see :func:`_pelvis_landmarks`).
Dimensions follow adult averages (inter-ASIS about 230-260 mm, femoral head radius 21-26 mm,
neck-shaft angle about 128 deg, anteversion about 13 deg).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from synthex_lib.anatomy.raster import Anatomy, Part
from synthex_lib.anatomy.sdf import (
    SDF,
    Box,
    Capsule,
    Ellipsoid,
    EllipticCylinder,
    EllipticLoft,
    HalfSpace,
    Intersection,
    RoundCone,
    Sphere,
    Subtract,
    Transform,
    Triangle,
    Union,
    fan_plate,
    frame_from_z,
    polyline_tube,
    ray_to_surface,
    unit,
)
from synthex_lib.anatomy.tissues import Tissue, tissue_tables
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.geometry import rot_x, rot_y, rot_z

#: hip label ids (DeepFluoro)
LEFT_HEMIPELVIS, RIGHT_HEMIPELVIS, VERTEBRAE, UPPER_SACRUM, LEFT_FEMUR, RIGHT_FEMUR = 1, 2, 3, 4, 5, 6


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
    gas: list[list[float]] = field(default_factory=list)  #: bowel gas pockets: x, y, z, rx, ry, rz (pelvis frame)
    z_range: list[float] = field(default_factory=lambda: [-160.0, 240.0])  #: scanned range (mm, world z)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> HipParams:
        d = dict(d)
        d["left"], d["right"] = SideParams(**d["left"]), SideParams(**d["right"])
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
    gas = []
    for _ in range(int(rng.poisson(5)) + 2):
        r = rng.uniform(6, 28)
        gas.append([float(rng.uniform(-110, 110)), float(rng.uniform(-90, 20)), float(rng.uniform(20, 240)),
                    float(r * rng.uniform(0.8, 1.6)), float(r * rng.uniform(0.5, 1.0)),
                    float(r * rng.uniform(0.6, 1.3))])
    if rng.random() < 0.6:  # rectal gas
        gas.append([float(rng.normal(0, 5)), 60.0, float(rng.uniform(-20, 30)), 12.0, 9.0, 16.0])
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
    )


def _spline(points: np.ndarray, n: int) -> np.ndarray:
    """Catmull-Rom spline through ``points`` with ``n`` samples per segment (ends kept)."""
    p = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        for t in np.linspace(0, 1, n, endpoint=False):
            out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t * t
                              + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    out.append(points[-1])
    return np.array(out)


def _smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    t = np.clip((x - a) / (b - a), 0, 1)
    return t * t * (3 - 2 * t)


class _Side:
    """Coordinates of one side: ``P(x, y, z)`` mirrors x for the right side and scales by size."""

    def __init__(self, sign: int, scale: float) -> None:
        self.sign, self.s = sign, scale

    def P(self, x: float, y: float, z: float) -> np.ndarray:
        return np.array([self.sign * x, y, z]) * self.s

    def V(self, x: float, y: float, z: float) -> np.ndarray:
        return unit([self.sign * x, y, z])

    def r(self, v: float) -> float:
        return v * self.s


@dataclass
class _HemiPelvis:
    sdf: SDF
    H: np.ndarray
    asis: np.ndarray
    asis_dir: np.ndarray
    obt_center: np.ndarray
    obt_axes: np.ndarray  # columns e1, e2, n
    gsn_center: np.ndarray
    gsn_axis: np.ndarray
    gsn_radius: float
    gsn_chord: tuple[np.ndarray, np.ndarray]
    sym_x: float
    sym_up: np.ndarray


def _hemipelvis(sign: int, hp: HipParams, sp: SideParams) -> _HemiPelvis:
    f = hp.female
    S = _Side(sign, hp.size * sp.asym)  # noqa: N806
    P, r = S.P, S.r
    R = sp.fh_radius
    H = P(84 + 4 * f, 0, 0)
    # --- ilium: fan plate, rims, buttress ------------------------------------------------
    asis = P(118 + 9 * f, -50, 80 - 5 * f)
    aiis = P(100 + 3 * f, -40, 42)
    crest = [asis, P(133 + 9 * f, -30, 113 - 5 * f), P(140 + 10 * f, -4, 141 - 7 * f), P(131 + 9 * f, 26, 153 - 8 * f),
             P(106 + 6 * f, 53, 150 - 8 * f), P(79, 71, 133 - 6 * f), P(56, 82, 108 - 4 * f)]
    psis, piis = crest[-1], P(56, 81, 82)
    auricular_low = P(58, 72, 58)
    hub = P(100 + 5 * f, 18, 92 - 4 * f)
    crest = _spline(np.array(crest), 2)
    rim = [aiis, *crest, piis, auricular_low, P(70, 45, 40), P(88, 8, 32), aiis]
    wing = fan_plate(hub, rim, r(2.8))
    crest_r = np.interp(np.linspace(0, 1, len(crest)), [0, 0.15, 0.5, 0.85, 1], [r(6.5), r(7), r(5.5), r(6), r(7)])
    crest_tube = polyline_tube(crest, crest_r, k=r(1.5))
    ant_border = polyline_tube([asis, aiis, P(95, -26, 26)], [r(6.5), r(6), r(8)], k=r(2))
    post_border = polyline_tube([psis, piis, auricular_low], [r(7), r(8), r(10)], k=r(2))
    buttress = RoundCone(P(82, 10, 14), P(60, 64, 62), r(19), r(14))
    auricular = Ellipsoid(P(66, 71, 74), [r(10), r(17), r(28)], frame_from_z(S.V(0, 0.25, 1), S.V(1, 0, 0)))
    arcuate = polyline_tube([P(56, 58, 62), P(70, 14, 36), P(82, -24, 10)], [r(6), r(7), r(9)], k=r(2))
    # --- acetabulum ----------------------------------------------------------------------------
    incl, av = np.deg2rad(48.0), np.deg2rad(18.0)
    n_ac = S.V(np.sin(incl) * np.cos(av), -np.sin(incl) * np.sin(av), -np.cos(incl))
    acetab = Intersection([Sphere(H + S.V(-1, 0.1, 0.6) * r(5), R + r(8)),
                           HalfSpace(H + n_ac * 0.3 * R, n_ac)], k=r(3))
    # --- ischium, pubis ------------------------------------------------------------------------
    ischium = RoundCone(P(80, 22, -10), P(70, 30, -56), r(15), r(14))
    tuber = Ellipsoid(P(68, 30, -68), [r(13), r(20), r(16)])
    spine = RoundCone(P(60, 40, -2), P(47, 52, -12), r(8), r(3))
    post_plate = Union([Triangle(P(80, 20, 5), P(60, 45, 15), P(52, 50, -8), r(4)),
                        Triangle(P(80, 20, 5), P(52, 50, -8), P(74, 28, -30), r(5))], k=r(2))
    g_half = 2.5  # half the symphyseal gap (mm)
    sym_up = unit([0, -np.sin(np.deg2rad(25)), np.cos(np.deg2rad(25))])
    sym_h = r(22 - 3.5 * f)
    pubic_c = P(13, -40, -38)
    pubic_axes = np.stack([np.array([1.0, 0, 0]), np.cross(sym_up, [1.0, 0, 0]), sym_up], axis=1)
    pubic_body = Intersection([Box(pubic_c, [r(14), r(9), sym_h], pubic_axes, rounding=r(6)),
                               HalfSpace([sign * g_half, 0, 0], [-sign, 0, 0])])
    sup_ramus = polyline_tube([P(84, -22, 10), P(46, -38, -12), P(20, -44, -21)], [r(12), r(10), r(10)], k=r(3))
    junction = P(38 + 10 * f, -5, -80 + 8 * f)
    inf_ramus = polyline_tube([P(17, -34, -57), junction, P(62, 22, -78)], [r(8), r(7), r(10)], k=r(3))
    # --- obturator foramen: a rim plate around an ellipsoidal hole ------------------------------
    obt_c = P(50, -12, -46)
    e1 = S.V(1.0, 0.75, 0.0)
    e2 = unit(np.array([0.0, 0.0, 1.0]) - np.dot([0.0, 0.0, 1.0], e1) * e1)
    n_o = np.cross(e1, e2)
    obt_axes = np.stack([e1, e2, n_o], axis=1)
    a_o, b_o = r(19 + 2 * f), r(26 - 3 * f)
    obt_cut = Ellipsoid(obt_c, [a_o, b_o, r(40)], obt_axes)
    obt_rim = EllipticCylinder(obt_c, a_o + r(12), b_o + r(12), r(5.5), obt_axes, rounding=r(3))
    # --- greater sciatic notch: cylinder cut ----------------------------------------------------
    apex_guess = P(63, 42, 33)
    chord = (piis, P(47, 52, -12))
    mid = 0.5 * (chord[0] + chord[1])
    r_g = r(20 + 7 * f)
    u_out = unit(mid - apex_guess)
    gsn_c = apex_guess + u_out * r_g
    gsn_axis = unit(np.cross(chord[0] - chord[1], apex_guess - mid))
    gsn_cut = EllipticCylinder(gsn_c, r_g, r_g, r(45), frame_from_z(gsn_axis, u_out))

    body = Union([wing, crest_tube, ant_border, post_border, buttress, auricular, arcuate, acetab, ischium, tuber,
                   spine, post_plate, pubic_body, sup_ramus, inf_ramus, obt_rim], k=r(4))
    sdf = Subtract(body, [Sphere(H, R + 1.5), obt_cut, gsn_cut], k=r(1.0))
    return _HemiPelvis(sdf=sdf, H=H, asis=asis, asis_dir=S.V(0.25, -1.0, 0.15), obt_center=obt_c,
                       obt_axes=obt_axes, gsn_center=gsn_c, gsn_axis=gsn_axis, gsn_radius=r_g, gsn_chord=chord,
                       sym_x=sign * g_half, sym_up=sym_up)


def _pelvis_landmarks(hp: _HemiPelvis, side: str) -> dict[str, np.ndarray]:
    """Landmarks of one hemipelvis in the pelvis frame, found on its generated surface.

    * FH: femoral head centre (the acetabular socket centre).
    * ASIS: the most anterior surface point of the anterior superior iliac spine.
    * MOF / IOF: the most medial / most inferior point of the obturator foramen's bony rim.
    * SPS / IPS: the superior / inferior end of this side's symphyseal surface.
    * GSN: the apex of the greater sciatic notch (its rim point farthest from the line joining
      the posterior inferior iliac spine and the ischial spine).
    """
    out: dict[str, np.ndarray] = {f"FH-{side}": hp.H.copy()}
    sign = 1.0 if side == "l" else -1.0
    # ASIS: rays from inside the spine in a cone around the anterior direction
    base = hp.asis + np.array([0, 8.0, -3.0])
    dirs = []
    for el in np.linspace(-40, 40, 9):
        for az in np.linspace(-50, 50, 11):
            d = rot_z(az) @ rot_x(el) @ np.array([0.0, -1.0, 0.0])
            dirs.append(d)
    dirs = np.array(dirs)
    t = ray_to_surface(hp.sdf, base, dirs, max_mm=60)
    hits = base + dirs * t[:, None]
    ok = np.isfinite(t)
    out[f"ASIS-{side}"] = hits[ok][np.argmin(hits[ok][:, 1])]
    # obturator foramen rim: rays from the hole centre in its plane
    ang = np.deg2rad(np.arange(0, 360, 1.0))
    e1, e2 = hp.obt_axes[:, 0], hp.obt_axes[:, 1]
    dirs = np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2
    t = ray_to_surface(hp.sdf, hp.obt_center, dirs, max_mm=60)
    hits = hp.obt_center + dirs * t[:, None]
    ok = np.isfinite(t)
    h = hits[ok]
    out[f"MOF-{side}"] = h[np.argmin(sign * h[:, 0])]
    out[f"IOF-{side}"] = h[np.argmin(h[:, 2])]
    # symphysis: this side's symphyseal face is the plane x = sym_x; sample it
    ys = np.arange(-80, -5, 0.5)
    zs = np.arange(-100, 0, 0.5)
    yy, zz = np.meshgrid(ys, zs, indexing="ij")
    pts = np.stack([np.full_like(yy, hp.sym_x + sign * 0.6), yy, zz], -1)
    inside = hp.sdf(pts) < 0
    q = pts[inside]
    proj = q[:, 1:] @ hp.sym_up[1:]
    sps, ips = q[np.argmax(proj)].copy(), q[np.argmin(proj)].copy()
    sps[0] = ips[0] = hp.sym_x
    out[f"SPS-{side}"], out[f"IPS-{side}"] = sps, ips
    # GSN: rays from the notch-cutter axis in its cross-section plane
    fr = frame_from_z(hp.gsn_axis)
    dirs = np.cos(ang)[:, None] * fr[:, 0] + np.sin(ang)[:, None] * fr[:, 1]
    t = ray_to_surface(hp.sdf, hp.gsn_center, dirs, max_mm=hp.gsn_radius + 6)
    ok = np.isfinite(t)
    hits = (hp.gsn_center + dirs * t[:, None])[ok]
    a, b = hp.gsn_chord
    u = unit(b - a)
    rel = hits - a
    dist = np.linalg.norm(rel - (rel @ u)[:, None] * u, axis=1)
    out[f"GSN-{side}"] = hits[np.argmax(dist)]
    return out


def _sacrum(hp: HipParams) -> tuple[SDF, SDF, np.ndarray]:
    """Sacrum SDF, the region of its lower (unlabelled) part, and the S1 endplate centre/normal."""
    s, f = hp.size, hp.female
    sl = np.deg2rad(hp.sacral_slope_deg)
    up = unit([0, -np.sin(sl), np.cos(sl)])
    c1 = np.array([0, 54, 80 - 4 * f]) * s
    s1 = EllipticCylinder(c1, 25 * s, 17 * s, 12 * s, frame_from_z(up), rounding=3 * s)
    curve = np.array([[0, 54, 80 - 4 * f], [0, 64, 52], [0, 74, 26 + 3 * f], [0, 80, 4 + 5 * f],
                      [0, 79, -16 + 6 * f], [0, 70, -36 + 6 * f]]) * s
    column = polyline_tube(curve, np.array([15, 14, 11, 8, 6, 4]) * s, k=3 * s)
    alae = [Ellipsoid(np.array([sg * 30, 62, 74]) * s, np.array([24, 15, 20]) * s) for sg in (-1, 1)]
    wx = 44 + 4 * f
    plate = fan_plate(np.array([0, 70, 40]) * s,
                      np.array([[-wx, 64, 86], [-wx - 2, 69, 58], [-30, 75, 28], [-13, 80, 4], [0, 82, -10],
                                [13, 80, 4], [30, 75, 28], [wx + 2, 69, 58], [wx, 64, 86]]) * s, 7 * s, k=3 * s)
    crest = polyline_tube(curve[:4] + np.array([0, 20, 0]) * s, 4 * s)
    body = Union([s1, column, *alae, plate, crest], k=4 * s)
    foramina = []
    for i, (y, z) in enumerate(((66, 58), (73, 36), (78, 14), (80, -4))):
        for sg in (-1, 1):
            x = sg * (17 - 1.5 * i)
            foramina.append(Capsule(np.array([x, y - 30, z]) * s, np.array([x, y + 30, z]) * s, (4.5 - 0.6 * i) * s))
    sdf = Subtract(body, foramina, k=1.0)
    # lower sacrum: below the plane through S2/S3 perpendicular to the sacral curve there
    cut_p = np.array([0, 70, 36]) * s
    cut_n = unit(curve[1] - curve[3])
    lower = Intersection([Box(0.5 * (sdf.lo + sdf.hi), 0.5 * (sdf.hi - sdf.lo) + 2), HalfSpace(cut_p, cut_n)])
    endplate = c1 + up * 12 * s
    return sdf, lower, np.concatenate([endplate, up])


def _vertebra(level: int, s: float) -> SDF:
    """A lumbar vertebra in its local frame (body centre at 0, x left, y posterior, z cranial).
    ``level``: 5 for L5 ... 2 for L2."""
    a = (26 - 0.7 * (5 - level)) * s
    b, h = 17 * s, 13.5 * s
    parts: list[SDF] = [EllipticCylinder([0, 0, 0], a, b, h, rounding=2.5 * s)]
    tp_len = (40 if level == 5 else 46 - 2 * (4 - level)) * s
    tp_r = (7 if level == 5 else 4.5) * s
    for sg in (-1, 1):
        parts += [
            Capsule(np.array([sg * 11, 12, 4]) * s, np.array([sg * 13, 27, 4]) * s, 5 * s),  # pedicle
            Capsule(np.array([sg * 13, 30, 2]) * s, np.array([sg * 4, 40, -1]) * s, 4.5 * s),  # lamina
            Capsule(np.array([sg * 14, 24, 5]) * s, np.array([sg * tp_len, 28, 8]) * s, tp_r),  # transverse
            Capsule(np.array([sg * 14, 30, 8]) * s, np.array([sg * 15, 32, 20]) * s, 5 * s),  # sup. articular
            Capsule(np.array([sg * 9, 36, -8]) * s, np.array([sg * 10, 38, -20]) * s, 4.5 * s),  # inf. articular
        ]
    parts.append(Box(np.array([0, 52, -4]) * s, np.array([3.5, 14, 9]) * s, frame_from_z([0, 0.2, 1]),
                     rounding=3 * s))  # spinous process
    return Union(parts, k=2 * s)


def _femur_local(sp: SideParams, sign: int, s: float) -> tuple[SDF, SDF, dict[str, np.ndarray]]:
    """Femur with its head centre at the origin, in the pelvis frame's orientation (neutral hip).

    Returns the bone, the medullary canal and axes (``J`` neck-shaft junction, ``s0`` distal
    shaft direction)."""
    R = sp.fh_radius
    s0 = unit([-sign * np.sin(np.deg2rad(8)), 0, -np.cos(np.deg2rad(8))])
    m = np.array([-sign, 0.0, 0.0])
    m = unit(m - (m @ s0) * s0)
    ant = np.array([0.0, -1.0, 0.0])
    ant = unit(ant - (ant @ s0) * s0)
    nsa, av = np.deg2rad(sp.nsa_deg), np.deg2rad(sp.anteversion_deg)
    v = np.cos(nsa) * s0 + np.sin(nsa) * (np.cos(av) * m + np.sin(av) * ant)  # from J towards the head
    J = -sp.neck_mm * s * v  # noqa: N806
    lat, up = -m, -s0
    post = np.cross(up, lat) if sign > 0 else np.cross(lat, up)
    post = unit(post) * (1 if unit(post)[1] > 0 else -1)
    axes = np.stack([lat, post, up], axis=1)
    shaft_len = 260 * s
    parts = [
        Sphere([0, 0, 0], R),
        RoundCone([0, 0, 0], J, 0.66 * R, 0.86 * R),
        Ellipsoid(J + lat * 14 * s + up * 8 * s + post * 8 * s, np.array([11, 16, 22]) * s, axes),
        RoundCone(J + up * 6 * s, J + s0 * 45 * s, 21 * s, 17 * s),
        Ellipsoid(J + s0 * 42 * s + m * 14 * s + post * 8 * s, np.array([9, 9, 13]) * s, axes),
        RoundCone(J + s0 * 35 * s, J + s0 * shaft_len, 15.5 * s, 13.5 * s),
    ]
    bone = Union(parts, k=6 * s)
    canal = RoundCone(J + s0 * 80 * s, J + s0 * shaft_len, 7.0 * s, 8.5 * s)
    return bone, canal, {"J": J, "s0": s0}


def _extent(sdf: SDF, lo: np.ndarray, hi: np.ndarray, margin: float, step: float = 4.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Box of the points of [lo, hi] inside ``sdf`` (sampled every ``step`` mm), grown by ``margin``;
    z keeps [lo, hi]."""
    axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")  # noqa: N806
    inside = sdf(np.stack([X, Y, Z], -1)) < 0
    xs, ys = X[inside], Y[inside]
    out_lo = np.array([xs.min() - step - margin, ys.min() - step - margin, lo[2]])
    out_hi = np.array([xs.max() + step + margin, ys.max() + step + margin, hi[2]])
    return out_lo, out_hi


def _pelvis_rotation(hp: HipParams) -> np.ndarray:
    return rot_z(hp.rotation_deg) @ rot_y(hp.obliquity_deg) @ rot_x(hp.tilt_deg)


class HipAnatomy(Anatomy):
    """The continuous anatomy of one hip specimen (parameters in :class:`HipParams`)."""

    kind = "hip"

    def __init__(self, params: HipParams) -> None:
        super().__init__()
        self.params = params

    @property
    def seed_keys(self) -> tuple[Any, ...]:
        return tuple(self.params.seed_keys)

    @property
    def marbling(self) -> dict[int, float]:  # type: ignore[override]
        vf = self.params.visceral_fat
        return {Tissue.MUSCLE: 1.5, Tissue.BOWEL: float(1.0 - 1.6 * vf)}

    def tables(self):
        p = self.params
        return tissue_tables(bone_density=p.bone_density, fat_hu=p.fat_hu, muscle_hu=p.muscle_hu)

    # -- geometry ---------------------------------------------------------------------------------
    def _skeleton(self) -> dict[str, Any]:
        if "skeleton" in self._cache:
            return self._cache["skeleton"]
        p = self.params
        Rg = _pelvis_rotation(p)  # noqa: N806
        out: dict[str, Any] = {"Rg": Rg}
        for side, sign, sp in (("l", 1, p.left), ("r", -1, p.right)):
            hemi = _hemipelvis(sign, p, sp)
            out[f"hemi-{side}"] = hemi
            bone, canal, ax = _femur_local(sp, sign, p.size)
            # hip flexion (distal moves anteriorly) and abduction (distal moves laterally) about H
            Rf = rot_x(-sp.flexion_deg) @ rot_y(-sign * sp.abduction_deg)  # noqa: N806
            R_w = Rg @ Rf
            t_w = Rg @ hemi.H
            out[f"femur-{side}"] = (Transform(bone, R_w, t_w), Transform(canal, R_w, t_w), R_w, t_w, ax)
        sac, lower, endplate = _sacrum(p)
        out["sacrum"] = (Transform(sac, Rg, np.zeros(3)), Transform(lower, Rg, np.zeros(3)))
        # lumbar spine stacked on S1 with lordosis
        e = endplate[:3]
        phi = np.deg2rad(p.sacral_slope_deg)
        dphi = np.deg2rad(p.lordosis_deg) / 4
        verts, discs = [], []
        s = p.size
        for level in (5, 4, 3, 2):
            phi_next = phi - dphi
            up_d = unit([0, -np.sin(0.5 * (phi + phi_next)), np.cos(0.5 * (phi + phi_next))])
            disc_h = (10.0 if level >= 4 else 9.0) * s
            discs.append(Transform(EllipticCylinder([0, 0, 0], 24 * s, 16 * s, disc_h / 2 + 1.5 * s, rounding=3 * s),
                                   frame_from_z(up_d, [1, 0, 0]) @ np.diag([1, 1, 1]), Rg @ (e + up_d * disc_h / 2)))
            up_v = unit([0, -np.sin(phi_next), np.cos(phi_next)])
            c = e + up_d * disc_h + up_v * 13.5 * s
            fr = np.stack([np.array([1.0, 0, 0]), np.cross(up_v, [1.0, 0, 0]), up_v], axis=1)
            verts.append(Transform(_vertebra(level, s), Rg @ fr, Rg @ c))
            e = c + up_v * 13.5 * s
            phi = phi_next
        out["vertebrae"] = Union(verts)
        out["discs"] = Union(discs)
        out["spine_top"] = Rg @ e
        self._cache["skeleton"] = out
        return out

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS box (mm) of the scanned body: the skin outline's extent within the scanned z range."""
        if "bounds" not in self._cache:
            body = self._body()[0]
            z0, z1 = np.asarray(self.params.z_range) * self.params.size
            self._cache["bounds"] = _extent(body, np.array([body.lo[0], body.lo[1], z0]),
                                            np.array([body.hi[0], body.hi[1], z1]), margin=6.0)
        return self._cache["bounds"]

    def _body(self) -> tuple[SDF, SDF, list[SDF]]:
        """Skin outline, muscle compartment and thigh axes (world)."""
        if "body" in self._cache:
            return self._cache["body"]
        p, s = self.params, self.params.size
        sk = self._skeleton()
        fa, fl, fp, fb = p.fat_mm
        mu = p.muscle
        z = np.array([-120, -70, -20, 30, 90, 160, 230, 300]) * s
        a_m = np.array([130, 150, 160, 160, 152, 148, 135, 130]) * s * mu
        b_m = np.array([80, 92, 100, 100, 98, 96, 90, 88]) * s * mu
        cy_m = np.array([28, 26, 22, 18, 16, 16, 22, 22]) * s
        muscle = EllipticLoft(z, np.zeros_like(z), cy_m, a_m, b_m, rounding=30 * s)
        fpost = np.array([fb, fb, fb, fp, fp, fp, fp, fp])
        b_b = b_m + 0.5 * (fa + fpost)
        cy_b = cy_m + 0.5 * (fpost - fa)
        body = EllipticLoft(z - np.array([10, 0, 0, 0, 0, 0, 0, 0]), np.zeros_like(z), cy_b, a_m + fl, b_b,
                            rounding=30 * s)
        thighs_m, thighs_b = [], []
        for side in ("l", "r"):
            _, _, R_w, t_w, ax = sk[f"femur-{side}"]
            J = R_w @ ax["J"] + t_w  # noqa: N806
            sw = R_w @ ax["s0"]
            off = np.array([-np.sign(J[0]) * 8, -10.0, 0])
            a, b = J + off - sw * 10 * s, J + off + sw * 320 * s
            thighs_m.append(RoundCone(a, b, 78 * s * mu, 62 * s * mu))
            thighs_b.append(RoundCone(a, b, 78 * s * mu + fl * 0.9, 62 * s * mu + fl * 0.8))
        out = (Union([body, *thighs_b], k=35 * s), Union([muscle, *thighs_m], k=30 * s), thighs_m)
        self._cache["body"] = out
        return out

    def _build(self) -> list[Part]:
        p, s = self.params, self.params.size
        sk = self._skeleton()
        Rg = sk["Rg"]  # noqa: N806
        body, muscle, _ = self._body()
        parts = [Part("body", body, Tissue.FAT, shell_mm=2.0, shell_tissue=Tissue.SKIN),
                 Part("muscle", muscle, Tissue.MUSCLE)]

        def pelvic(sdf: SDF) -> SDF:
            return Transform(sdf, Rg, np.zeros(3))

        abdomen = EllipticLoft(np.array([40, 120, 200, 320]) * s, np.zeros(4), np.array([-25, -30, -30, -25]) * s,
                               np.array([95, 125, 125, 120]) * s * p.muscle, np.array([55, 72, 72, 70]) * s * p.muscle,
                               rounding=25 * s)
        pelvic_cavity = Ellipsoid(np.array([0, 15, 15]) * s, np.array([62, 58, 55]) * s)
        colon = [polyline_tube(np.array(c) * s, 19 * s, k=5 * s) for c in (
            [[-95, -5, 40], [-100, -10, 120], [-95, -20, 215]],
            [[-95, -20, 215], [0, -60, 235], [95, -20, 215]],
            [[95, -20, 215], [100, 10, 120], [85, 15, 50], [30, 35, 20], [0, 55, 10]])]
        parts += [Part("abdomen", abdomen, Tissue.BOWEL, only_over=(Tissue.MUSCLE,)),
                  Part("pelvic-cavity", pelvic(pelvic_cavity), Tissue.BOWEL, only_over=(Tissue.MUSCLE,)),
                  *[Part(f"colon-{i}", c, Tissue.BOWEL, only_over=(Tissue.MUSCLE, Tissue.BOWEL))
                    for i, c in enumerate(colon)]]
        bl = np.array(p.bladder) * s
        parts.append(Part("bladder", pelvic(Ellipsoid(np.array([0, -12, -8 + bl[2] * 0.5]) * s, bl)), Tissue.FLUID))
        rectum = polyline_tube(np.array([[0, 55, 12], [0, 62, -15], [0, 52, -50]]) * s, 15 * s, k=4 * s)
        parts.append(Part("rectum", pelvic(rectum), Tissue.BOWEL))
        for i, g in enumerate(p.gas):
            parts.append(Part(f"gas-{i}", pelvic(Ellipsoid(np.array(g[:3]) * s, np.array(g[3:]) * s)), Tissue.AIR,
                              only_over=(Tissue.BOWEL,)))
        for sg in (-1, 1):
            psoas = polyline_tube(np.array([[sg * 28, 28, 240], [sg * 45, 20, 110], [sg * 68, -10, 20],
                                            [sg * 88, -18, -30]]) * s, np.array([14, 24, 24, 17]) * s * p.muscle,
                                  k=6 * s)
            parts.append(Part(f"psoas-{sg}", pelvic(psoas), Tissue.MUSCLE))
        # skeleton
        parts.append(Part("discs", sk["discs"], Tissue.DISC))
        for side, lab in (("l", LEFT_HEMIPELVIS), ("r", RIGHT_HEMIPELVIS)):
            parts.append(Part(f"hemipelvis-{side}", pelvic(sk[f"hemi-{side}"].sdf), Tissue.CANCELLOUS, label=lab,
                              shell_mm=1.6, shell_tissue=Tissue.CORTICAL))
        sac, lower = sk["sacrum"]
        parts.append(Part("sacrum", sac, Tissue.CANCELLOUS, label=UPPER_SACRUM, shell_mm=1.4,
                          shell_tissue=Tissue.CORTICAL))
        parts.append(Part("lower-sacrum", lower, Tissue.CANCELLOUS, label=0, relabel_from=UPPER_SACRUM))
        parts.append(Part("vertebrae", sk["vertebrae"], Tissue.CANCELLOUS, label=VERTEBRAE, shell_mm=1.4,
                          shell_tissue=Tissue.CORTICAL))
        for side, lab in (("l", LEFT_FEMUR), ("r", RIGHT_FEMUR)):
            bone, canal, R_w, t_w, ax = sk[f"femur-{side}"]
            J, s0 = ax["J"], ax["s0"]  # noqa: N806

            def thickness(pts: np.ndarray, R_w=R_w, t_w=t_w, J=J, s0=s0) -> np.ndarray:  # noqa: N803
                loc = (pts - t_w.astype(np.float32)) @ R_w.astype(np.float32)
                along = (loc - J.astype(np.float32)) @ s0.astype(np.float32)
                return (1.3 + 4.2 * _smoothstep(along, 40 * s, 110 * s)).astype(np.float32)

            parts.append(Part(f"femur-{side}", bone, Tissue.CANCELLOUS, label=lab, shell_mm=5.5,
                              shell_tissue=Tissue.CORTICAL, shell_fn=thickness, shell_min_mm=1.3))
            parts.append(Part(f"canal-{side}", canal, Tissue.MARROW, only_over=(Tissue.CANCELLOUS,)))
        return parts

    @property
    def pelvis_rotation(self) -> np.ndarray:
        """Rotation from the pelvis frame to the specimen (LPS) frame (tilt, obliquity, rotation)."""
        return _pelvis_rotation(self.params)

    def landmarks(self) -> dict[str, np.ndarray]:
        """The 14 hip landmarks (LPS mm), found on the generated surfaces."""
        if "landmarks" in self._cache:
            return self._cache["landmarks"]
        sk = self._skeleton()
        Rg = sk["Rg"]  # noqa: N806
        out: dict[str, np.ndarray] = {}
        for side in ("l", "r"):
            for name, v in _pelvis_landmarks(sk[f"hemi-{side}"], side).items():
                out[name] = Rg @ v
        out = {name: out[name] for name in HIP_LANDMARKS}  # the official order
        self._cache["landmarks"] = out
        return out

    def part_sdf(self, name: str) -> SDF:
        """The signed-distance field (world frame) of a named part (see :attr:`parts`)."""
        for part in self.parts:
            if part.name == name:
                return part.sdf
        raise KeyError(name)
