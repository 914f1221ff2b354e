"""A less phantom-like sacrum and bowel gas: irregular sacral foramina, gas along the bowel."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from synthex_lib.anatomy.hip_bones import foramen_cutter, sacral_foramina, sacrum
from synthex_lib.anatomy.hip_bowel import (
    COLON_PATH,
    COLON_RADIUS,
    RECTUM_PATH,
    RECTUM_RADIUS,
    SMALL_BOWEL_RADIUS,
    BowelContent,
    content_sdf,
    sample_gas,
    stretch,
)
from synthex_lib.anatomy.hip_params import HipParams, sample_hip_params
from synthex_lib.anatomy.raster import Grid, Part, classify
from synthex_lib.anatomy.sdf import SDF, Ellipsoid, polyline_tube
from synthex_lib.anatomy.specimens import build_anatomy
from synthex_lib.anatomy.tissues import Tissue
from synthex_lib.anatomy.tool import ToolSceneAnatomy, sample_tool_params
from synthex_lib.core.errors import DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.geometry import rot_x

PX = 0.125  # mm, pixels of the foramen cross-sections


class _Neg:
    """The outside of a cutter as a 'hole' field (its SDF negated), for the smooth control."""

    def __init__(self, sdf: SDF) -> None:
        self.sdf = sdf

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return -self.sdf(p)


def _section(sdf: SDF | _Neg, centre: np.ndarray, axes: np.ndarray, half: float = 14.0) -> np.ndarray | None:
    """The hole (sdf > 0) around ``centre`` in the plane of ``axes`` columns 0, 1, as a boolean
    image of PX pixels, or None if the hole is not enclosed within the window."""
    u = np.arange(-half, half + PX / 2, PX)
    uu, vv = np.meshgrid(u, u, indexing="ij")
    pts = centre + uu[..., None] * axes[:, 0] + vv[..., None] * axes[:, 1]
    lab, _ = ndimage.label(sdf(pts) > 0)
    c = lab[len(u) // 2, len(u) // 2]
    if c == 0:
        return None
    m = lab == c
    if m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any():
        return None
    return m


def _shape(m: np.ndarray) -> tuple[float, float, float]:
    """(area mm^2, second-moment axis ratio, IoU with the ellipse of the same moments) of a mask."""
    ij = np.argwhere(m) * PX
    mu, cov = ij.mean(0), np.cov(ij.T)
    w, v = np.linalg.eigh(cov)
    q = (np.argwhere(np.ones_like(m)) * PX - mu) @ v
    ell = ((q / (2 * np.sqrt(w))) ** 2).sum(1).reshape(m.shape) <= 1
    return len(ij) * PX * PX, float(np.sqrt(w[1] / w[0])), float((ell & m).sum() / (ell | m).sum())


@pytest.fixture(scope="module")
def sections() -> list[dict]:
    out = []
    for seed in (0, 1, 2):
        p = sample_hip_params(seed, "hip", 0)
        sdf, _, _ = sacrum(p)
        for i, fo in enumerate(sacral_foramina(p)):
            for where, centre, axes, depth in (("ant", fo.ant_centre, fo.ant_axes, 6.0),
                                               ("post", fo.centre, fo.post_axes, -5.0)):
                c = centre + fo.axis * depth
                m = _section(sdf, c, axes)
                smooth = _section(_Neg(foramen_cutter(fo)), c, axes)
                if m is not None:
                    out.append({"seed": seed, "level": i // 2, "where": where, "shape": _shape(m),
                                "smooth": None if smooth is None else _shape(smooth),
                                "vs_smooth": None if smooth is None else (m & smooth).sum() / (m | smooth).sum()})
    return out


def test_foramina_are_not_circles(sections) -> None:
    assert len(sections) >= 30
    ratios = np.array([s["shape"][1] for s in sections])
    iou = np.array([s["shape"][2] for s in sections])
    # measurably oval: the second-moment axis ratio of a circle is 1
    assert np.median(ratios) > 1.2 and np.mean(ratios > 1.08) > 0.9
    # and not clean ellipses either: the smooth-field displacement makes them differ from the
    # ellipse of the same moments, unlike the undisplaced canals cut in the same plane
    smooth = np.array([s["smooth"][2] for s in sections if s["smooth"] is not None])
    vs_smooth = np.array([s["vs_smooth"] for s in sections if s["smooth"] is not None])
    assert len(smooth) >= 20
    assert np.median(vs_smooth) < 0.92  # the walls moved off the canal's smooth outline
    assert np.median(iou) < np.median(smooth) - 0.01


def test_foramina_size_along_the_sacrum_and_anterior_larger(sections) -> None:
    for level in (0, 1, 2):
        ant = [s["shape"][0] for s in sections if s["level"] == level and s["where"] == "ant"]
        post = [s["shape"][0] for s in sections if s["level"] == level and s["where"] == "post"]
        assert ant and post and np.mean(ant) > 1.3 * np.mean(post), f"S{level + 1}"
    for seed in range(8):
        fo = sacral_foramina(sample_hip_params(seed, "hip", 0))
        ant = np.array([f.ant_ab[0] * f.ant_ab[1] for f in fo]).reshape(4, 2).mean(1)
        post = np.array([f.post_ab[0] * f.post_ab[1] for f in fo])
        assert np.all(np.array([f.ant_ab[0] * f.ant_ab[1] for f in fo]) > post)
        assert ant[1] > ant[2] > ant[3] and ant[0] > ant[3]  # narrowing caudally (S2 >= S1 in the data)


def test_sacrum_deterministic_per_seed() -> None:
    p1, p2, q = (sample_hip_params(s, "hip", 0) for s in (3, 3, 4))
    assert p1.foramina == p2.foramina and p1.foramina != q.foramina
    g = Grid.from_bounds([-60, 30, -30], [60, 110, 100], 2.0)
    (s1, _, _), (s2, _, _), (sq, _, _) = sacrum(p1), sacrum(p2), sacrum(q)
    c1, c2, cq = (classify(Part("s", s, Tissue.CANCELLOUS), g) for s in (s1, s2, sq))
    assert c1.tobytes() == c2.tobytes() and c1.tobytes() != cq.tobytes()


# --- bowel gas --------------------------------------------------------------------------------

def _moment_ellipsoid_iou(m: np.ndarray, h: float) -> float:
    idx = np.argwhere(m) * h
    mu, cov = idx.mean(0), np.cov(idx.T)
    w, v = np.linalg.eigh(cov)
    ax = np.sqrt(5 * np.maximum(w, 1e-9))  # a solid ellipsoid's semi-axes from its moments
    q = (np.argwhere(np.ones_like(m)) * h - mu) @ v
    ell = ((q / ax) ** 2).sum(1).reshape(m.shape) <= 1
    return float((ell & m).sum() / (ell | m).sum())


def _mask(sdf: SDF, h: float = 1.5) -> np.ndarray:
    g = Grid.from_bounds(sdf.lo - 2, sdf.hi + 2, h)
    return classify(Part("x", sdf, Tissue.AIR), g) > 0


def test_moment_ellipsoid_metric_recognizes_an_ellipsoid() -> None:
    axes = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))[0]
    assert _moment_ellipsoid_iou(_mask(Ellipsoid([1, 2, 3], [30, 12, 9], axes)), 1.5) > 0.93


@pytest.mark.parametrize("seed", range(4))
def test_gas_pockets_are_tubular_not_ellipsoids(seed: int) -> None:
    a = build_anatomy("hip", seed)
    lengths = []
    for part in a.parts:
        if not part.name.startswith("gas-"):
            continue
        m = _mask(part.sdf)
        lab, n = ndimage.label(m)
        assert n == 1, f"{part.name}: one connected pocket"
        assert _moment_ellipsoid_iou(m, 1.5) < 0.9, part.name
        idx = np.argwhere(m) * 1.5
        lengths.append(2 * np.sqrt(5 * np.linalg.eigvalsh(np.cov(idx.T))[-1]))
    assert lengths and max(lengths) > 60.0  # a gas-filled stretch of bowel, not a bubble


def test_gas_lies_in_the_bowel_lumen_against_the_anterior_wall() -> None:
    rng = seeded_rng(0, "test-gas")
    courses = {"colon": (COLON_PATH, COLON_RADIUS), "rectum": (RECTUM_PATH, RECTUM_RADIUS)}
    for _ in range(2):
        for c in sample_gas(rng):
            sdf = content_sdf(c, 1.0, np.eye(3))
            g = Grid.from_bounds(sdf.lo, sdf.hi, 1.0)
            k, j, i = np.nonzero(classify(Part("g", sdf, Tissue.AIR), g) > 0)
            pts = np.asarray(g.origin) + np.stack([i, j, k], 1) * 1.0
            path, lumen = courses.get(c.organ, (np.asarray(c.path), SMALL_BOWEL_RADIUS))
            assert polyline_tube(path, lumen)(pts).max() < 0.8, f"{c.organ} gas outside its lumen"
            # gas rises to the non-dependent side of a supine body: anterior (LPS -y) of the axis
            axis = stretch(path, 0.0, 1.0, 0.5)
            nearest = axis[cKDTree(axis).query(pts)[1]]
            assert np.mean(pts[:, 1] - nearest[:, 1]) < -0.2 * (1 - c.fill) * lumen, c.organ


def test_faeces_are_mottled_with_gas() -> None:
    a = next(build_anatomy("hip", s) for s in range(10) if build_anatomy("hip", s).params.faeces)
    part = next(p for p in a.parts if p.name.startswith("faeces-"))
    r = a.rasterize(2.0, (part.sdf.lo, part.sdf.hi))
    inside = classify(part, r.grid) > 0
    inside &= (r.tissues == Tissue.FAECES) | (r.tissues == Tissue.AIR)
    gas = inside & (r.tissues == Tissue.AIR)
    frac = gas.sum() / inside.sum()
    assert 0.02 < frac < 0.3, frac
    lab, n = ndimage.label(gas)
    sizes = ndimage.sum(gas, lab, range(1, n + 1)) * 8.0  # mm^3
    assert n >= 5 and np.median(sizes) < 200  # many small bubbles, not one pocket
    # a tool scene in this hip keeps the host's stool bubbles (its CT is re-used outside the tool)
    assert ToolSceneAnatomy(a, sample_tool_params(1, 0, "tool", 0)).mottling == a.mottling


def test_gas_deterministic_and_varied() -> None:
    a, b = sample_gas(seeded_rng(7, "g")), sample_gas(seeded_rng(7, "g"))
    assert a == b
    draws = [sample_gas(seeded_rng(s, "g")) for s in range(20)]
    assert len({len(d) for d in draws}) > 2
    assert {c.organ for d in draws for c in d} == {"colon", "rectum", "small-bowel"}
    p = sample_hip_params(5, "hip", 0)
    assert HipParams.from_dict(p.to_dict()) == p
    with pytest.raises(DataError, match="older format"):
        BowelContent.from_any([0, 0, 0, 1, 1, 1])
    with pytest.raises(DataError, match="organ"):
        content_sdf(BowelContent("gas", "stomach", 0, 1, 0.5), 1.0, np.eye(3))
    # rectal gas moves with the pelvis (its course is given in the pelvis frame)
    c = BowelContent("gas", "rectum", 0.2, 0.6, 0.5)
    rg = rot_x(15.0)
    q = rg @ stretch(RECTUM_PATH, 0.4, 0.41, 1.0)[0]
    assert float(content_sdf(c, 1.0, rg)(q[None])[0]) < 0 < float(content_sdf(c, 1.0, np.eye(3))(q[None])[0])
