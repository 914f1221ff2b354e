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


def _camera_pose():
    return g.carm_pose(np.array([5.0, -3.0, 40.0]), 700.0, lao_deg=25, cran_deg=-10, roll_deg=4)


@pytest.mark.parametrize("scale", [1.0, -3.5, 1e-3])
def test_camera_round_trip_from_projection(scale):
    dev = g.CIOS_FUSION.binned(360)
    pose = _camera_pose()
    P = g.projection_matrix(dev, pose)
    cam = g.Camera.from_projection(scale * P, dev.sdd_mm, (dev.cols, dev.rows))
    assert cam.pixel_mm == pytest.approx(dev.pixel_mm, rel=1e-12)
    assert cam.sdd_mm == dev.sdd_mm and cam.size == (360, 360)
    np.testing.assert_allclose(cam.K, dev.K, rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(cam.pose.R, pose.R, atol=1e-12)
    np.testing.assert_allclose(cam.pose.t, pose.t, atol=1e-8)
    np.testing.assert_allclose(cam.source_lps, pose.source_lps, atol=1e-8)
    np.testing.assert_allclose(cam.pixel_from_world, P, rtol=1e-10, atol=1e-8)
    direct = g.Camera.from_device(dev, pose)
    np.testing.assert_array_equal(direct.pixel_from_world, P)
    assert direct.pixel_mm == pytest.approx(dev.pixel_mm)


def test_camera_of_negative_focal_projection_is_a_proper_rotation():
    # DeepFluoro-like: negative focal lengths; the same projective map, positive focal lengths and det R = +1
    dev = g.CIOS_FUSION.binned(360)
    pose = _camera_pose()
    K = dev.K.copy()
    K[0, 0] *= -1
    K[1, 1] *= -1
    P = K @ pose.extrinsic
    cam = g.Camera.from_projection(P, dev.sdd_mm)
    assert np.linalg.det(cam.pose.R) == pytest.approx(1.0) and min(cam.focal_px) > 0
    assert cam.pixel_mm == pytest.approx(dev.pixel_mm, rel=1e-12) and cam.size is None
    X = np.random.default_rng(1).normal(0, 50, (20, 3))
    np.testing.assert_allclose(cam.project(X)[0], g.project_points(P, X)[0], atol=1e-8)


def test_pixel_from_world_projects_a_known_point_analytically():
    f, pitch, sdd = 1000.0 / 0.5, 0.5, 1000.0
    K = np.array([[f, 0, 99.5], [0, f, 49.5], [0, 0, 1.0]])
    pose = g.Pose(R=np.eye(3), t=np.array([0.0, 0.0, 600.0]))  # source 600 mm before the world origin
    cam = g.Camera(K, pose, sdd, (200, 100))
    assert cam.pixel_mm == pytest.approx(pitch) and cam.principal_point == (99.5, 49.5)
    # a point 10 mm along +x and 5 mm along +y at the isocentre: magnified by SDD / SID onto the detector
    uv, depth = cam.project(np.array([[10.0, 5.0, 0.0]]))
    assert depth[0] == pytest.approx(600.0)
    assert uv[0] == pytest.approx([99.5 + 10 * sdd / 600 / pitch, 49.5 + 5 * sdd / 600 / pitch])
    np.testing.assert_allclose(cam.source_lps, [0.0, 0.0, -600.0])
    # the ray through that pixel passes through the point
    d = cam.ray_direction(uv)[0]
    w = np.array([10.0, 5.0, 0.0]) - cam.source_lps
    np.testing.assert_allclose(d, w / np.linalg.norm(w), atol=1e-12)


def test_camera_transform_compositions_invert():
    dev = g.CIOS_FUSION.binned(180)
    cam = g.Camera.from_device(dev, _camera_pose())
    np.testing.assert_allclose(cam.world_from_camera @ cam.camera_from_world, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(cam.camera_from_world @ cam.world_from_camera, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(cam.camera_from_pixel @ cam.pixel_from_camera, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(cam.pixel_from_camera @ cam.camera_from_world[:3], cam.pixel_from_world, atol=1e-9)
    # camera origin is the source; world_from_camera maps it there
    np.testing.assert_allclose(cam.world_from_camera @ [0, 0, 0, 1.0], [*cam.source_lps, 1.0], atol=1e-9)
    # as_cameras / projection_array: cameras and P arrays are interchangeable
    cams = g.as_cameras(np.stack([cam.P, cam.P]), dev.sdd_mm, dev_size := (dev.cols, dev.rows))
    assert len(cams) == 2 and cams[0].size == dev_size
    np.testing.assert_allclose(g.projection_array(cams), np.stack([cam.P, cam.P]), rtol=1e-10, atol=1e-8)
    assert g.as_cameras(cam, 1.0)[0] is cam
    with pytest.raises(ConfigError):
        g.Camera.from_projection(np.zeros((3, 3)), 1000.0)


def test_view_angles_invert_the_carm_pose():
    """LAO and cranial angles read back from P are those the pose was built with (any roll, isocentre,
    distance, device, and DeepFluoro's negative-focal sign convention), and off-AP is the angle between the
    principal ray and +y, by the spherical law of cosines: cos(off_ap) = cos(lao) cos(cran)."""
    dev = g.CIOS_FUSION.binned(128)
    cases = [(0.0, 0.0, 0.0), (30.0, 0.0, 0.0), (0.0, -20.0, 5.0), (-40.0, 25.0, -90.0), (12.5, 44.0, 30.0)]
    P = np.stack([g.projection_matrix(dev, g.carm_pose(np.array([5.0, -20.0, 30.0]), 700.0, lao, cran, roll))
                  for lao, cran, roll in cases])
    a = g.view_angles(P)
    for i, (lao, cran, _) in enumerate(cases):
        assert a["lao"][i] == pytest.approx(lao, abs=1e-9)
        assert a["cran"][i] == pytest.approx(cran, abs=1e-9)
        expected = np.degrees(np.arccos(np.cos(np.radians(lao)) * np.cos(np.radians(cran))))
        assert a["off_ap"][i] == pytest.approx(expected, abs=1e-6)
    flipped = g.view_angles(-P[3] * 2.5)  # the same projective map
    assert flipped["lao"] == pytest.approx(-40.0) and flipped["cran"] == pytest.approx(25.0)
    with pytest.raises(ConfigError, match="parameter 'P'"):
        g.view_angles(np.zeros((2, 4, 4)))
