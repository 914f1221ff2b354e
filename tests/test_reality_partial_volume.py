"""The scanner's anatomy raster is partial-volume (anti-aliased) and finer than the CT at every profile."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib import geometry
from synthex_lib.anatomy.raster import Anatomy, Grid, Part
from synthex_lib.anatomy.sdf import Box
from synthex_lib.anatomy.tissues import Material, Tissue, tissue_tables
from synthex_lib.core.config import PROFILES
from synthex_lib.simulate.reality.partial_volume import density_channels, partial_volume_channels
from synthex_lib.simulate.scanner import SCANNERS, VoxelAnatomy, get_scanner

TILT_DEG = 4.0
SHELL_MM = 2.0  # 4/3 of the 1.5 mm raster: point classification counts 1 or 2 voxels


class ShellBlock(Anatomy):
    """A cancellous block with a cortical shell, turned by TILT_DEG about z, without texture."""

    kind = "test"

    def __init__(self) -> None:
        super().__init__()
        a = np.deg2rad(TILT_DEG)
        self.R = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])

    @property
    def bounds(self):
        return np.array([-75.0, -40.0, -75.0]), np.array([75.0, 40.0, 75.0])

    @property
    def seed_keys(self):
        return ("shell-block",)

    def tables(self):
        hu, fine, coarse, mat = tissue_tables()
        return hu, np.zeros_like(fine), np.zeros_like(coarse), mat

    def _build(self):
        box = Box((0.0, 0.0, 0.0), (65.0, 25.0, 65.0), axes=self.R)
        return [Part("block", box, Tissue.CANCELLOUS, label=1, shell_mm=SHELL_MM, shell_tissue=Tissue.CORTICAL)]


class Spec:
    def __init__(self, ct_mm: float) -> None:
        self.anatomy = ShellBlock()
        self.spacing = (ct_mm, ct_mm, ct_mm)
        self.landmarks: dict = {}
        self.specimen_id = "block"


def _cortical_image(supersample: int, size: int = 128) -> tuple[np.ndarray, float]:
    sc = get_scanner("cios-fusion", supersample=supersample)
    spec = Spec(2.0)  # quick profile's CT: the raster is 1.5 mm
    P = geometry.projection_matrix(geometry.CIOS_FUSION.binned(size), geometry.carm_pose(np.zeros(3), 600.0))
    ids, A, _ = sc.area_densities(spec, P, (size, size))
    img = A[0, ids.index(int(Material.CORTICAL))]
    return img, sc.raster_spacing(spec)


def _spectrum(img: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    pix = geometry.CIOS_FUSION.binned(size).pixel_mm
    rows = img[size // 2 - 20:size // 2 + 20, size // 2 - 32:size // 2 + 32]  # inside the block's face
    prof = rows.mean(axis=0) - rows.mean()
    power = np.abs(np.fft.rfft(prof * np.hanning(len(prof)))) ** 2
    return np.fft.rfftfreq(len(prof), d=pix), power


def test_shell_aliasing_peak_disappears_with_partial_volume():
    size = 128
    old, spacing = _cortical_image(1, size)
    new, _ = _cortical_image(2, size)
    # the staircase of a plane tilted by a against the grid repeats every spacing / tan(a) in the world,
    # magnified by SDD / SOD at the detector
    f_alias = np.tan(np.deg2rad(TILT_DEG)) / spacing / (geometry.CIOS_FUSION.sdd_mm / 600.0)
    f, p_old = _spectrum(old, size)
    _, p_new = _spectrum(new, size)
    k = int(np.argmin(np.abs(f - f_alias)))
    band = slice(max(1, k - 1), k + 2)
    background = np.median(p_old[1:])
    assert p_old[band].max() > 20 * background  # point classification: a clear peak at the aliasing frequency
    assert p_new[band].max() < 0.1 * p_old[band].max()  # partial volume: gone
    # both conserve the shell's mass on average (the area density of the two faces)
    assert new[54:74, 40:88].mean() == pytest.approx(old[54:74, 40:88].mean(), rel=0.05)


def test_raster_is_finer_than_the_ct_at_every_profile():
    for prof in PROFILES.values():
        ct = prof.lab.ct_spacing_mm
        for model in SCANNERS.values():
            sp = max(model.raster_factor * ct, model.min_raster_mm)
            assert sp < ct, f"{model.name} at {prof.name}: raster {sp} mm not finer than the CT's {ct} mm"
            assert model.supersample >= 2


def test_partial_volume_channels_are_block_means_of_the_fine_channels():
    rng = np.random.default_rng(0)
    mats = rng.choice([0, 3, 5], size=(12, 12, 12)).astype(np.uint8)
    hu = np.where(mats == 5, 1560.0, np.where(mats == 3, 45.0, -1000.0)).astype(np.float32)
    va = VoxelAnatomy(hu, np.zeros_like(mats), mats, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    grid = Grid((0.5, 0.5, 0.5), (2.0, 2.0, 2.0), (6, 6, 6))
    ids, ch, _ = partial_volume_channels(va, grid, 2)
    fine_ids, fine = density_channels(hu, mats)
    ref = fine.reshape(6, 2, 6, 2, 6, 2, -1).mean(axis=(1, 3, 5))
    for i, m in enumerate(ids):
        np.testing.assert_allclose(ch[..., i], ref[..., fine_ids.index(m)], rtol=1e-5, atol=1e-6)
