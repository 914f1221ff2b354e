"""The continuum manipulator: kinematics, design, placement and its scene's CT."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.anatomy import make_tool_scene
from synthex_lib.anatomy.tissues import Material, Tissue
from synthex_lib.anatomy.tool import (
    CM_JOINT_SD_DEG,
    CM_LENGTH,
    CM_NOTCHES,
    CM_OUTER_D,
    cm_kinematics,
    cm_sdf,
    sample_tool_params,
)


def test_straight_cm_has_its_design_length() -> None:
    _, _, pts = cm_kinematics(np.zeros(CM_NOTCHES), np.zeros(3), np.eye(3))
    assert len(pts) == CM_NOTCHES + 2
    np.testing.assert_allclose(pts[-1], [0, 0, CM_LENGTH], atol=1e-9)


def test_constant_curvature_is_a_circular_arc() -> None:
    """Equal joint angles: points on a circle; chord = 2 R sin(total / 2) with R from the pitch."""
    theta = np.deg2rad(2.0)
    _, _, pts = cm_kinematics(np.full(CM_NOTCHES, 2.0), np.zeros(3), np.eye(3))
    pitch = CM_LENGTH / (CM_NOTCHES + 1)
    assert np.all(np.abs(pts[:, 1]) < 1e-9)  # planar bending (about the local y axis)
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    np.testing.assert_allclose(seg, pitch, atol=1e-9)  # arc length preserved
    # polygon with equal sides and equal turning angles is inscribed in a circle of radius
    radius = pitch / (2 * np.sin(theta / 2))
    total = theta * (CM_NOTCHES + 1)  # each of the 28 sides subtends theta
    chord = 2 * radius * np.sin(total / 2)
    assert np.linalg.norm(pts[-1] - pts[0]) == pytest.approx(chord, rel=1e-6)


def test_joint_angles_follow_the_paper() -> None:
    angles = np.concatenate([sample_tool_params(20, 0, "tool", i).joint_deg for i in range(100)])
    assert len(angles) == 100 * CM_NOTCHES
    assert np.mean(angles) == pytest.approx(0.0, abs=0.3)
    assert np.std(angles) == pytest.approx(CM_JOINT_SD_DEG, rel=0.08)


def test_notched_tube_geometry() -> None:
    body, env, pts = cm_sdf(np.zeros(CM_NOTCHES), np.zeros(3), np.eye(3))
    z = np.linspace(0.2, CM_LENGTH - 0.2, 3000)
    wall_pos = np.stack([np.full_like(z, 2.6), np.zeros_like(z), z], 1)  # +x side of the wall
    wall_neg = wall_pos * [-1, 1, 1]
    solid_pos, solid_neg = body(wall_pos) < 0, body(wall_neg) < 0
    cuts = lambda s: int(np.sum(np.diff(s.astype(int)) == -1))  # noqa: E731
    assert cuts(solid_pos) + cuts(solid_neg) == CM_NOTCHES  # 27 alternating notches
    assert abs(cuts(solid_pos) - cuts(solid_neg)) <= 1
    assert body(np.array([[0.0, 0, 10]]))[0] > 0  # hollow
    assert env(np.array([[0.0, 0, 10]]))[0] < 0  # the labelled envelope is solid
    assert env(np.array([[CM_OUTER_D / 2 + 0.2, 0, 10]]))[0] > 0


@pytest.fixture(scope="module")
def scene():
    return make_tool_scene(0, "smoke", index=2)


def test_scene_contract_and_placement(scene) -> None:
    assert scene.kind == "tool" and set(scene.landmarks) == {"base", "tip"}
    assert set(np.unique(scene.labels)) == {0, 1}
    assert np.linalg.norm(scene.landmarks["tip"] - scene.landmarks["base"]) <= CM_LENGTH + 1e-6
    side = scene.meta["tool"]["side"]
    host = scene.anatomy.host
    # the tip lies in the femoral head or neck of the chosen side
    fem = host.part_sdf(f"femur-{side}")
    assert fem(scene.landmarks["tip"][None])[0] < 0
    # the label marks the tool: its voxels are near the centreline
    ijk = np.argwhere(scene.labels == 1)[:, ::-1]
    xyz = scene.index_to_world(ijk)
    _, _, line = scene.anatomy.tool()
    dist = np.min(np.linalg.norm(xyz[:, None, :] - line[None], axis=2), axis=1)
    assert dist.max() < CM_OUTER_D / 2 + 2 * scene.spacing[0]


def test_anatomy_has_true_metal_and_ct_saturates(scene) -> None:
    c = scene.anatomy.center
    r = scene.anatomy.rasterize(0.5, (c - 12, c + 12))
    assert (r.materials == Material.METAL).any()
    assert r.hu[r.tissues == Tissue.NITINOL].min() > 20000
    assert set(np.unique(r.labels)) == {0, 1}
    assert scene.ct_hu.max() <= 3071


def test_scene_ct_equals_host_away_from_the_tool(scene) -> None:
    from synthex_lib.anatomy.cohorts import _host

    host = _host(0, scene.meta["tool"]["host_index"], "smoke")
    diff = scene.ct_hu != host.ct_hu
    assert diff.any()
    ijk = np.argwhere(diff)[:, ::-1]
    lo, hi = scene.anatomy.tool_box()
    xyz = scene.index_to_world(ijk)
    assert np.all(xyz >= lo - 4 * scene.spacing[0]) and np.all(xyz <= hi + 4 * scene.spacing[0])
