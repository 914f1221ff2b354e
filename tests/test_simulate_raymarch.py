"""The ray-marching engine against analytic geometry: chord lengths, slabs, P conventions, tiling, back ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthex_lib import geometry as g
from synthex_lib.core.errors import ConfigError
from synthex_lib.simulate.raymarch import line_integrals, material_line_integrals

N = 72
SPACING = (1.0, 1.0, 1.0)
ORIGIN = (-(N - 1) / 2,) * 3
R_MM = 28.0


@pytest.fixture(scope="module")
def sphere() -> np.ndarray:
    """Partial-volume water sphere (fraction of each voxel inside, 4^3 supersampling), radius 28 mm."""
    c = np.arange(N) + ORIGIN[0]
    off = (np.arange(4) + 0.5) / 4 - 0.5
    frac = np.zeros((N, N, N), np.float32)
    z, y, x = np.meshgrid(c, c, c, indexing="ij", sparse=True)
    for a in off:
        for b in off:
            for d in off:
                frac += ((x + a) ** 2 + (y + b) ** 2 + (z + d) ** 2 < R_MM**2)
    return frac / 64


def _device(px: int = 48, pixel_mm: float = 1.2) -> g.Device:
    return g.Device("test", px, px, pixel_mm, 1000.0)


def _rays(P: np.ndarray, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and unit directions (H, W, 3) of every pixel of P."""
    Minv = np.linalg.inv(P[:, :3])
    src = -Minv @ P[:, 3]
    vv, uu = np.mgrid[0:H, 0:W]
    d = np.einsum("ij,hwj->hwi", Minv, np.stack([uu, vv, np.ones_like(uu)], -1).astype(float))
    return src, d / np.linalg.norm(d, axis=-1, keepdims=True)


def _sphere_chords(P: np.ndarray, W: int, H: int) -> tuple[np.ndarray, np.ndarray]:
    src, d = _rays(P, W, H)
    t_closest = -(d @ src)
    dist2 = src @ src - t_closest**2
    return 2 * np.sqrt(np.clip(R_MM**2 - dist2, 0, None)), np.sqrt(dist2)


@pytest.mark.parametrize("backend", ["numba", "torch"])
@pytest.mark.parametrize("step", [None, 0.5])
def test_chord_lengths_through_water_sphere(sphere, backend, step):
    P = g.projection_matrix(_device(), g.carm_pose(np.zeros(3), 400.0, lao_deg=25, cran_deg=-15))
    out = line_integrals(torch.from_numpy(sphere), SPACING, ORIGIN, P, (48, 48), step, backend=backend)
    assert out.shape == (1, 1, 48, 48) and out.dtype == torch.float32
    chord, dist = _sphere_chords(P, 48, 48)
    away = dist < 0.8 * R_MM  # away from the edges
    assert away.sum() > 200
    rel = np.abs(out[0, 0].numpy()[away] / chord[away] - 1)
    assert rel.max() < 0.005
    assert np.all(out[0, 0].numpy()[dist > R_MM + 2] < 1e-4)  # rays missing the sphere see nothing


@pytest.mark.parametrize("step", [None, 0.7])
def test_slab_chord_is_thickness_over_cosine(step):
    # a 20 mm water slab (z in [-10, 10]) filling x and y; a ray at angle theta to z crosses 20 / cos(theta)
    n = 64
    vol = np.zeros((n, n, n), np.float32)
    z = np.arange(n) + ORIGIN[0] * 0 - (n - 1) / 2
    vol[np.abs(z) < 10] = 1.0  # voxel centres at +-0.5 ... +-9.5: 20 voxels = 20 mm
    org = (-(n - 1) / 2,) * 3
    pose = g.carm_pose(np.zeros(3), 500.0, cran_deg=90.0)  # beam along -z or +z (superior-inferior)
    P = g.projection_matrix(_device(32, 1.0), pose)
    out = line_integrals(vol, SPACING, org, P, (32, 32), step)[0, 0].numpy()
    src, d = _rays(P, 32, 32)
    cos = np.abs(d[..., 2])
    # rays that stay inside the slab's lateral extent (|x|, |y| < 20 mm while crossing it)
    t_mid = -src[2] / d[..., 2]
    x_mid = src[0] + t_mid * d[..., 0]
    y_mid = src[1] + t_mid * d[..., 1]
    ok = (np.abs(x_mid) < 20) & (np.abs(y_mid) < 20)
    assert ok.sum() > 100
    np.testing.assert_allclose(out[ok], 20.0 / cos[ok], rtol=0.005)
    assert cos[ok].min() < 0.9999  # oblique rays are tested, not only the principal one


def test_p_and_minus_p_and_deepfluoro_convention_agree(sphere):
    pose = g.carm_pose(np.array([3.0, -2.0, 5.0]), 450.0, lao_deg=-30, cran_deg=10)
    dev = _device()
    P = g.projection_matrix(dev, pose)
    # DeepFluoro-style: camera z points from the detector to the source (the scene at negative depth) with
    # negative focal lengths: K_df = diag(-f, -f, 1) with the principal point, R_df = diag(-1, -1, 1) R flipped in z
    # -- projectively this is -P.
    K = dev.K
    K_df = np.array([[-K[0, 0], 0, -K[0, 2]], [0, -K[1, 1], -K[1, 2]], [0, 0, -1.0]])
    P_df = K_df @ pose.extrinsic
    pts = np.array([[0.0, 0, 0], [10, -5, 7], [-12, 8, -3]])
    np.testing.assert_allclose(g.project_points(P_df, pts)[0], g.project_points(P, pts)[0], atol=1e-6)
    assert np.all(g.project_points(P_df, pts)[1] < 0)  # the scene is at negative depth
    ref = line_integrals(sphere, SPACING, ORIGIN, P, (48, 48), None)
    for Q in (-P, P_df, 3.7 * P_df, 0.01 * P):  # noqa: N806
        out = line_integrals(sphere, SPACING, ORIGIN, Q, (48, 48), None)
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-4)


def test_source_inside_volume_integrates_towards_scene_only():
    n = 41
    vol = np.ones((n, n, n), np.float32)
    org = (-20.0, -20.0, -20.0)
    # source at the centre looking along +x; only the half-line in front counts: 20.5 mm (20 mm of voxel centres
    # and the half of the last 1-mm ramp), up to one sample at the source itself; the whole line would be 41 mm
    K = np.array([[100.0, 0, 0], [0, 100.0, 0], [0, 0, 1]])
    R = np.array([[0.0, 1, 0], [0, 0, 1], [1, 0, 0]])
    P = K @ np.concatenate([R, np.zeros((3, 1))], 1)
    for step in (None, 0.25):
        out = line_integrals(vol, SPACING, org, P, (1, 1), step)[0, 0, 0, 0].item()
        assert out == pytest.approx(20.5, abs=0.51)
        out_neg = line_integrals(vol, SPACING, org, -P, (1, 1), step)[0, 0, 0, 0].item()
        assert out_neg == pytest.approx(out, abs=1e-4)  # P and -P: the sign of P picks the scene side


def test_landmark_reprojection_against_p():
    # a small blob at a known LPS point appears at project_points(P, point)
    n = 64
    org = (-31.5, -31.5, -31.5)
    point = np.array([7.0, -4.0, 11.0])
    c = np.arange(n) + org[0]
    z, y, x = np.meshgrid(c, c, c, indexing="ij", sparse=True)
    vol = np.exp(-((x - point[0]) ** 2 + (y - point[1]) ** 2 + (z - point[2]) ** 2) / (2 * 1.5**2)).astype(np.float32)
    for lao, cran in ((0, 0), (35, -20), (-60, 15)):
        P = g.projection_matrix(_device(96, 0.8), g.carm_pose(np.zeros(3), 500.0, lao, cran))
        img = line_integrals(vol, SPACING, org, P, (96, 96), None)[0, 0].numpy().astype(np.float64)
        rows, cols = np.mgrid[0:96, 0:96]
        w = np.where(img > 0.05 * img.max(), img, 0)
        centroid = np.array([(w * cols).sum() / w.sum(), (w * rows).sum() / w.sum()])
        uv, depth = g.project_points(P, point[None])
        assert depth[0] > 0
        np.testing.assert_allclose(centroid, uv[0], atol=0.1)


def test_batch_equals_single_and_numba_equals_torch(sphere):
    poses = [g.carm_pose(np.zeros(3), 420.0, a, b) for a, b in ((0, 0), (40, 5), (95, -10))]
    P = np.stack([g.projection_matrix(_device(40, 1.4), p) for p in poses])
    vol = torch.from_numpy(np.stack([sphere, 2 * sphere[::-1].copy()]))  # two channels
    for step in (None, 1.0):
        batch = line_integrals(vol, SPACING, ORIGIN, P, (40, 40), step, backend="numba")
        assert batch.shape == (3, 2, 40, 40)
        for b in range(3):
            single = line_integrals(vol, SPACING, ORIGIN, P[b], (40, 40), step, backend="numba")
            np.testing.assert_array_equal(single[0].numpy(), batch[b].numpy())
        ref = line_integrals(vol, SPACING, ORIGIN, P, (40, 40), step, backend="torch")
        np.testing.assert_allclose(batch.numpy(), ref.numpy(), rtol=1e-4, atol=2e-3)


def test_tiling_equals_untiled(sphere):
    P = g.projection_matrix(_device(40, 1.4), g.carm_pose(np.zeros(3), 420.0, 20, 10))
    for step in (None, 0.8):
        whole = line_integrals(sphere, SPACING, ORIGIN, P, (40, 40), step, backend="torch", max_tile_bytes=2**40)
        tiled = line_integrals(sphere, SPACING, ORIGIN, P, (40, 40), step, backend="torch", max_tile_bytes=200_000)
        np.testing.assert_array_equal(whole.numpy(), tiled.numpy())


def test_full_size_detector_in_bounded_memory():
    # a 1536 x 1536 CIOS Fusion image: the CPU engine keeps no per-sample memory; the torch one tiles
    vol = np.ones((24, 24, 24), np.float32)
    org = (-11.5,) * 3
    P = g.projection_matrix(g.CIOS_FUSION, g.carm_pose(np.zeros(3), 600.0))
    out = line_integrals(vol, SPACING, org, P, (1536, 1536), None)
    assert out.shape == (1, 1, 1536, 1536)
    assert out[0, 0, 767:769, 767:769].numpy() == pytest.approx(np.full((2, 2), 24.0), abs=0.05)
    strip = line_integrals(vol, SPACING, org, P, (1536, 8), None, backend="torch", max_tile_bytes=2**20)
    np.testing.assert_allclose(strip[0, 0].numpy(), out[0, 0, :8].numpy(), atol=1e-4)


def test_material_line_integrals_equal_one_hot_channels(sphere):
    rng = np.random.default_rng(3)
    density = (sphere * 1.5 + rng.random(sphere.shape, dtype=np.float32) * 0.1).astype(np.float32)
    material = rng.integers(0, 3, sphere.shape).astype(np.uint8)
    channels = np.stack([density * (material == m) for m in range(3)])
    P = g.projection_matrix(_device(32, 1.8), g.carm_pose(np.zeros(3), 450.0, 30, 0))
    for step in (None, 1.3):
        ref = line_integrals(channels, SPACING, ORIGIN, P, (32, 32), step)
        for backend in ("numba", "torch"):
            out = material_line_integrals(density, material, 3, SPACING, ORIGIN, P, (32, 32), step, backend=backend)
            np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("kwargs", [
    {"size": (0, 4)}, {"size": (4, -1)}, {"step_mm": -1.0}, {"spacing": (1, 0, 1)}, {"P": np.zeros((3, 4))},
    {"P": np.full((3, 4), np.nan)}, {"P": np.ones((4, 4))},
])
def test_invalid_arguments_raise_config_error(kwargs):
    args = {"channels": np.zeros((4, 4, 4), np.float32), "spacing": SPACING, "origin": (0, 0, 0),
            "P": g.projection_matrix(_device(4), g.carm_pose(np.zeros(3), 100.0)), "size": (4, 4), "step_mm": None}
    args.update(kwargs)
    with pytest.raises(ConfigError):
        line_integrals(**args)


def test_many_channels_and_ignored_materials(sphere):
    # more than four channels (label projection uses seven) and material indices >= n_materials
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 8, sphere.shape).astype(np.uint8)
    channels = np.stack([(labels == k).astype(np.float32) for k in range(7)])
    P = g.projection_matrix(_device(24, 2.5), g.carm_pose(np.zeros(3), 450.0, -20, 25))
    for step in (None, 0.9):
        ref = line_integrals(channels, SPACING, ORIGIN, P, (24, 24), step, backend="torch")
        out = line_integrals(channels, SPACING, ORIGIN, P, (24, 24), step, backend="numba")
        np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-4, atol=1e-3)
        ones = np.ones(sphere.shape, np.float32)
        mat = material_line_integrals(ones, labels, 5, SPACING, ORIGIN, P, (24, 24), step)
        np.testing.assert_allclose(mat.numpy(), ref[:, :5].numpy(), rtol=1e-4, atol=1e-3)
