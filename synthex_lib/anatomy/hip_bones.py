"""The shapes of the hip's bones, as signed-distance fields in the pelvis frame.

The *pelvis frame* is LPS-aligned with its origin midway between the femoral head centres
(x = patient left, y = posterior, z = superior). The shapes are built from signed-distance
primitives (:mod:`synthex_lib.anatomy.sdf`): thin fan plates with rim tubes for the iliac wings,
round cones for rami and femoral necks, a cylinder cut for the greater sciatic notch, an
ellipsoid cut for the obturator foramen, and a sphere cut for the acetabular socket
(:func:`hemipelvis`); the sacrum (:func:`sacrum`, its foramina :func:`sacral_foramina`: elliptic
canals, wider at the pelvic surface, their walls displaced by a smooth random field), a lumbar
vertebra (:func:`vertebra`) and a femur (:func:`femur_local`). Dimensions follow adult averages
(inter-ASIS about 230-260 mm).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthex_lib.anatomy.hip_params import FORAMEN_DIAMETERS_MM, HipParams, SideParams
from synthex_lib.anatomy.raster import LatticeNoise
from synthex_lib.anatomy.sdf import (
    SDF,
    Box,
    Capsule,
    Displaced,
    Ellipsoid,
    EllipticCylinder,
    HalfSpace,
    Intersection,
    RoundCone,
    Sphere,
    Subtract,
    Triangle,
    Union,
    fan_plate,
    frame_from_z,
    polyline_tube,
    unit,
)
from synthex_lib.geometry import rot_x, rot_y, rot_z


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


def smoothstep(x: np.ndarray, a: float, b: float) -> np.ndarray:
    """0 below a, 1 above b, a smooth cubic between."""
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
class HemiPelvis:
    """One hemipelvis (pelvis frame): its SDF and the construction points its landmarks are found from."""

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


def hemipelvis(sign: int, hp: HipParams, sp: SideParams) -> HemiPelvis:
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
    return HemiPelvis(sdf=sdf, H=H, asis=asis, asis_dir=S.V(0.25, -1.0, 0.15), obt_center=obt_c,
                       obt_axes=obt_axes, gsn_center=gsn_c, gsn_axis=gsn_axis, gsn_radius=r_g, gsn_chord=chord,
                       sym_x=sign * g_half, sym_up=sym_up)


#: edge roughness of the foramina: amplitude (mm, per unit of a unit-variance noise field) and
#: correlation cell (mm) of the smooth field that displaces their walls (an assumption)
FORAMEN_ROUGHNESS_MM, FORAMEN_NOISE_CELL_MM = 0.7, 3.5


@dataclass
class Foramen:
    """One sacral foramen canal (pelvis frame, mm): ``centre`` in the sacral plate, ``axis`` the unit
    normal of the plate towards the pelvis (anterior-inferior); the anterior (pelvic) opening is
    centred on the line through ``ant_centre`` along ``axis``, semi-axes ``ant_ab`` along
    ``ant_axes`` columns 0, 1; the posterior (dorsal) one on the line through ``centre``,
    semi-axes ``post_ab`` along ``post_axes``."""

    centre: np.ndarray
    ant_centre: np.ndarray
    axis: np.ndarray
    ant_ab: tuple[float, float]
    ant_axes: np.ndarray
    post_ab: tuple[float, float]
    post_axes: np.ndarray


def sacral_foramina(hp: HipParams) -> list[Foramen]:
    """The 8 foramina of the sacrum (S1..S4, right then left at each level), pelvis frame."""
    s = hp.size
    shapes = hp.foramina or [[0.25 * (a[0] + a[1]), 0.25 * (a[0] + a[1]), 0.0,
                              0.25 * (p[0] + p[1]), 0.25 * (p[0] + p[1]), 0.0]
                             for a, p in FORAMEN_DIAMETERS_MM for _ in (-1, 1)]
    # the sacral curve (y, z) at each level gives the plate's normal there
    tangents = ((10, -28), (8, -24), (5, -22), (1, -20))
    out = []
    for i, (y, z) in enumerate(((66, 58), (73, 36), (78, 14), (80, -4))):
        ty, tz = unit(tangents[i])
        axis = np.array([0.0, tz, -ty])  # anterior-inferior normal of the plate
        axis = axis if axis[1] < 0 else -axis
        for j, sg in enumerate((-1, 1)):
            sh = shapes[2 * i + j]
            c = np.array([sg * (17.5 - 1.2 * i), y, z]) * s
            fr = frame_from_z(axis, [0.0, 0.0, 1.0])  # column 0 near cranial, 1 mediolateral
            frames = []
            for ang in (sh[2], sh[5]):
                a = np.deg2rad(ang * sg)
                rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])
                frames.append(fr @ rot)
            # the anterior opening lies lateral and cranial of the posterior one: its outline seen
            # from behind reaches 10 mm lateral, 6 mm superior, 3 mm medial and 3 mm inferior of the
            # posterior foramen (Spine 1996;21:407-410, PMID 8658241), a centre shift of 3.5 mm
            # laterally and 1.5 mm cranially
            lateral = fr[:, 1] * np.sign(fr[0, 1] * sg)
            ant_c = c + (3.5 * lateral + 1.5 * fr[:, 0]) * s
            out.append(Foramen(centre=c, ant_centre=ant_c, axis=axis, ant_ab=(sh[0] * s, sh[1] * s),
                               ant_axes=frames[0], post_ab=(sh[3] * s, sh[4] * s), post_axes=frames[1]))
    return out


def foramen_cutter(fo: Foramen) -> SDF:
    """The (smooth) canal of one foramen: an elliptic tube from the plate's centre out through the
    pelvic surface and a narrower one out through the dorsal surface."""
    ant = EllipticCylinder(fo.ant_centre + fo.axis * 16.0, fo.ant_ab[0], fo.ant_ab[1], 16.0, fo.ant_axes,
                           rounding=min(fo.ant_ab) * 0.5)
    post = EllipticCylinder(fo.centre - fo.axis * 16.0, fo.post_ab[0], fo.post_ab[1], 16.0, fo.post_axes,
                            rounding=min(fo.post_ab) * 0.5)
    return Union([ant, post], k=2.0)


def sacrum(hp: HipParams) -> tuple[SDF, SDF, np.ndarray]:
    """Sacrum SDF, the region of its lower (unlabelled) part, and the S1 endplate centre/normal.

    The foramina (:func:`sacral_foramina`) are elliptic canals, larger at the pelvic than at the
    dorsal surface, their walls displaced by a smooth random field (seeded by the specimen) so
    that no opening is a clean ellipse."""
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
                      np.array([[-wx, 64, 86], [-wx - 2, 69, 58], [-33, 75, 28], [-21, 80, 2], [0, 82, -12],
                                [21, 80, 2], [33, 75, 28], [wx + 2, 69, 58], [wx, 64, 86]]) * s, 7 * s, k=3 * s)
    crest = polyline_tube(curve[:4] + np.array([0, 20, 0]) * s, 4 * s)
    body = Union([s1, column, *alae, plate, crest], k=4 * s)
    rough = LatticeNoise((*hp.seed_keys, "sacral-foramina", "walls"), body.lo, body.hi, FORAMEN_NOISE_CELL_MM)
    foramina = [Displaced(foramen_cutter(fo), rough.at, FORAMEN_ROUGHNESS_MM) for fo in sacral_foramina(hp)]
    sdf = Subtract(body, foramina, k=1.0)
    # lower sacrum: below the plane through S2/S3 perpendicular to the sacral curve there
    cut_p = np.array([0, 70, 36]) * s
    cut_n = unit(curve[1] - curve[3])
    lower = Intersection([Box(0.5 * (sdf.lo + sdf.hi), 0.5 * (sdf.hi - sdf.lo) + 2), HalfSpace(cut_p, cut_n)])
    endplate = c1 + up * 12 * s
    return sdf, lower, np.concatenate([endplate, up])


def vertebra(level: int, s: float) -> SDF:
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


def femur_local(sp: SideParams, sign: int, s: float) -> tuple[SDF, SDF, dict[str, np.ndarray]]:
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


def pelvis_rotation(hp: HipParams) -> np.ndarray:
    """Rotation from the pelvis frame to the specimen (LPS) frame: tilt, obliquity, rotation."""
    return rot_z(hp.rotation_deg) @ rot_y(hp.obliquity_deg) @ rot_x(hp.tilt_deg)
