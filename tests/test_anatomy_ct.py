"""The CT scan simulation: each effect against its defining property."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib.anatomy.ctscan import HU_MAX, HU_OUTSIDE, ScanParams, apply_scanner, ct_grid, partial_volume, scan
from synthex_lib.anatomy.raster import Anatomy, Grid, Part
from synthex_lib.anatomy.sdf import Box, Sphere
from synthex_lib.anatomy.tissues import NITINOL, NITINOL_HU, STEEL, STEEL_HU, Tissue, metal_hu, tissue_tables


class _Phantom(Anatomy):
    """A water-like box with a ball of one tissue, no texture (analytic references)."""

    kind = "phantom"

    def __init__(self, ball_tissue: int = Tissue.CANCELLOUS, radius: float = 20.0) -> None:
        super().__init__()
        self.ball_tissue, self.radius = ball_tissue, radius

    @property
    def bounds(self):
        return np.array([-60.0, -60, -40]), np.array([60.0, 60, 40])

    @property
    def seed_keys(self):
        return ("phantom",)

    def tables(self):
        hu, fine, coarse, mat = tissue_tables()
        return hu, fine * 0, coarse * 0, mat

    def _build(self):
        return [Part("water", Box([0, 0, 0], [50, 50, 35]), Tissue.FLUID),
                Part("ball", Sphere([0.3, -0.7, 0.2], self.radius), self.ball_tissue)]


def _quiet(**kw) -> ScanParams:
    base = dict(fov_mm=1000.0, fwhm_xy_mm=1e-3, fwhm_z_mm=1e-3, noise_sd_1mm=0.0, gain=1.0, offset_hu=0.0,
                cupping_hu=0.0, supersample=4, seed_keys=("t",))
    base.update(kw)
    return ScanParams(**base)


def test_metal_hu_constants_match_xraydb() -> None:
    assert metal_hu(*NITINOL) == pytest.approx(NITINOL_HU, abs=1)
    assert metal_hu(*STEEL) == pytest.approx(STEEL_HU, abs=1)
    assert metal_hu("H2O", 1.0) == pytest.approx(0.0, abs=1e-6)


def test_partial_volume_preserves_the_mean() -> None:
    """Box-aperture partial volume: the sum of (HU - background) equals ball volume x contrast."""
    ph = _Phantom(radius=20.0)
    hu_t = ph.tables()[0]
    contrast = hu_t[Tissue.CANCELLOUS] - hu_t[Tissue.FLUID]
    g = ct_grid(ph, 4.0, (np.array([-40.0, -40, -32]), np.array([40.0, 40, 32])))
    hu, lab, _ = partial_volume(ph, g, supersample=8)
    excess = (hu - hu_t[Tissue.FLUID]).sum() * 4.0**3
    assert excess == pytest.approx(contrast * 4 / 3 * np.pi * 20**3, rel=0.02)
    # edge voxels take intermediate values
    mid = (hu > hu_t[Tissue.FLUID] + 5) & (hu < hu_t[Tissue.CANCELLOUS] - 5)
    assert mid.sum() > 50


def test_blur_has_the_requested_fwhm() -> None:
    g = Grid((-20.0, -20.0, -20.0), (0.5, 0.5, 0.5), (81, 81, 81))
    hu = np.zeros(g.shape, np.float32)
    hu[40, 40, 40] = 1000.0
    apply_scanner(hu, g, _quiet(fwhm_xy_mm=3.0, fwhm_z_mm=3.0))
    line = hu[40, 40, :].astype(np.float64)
    line -= line.min()
    half = line.max() / 2
    above = np.nonzero(line >= half)[0]
    width = (above[-1] - above[0] + 1) * 0.5
    assert width == pytest.approx(3.0, abs=0.6)


def test_noise_sd_scales_with_voxel_size() -> None:
    sds = []
    for h in (1.0, 2.0):
        g = Grid((0.0, 0.0, 0.0), (h, h, h), (40, 40, 40))
        hu = np.zeros(g.shape, np.float32)
        apply_scanner(hu, g, _quiet(noise_sd_1mm=20.0))
        sds.append(hu.std())
    assert sds[0] == pytest.approx(20.0, rel=0.1)
    assert sds[0] / sds[1] == pytest.approx(2**1.5, rel=0.15)


def test_calibration_fov_and_clipping() -> None:
    g = Grid((-100.0, -100.0, 0.0), (2.0, 2.0, 2.0), (3, 101, 101))
    hu = np.full(g.shape, 100.0, np.float32)
    hu[:, 50, 50] = 40000.0  # metal
    apply_scanner(hu, g, _quiet(gain=1.1, offset_hu=-5.0, fov_mm=120.0))
    assert hu[1, 50, 60] == pytest.approx(105.0, abs=0.5)  # 100 * 1.1 - 5
    assert hu[1, 50, 50] == HU_MAX  # saturates
    assert hu[1, 0, 0] == HU_OUTSIDE  # outside the reconstruction field of view
    assert np.all(hu == np.rint(hu))  # integer HU


def test_cupping_lowers_the_centre() -> None:
    g = Grid((-100.0, -100.0, 0.0), (2.0, 2.0, 2.0), (2, 101, 101))
    hu = np.zeros(g.shape, np.float32)
    apply_scanner(hu, g, _quiet(cupping_hu=20.0, fov_mm=200.0))
    assert hu[0, 50, 50] == pytest.approx(-20.0, abs=0.5)
    assert hu[0, 50, 95] > -5


def test_scan_is_deterministic_per_seed() -> None:
    ph = _Phantom()
    p = ScanParams(seed_keys=("x",), supersample=2)
    a = scan(ph, 4.0, p)
    b = scan(ph, 4.0, p)
    assert a[0].tobytes() == b[0].tobytes()
    c = scan(ph, 4.0, ScanParams(seed_keys=("y",), supersample=2))
    assert a[0].tobytes() != c[0].tobytes()


def test_block_mode_is_the_majority_label() -> None:
    from synthex_lib.anatomy.ctscan import _block_mode

    a = np.random.default_rng(0).integers(0, 4, (8, 6, 10)).astype(np.uint8)
    m = _block_mode(a, 2)
    for idx in np.ndindex(m.shape):
        blk = a[2 * idx[0]:2 * idx[0] + 2, 2 * idx[1]:2 * idx[1] + 2, 2 * idx[2]:2 * idx[2] + 2].ravel()
        assert m[idx] == np.argmax(np.bincount(blk, minlength=4))


def test_material_compositions_give_their_usual_hu() -> None:
    from synthex_lib.anatomy.tissues import MATERIAL_COMPOSITION, Material, formula_from_mass_fractions

    # mass fractions of water -> H2O in atom proportions
    f = formula_from_mass_fractions({"H": 0.111894, "O": 0.888106})
    assert metal_hu(f, 1.0) == pytest.approx(0.0, abs=2.0)
    ranges = {Material.AIR: (-1001, -990), Material.LUNG: (-900, -800), Material.FAT: (-120, -80),
              Material.SOFT: (20, 70), Material.CANCELLOUS: (150, 400), Material.CORTICAL: (1000, 1900),
              Material.LESION: (-750, -100), Material.METAL: (20000, 40000)}
    for m, (lo, hi) in ranges.items():
        assert lo <= metal_hu(*MATERIAL_COMPOSITION[m]) <= hi, Material(m).name
