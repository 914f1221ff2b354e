"""The bowel of a hip specimen: colon and rectum courses, bowel gas and faecal content.

Gas follows the bowel instead of floating as ellipsoids: each gas collection
(:class:`BowelContent` of kind ``"gas"``) fills a stretch of the colon, of the rectum or of a
small-bowel loop as a tube narrower than the lumen, lying against its anterior wall (the
non-dependent side of a supine body, where gas rises), its radius modulated along the course:
haustra separated by the semilunar folds in the colon, the closer valvulae conniventes in a
small-bowel loop. Faecal content (kind ``"faeces"``, tissue :attr:`Tissue.FAECES`) fills the
caecum and ascending colon, the sigmoid or the rectum; the anatomy turns part of it into gas
bubbles where a fine random field is high (:attr:`HipAnatomy.mottling`), the mottled look of
stool on radiographs.

Frames: the colon and the small-bowel loops are given in the specimen (table, LPS) frame, the
rectum in the pelvis frame (it moves with the pelvis); coordinates are in *body units*, mm of a
specimen of size 1 (multiplied by :attr:`HipParams.size`). Sizes: the radiologists' 3-6-9 rule
(upper normal diameters 3 cm small bowel, 6 cm colon, 9 cm caecum) bounds the lumina; the
modelled colon lumen (radius 19 mm) and small bowel (radius 12.5 mm) stay below it. Haustral
and fold spacings are assumptions (radiographic appearance), stated where drawn.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from synthex_lib.anatomy.sdf import SDF, Transform, polyline_tube
from synthex_lib.core.errors import DataError

#: colon course (specimen frame, body units): ascending (patient right, LPS -x), transverse,
#: descending and sigmoid colon, ending where the rectum starts
COLON_PATH = np.array([[-95, -5, 40], [-100, -10, 120], [-95, -20, 215], [0, -60, 235], [95, -20, 215],
                       [100, 10, 120], [85, 15, 50], [30, 35, 20], [0, 55, 10]], dtype=np.float64)
#: the three colon tubes painted as bowel (indices into :data:`COLON_PATH`)
COLON_SEGMENTS = ((0, 3), (2, 5), (4, 9))
COLON_RADIUS = 19.0  #: colon lumen radius (body units)
#: rectum course (pelvis frame, body units) and lumen radius
RECTUM_PATH = np.array([[0, 55, 12], [0, 62, -15], [0, 52, -50]], dtype=np.float64)
RECTUM_RADIUS = 15.0
SMALL_BOWEL_RADIUS = 12.5  #: small-bowel lumen radius (body units)
#: fine-noise threshold above which faecal content is gas (mottled stool; an assumption giving
#: about a tenth of its volume as bubbles a few mm across)
FAECES_GAS_THRESHOLD = 1.0
ORGANS = ("colon", "rectum", "small-bowel")


@dataclass
class BowelContent:
    """One gas collection or faecal filling of a bowel stretch (JSON-serializable).

    Attributes:
        kind: ``"gas"`` or ``"faeces"``.
        organ: ``"colon"``, ``"rectum"`` or ``"small-bowel"``.
        s0, s1: the stretch, as fractions (0..1) of the organ's course (colon: from the caecum;
            rectum: from the rectosigmoid junction; small bowel: of ``path``).
        fill: the content's radius as a fraction of the lumen radius.
        period_mm: spacing of the haustra / folds along the stretch (mm, body units).
        fold: fractional narrowing of the content at each fold (0: a plain tube).
        path: small bowel only: the loop's course (specimen frame, body units), else empty.
    """

    kind: str
    organ: str
    s0: float
    s1: float
    fill: float
    period_mm: float = 25.0
    fold: float = 0.0
    path: list[list[float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_any(d: Any) -> BowelContent:
        if isinstance(d, BowelContent):
            return d
        if not isinstance(d, dict):
            raise DataError(f"stored hip parameters: bowel content {d!r} is in an older format; regenerate the "
                            "cohort (synthex lab generate)")
        return BowelContent(**d)


def _arc(path: np.ndarray) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])


def stretch(path: np.ndarray, s0: float, s1: float, step: float) -> np.ndarray:
    """Points (N >= 2, 3) along ``path`` from fraction ``s0`` to ``s1`` of its length, about ``step``
    apart (same units as ``path``)."""
    a = _arc(path)
    t0, t1 = sorted((float(np.clip(s0, 0, 1)) * a[-1], float(np.clip(s1, 0, 1)) * a[-1]))
    n = max(2, int(np.ceil((t1 - t0) / max(step, 1e-6))) + 1)
    t = np.linspace(t0, t1, n)
    return np.stack([np.interp(t, a, path[:, i]) for i in range(3)], axis=1)


def content_sdf(c: BowelContent, size: float, pelvis_rotation: np.ndarray) -> SDF:
    """The signed-distance field (specimen frame, mm) of one gas collection or faecal filling.

    The content is a tube of radius ``fill * lumen`` along the stretch, its axis moved towards the
    anterior wall (LPS -y, up for a supine body) by 80 % of the free space, the radius narrowed by
    ``fold`` at every other vertex half a ``period_mm`` apart (haustra / folds)."""
    if c.organ == "colon":
        path, lumen, frame = COLON_PATH, COLON_RADIUS, None
    elif c.organ == "rectum":
        path, lumen, frame = RECTUM_PATH, RECTUM_RADIUS, pelvis_rotation
    elif c.organ == "small-bowel":
        path, lumen, frame = np.asarray(c.path, np.float64), SMALL_BOWEL_RADIUS, None
        if path.ndim != 2 or path.shape[0] < 2 or path.shape[1] != 3:
            raise DataError(f"small-bowel content needs a path of >= 2 points (N, 3), got shape {path.shape}")
    else:
        raise DataError(f"bowel content organ {c.organ!r}: choose one of {', '.join(ORGANS)}")
    step = 0.5 * c.period_mm if c.fold > 0 else 8.0
    pts = stretch(path, c.s0, c.s1, step)
    r = lumen * float(np.clip(c.fill, 0.05, 1.0))
    up = np.array([0.0, -1.0, 0.0]) if frame is None else frame.T @ np.array([0.0, -1.0, 0.0])
    pts = pts + up * 0.8 * (lumen - r)
    radii = np.where(np.arange(len(pts)) % 2 == 0, r, r * (1.0 - float(np.clip(c.fold, 0.0, 0.8))))
    tube = polyline_tube(pts * size, radii * size, k=1.5 * size)
    return tube if frame is None else Transform(tube, frame, np.zeros(3))


def sample_small_bowel_loop(rng: np.random.Generator, length_mm: float, step_mm: float = 10.0) -> np.ndarray:
    """A small-bowel loop's course (specimen frame, body units): a smooth random walk of
    ``length_mm`` in the mid and lower abdomen (|x| < 85, -75 < y < 0, 45 < z < 210 mm, the
    anterior half where small bowel lies in front of the colon's frame), turning by about 20 deg
    per 10 mm (an assumption), steered back when it nears the box."""
    lo, hi = np.array([-85.0, -75.0, 45.0]), np.array([85.0, 0.0, 210.0])
    p = rng.uniform(lo + 20, hi - 20)
    d = rng.normal(size=3)
    d[1] *= 0.4
    d /= np.linalg.norm(d)
    pts = [p.copy()]
    for _ in range(max(1, int(round(length_mm / step_mm)))):
        d = d + rng.normal(0, 0.35, 3)
        centre = 0.5 * (lo + hi)
        out = (p < lo + 15) | (p > hi - 15)
        d[out] += 0.8 * np.sign(centre - p)[out]
        d /= np.linalg.norm(d)
        p = np.clip(p + d * step_mm, lo, hi)
        pts.append(p.copy())
    return np.array(pts)


def sample_gas(rng: np.random.Generator) -> list[BowelContent]:
    """Bowel gas of one specimen (or one imaging session: gas moves between sessions).

    * colon: 1 + Poisson(2) collections, each 4-18 % of the colon's course, filling 45-90 % of
      the lumen radius, haustra every 20-32 mm narrowed by 20-40 % (assumptions);
    * rectum: with probability 0.6, 20-50 % of it;
    * small bowel: Poisson(1.5) gas-filled loops of 60-220 mm, folds every 8-14 mm (assumption).
    """
    out = []
    for _ in range(1 + int(rng.poisson(2.0))):
        c, half = float(rng.uniform(0, 1)), 0.5 * float(rng.uniform(0.04, 0.18))
        out.append(BowelContent("gas", "colon", max(0.0, c - half), min(1.0, c + half), float(rng.uniform(0.45, 0.9)),
                                float(rng.uniform(20, 32)), float(rng.uniform(0.2, 0.4))))
    if rng.random() < 0.6:
        s0 = float(rng.uniform(0, 0.4))
        out.append(BowelContent("gas", "rectum", s0, min(1.0, s0 + float(rng.uniform(0.2, 0.5))),
                                float(rng.uniform(0.4, 0.8)), 30.0, 0.1))
    for _ in range(int(rng.poisson(1.5))):
        path = sample_small_bowel_loop(rng, float(rng.uniform(60, 220)))
        out.append(BowelContent("gas", "small-bowel", 0.0, 1.0, float(rng.uniform(0.4, 0.85)),
                                float(rng.uniform(8, 14)), float(rng.uniform(0.1, 0.25)),
                                [[float(v) for v in q] for q in path]))
    return out


def sample_faeces(rng: np.random.Generator) -> list[BowelContent]:
    """Faecal content of one specimen: the caecum and ascending colon (probability 0.75, the first
    8-30 % of the colon), the sigmoid (probability 0.5, its last 10-20 %) and the rectum
    (probability 0.4); it fills 90 % of the lumen radius (assumptions)."""
    out = []
    if rng.random() < 0.75:
        out.append(BowelContent("faeces", "colon", 0.0, float(rng.uniform(0.08, 0.3)), 0.9))
    if rng.random() < 0.5:
        out.append(BowelContent("faeces", "colon", float(rng.uniform(0.8, 0.9)), 1.0, 0.9))
    if rng.random() < 0.4:
        out.append(BowelContent("faeces", "rectum", 0.0, float(rng.uniform(0.3, 0.7)), 0.9))
    return out
