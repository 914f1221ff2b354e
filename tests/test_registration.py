"""Registration error of the lab's real images: the documented distribution, both poses stored, labels and
replicas at the registered pose, the real image at the true one, each femur with its own registered pose."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib import geometry
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.generate.registration import (
    DEFAULT_REGISTRATION_ERROR,
    RegistrationErrorModel,
    perturb_projection,
    pose_difference,
    registered_projections,
)
from synthex_lib.simulate import labels as lab

DEV = geometry.CIOS_FUSION.binned(64)
CENTRE = np.array([10.0, -20.0, 30.0])


def _P(lao: float = 10.0, cran: float = -5.0) -> np.ndarray:
    return geometry.projection_matrix(DEV, geometry.carm_pose(CENTRE, 600.0, lao_deg=lao, cran_deg=cran))


def test_registered_and_true_poses_differ_by_the_documented_distribution():
    m = DEFAULT_REGISTRATION_ERROR
    n = 3000
    P_true = np.stack([_P(float(a), float(c)) for a, c in zip(np.linspace(-40, 40, n), np.linspace(30, -30, n),
                                                               strict=True)])
    rngs = [seeded_rng(0, "test-registration", i) for i in range(n)]
    P_reg, D = registered_projections(P_true, CENTRE, rngs, m)
    diffs = [pose_difference(a, b, CENTRE) for a, b in zip(P_true, P_reg, strict=True)]
    angles = np.array([d[0] for d in diffs])
    shift = np.array([d[1] for d in diffs])
    # the rotation acts about the structure's centre: its displacement is the translation alone
    np.testing.assert_allclose(shift, D[:, :3, 3] + np.einsum("nij,nj->ni", D[:, :3, :3] - np.eye(3),
                                                              np.array([(geometry.Camera.from_projection(
                                                                  P, DEV.sdd_mm).camera_from_world
                                                                  @ np.append(CENTRE, 1))[:3] for P in P_true])),
                               atol=1e-6)
    # per-axis normal errors: x, y in-plane, z along the principal ray
    assert np.std(shift[:, 0]) == pytest.approx(m.inplane_sd_mm, rel=0.06)
    assert np.std(shift[:, 1]) == pytest.approx(m.inplane_sd_mm, rel=0.06)
    assert np.std(shift[:, 2]) == pytest.approx(m.depth_sd_mm, rel=0.06)
    assert abs(np.mean(shift[:, 2])) < 4 * m.depth_sd_mm / np.sqrt(n)
    # the angle of an isotropic 3D normal rotation vector is Maxwell distributed: mean 2 sd sqrt(2 / pi)
    assert np.mean(angles) == pytest.approx(2 * m.rotation_sd_deg * np.sqrt(2 / np.pi), rel=0.05)
    assert 0.80 < np.mean(angles < 1.0) < 0.95  # mostly within Grupp et al.'s 1 deg success criterion


def test_perturbation_is_rigid_and_zero_error_is_the_identity():
    P = _P()
    same = perturb_projection(P, np.eye(4))
    np.testing.assert_allclose(same / same[2, 3], P / P[2, 3], atol=1e-9)  # the same projective map
    zero = RegistrationErrorModel(0.0, 0.0, 0.0)
    P_reg, _ = registered_projections(P[None], CENTRE, [seeded_rng(1)], zero)
    uv_a, _ = geometry.project_points(P, CENTRE[None] + np.random.default_rng(0).normal(0, 50, (20, 3)))
    uv_b, _ = geometry.project_points(P_reg[0], CENTRE[None] + np.random.default_rng(0).normal(0, 50, (20, 3)))
    np.testing.assert_allclose(uv_a, uv_b, atol=1e-6)
    # the intrinsics are kept: a registration moves the camera, not the detector
    K_a = geometry.Camera.from_projection(P, DEV.sdd_mm).K
    P_big, _ = registered_projections(P[None], CENTRE, [seeded_rng(2)], RegistrationErrorModel(5.0, 5.0, 20.0))
    np.testing.assert_allclose(geometry.Camera.from_projection(P_big[0], DEV.sdd_mm).K, K_a, atol=1e-6)
    with pytest.raises(ConfigError, match="rotation_sd_deg"):
        RegistrationErrorModel(rotation_sd_deg=-1.0)
    with pytest.raises(ConfigError, match="generators"):
        registered_projections(P[None], CENTRE, [], zero)


def test_per_structure_projection_moves_only_that_structure():
    vol = np.zeros((20, 20, 20), np.uint8)
    vol[5:15, 5:15, 2:8] = 1  # a block on the left
    vol[5:15, 5:15, 12:18] = 5  # a "femur" on the right
    spacing, origin = (4.0, 4.0, 4.0), (-38.0, -38.0, -38.0)
    P = geometry.projection_matrix(DEV, geometry.carm_pose(np.zeros(3), 600.0))
    ref = lab.project_labels(vol, spacing, origin, P[None], (64, 64), None, ids=(1, 5), rule="priority")
    same = lab.project_labels_per_structure(vol, spacing, origin, P[None], (64, 64), None, (1, 5), {5: P[None]},
                                            rule="priority")
    np.testing.assert_array_equal(same.seg, ref.seg)  # the same projection gives the same labels
    T = np.eye(4)
    T[2, 3] = 12.0  # the femur lies 12 mm further superior in the session
    moved = lab.project_labels_per_structure(vol, spacing, origin, P[None], (64, 64), None, (1, 5),
                                             {5: (P @ T)[None]}, rule="priority")
    np.testing.assert_array_equal(moved.seg == 1, ref.seg == 1)  # the block did not move
    assert (moved.seg == 5).sum() == pytest.approx((ref.seg == 5).sum(), rel=0.1)
    assert not np.array_equal(moved.seg == 5, ref.seg == 5)
    with pytest.raises(ConfigError, match="not projected"):
        lab.project_labels_per_structure(vol, spacing, origin, P[None], (64, 64), None, (1,), {5: P[None]})


def test_lab_case_images_the_session_at_the_true_pose_and_labels_each_femur_with_its_own_pose(monkeypatch):
    """A lab case: the scanner images the specimen as it lies in its X-ray session at P_true; the pelvis labels
    use the registered P, each femur its own registered projection of the CT's femur moved to the session."""
    from synthex_lib.anatomy import make_specimen
    from synthex_lib.anatomy.session import SessionAnatomy
    from synthex_lib.core.config import get_profile
    from synthex_lib.generate import lab_source
    from synthex_lib.generate.registration import pose_difference

    spec = make_specimen("hip", 0, "smoke")
    spec.meta["group"] = "01"
    monkeypatch.setattr(lab_source, "load_lab_cohort", lambda cohort, profile, seed=0: [spec])
    prof = get_profile("smoke", real_per_specimen=6, detector_px=48)
    case = next(iter(lab_source.lab_source(prof, seed=3)))
    assert isinstance(case.imaged_specimen.anatomy, SessionAnatomy)
    assert case.imaged_specimen is not case.specimen and case.P_acquired is case.P_true
    moved = case.part_from_ct
    assert set(moved) == {5, 6} and not np.allclose(moved[5], np.eye(4))  # the femurs were repositioned
    # the session's femur transform fixes the femoral head and is what the femur's registration started from
    fh = spec.landmarks["FH-l"]
    np.testing.assert_allclose((moved[5] @ np.append(fh, 1))[:3], fh, atol=1e-6)
    for i in range(len(case.P)):
        ang, shift = pose_difference(case.P_true[i] @ moved[5], case.P_parts[5][i], fh)
        assert ang < 5 * DEFAULT_REGISTRATION_ERROR.rotation_sd_deg * np.sqrt(3)
        assert np.all(np.abs(shift) < 6 * np.array([0.5, 0.5, 3.0]))
        ang_p, _ = pose_difference(case.P_true[i], case.P[i], CENTRE)
        assert ang_p > 0  # the pelvis was registered with an error of its own
    # the same seed gives the same session and registration; another seed another
    again = next(iter(lab_source.lab_source(prof, seed=3)))
    np.testing.assert_array_equal(again.P, case.P)
    np.testing.assert_array_equal(again.part_from_ct[6], moved[6])
    other = next(iter(lab_source.lab_source(prof, seed=4)))
    assert not np.allclose(other.part_from_ct[5], moved[5])
