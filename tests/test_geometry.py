import numpy as np
import pytest

from synthex_lib import geometry as g
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.seeding import seeded_rng


def test_binned_device_pixel_pitch_matches_paper():
    # 1536 px at 0.194 mm, cropped to 1440 px and downsampled by 4 -> 360 px at 0.776 mm
    assert g.CIOS_FUSION.binned(360).pixel_mm == pytest.approx(0.776)
    assert g.CIOS_FUSION.binned(180).pixel_mm == pytest.approx(1.552)
    assert g.CIOS_FUSION.binned(480).pixel_mm == pytest.approx(0.582)


def test_principal_point_and_magnification():
    dev = g.CIOS_FUSION.binned(360)
    P = g.projection_matrix(dev, g.carm_pose(np.zeros(3), 600.0))
    uv, depth = g.project_points(P, np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 0.0, 10.0]]))
    assert uv[0] == pytest.approx([179.5, 179.5])
    assert depth[0] == pytest.approx(600.0)
    # 10 mm at the isocentre is magnified by SDD/SID and divided by the pixel pitch
    step = 10 * 1020 / 600 / 0.776
    assert uv[1] == pytest.approx([179.5 + step, 179.5])  # patient left -> larger column (viewer's right)
    assert uv[2] == pytest.approx([179.5, 179.5 - step])  # superior -> smaller row (up)


def test_source_position_and_reprojection_of_random_points():
    rng = np.random.default_rng(0)
    pose = g.carm_pose(np.array([5.0, -3.0, 40.0]), 700.0, lao_deg=25, cran_deg=-10, roll_deg=4)
    assert np.linalg.norm(pose.source_lps - [5.0, -3.0, 40.0]) == pytest.approx(700.0)
    assert np.allclose(pose.R @ pose.R.T, np.eye(3)) and np.linalg.det(pose.R) == pytest.approx(1.0)
    dev = g.CIOS_FUSION.binned(256)
    P = g.projection_matrix(dev, pose)
    X = rng.uniform(-100, 100, size=(20, 3))
    uv, depth = g.project_points(P, X)
    cam = (pose.R @ X.T).T + pose.t
    expected = cam[:, :2] / cam[:, 2:3] * dev.focal_px + [(dev.cols - 1) / 2, (dev.rows - 1) / 2]
    assert np.allclose(uv, expected) and np.allclose(depth, cam[:, 2])
    source, Minv, _ = g.decompose_projection(P)
    assert np.allclose(source, pose.source_lps)
    # the ray through a projected point passes through the point
    for x, (u, v) in zip(X[:3], uv[:3], strict=True):
        d = Minv @ np.array([u, v, 1.0])
        s = (x - source) / d
        assert np.allclose(s, s[0])


def test_samplers_respect_the_papers_ranges():
    rng = seeded_rng(0, "test")
    center = np.array([0.0, 0.0, 0.0])
    for _ in range(200):
        pose = g.ToolPoseSampler().sample(rng, center)
        dist = np.linalg.norm(pose.source_lps - center)
        assert 550 < dist < 960
    for _ in range(200):
        pose = g.ChestPoseSampler().sample(rng, center)
        assert 350 <= np.linalg.norm(pose.source_lps - center) <= 650


def test_seeded_rng_is_deterministic_and_key_sensitive():
    a = seeded_rng(1, "lab", 3).random(4)
    assert np.array_equal(a, seeded_rng(1, "lab", 3).random(4))
    assert not np.array_equal(a, seeded_rng(1, "lab", 4).random(4))
    assert not np.array_equal(a, seeded_rng(1, "scale", 3).random(4))


def test_unknown_device_and_bad_sizes():
    with pytest.raises(ConfigError, match="unknown device"):
        g.get_device("ct-scanner")
    with pytest.raises(ConfigError, match="parameter 'size'"):
        g.CIOS_FUSION.binned(-5)
