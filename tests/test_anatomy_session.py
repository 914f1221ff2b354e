"""The X-ray session of a lab specimen differs from its CT: femurs repositioned, gas moved, drapes."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
from scipy import ndimage

from synthex_lib.anatomy import make_specimen
from synthex_lib.anatomy.raster import Grid
from synthex_lib.anatomy.sdf import ray_to_surface
from synthex_lib.anatomy.session import (
    FEMUR_CLIP_DEG,
    SessionAnatomy,
    SessionParams,
    sample_session,
    session_specimen,
)
from synthex_lib.anatomy.specimens import anatomy_from_dict, anatomy_to_dict, build_anatomy
from synthex_lib.anatomy.tissues import MATERIAL_COMPOSITION, Material, Tissue, metal_hu
from synthex_lib.core.errors import ConfigError

KEYS = (0, "hip-00", "xray-session")


@pytest.fixture(scope="module")
def ct():
    return build_anatomy("hip", 0)


@pytest.fixture(scope="module")
def sess(ct) -> SessionAnatomy:
    return SessionAnatomy(ct, sample_session(ct, *KEYS))


def _sphere_dirs(n: int = 200) -> np.ndarray:
    v = np.random.default_rng(0).normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("side,label", [("l", 5), ("r", 6)])
def test_femur_from_ct_maps_the_ct_femur_onto_the_session_femur(ct, sess, side: str, label: int) -> None:
    T = sess.femur_from_ct()[label]
    assert T.shape == (4, 4) and np.allclose(T[3], [0, 0, 0, 1])
    R = T[:3, :3]
    assert np.allclose(R.T @ R, np.eye(3), atol=1e-12) and np.linalg.det(R) == pytest.approx(1.0)
    assert not np.allclose(R, np.eye(3))  # the sampled session moved this femur
    # surface points of the CT femur: rays from the head centre (the head and neck) and from
    # the shaft axis (the shaft, 10-20 cm down)
    fem_ct, fem_s = ct.part_sdf(f"femur-{side}"), sess.part_sdf(f"femur-{side}")
    head = ct.landmarks()[f"FH-{side}"]
    _, _, R_w, t_w, ax = ct._skeleton()[f"femur-{side}"]
    shaft = R_w @ (ax["J"] + ax["s0"] * 150) + t_w
    pts = []
    for o in (head, shaft):
        t = ray_to_surface(fem_ct, o, _sphere_dirs(), max_mm=80)
        pts.append(o + _sphere_dirs()[np.isfinite(t)] * t[np.isfinite(t), None])
    pts = np.concatenate(pts)
    assert len(pts) > 300 and np.abs(fem_ct(pts)).max() < 0.02
    moved = pts @ R.T + T[:3, 3]
    assert np.abs(fem_s(moved)).max() < 0.05  # on the session femur's surface
    assert np.abs(fem_s(pts)).max() > 2.0  # and the CT surface is not
    # the femoral head centre is the fixed point of the motion
    assert np.allclose(R @ head + T[:3, 3], head, atol=1e-9)
    assert np.array_equal(sess.landmarks()[f"FH-{side}"], head)


def test_femur_motion_directions(ct) -> None:
    """Flexion moves the distal femur anteriorly, abduction laterally, internal rotation turns
    the front of the thigh medially (pelvis frame: x left, y posterior)."""
    rg = ct.pelvis_rotation
    for side, sign, label in (("l", 1, 5), ("r", -1, 6)):
        head = ct.landmarks()[f"FH-{side}"]
        _, _, R_w, t_w, ax = ct._skeleton()[f"femur-{side}"]
        knee = R_w @ (ax["J"] + ax["s0"] * 250) + t_w
        front = knee + rg @ np.array([0.0, -15.0, 0.0])

        def moved(deg, p, side=side, label=label, head=head):
            kw = {f"{'left' if side == 'l' else 'right'}_femur_deg": deg}
            T = SessionAnatomy(ct, SessionParams(**kw)).femur_from_ct()[label]
            return rg.T @ (T[:3, :3] @ p + T[:3, 3] - head)

        base = rg.T @ (knee - head)
        assert moved((8.0, 0, 0), knee)[1] < base[1] - 20  # anterior
        assert sign * moved((0, 8.0, 0), knee)[0] > sign * base[0] + 20  # lateral
        f0 = rg.T @ (front - head)
        assert sign * moved((0, 0, 10.0), front)[0] < sign * f0[0] - 1.5  # the front turns medially
        assert np.linalg.norm(moved((0, 0, 10.0), knee) - base) < 3  # about the long axis


def test_pelvis_and_spine_unchanged(ct, sess) -> None:
    pts = np.random.default_rng(1).uniform(*ct.bounds, size=(4000, 3))
    for name in ("hemipelvis-l", "hemipelvis-r", "sacrum", "lower-sacrum", "vertebrae", "discs", "bladder"):
        assert np.array_equal(ct.part_sdf(name)(pts), sess.part_sdf(name)(pts)), name
    lm_ct, lm_s = ct.landmarks(), sess.landmarks()
    assert all(np.array_equal(lm_ct[k], lm_s[k]) for k in lm_ct)
    g = Grid.from_bounds(ct.landmarks()["FH-r"] - 60, ct.landmarks()["FH-l"] + 60, 4.0)
    a, b = ct.rasterize_grid(g), sess.rasterize_grid(g)
    pelvis = np.isin(a.labels, (1, 2, 3, 4)) & ~np.isin(b.labels, (5, 6))
    assert np.array_equal(a.labels[pelvis], b.labels[pelvis])


def _internal_gas(r) -> np.ndarray:
    gas = r.tissues == Tissue.AIR
    lab, _ = ndimage.label(gas)
    edge = np.unique(np.concatenate([lab[[0, -1]].ravel(), lab[:, [0, -1]].ravel(), lab[:, :, [0, -1]].ravel()]))
    return gas & ~np.isin(lab, edge)


def test_gas_redrawn_and_drapes_added(ct, sess) -> None:
    assert sess.session.gas is not None and list(sess.session.gas) != ct.params.gas
    g = Grid.from_bounds(*sess.bounds, 4.0)
    a, b = ct.rasterize_grid(g), sess.rasterize_grid(g)
    ga, gb = _internal_gas(a), _internal_gas(b)
    assert ga.any() and gb.any()
    assert (ga ^ gb).sum() > 0.3 * max(ga.sum(), gb.sum())  # the gas moved
    # drapes: their own tissue, the fat material class, no label, in the air over the body
    d = b.tissues == Tissue.DRAPE
    assert d.sum() > 500 and not (a.tissues == Tissue.DRAPE).any()
    assert np.all(b.materials[d] == Material.FAT) and np.all(b.labels[d] == 0)
    # the emulated scanners' density rule, rho = rho_m (1000 + HU) / (1000 + HU_m), recovers the
    # drape density from their true HU
    formula, rho_m = MATERIAL_COMPOSITION[Material.FAT]
    rho = rho_m * (1000 + b.hu[d].astype(np.float64)) / (1000 + metal_hu(formula, rho_m))
    assert np.allclose(rho, sess.session.drape_density_g_cm3, rtol=1e-5)
    assert 0.3 <= sess.session.drape_density_g_cm3 <= 0.6
    # the drapes lie over the skin, lifted by the gap (plus folds) and no thicker than stated
    body = sess._body()[0]
    k, j, i = np.nonzero(d)
    dist = body(np.asarray(g.origin) + np.stack([i, j, k], 1) * 4.0)
    sp = sess.session
    assert dist.min() > 0 and dist.max() < sp.drape_gap_mm + sp.drape_mm + 5 * sp.drape_fold_mm + 3.5
    assert np.median(dist) > sp.drape_gap_mm


def test_soft_tissue_change_is_small(ct, sess) -> None:
    assert any(sess.session.fat_delta_mm)
    assert max(abs(v) for v in sess.session.fat_delta_mm) <= 5.0
    pts = np.random.default_rng(2).uniform(*ct.bounds, size=(3000, 3))
    diff = np.abs(ct.part_sdf("body")(pts) - sess.part_sdf("body")(pts))
    assert 0 < np.median(diff) < 6.0


def test_zero_change_reproduces_the_ct_exactly(ct) -> None:
    s = SessionAnatomy(ct, SessionParams())
    assert s.session.is_identity
    assert all(np.array_equal(a, b) for a, b in zip(s.bounds, ct.bounds, strict=True))
    r0, r1 = ct.rasterize(4.0), s.rasterize(4.0)
    for f in ("hu", "labels", "materials", "tissues"):
        assert getattr(r0, f).tobytes() == getattr(r1, f).tobytes(), f
    assert r0.origin == r1.origin and r0.spacing == r1.spacing
    assert all(np.array_equal(t, np.eye(4)) for t in s.femur_from_ct().values())


def test_determinism_per_keys_and_pickling(ct, sess) -> None:
    p1, p2, q = sample_session(ct, *KEYS), sample_session(ct, *KEYS), sample_session(ct, 0, "hip-00", "other")
    assert p1 == p2 and p1 != q
    s2 = pickle.loads(pickle.dumps(SessionAnatomy(ct, p2)))
    g = Grid.from_bounds(ct.landmarks()["FH-l"] - 50, ct.landmarks()["FH-l"] + 50, 4.0)
    r1, r2 = sess.rasterize_grid(g), s2.rasterize_grid(g)
    assert r1.hu.tobytes() == r2.hu.tobytes() and r1.labels.tobytes() == r2.labels.tobytes()
    assert all(np.array_equal(sess.femur_from_ct()[k], s2.femur_from_ct()[k]) for k in (5, 6))
    # stored and rebuilt (the cohort's specimen.json)
    s3 = anatomy_from_dict(anatomy_to_dict(sess))
    assert isinstance(s3, SessionAnatomy) and s3.session == sess.session
    assert all(np.allclose(sess.femur_from_ct()[k], s3.femur_from_ct()[k]) for k in (5, 6))


def test_sampled_ranges() -> None:
    a = build_anatomy("hip", 1)
    ps = [sample_session(a, 1, "s", i) for i in range(40)]
    ang = np.array([p.left_femur_deg + p.right_femur_deg for p in ps])
    assert np.abs(ang).max() <= FEMUR_CLIP_DEG and np.all(ang.std(0) > 1.0)
    assert all(0.3 <= p.drape_density_g_cm3 <= 0.6 and 1.5 <= p.drape_mm <= 5.0 for p in ps)
    assert len({len(p.gas) for p in ps}) > 2


def test_session_specimen_helper() -> None:
    spec = make_specimen("hip", 0, "smoke")
    params = sample_session(spec, *KEYS)
    s = session_specimen(spec, params)
    assert isinstance(s.anatomy, SessionAnatomy) and s.anatomy.session == params
    assert s.ct_hu is spec.ct_hu or np.array_equal(s.ct_hu, spec.ct_hu)
    assert s.meta["session"] == params.to_dict() and "session" not in spec.meta
    assert dataclasses.replace(spec, anatomy=SessionAnatomy(spec.anatomy, params)).anatomy.session == params
    assert SessionAnatomy(s.anatomy, params).ct is spec.anatomy  # a session of a session is one of the CT


def test_bad_input(ct) -> None:
    with pytest.raises(ConfigError, match="left_femur_deg"):
        SessionParams(left_femur_deg=(45.0, 0, 0))
    with pytest.raises(ConfigError, match="right_femur_deg"):
        SessionParams(right_femur_deg=(1.0, 2.0))
    with pytest.raises(ConfigError, match="drape_density_g_cm3"):
        SessionParams(drape_density_g_cm3=3.0)
    with pytest.raises(ConfigError, match="drape_mm"):
        SessionParams(drape_mm=-1.0)
    with pytest.raises(ConfigError, match="hip"):
        SessionAnatomy(build_anatomy("chest", 0), SessionParams())
    with pytest.raises(ConfigError, match="keys"):
        sample_session(ct)
    with pytest.raises(ConfigError, match="session"):
        SessionAnatomy(ct, {"drape_mm": 1.0})  # type: ignore[arg-type]
