"""Chest specimens and their COVID-19 lesions."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.anatomy import make_specimen
from synthex_lib.anatomy.chest import sample_chest_params
from synthex_lib.anatomy.specimens import build_anatomy
from synthex_lib.anatomy.tissues import Material, Tissue


@pytest.fixture(scope="module")
def raster():
    a = build_anatomy("chest", 0, index=0)
    return a, a.rasterize(3.0)


def test_structures_and_hu(raster) -> None:
    a, r = raster
    assert {1, 2, 3, 4, 5} <= set(np.unique(r.labels))  # lungs, heart, airways, bone
    hu, t = r.hu, r.tissues
    assert -900 <= np.median(hu[t == Tissue.LUNG]) <= -800
    assert np.median(hu[t == Tissue.AIR][r.labels[t == Tissue.AIR] == 4]) == pytest.approx(-1000, abs=1)
    assert (r.materials == Material.CORTICAL).any() and (t == Tissue.BLOOD).any()
    # left lung on the patient's left (+x), heart shifted left
    x = r.origin[0] + np.arange(r.labels.shape[2]) * r.spacing[0]
    xs = lambda lab: np.broadcast_to(x, r.labels.shape)[r.labels == lab]  # noqa: E731
    assert np.median(xs(1)) > 30 and np.median(xs(2)) < -30
    assert np.median(xs(3)) > 0


def test_lesions_match_covid_patterns(raster) -> None:
    a, r = raster
    les = r.lesion.astype(bool)
    assert les.any()
    hu = r.hu[les]
    assert -800 <= np.percentile(hu, 5) and np.percentile(hu, 95) <= -50
    assert -750 <= np.median(hu) <= -100
    assert np.all(r.tissues[les] != Tissue.AIR)
    lungs = (r.labels == 1) | (r.labels == 2)
    assert np.all(lungs[les])  # inside the lungs
    # bilateral
    assert (les & (r.labels == 1)).any() and (les & (r.labels == 2)).any()
    # peripheral: lesion centres are within 25 mm of their lung's surface
    for x, y, zc, *_ in a.params.lesions:
        d = min(a.lung_sdf("l")(np.array([[x, y, zc]]))[0], a.lung_sdf("r")(np.array([[x, y, zc]]))[0])
        assert -25 <= d <= -4


def test_some_specimens_are_clear_and_have_empty_masks() -> None:
    flags = [sample_chest_params(0, "chest", i).clear for i in range(10)]
    assert flags.count(True) == 2 and not flags[0]
    a = build_anatomy("chest", 0, index=4)
    assert a.params.clear and not a.params.lesions
    r = a.rasterize(6.0)
    assert r.lesion is not None and r.lesion.sum() == 0


def test_chest_specimen_ct_and_mask() -> None:
    s = make_specimen("chest", 0, "smoke")
    assert s.kind == "chest" and s.lesion_mask is not None
    assert s.lesion_mask.shape == s.ct_hu.shape and s.lesion_mask.any()
    assert -1000 <= np.median(s.ct_hu[s.lesion_mask > 0]) <= -50
    variation = [sample_chest_params(1, "chest", i) for i in range(6)]
    assert np.std([v.breast_mm for v in variation]) > 0 and np.std([v.dome_right_z for v in variation]) > 0


def test_lesions_are_lower_zone_predominant() -> None:
    """Lesion centres lie lower than the peripheral lung they are drawn from, on average."""
    from synthex_lib.anatomy.chest import ChestAnatomy

    rng = np.random.default_rng(0)
    les_z, lung_z = [], []
    for i in range(8):
        p = sample_chest_params(0, "chest", i)
        a = ChestAnatomy(p)
        les_z += [les[2] for les in p.lesions]
        for side in "lr":
            lung = a.lung_sdf(side)
            c = rng.uniform(lung.lo, lung.hi, size=(3000, 3))
            d = lung(c)
            lung_z += list(c[(d < -4) & (d > -25), 2])
    assert np.mean(les_z) < np.mean(lung_z) - 15
