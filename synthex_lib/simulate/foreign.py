"""Foreign objects of a real operating room that are in no CT and no label: K-wires, screws,
monitoring cables, ECG electrodes and the operating table.

Objects are analytic primitives in LPS mm (finite cylinders and oriented boxes) so that a 1.6 mm
K-wire stays sharp at any detector resolution: the chord of every ray through every primitive is
computed in closed form (ray-cylinder quadratic clipped by the two end planes; slab method for
boxes) on a supersampled grid of rays, and the scanner averages the *transmission* over the
sub-rays (the partial-volume effect of a real pixel looking at a thin wire). Written by hand: a
few lines of closed-form geometry that no maintained library offers for projective rays.

Materials (density g/cm^3; composition by mass for ``xraydb``):

========== ======================= ======= =================================================
name       composition              density object
========== ======================= ======= =================================================
steel      Fe 0.70 Cr 0.19 Ni 0.11   8.0    K-wires, screws (316L stainless)
titanium   Ti                        4.5    screws (Ti-6Al-4V approximated by Ti)
copper     Cu                        8.96   cable cores, electrode snaps
pvc        C2H3Cl                    1.38   cable insulation
aluminium  Al                        2.70   table side rails
carbon     C                         1.60   carbon-fibre table top
========== ======================= ======= =================================================
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import xraydb

from synthex_lib.core.errors import ConfigError

#: name -> (xraydb formula, density g/cm^3)
MATERIALS: dict[str, tuple[str, float]] = {
    "steel": ("Fe0.70Cr0.19Ni0.11", 8.0),
    "titanium": ("Ti", 4.5),
    "copper": ("Cu", 8.96),
    "pvc": ("C2H3Cl", 1.38),
    "aluminium": ("Al", 2.70),
    "carbon": ("C", 1.60),
}


@functools.lru_cache(maxsize=64)
def _mu_rho(material: str, energies: tuple[float, ...]) -> np.ndarray:
    formula, density = MATERIALS[material]
    e_ev = np.asarray(energies, np.float64) * 1000.0
    return np.asarray(xraydb.material_mu(formula, e_ev, density=density), np.float64) / density


def mass_attenuation(material: str, energies_kev: Sequence[float]) -> np.ndarray:
    """NIST mass attenuation (cm^2/g, coherent scattering included) of a foreign material (``xraydb``)."""
    if material not in MATERIALS:
        raise ConfigError(f"unknown foreign material {material!r}: choose one of {', '.join(MATERIALS)}")
    return _mu_rho(material, tuple(float(e) for e in np.asarray(energies_kev).ravel()))


@dataclass(frozen=True)
class Cylinder:
    """A solid finite cylinder from ``p0`` to ``p1`` (LPS mm) of radius ``radius_mm``."""

    p0: tuple[float, float, float]
    p1: tuple[float, float, float]
    radius_mm: float
    material: str


@dataclass(frozen=True)
class Box:
    """A solid box: centre (LPS mm), orthonormal axes (rows), half sizes along them (mm)."""

    center: tuple[float, float, float]
    axes: tuple[tuple[float, float, float], ...]
    half_mm: tuple[float, float, float]
    material: str


Primitive = Cylinder | Box


@dataclass
class ForeignScene:
    """The foreign objects of one image, with what they are (for the notebook and the tests)."""

    objects: list[Primitive] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    @property
    def materials(self) -> list[str]:
        return sorted({o.material for o in self.objects})


# --- ray geometry and chords ---------------------------------------------------------------------

def pixel_rays(P: np.ndarray, size: tuple[int, int], supersample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Sources [B, 3] and unit directions [B, H*s, W*s, 3] of rays through a ``supersample`` x
    ``supersample`` grid of points in every pixel (sub-pixel centres), oriented from the source
    towards the scene (the side where the homogeneous depth has the sign of det(M))."""
    P = np.asarray(P, np.float64)
    if P.ndim == 2:
        P = P[None]
    w, h = size
    s = int(supersample)
    offs = (np.arange(s) + 0.5) / s - 0.5
    u = (np.arange(w)[:, None] + offs[None, :]).reshape(-1)
    v = (np.arange(h)[:, None] + offs[None, :]).reshape(-1)
    vv, uu = np.meshgrid(v, u, indexing="ij")
    pix = np.stack([uu, vv, np.ones_like(uu)], axis=-1)  # [H*s, W*s, 3]
    minv = np.linalg.inv(P[:, :, :3])
    src = -np.einsum("bij,bj->bi", minv, P[:, :, 3])
    d = np.einsum("bij,hwj->bhwi", minv, pix)
    sign = np.sign(np.linalg.det(P[:, :, :3]))
    d *= sign[:, None, None, None] / np.linalg.norm(d, axis=-1, keepdims=True)
    return src, d


def chord_cylinder(src: np.ndarray, dirs: np.ndarray, cyl: Cylinder) -> np.ndarray:
    """Length (mm) of each ray (source ``src`` [B, 3], unit ``dirs`` [B, ..., 3]) inside ``cyl``, past the source."""
    p0 = np.asarray(cyl.p0, np.float64)
    p1 = np.asarray(cyl.p1, np.float64)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    if length <= 0 or cyl.radius_mm <= 0:
        return np.zeros(dirs.shape[:-1])
    a = axis / length
    extra = (1,) * (dirs.ndim - 2)
    w = (src - p0).reshape((-1,) + extra + (3,))
    wa = w @ a
    da = dirs @ a
    w_perp = w - wa[..., None] * a
    d_perp = dirs - da[..., None] * a
    qa = np.sum(d_perp * d_perp, axis=-1)
    qb = np.sum(w_perp * d_perp, axis=-1)
    qc = np.sum(w_perp * w_perp, axis=-1) - cyl.radius_mm**2
    disc = qb * qb - qa * qc
    with np.errstate(divide="ignore", invalid="ignore"):
        sq = np.sqrt(np.maximum(disc, 0.0))
        t_in = np.where(qa > 1e-12, (-qb - sq) / qa, np.where(qc < 0, -np.inf, np.inf))
        t_out = np.where(qa > 1e-12, (-qb + sq) / qa, np.where(qc < 0, np.inf, -np.inf))
        t_in = np.where(disc < 0, np.inf, t_in)
        # end planes: 0 <= wa + t da <= length
        ta = np.where(np.abs(da) > 1e-12, (0.0 - wa) / da, np.where((wa >= 0) & (wa <= length), -np.inf, np.inf))
        tb = np.where(np.abs(da) > 1e-12, (length - wa) / da, np.where((wa >= 0) & (wa <= length), np.inf, -np.inf))
    lo = np.maximum(np.maximum(t_in, np.minimum(ta, tb)), 0.0)
    hi = np.minimum(t_out, np.maximum(ta, tb))
    return np.where(hi > lo, hi - lo, 0.0)


def chord_box(src: np.ndarray, dirs: np.ndarray, box: Box) -> np.ndarray:
    """Length (mm) of each ray inside an oriented ``box`` (slab method), ahead of the source."""
    axes = np.asarray(box.axes, np.float64)
    half = np.asarray(box.half_mm, np.float64)
    extra = (1,) * (dirs.ndim - 2)
    o = ((src - np.asarray(box.center, np.float64)) @ axes.T).reshape((-1,) + extra + (3,))
    d = dirs @ axes.T
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-half - o) / d
        t2 = (half - o) / d
    inside = np.abs(o) <= half
    tlo = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(t1, t2)).max(axis=-1)
    thi = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(t1, t2)).min(axis=-1)
    tlo = np.maximum(tlo, 0.0)
    return np.where(thi > tlo, thi - tlo, 0.0)


def _corners(o: Primitive) -> np.ndarray:
    """(8, 3) corners of a box enclosing the primitive (LPS mm)."""
    if isinstance(o, Cylinder):
        p0, p1 = np.asarray(o.p0, np.float64), np.asarray(o.p1, np.float64)
        lo = np.minimum(p0, p1) - o.radius_mm
        hi = np.maximum(p0, p1) + o.radius_mm
    else:
        ext = np.abs(np.asarray(o.axes, np.float64).T) @ np.asarray(o.half_mm, np.float64)
        lo = np.asarray(o.center, np.float64) - ext
        hi = np.asarray(o.center, np.float64) + ext
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _window(o: Primitive, P: np.ndarray, shape: tuple[int, int], s: int) -> tuple[slice, slice] | None:
    """Sub-ray window (rows, cols) that can see the primitive, from its projected bounding box; the whole
    detector when the box reaches behind the source; None when it projects outside the detector."""
    h = np.concatenate([_corners(o), np.ones((8, 1))], axis=1) @ P.T
    sign = np.sign(np.linalg.det(P[:, :3]))
    depth = h[:, 2] * sign
    if np.any(depth <= 1e-6):
        return slice(0, shape[0]), slice(0, shape[1])
    uv = h[:, :2] / h[:, 2:3]
    # pixel (col, row) -> sub-ray index: (u + 0.5) * s - 0.5, with a margin of one pixel
    c0 = int(np.floor((uv[:, 0].min() - 1.0 + 0.5) * s - 0.5))
    c1 = int(np.ceil((uv[:, 0].max() + 1.0 + 0.5) * s - 0.5)) + 1
    r0 = int(np.floor((uv[:, 1].min() - 1.0 + 0.5) * s - 0.5))
    r1 = int(np.ceil((uv[:, 1].max() + 1.0 + 0.5) * s - 0.5)) + 1
    r0, r1 = max(r0, 0), min(r1, shape[0])
    c0, c1 = max(c0, 0), min(c1, shape[1])
    if r1 <= r0 or c1 <= c0:
        return None
    return slice(r0, r1), slice(c0, c1)


def area_densities(objects: Sequence[Primitive], P: np.ndarray, size: tuple[int, int], supersample: int = 3
                   ) -> dict[str, np.ndarray]:
    """Per material, the area density (g/cm^2) along each sub-pixel ray: [B, H*s, W*s] arrays.

    Each primitive is evaluated only on the sub-rays of its projected bounding box (exact: the
    chord is zero elsewhere)."""
    Pb = np.asarray(P, np.float64)
    if Pb.ndim == 2:
        Pb = Pb[None]
    src, dirs = pixel_rays(Pb, size, supersample)
    shape = dirs.shape[1:3]
    out: dict[str, np.ndarray] = {}
    for o in objects:
        if o.material not in MATERIALS:
            raise ConfigError(f"unknown foreign material {o.material!r}: choose one of {', '.join(MATERIALS)}")
        acc = out.setdefault(o.material, np.zeros(dirs.shape[:3]))
        for b in range(len(Pb)):
            win = _window(o, Pb[b], shape, int(supersample))
            if win is None:
                continue
            d = dirs[b:b + 1, win[0], win[1]]
            chord = chord_cylinder(src[b:b + 1], d, o) if isinstance(o, Cylinder) else chord_box(src[b:b + 1], d, o)
            acc[b, win[0], win[1]] += chord[0] * (MATERIALS[o.material][1] / 10.0)  # mm * g/cm^3 -> g/cm^2
    return out


def transmission(objects: Sequence[Primitive], P: np.ndarray, size: tuple[int, int], energies_kev: np.ndarray,
                 supersample: int = 3) -> np.ndarray:
    """Pixel-averaged transmission [B, E, H, W] of the objects per energy bin (1 where there is none).

    The average of ``exp(-sum_m mu_m(E) A_m)`` over the ``supersample^2`` sub-rays of each pixel.
    """
    w, h = size
    s = int(supersample)
    e = np.asarray(energies_kev, np.float64)
    P = np.asarray(P, np.float64)
    b = 1 if P.ndim == 2 else P.shape[0]
    if not objects:
        return np.ones((b, len(e), h, w))
    ad = {m: a.reshape(b, h, s, w, s) for m, a in area_densities(objects, P, size, s).items()}
    mu = {m: mass_attenuation(m, e) for m in ad}
    out = np.ones((b, len(e), h, w))
    for bi in range(b):
        hit = np.zeros((h, w), bool)
        for a in ad.values():
            hit |= a[bi].max(axis=(1, 3)) > 0
        rows, cols = np.nonzero(hit)  # only pixels that some object touches
        if len(rows) == 0:
            continue
        expo = np.zeros((len(e), len(rows), s, s))
        for m, a in ad.items():
            expo += mu[m][:, None, None, None] * a[bi][rows, :, cols, :][None]
        out[bi][:, rows, cols] = np.exp(-expo).mean(axis=(2, 3))
    return out


# --- sampling scenes ---------------------------------------------------------------------------------

def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(np.linalg.norm(v), 1e-12)


def _perturb(direction: np.ndarray, rng: np.random.Generator, deg: float) -> np.ndarray:
    return _unit(_unit(direction) + rng.normal(0, np.deg2rad(deg), 3))


def kwire(entry: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[Primitive]:
    """A steel K-wire (1.6-2.5 mm) whose tip passes ``target`` by a few mm, most of it outside the body."""
    d = _perturb(target - entry, rng, 6.0)
    tip = target + rng.normal(0, 4.0, 3)
    length = rng.uniform(150.0, 230.0)
    r = rng.choice([0.8, 1.0, 1.25])
    return [Cylinder(tuple(tip), tuple(tip - d * length), float(r), "steel")]


def screw(entry: np.ndarray, target: np.ndarray, rng: np.random.Generator) -> list[Primitive]:
    """A cancellous bone screw (6.5 or 7.3 mm, titanium or steel) from ``entry`` towards ``target``:
    a stack of cylinders alternating major and minor radius (the thread, 2.75 mm pitch) and a head."""
    d = _perturb(target - entry, rng, 8.0)
    length = rng.uniform(50.0, 90.0)
    major = float(rng.choice([3.25, 3.65]))
    minor = major * 0.62
    mat = "titanium" if rng.uniform() < 0.6 else "steel"
    start = entry + rng.normal(0, 4.0, 3)
    parts: list[Primitive] = [Cylinder(tuple(start - d * 4.0), tuple(start), 4.0 + 0.5 * (major > 3.5), mat)]
    pitch = 2.75
    smooth = length * 0.4  # unthreaded shank
    parts.append(Cylinder(tuple(start), tuple(start + d * smooth), minor * 1.1, mat))
    z = smooth
    k = 0
    while z < length - 1e-6:
        z1 = min(length, z + pitch / 2)
        parts.append(Cylinder(tuple(start + d * z), tuple(start + d * z1), major if k % 2 == 0 else minor, mat))
        z, k = z1, k + 1
    return parts


def cable(lo: np.ndarray, hi: np.ndarray, y_mm: float, rng: np.random.Generator, segments: int = 24) -> list[Primitive]:
    """A monitoring cable: a smooth random curve near the coronal plane ``y = y_mm`` crossing the
    bounding box (``lo``, ``hi`` LPS mm) in a random direction; a copper core (0.4 mm) in PVC (1.6 mm)."""
    theta = rng.uniform(0, np.pi)
    u = np.array([np.cos(theta), 0.0, np.sin(theta)])  # along the cable
    v = np.array([-np.sin(theta), 0.0, np.cos(theta)])  # sideways, in the coronal plane
    centre = np.array([rng.uniform(lo[0], hi[0]), y_mm, rng.uniform(lo[2], hi[2])])
    half = 0.5 * float(np.linalg.norm((hi - lo)[[0, 2]])) + 80.0
    s = np.linspace(-half, half, segments + 1)
    lateral = np.zeros(segments + 1)
    slope = rng.normal(0, 0.5)
    for i in range(1, segments + 1):
        slope = 0.8 * slope + rng.normal(0, 0.3)
        lateral[i] = lateral[i - 1] + slope * (s[1] - s[0])
    depth = np.cumsum(rng.normal(0, 1.0, segments + 1))
    pts = centre + s[:, None] * u + lateral[:, None] * v + depth[:, None] * np.array([0.0, 1.0, 0.0])
    parts: list[Primitive] = []
    for a, b in zip(pts[:-1], pts[1:], strict=True):
        parts.append(Cylinder(tuple(a), tuple(b), 1.6, "pvc"))
        parts.append(Cylinder(tuple(a), tuple(b), 0.4, "copper"))
    return parts


def electrode(position: np.ndarray, normal: np.ndarray) -> list[Primitive]:
    """An ECG electrode: its metal snap (copper-like, 2 mm radius, 3 mm tall) on the skin."""
    n = _unit(normal)
    return [Cylinder(tuple(position), tuple(position + 3.0 * n), 2.0, "copper")]


def table(center_x: float, top_y: float, z_mid: float) -> list[Primitive]:
    """The operating table under the patient (LPS: posterior is +y): a 20 mm carbon-fibre top,
    460 mm wide, and 10 x 30 mm aluminium side rails along its two long edges."""
    eye = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    parts: list[Primitive] = [Box((center_x, top_y + 10.0, z_mid), eye, (230.0, 10.0, 700.0), "carbon")]
    for side in (-1, 1):
        parts.append(Box((center_x + side * 235.0, top_y + 15.0, z_mid), eye, (5.0, 15.0, 700.0), "aluminium"))
    return parts


#: default probability of each kind of object in an image, per task
DEFAULT_PROBABILITIES: dict[str, dict[str, float]] = {
    "hip": {"kwire": 0.5, "screw": 0.35, "cable": 0.5, "table": 1.0},
    "tool": {"kwire": 0.3, "screw": 0.3, "cable": 0.5, "table": 1.0},
    "chest": {"cable": 0.7, "electrode": 0.7},
}

_HIP_PATHS = (("ASIS-l", "FH-l"), ("ASIS-r", "FH-r"), ("GSN-l", "FH-l"), ("GSN-r", "FH-r"), ("IPS-l", "FH-l"),
              ("IPS-r", "FH-r"), ("ASIS-l", "GSN-l"), ("ASIS-r", "GSN-r"))


def sample_scene(kind: str, landmarks: Mapping[str, np.ndarray], bounds_lps: tuple[np.ndarray, np.ndarray],
                 specimen_rng: np.random.Generator, image_rng: np.random.Generator,
                 probabilities: Mapping[str, float] | None = None) -> ForeignScene:
    """Foreign objects of one image of a specimen.

    Implants (K-wires, screws) are drawn from ``specimen_rng`` (the same candidates for every
    image of a specimen: they stay where the surgeon put them), and ``image_rng`` decides which of
    them are in this image (inserted or not yet) and where the cables lie. ``bounds_lps`` is the
    (lo, hi) box of the specimen's anatomy; with hip landmarks implants follow surgical paths
    (iliac crest towards the acetabulum, ...), otherwise they start in the box.
    """
    probs = dict(DEFAULT_PROBABILITIES.get(kind, DEFAULT_PROBABILITIES["hip"]))
    if probabilities is not None:
        probs.update(probabilities)
    lo, hi = (np.asarray(b, np.float64) for b in bounds_lps)
    center = (lo + hi) / 2
    ok = {k for k, v in landmarks.items() if np.isfinite(np.asarray(v, np.float64)).all()}
    paths = [(np.asarray(landmarks[a]), np.asarray(landmarks[b])) for a, b in _HIP_PATHS if a in ok and b in ok]
    if not paths:
        paths = [(center + specimen_rng.uniform(-0.4, 0.4, 3) * (hi - lo), center)]
    # implant candidates of the specimen (fixed), then per-image presence
    cand_w = [paths[i % len(paths)] for i in specimen_rng.permutation(max(len(paths), 2))[:2]]
    cand_s = [paths[i % len(paths)] for i in specimen_rng.permutation(max(len(paths), 2))[:2]]
    wire_rngs = [np.random.default_rng(specimen_rng.integers(2**63)) for _ in range(2)]
    screw_rngs = [np.random.default_rng(specimen_rng.integers(2**63)) for _ in range(2)]
    scene = ForeignScene()
    for (a, b), r in zip(cand_w, wire_rngs, strict=True):
        if image_rng.uniform() < probs.get("kwire", 0.0):
            scene.objects += kwire(a, b, r)
            scene.kinds.append("kwire")
    for (a, b), r in zip(cand_s, screw_rngs, strict=True):
        if image_rng.uniform() < probs.get("screw", 0.0):
            scene.objects += screw(a, b, r)
            scene.kinds.append("screw")
    if image_rng.uniform() < probs.get("cable", 0.0):
        for _ in range(int(image_rng.integers(1, 3))):
            scene.objects += cable(lo, hi, lo[1] - image_rng.uniform(10.0, 60.0), image_rng)
            scene.kinds.append("cable")
    if image_rng.uniform() < probs.get("electrode", 0.0):
        for _ in range(int(image_rng.integers(1, 4))):
            p = np.array([image_rng.uniform(lo[0], hi[0]), lo[1] - 5.0, image_rng.uniform(lo[2], hi[2])])
            scene.objects += electrode(p, np.array([0.0, -1.0, 0.0]))
            scene.kinds.append("electrode")
    if image_rng.uniform() < probs.get("table", 0.0):
        scene.objects += table(center[0] + image_rng.uniform(-200.0, 200.0), hi[1] + image_rng.uniform(20.0, 50.0),
                               center[2])
        scene.kinds.append("table")
    return scene
