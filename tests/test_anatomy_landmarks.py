"""Every hip landmark lies within one CT voxel of its structure in the CT label volume, at the CT
spacing of every profile (4, 2 and 1 mm)."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.anatomy import make_specimen
from synthex_lib.anatomy.ctscan import ScanParams, ct_grid, partial_volume
from synthex_lib.anatomy.hip_landmarks import LANDMARK_DEPTH_MM
from synthex_lib.anatomy.raster import Grid
from synthex_lib.anatomy.specimens import build_anatomy
from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARK_LABELS, HIP_LANDMARKS

SPACINGS = sorted({get_profile(p).lab.ct_spacing_mm for p in ("smoke", "quick", "full", "paper")}, reverse=True)
SEEDS = (0, 1, 2, 3)
#: half size (voxels) of the CT box read around each landmark: the nearest labelled voxel is
#: looked for within it, so a distance above one voxel is still measured
HALF_VOX = 3


def _ct_box(anatomy, point: np.ndarray, spacing: float) -> Grid:
    """The box of the specimen's CT lattice (``ct_grid``) within HALF_VOX voxels of ``point``."""
    grid = ct_grid(anatomy, spacing)
    sl = grid.index_range(point - HALF_VOX * spacing, point + HALF_VOX * spacing)
    assert sl is not None
    return grid.region(sl)


def _distance_to_label(labels: np.ndarray, grid: Grid, point: np.ndarray, ids: tuple[int, ...]) -> float:
    """Distance (mm) from ``point`` to the nearest voxel centre of ``grid`` whose label is in ``ids``."""
    k, j, i = np.nonzero(np.isin(labels, ids))
    if not len(k):
        return np.inf
    centres = np.asarray(grid.origin) + np.stack([i, j, k], axis=1) * np.asarray(grid.spacing)
    return float(np.linalg.norm(centres - point, axis=1).min())


def test_profile_spacings_are_the_ones_checked() -> None:
    assert SPACINGS == [4.0, 2.0, 1.0]


@pytest.mark.parametrize("seed", SEEDS)
def test_landmarks_within_one_ct_voxel_of_their_structure(seed: int) -> None:
    a = build_anatomy("hip", seed)
    lm = a.landmarks()
    s = ScanParams().supersample  # the CT's partial-volume sub-voxels (labels: their majority)
    worst = {}
    for h in SPACINGS:
        for name in HIP_LANDMARKS:
            box = _ct_box(a, lm[name], h)
            _, labels, _ = partial_volume(a, box, s)
            d = _distance_to_label(labels, box, lm[name], HIP_LANDMARK_LABELS[name])
            worst[(name, h)] = d
            assert d <= h, f"seed {seed}: {name} is {d:.2f} mm from its label at {h:g} mm voxels"
    # at the finest spacing the landmarks sit well inside (not merely on the edge of) their bone
    assert max(worst[(n, 1.0)] for n in HIP_LANDMARKS) <= 0.9


def test_box_labels_equal_the_specimen_ct() -> None:
    """The sub-box read by the test above is the specimen CT's own label volume there."""
    spec = make_specimen("hip", 0, "smoke")
    a = spec.anatomy
    h = spec.spacing[0]
    full = Grid(spec.origin, spec.spacing, spec.labels.shape)
    for name in ("SPS-l", "IPS-r", "ASIS-l", "FH-r"):
        box = _ct_box(a, spec.landmarks[name], h)
        _, labels, _ = partial_volume(a, box, ScanParams().supersample)
        sl = full.index_range(np.asarray(box.origin), box.hi)
        assert np.array_equal(labels, spec.labels[sl]), name
        d_box = _distance_to_label(labels, box, spec.landmarks[name], HIP_LANDMARK_LABELS[name])
        d_full = _distance_to_label(spec.labels, full, spec.landmarks[name], HIP_LANDMARK_LABELS[name])
        assert d_box == pytest.approx(d_full)


@pytest.mark.parametrize("seed", (0, 5))
def test_landmarks_inside_their_bone_at_the_stated_depth(seed: int) -> None:
    a = build_anatomy("hip", seed)
    lm = a.landmarks()
    for side in ("l", "r"):
        hemi = a.part_sdf(f"hemipelvis-{side}")
        for name in ("ASIS", "MOF", "IOF", "SPS", "IPS", "GSN"):
            d = float(hemi(lm[f"{name}-{side}"][None])[0])
            assert d == pytest.approx(-LANDMARK_DEPTH_MM, abs=0.05), f"{name}-{side}: SDF {d:.3f} mm"
        fem = a.part_sdf(f"femur-{side}")
        r = (a.params.left if side == "l" else a.params.right).fh_radius
        assert float(fem(lm[f"FH-{side}"][None])[0]) == pytest.approx(-r, abs=1.0)
