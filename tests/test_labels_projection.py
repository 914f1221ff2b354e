"""Label projection: path lengths, overlap rules, thresholds, landmarks and heatmaps against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthex_lib import geometry
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.simulate import labels as L

SPACING = (2.0, 2.0, 2.0)
N = 64
ORIGIN = tuple(-(N - 1) / 2 * s for s in SPACING)  # volume centred on the LPS origin
DEV = geometry.CIOS_FUSION.binned(64)
SIZE = (DEV.cols, DEV.rows)


def _grid():
    c = (np.arange(N) - (N - 1) / 2) * SPACING[0]
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    return x, y, z


def _ap_P(sid=600.0):
    return geometry.projection_matrix(DEV, geometry.carm_pose(np.zeros(3), sid))


def test_slab_path_length_is_its_thickness():
    x, y, z = _grid()
    vol = ((np.abs(y) < 20) & (np.abs(x) < 40) & (np.abs(z) < 40)).astype(np.uint8)  # 40 mm along the AP beam
    path = L.structure_path_lengths(vol, SPACING, ORIGIN, _ap_P(), SIZE, (1,), step_mm=0.5)
    assert path.shape == (1, 1, 64, 64)
    centre = path[0, 0, 31:33, 31:33].numpy()
    # trilinear indicator of a slab of 20 voxels (edges at voxel centres +-1/2) has an integral of 40 mm
    # along the central ray; the central rays are 0.2 deg off the axis (1/cos - 1 < 1e-5)
    np.testing.assert_allclose(centre, 40.0, rtol=0.01)


def test_sphere_label_covers_its_projected_disk():
    x, y, z = _grid()
    r = 30.0
    vol = (x**2 + y**2 + z**2 < r**2).astype(np.uint8) * 3
    pl = L.project_labels(vol, SPACING, ORIGIN, _ap_P(), SIZE, step_mm=1.0)
    assert pl.ids == (3,)
    seg = pl.seg[0]
    # projected radius: the cone tangent to a sphere at distance 600 mm, magnified to the detector
    sid, sdd = 600.0, DEV.sdd_mm
    r_det = sdd * np.tan(np.arcsin(r / sid)) / DEV.pixel_mm
    cc = (SIZE[0] - 1) / 2
    rows, cols = np.mgrid[0:64, 0:64]
    d = np.hypot(cols - cc, rows - cc)
    assert (seg[d < r_det - 1.5] == 3).all()
    assert (seg[d > r_det + 1.5] == 0).all()


def _overlap_volume():
    x, y, z = _grid()
    vol = np.zeros((N, N, N), np.uint8)
    vol[(np.abs(x) < 40) & (np.abs(z) < 40) & (np.abs(y - 40) < 5)] = 2  # thin (10 mm) wide plate, posterior
    vol[(np.abs(x) < 15) & (np.abs(z) < 15) & (np.abs(y + 10) < 20)] = 1  # thick (40 mm) small block, anterior
    return vol


def test_longest_path_rule_and_priority_rule():
    vol = _overlap_volume()
    P = _ap_P()
    longest = L.project_labels(vol, SPACING, ORIGIN, P, SIZE, step_mm=0.5, ids=(1, 2))
    c = SIZE[0] // 2
    assert longest.seg[0, c, c] == 1  # block (40 mm) beats plate (10 mm)
    assert longest.seg[0, c, 3] == 0 or longest.seg[0, c, 3] == 2
    # the plate alone covers a ring around the block
    plate_only = longest.covered(2)[0] & ~longest.covered(1)[0]
    assert plate_only.any() and (longest.seg[0][plate_only] == 2).all()
    prio = L.project_labels(vol, SPACING, ORIGIN, P, SIZE, step_mm=0.5, ids=(1, 2), rule="priority", priority=(2, 1))
    assert prio.seg[0, c, c] == 2
    assert (prio.seg[0][longest.covered(2)[0]] == 2).all()
    with pytest.raises(ConfigError, match="overlap rule"):
        L.resolve_overlaps(longest.path_mm, (1, 2), rule="biggest")


def test_threshold_decides_membership():
    x, y, z = _grid()
    vol = ((np.abs(y) < 2.5) & (np.abs(x) < 40) & (np.abs(z) < 40)).astype(np.uint8)  # about 4-6 mm thick
    path = L.structure_path_lengths(vol, SPACING, ORIGIN, _ap_P(), SIZE, (1,), step_mm=0.25).numpy()
    t = float(path[0, 0, 32, 32])
    assert 3.0 < t < 7.0
    assert L.resolve_overlaps(path, (1,), threshold_mm=t + 0.5)[0, 32, 32] == 0
    assert L.resolve_overlaps(path, (1,), threshold_mm=t - 0.5)[0, 32, 32] == 1


def test_project_mask_matches_label_projection():
    vol = _overlap_volume()
    m = L.project_mask(vol == 1, SPACING, ORIGIN, _ap_P(), SIZE, step_mm=0.5)
    pl = L.project_labels(vol, SPACING, ORIGIN, _ap_P(), SIZE, step_mm=0.5, ids=(1, 2))
    assert m.dtype == bool and m.shape == (1, 64, 64)
    np.testing.assert_array_equal(m, pl.covered(1))


def test_landmarks_reproject_against_P_and_visibility():
    rng = np.random.default_rng(0)
    poses = [geometry.HipPoseSampler().sample(rng, np.zeros(3)) for _ in range(3)]
    P = np.stack([geometry.projection_matrix(DEV, p) for p in poses])
    pts = np.array([[0.0, 0.0, 0.0], [10.0, -5.0, 20.0], [np.nan, np.nan, np.nan], [5000.0, 0.0, 0.0]])
    xy, vis = L.project_landmarks(P, pts, SIZE)
    assert xy.shape == (3, 4, 2) and vis.shape == (3, 4)
    for b in range(3):
        uv, _ = geometry.project_points(P[b], pts[:2])
        np.testing.assert_allclose(xy[b, :2], uv, atol=1e-3)
    assert np.isnan(xy[:, 2]).all() and not vis[:, 2].any()  # missing landmark: flagged, not dropped
    assert not vis[:, 3].any()  # far outside the image
    # a point behind the source is invisible even if it projects inside the image
    src = poses[0].source_lps
    behind = src - 100.0 * (np.zeros(3) - src) / np.linalg.norm(src)
    xy_b, vis_b = L.project_landmarks(P[0], behind[None], SIZE)
    assert not vis_b[0, 0]
    # negating P (DeepFluoro-style sign) changes nothing
    xy_n, vis_n = L.project_landmarks(-P, pts, SIZE)
    np.testing.assert_allclose(xy_n[:, :2], xy[:, :2], atol=1e-3)
    np.testing.assert_array_equal(vis_n, vis)


def test_landmark_structure_visibility():
    vol = _overlap_volume()
    P = _ap_P()
    pl = L.project_labels(vol, SPACING, ORIGIN, P, SIZE, step_mm=0.5, ids=(1, 2))
    pts = np.array([[0.0, -10.0, 0.0], [35.0, 40.0, 35.0], [60.0, 0.0, 60.0]])
    cov = {i: pl.covered(i) for i in pl.ids}
    _, vis = L.project_landmarks(P, pts, SIZE, coverage=cov, structures=[(1,), (2,), (2,)])
    assert vis[0].tolist() == [True, True, False]  # the third lies in the image but off its plate
    _, vis2 = L.project_landmarks(P, pts, SIZE, coverage=cov, structures=[(2,), (1,), (1, 2)])
    assert vis2[0].tolist() == [True, False, False]


def test_gaussian_heatmaps():
    xy = np.array([[[10.0, 20.0], [5.5, 7.0], [np.nan, 1.0]]], dtype=np.float32)
    vis = np.array([[True, False, True]])
    hm = L.gaussian_heatmaps(xy, (32, 24), sigma_px=2.0, visible=vis)
    assert hm.shape == (1, 3, 24, 32) and hm.dtype == np.float32
    assert hm[0, 0, 20, 10] == pytest.approx(1.0)
    assert hm[0, 0, 20, 12] == pytest.approx(np.exp(-0.5), rel=1e-5)
    assert np.unravel_index(hm[0, 0].argmax(), hm[0, 0].shape) == (20, 10)
    assert not hm[0, 1].any() and not hm[0, 2].any()  # invisible and non-finite give zero maps
    t = L.gaussian_heatmaps(torch.from_numpy(xy), (32, 24), 2.0)
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t[0, 0].numpy(), hm[0, 0], atol=1e-6)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="P"):
        L.project_landmarks(np.eye(3), np.zeros((1, 3)), SIZE)
    with pytest.raises(ConfigError, match="size"):
        L.gaussian_heatmaps(np.zeros((1, 2)), (-1, 4), 1.0)
    with pytest.raises(DataError, match="no structure"):
        L.project_labels(np.zeros((4, 4, 4), np.uint8), SPACING, ORIGIN, _ap_P(), SIZE, step_mm=1.0)
