"""Hip specimens against their anatomical definitions."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.anatomy import make_specimen
from synthex_lib.anatomy.hip import HipAnatomy
from synthex_lib.anatomy.hip_landmarks import LANDMARK_DEPTH_MM
from synthex_lib.anatomy.hip_params import sample_hip_params
from synthex_lib.anatomy.specimens import build_anatomy
from synthex_lib.anatomy.tissues import Material, Tissue
from synthex_lib.core.constants import HIP_LABELS, HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError


@pytest.fixture(scope="module")
def hip() -> HipAnatomy:
    return build_anatomy("hip", 0)


@pytest.fixture(scope="module")
def spec():
    return make_specimen("hip", 0, "smoke")


@pytest.fixture(scope="module")
def raster(hip):
    return hip.rasterize(2.0)


def test_specimen_contract(spec) -> None:
    assert spec.kind == "hip"
    assert spec.ct_hu.dtype == np.float32 and spec.labels.dtype == np.uint8
    assert spec.spacing == (4.0, 4.0, 4.0)
    assert set(np.unique(spec.labels)) == set(HIP_LABELS)
    assert list(spec.landmarks) == list(HIP_LANDMARKS)
    assert spec.anatomy is not None
    # landmarks inside the volume
    ijk = spec.world_to_index(spec.landmark_array(HIP_LANDMARKS))
    assert np.all(ijk >= 0) and np.all(ijk <= np.array(spec.shape_xyz) - 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_landmarks_on_their_structures_and_sides(seed: int) -> None:
    a = build_anatomy("hip", seed)
    lm = a.landmarks()
    to_pelvis = a.pelvis_rotation.T  # the side is judged against the pelvis's own midsagittal plane
    for side, sign in (("l", 1), ("r", -1)):
        hemi = a.part_sdf(f"hemipelvis-{side}")
        for name in ("GSN", "IOF", "MOF", "SPS", "IPS", "ASIS"):
            p = lm[f"{name}-{side}"]
            assert hemi(p[None])[0] <= 3.0, f"{name}-{side} not within 3 mm of its hemipelvis"
            assert np.sign((to_pelvis @ p)[0]) == sign, f"{name}-{side} on the wrong side"
            if name in ("GSN", "IOF", "MOF", "ASIS"):
                assert np.sign(p[0]) == sign, f"{name}-{side} on the wrong side (LPS +x = patient left)"
        # FH: the centre of the femoral head: inside the femur, a head radius from its surface
        fem = a.part_sdf(f"femur-{side}")
        r = (a.params.left if side == "l" else a.params.right).fh_radius
        assert fem(lm[f"FH-{side}"][None])[0] == pytest.approx(-r, abs=1.0)
        assert np.sign(lm[f"FH-{side}"][0]) == sign


def test_landmark_relations(hip) -> None:
    lm = hip.landmarks()
    for s in ("l", "r"):
        assert lm[f"SPS-{s}"][2] > lm[f"IPS-{s}"][2]  # superior / inferior ends of the symphysis
        assert lm[f"IOF-{s}"][2] < lm[f"MOF-{s}"][2] + 1  # IOF is the lowest point of the foramen
        assert abs(lm[f"MOF-{s}"][0]) < abs(lm[f"IOF-{s}"][0]) + 1  # MOF the most medial
        assert lm[f"ASIS-{s}"][1] < lm[f"FH-{s}"][1]  # ASIS anterior of the hip centre
        assert lm[f"ASIS-{s}"][2] > lm[f"FH-{s}"][2]  # and superior
        assert lm[f"GSN-{s}"][1] > lm[f"FH-{s}"][1]  # the sciatic notch is posterior
        # symphysis at the midline (pelvis frame): the symphyseal face (2.5 mm off it) plus the depth
        # the landmarks lie beneath the bone surface
        assert abs((hip.pelvis_rotation.T @ lm[f"SPS-{s}"])[0]) < 2.5 + LANDMARK_DEPTH_MM + 1


@pytest.mark.parametrize("seed", range(6))
def test_adult_dimensions(seed: int) -> None:
    p = sample_hip_params(seed, "hip", 0)
    a = HipAnatomy(p)
    lm = a.landmarks()
    assert 200 <= np.linalg.norm(lm["ASIS-l"] - lm["ASIS-r"]) <= 280
    assert 20 <= p.left.fh_radius <= 28 and 20 <= p.right.fh_radius <= 28
    assert 140 <= np.linalg.norm(lm["FH-l"] - lm["FH-r"]) <= 210


def test_every_label_present_and_sided(raster) -> None:
    lab, org, sp = raster.labels, np.array(raster.origin), np.array(raster.spacing)
    assert set(np.unique(lab)) == set(HIP_LABELS)
    x = org[0] + np.arange(lab.shape[2]) * sp[0]
    for label, sign in ((1, 1), (2, -1), (5, 1), (6, -1)):
        xs = np.broadcast_to(x, lab.shape)[lab == label]
        assert np.mean(np.sign(xs) == sign) > 0.99, f"label {label} on the wrong side (LPS +x = patient left)"
    xs = np.broadcast_to(x, lab.shape)[lab == 3]
    assert abs(np.median(xs)) < 10  # vertebrae on the midline


def test_true_hu_ranges(raster) -> None:
    t, hu = raster.tissues, raster.hu
    ranges = {Tissue.CORTICAL: (700, 2000), Tissue.CANCELLOUS: (100, 500), Tissue.MUSCLE: (20, 80),
              Tissue.FAT: (-150, -50), Tissue.AIR: (-1001, -999)}
    for tissue, (lo, hi) in ranges.items():
        m = np.median(hu[t == tissue])
        assert lo <= m <= hi, f"{Tissue(tissue).name}: median {m} HU outside {lo}..{hi}"
    assert set(np.unique(raster.materials)) >= {Material.AIR, Material.FAT, Material.SOFT, Material.CANCELLOUS,
                                                 Material.CORTICAL}
    assert (t == Tissue.AIR)[raster.labels == 0].any()  # gas and outside air


def test_ct_hu_ranges(spec) -> None:
    a = spec.anatomy
    from synthex_lib.anatomy.raster import Grid

    r = a.rasterize_grid(Grid(spec.origin, spec.spacing, spec.ct_hu.shape))
    ct = spec.ct_hu
    assert np.median(ct[r.tissues == Tissue.MUSCLE]) == pytest.approx(50, abs=25)
    assert np.median(ct[r.tissues == Tissue.FAT]) == pytest.approx(-100, abs=40)
    outside = (r.tissues == Tissue.AIR) & (spec.labels == 0)
    assert np.median(ct[outside]) < -950
    assert ct[spec.labels > 0].mean() > 150  # bone


def test_determinism_and_variation() -> None:
    a1, a2, b = build_anatomy("hip", 7), build_anatomy("hip", 7), build_anatomy("hip", 8)
    assert a1.params == a2.params
    l1, l2, lb = a1.landmarks(), a2.landmarks(), b.landmarks()
    assert all(np.array_equal(l1[k], l2[k]) for k in l1)
    assert max(np.linalg.norm(l1[k] - lb[k]) for k in l1) > 5
    r1, r2 = a1.rasterize(4.0), a2.rasterize(4.0)
    assert r1.hu.tobytes() == r2.hu.tobytes() and r1.labels.tobytes() == r2.labels.tobytes()
    # per-specimen variation drawn from the seed
    ps = [sample_hip_params(s, "hip", 0) for s in range(12)]
    for field in ("size", "female", "tilt_deg", "obliquity_deg", "lordosis_deg", "bone_density"):
        assert np.std([getattr(p, field) for p in ps]) > 0
    assert np.std([p.left.nsa_deg for p in ps]) > 1 and np.std([p.right.anteversion_deg for p in ps]) > 1
    assert np.std([p.left.flexion_deg for p in ps]) > 1 and np.std([p.fat_mm[0] for p in ps]) > 1
    assert np.std([len(p.gas) for p in ps]) > 0


def test_bad_input() -> None:
    with pytest.raises(ConfigError, match="kind"):
        make_specimen("knee", 0, "smoke")
    with pytest.raises(ConfigError, match="seed"):
        make_specimen("hip", -1, "smoke")
    with pytest.raises(ConfigError, match="profile"):
        make_specimen("hip", 0, "huge")
    with pytest.raises(ConfigError, match="spacing"):
        build_anatomy("hip", 0).rasterize(-1.0)
