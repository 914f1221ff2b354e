"""Signed-distance primitives, culling and block rasterization against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.anatomy.raster import Grid, Part, classify
from synthex_lib.anatomy.sdf import (
    Box,
    Capsule,
    Ellipsoid,
    RoundCone,
    Sphere,
    Subtract,
    Transform,
    Triangle,
    Union,
    polyline_tube,
    ray_to_surface,
)
from synthex_lib.geometry import rot_z


def _pts(n: int = 2000, scale: float = 40.0, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n, 3))


def test_sphere_and_box_are_exact() -> None:
    p = _pts()
    d = Sphere([1, 2, 3], 10)(p)
    np.testing.assert_allclose(d, np.linalg.norm(p - [1, 2, 3], axis=1) - 10, atol=1e-4)
    b = Box([0, 0, 0], [10, 5, 3])(p)
    q = np.abs(p) - [10, 5, 3]
    ref = np.linalg.norm(np.maximum(q, 0), axis=1) + np.minimum(q.max(1), 0)
    np.testing.assert_allclose(b, ref, atol=1e-4)


def test_capsule_matches_brute_force_segment_distance() -> None:
    a, b = np.array([-10.0, 0, 0]), np.array([15.0, 5, -3])
    p = _pts()
    t = np.linspace(0, 1, 20001)
    seg = a + t[:, None] * (b - a)
    ref = np.min(np.linalg.norm(p[:, None, :] - seg[None, ::20], axis=2), axis=1) - 4
    np.testing.assert_allclose(Capsule(a, b, 4)(p), ref, atol=0.05)


def test_round_cone_radii_at_its_ends_and_cone_surface() -> None:
    rc = RoundCone([0, 0, 0], [0, 0, 50], 10, 4)
    assert abs(rc(np.array([[0, 0, -10.0]]))[0]) < 1e-4  # bottom sphere
    assert abs(rc(np.array([[0, 0, 54.0]]))[0]) < 1e-4  # top sphere
    # on the side the surface lies between the radii; inside at the axis
    assert rc(np.array([[0, 0, 25.0]]))[0] < -4
    d_side = rc(np.array([[7.0, 0, 25.0]]))[0]
    assert -1.0 < d_side < 1.0


def test_ellipsoid_surface_and_inside() -> None:
    e = Ellipsoid([0, 0, 0], [30, 20, 10], rot_z(30))
    u = rot_z(30) @ np.array([30.0, 0, 0])
    assert abs(e(u[None])[0]) < 1e-3
    assert e(np.zeros((1, 3)))[0] < 0
    assert e(2 * u[None])[0] > 0


def test_triangle_plate_distance() -> None:
    tri = Triangle([0, 0, 0], [40, 0, 0], [0, 40, 0], 2.0)
    assert tri(np.array([[5.0, 5, 10]]))[0] == pytest.approx(8.0, abs=1e-4)  # above the face
    assert tri(np.array([[-10.0, 0, 0]]))[0] == pytest.approx(8.0, abs=1e-4)  # beyond a vertex
    assert tri(np.array([[5.0, 5, 0]]))[0] == pytest.approx(-2.0, abs=1e-4)


def test_transform_moves_the_shape() -> None:
    s = Transform(Sphere([0, 0, 0], 5), rot_z(90), [10, 0, 0])
    assert abs(s(np.array([[15.0, 0, 0]]))[0]) < 1e-4
    assert s(np.array([[10.0, 0, 0]]))[0] == pytest.approx(-5, abs=1e-4)


def test_culled_union_is_exact_near_surfaces() -> None:
    """Block-culled evaluation equals brute-force minimum within the cull margin."""
    kids = [Sphere(np.random.default_rng(i).uniform(-60, 60, 3), 6) for i in range(12)]
    u = Union(kids)
    p = _pts(4000, 80, seed=3)
    brute = np.min([k(p) for k in kids], axis=0)
    got = u(p)
    near = np.abs(brute) < 8
    np.testing.assert_allclose(got[near], brute[near], atol=1e-4)
    assert np.all(got <= brute + 1e-4)  # a lower bound elsewhere


def test_subtract_makes_a_hole() -> None:
    s = Subtract(Box([0, 0, 0], [20, 20, 5]), [Capsule([0, 0, -10], [0, 0, 10], 6)])
    assert s(np.zeros((1, 3)))[0] > 0
    assert s(np.array([[12.0, 0, 0]]))[0] < 0


def test_ray_to_surface_hits_a_sphere_analytically() -> None:
    s = Sphere([0, 0, 0], 20)
    dirs = np.random.default_rng(0).normal(size=(50, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t = ray_to_surface(s, np.array([5.0, 0, 0]), dirs, max_mm=60)
    hits = np.array([5.0, 0, 0]) + dirs * t[:, None]
    np.testing.assert_allclose(np.linalg.norm(hits, axis=1), 20, atol=0.02)


@pytest.mark.parametrize("spacing", [0.7, 2.0])
def test_block_classification_equals_voxelwise(spacing: float) -> None:
    """The hierarchical block classifier gives the same classes as evaluating every voxel."""
    tube = polyline_tube(np.array([[-40, -10, -30], [0, 15, 0], [35, 0, 30]]), [9, 6, 4], k=2)
    part = Part("t", Union([tube, Sphere([20, -20, -10], 12)], k=3), 11, shell_mm=1.5, shell_tissue=12)
    g = Grid.from_bounds([-55, -40, -45], [55, 40, 45], spacing)
    cls = classify(part, g)
    X = np.stack(np.meshgrid(g.axis(0), g.axis(1), g.axis(2), indexing="ij"), -1).transpose(2, 1, 0, 3)
    d = part.sdf(X)
    ref = np.where(d > 0, 0, np.where(d > -1.5, 1, 2))
    assert (cls != ref).sum() <= 2  # float rounding on a boundary at most
    assert (cls == 2).any() and (cls == 1).any()
