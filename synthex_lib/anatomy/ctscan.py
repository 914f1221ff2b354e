"""A simulated clinical CT scan of a continuous anatomy.

The scan sees the anatomy the way a CT does, and training simulators only ever see its output:

* **partial volume**: each CT voxel is the mean true HU of ``supersample^3`` sub-voxels of the
  anatomy rasterized at ``spacing / supersample`` (box aperture);
* **scanner blur**: a Gaussian point-spread function (FWHM in-plane and along z, mm);
* **HU calibration**: a small gain and offset error and beam-hardening cupping (a parabolic
  deficit towards the centre of the field of view);
* **noise**: correlated Gaussian noise whose standard deviation scales with voxel volume
  (``sd(h) = sd_1mm * (1 mm / h)^1.5``);
* **field of view**: a circular reconstruction field; voxels outside read -1024 HU;
* **quantization and range**: integers in the 12-bit CT range [-1024, 3071] (metal saturates).

Labels are the majority label of each voxel's sub-voxels; lesion masks keep voxels that are at
least half lesion. Frames: as :class:`~synthex_lib.anatomy.specimen.Specimen`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from synthex_lib.anatomy.raster import Anatomy, Grid
from synthex_lib.core.errors import require_positive
from synthex_lib.core.seeding import seeded_rng

#: CT value range (12-bit scanners) and the value outside the reconstruction field of view
HU_MIN, HU_MAX, HU_OUTSIDE = -1024.0, 3071.0, -1024.0
#: target number of fine voxels per slab (memory: ~10 bytes each)
SLAB_VOXELS = 24_000_000


@dataclass
class ScanParams:
    """Scanner settings of one CT acquisition (mm, HU)."""

    fov_mm: float = 500.0  #: diameter of the circular reconstruction field of view
    fov_center_xy: tuple[float, float] = (0.0, 0.0)  #: LPS x, y of the field-of-view centre
    fwhm_xy_mm: float = 1.0  #: in-plane point-spread function FWHM
    fwhm_z_mm: float = 1.2  #: slice-sensitivity FWHM
    noise_sd_1mm: float = 18.0  #: noise standard deviation at 1 mm voxels (HU)
    gain: float = 1.0  #: HU calibration gain
    offset_hu: float = 0.0  #: HU calibration offset
    cupping_hu: float = 10.0  #: beam-hardening deficit at the FOV centre (HU, tissue only)
    supersample: int = 2  #: sub-voxels per axis for partial volume
    seed_keys: tuple[Any, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seed_keys"] = list(self.seed_keys)
        d["fov_center_xy"] = list(self.fov_center_xy)
        return d


def sample_scan_params(center_xy: tuple[float, float], *keys: Any, fov_mm: float | None = None) -> ScanParams:
    """Draw scanner settings from ``seeded_rng(*keys, "ct-scan")`` around a field-of-view centre."""
    rng = seeded_rng(*keys, "ct-scan")
    return ScanParams(
        fov_mm=float(fov_mm if fov_mm is not None else rng.choice([450.0, 480.0, 500.0])),
        fov_center_xy=(float(center_xy[0] + rng.normal(0, 4)), float(center_xy[1] + rng.normal(0, 4))),
        fwhm_xy_mm=float(rng.uniform(0.7, 1.3)), fwhm_z_mm=float(rng.uniform(0.9, 1.6)),
        noise_sd_1mm=float(rng.uniform(10, 28)), gain=float(rng.normal(1.0, 0.005)),
        offset_hu=float(rng.normal(0, 3)), cupping_hu=float(rng.uniform(0, 25)),
        seed_keys=tuple(str(k) for k in keys),
    )


def ct_grid(anatomy: Anatomy, spacing_mm: float, bounds_lps: tuple[np.ndarray, np.ndarray] | None = None) -> Grid:
    """The CT voxel grid of an anatomy: isotropic ``spacing_mm`` over its bounds, origin snapped to
    a multiple of the spacing so that specimens of one profile share a lattice."""
    require_positive("spacing_mm", spacing_mm)
    lo, hi = anatomy.bounds if bounds_lps is None else bounds_lps
    lo = np.floor(np.asarray(lo) / spacing_mm) * spacing_mm
    hi = np.ceil(np.asarray(hi) / spacing_mm) * spacing_mm
    return Grid.from_bounds(lo, hi, spacing_mm)


def _fine_grid(ct: Grid, s: int, k0: int, k1: int) -> Grid:
    h = np.asarray(ct.spacing)
    o = np.asarray(ct.origin) - h / 2 + h / (2 * s)
    o[2] += k0 * h[2]
    return Grid(tuple(float(v) for v in o), tuple(float(v) for v in h / s), ((k1 - k0) * s, ct.shape[1] * s,
                                                                           ct.shape[2] * s))


def _block_mean(a: np.ndarray, s: int) -> np.ndarray:
    z, y, x = a.shape
    return a.reshape(z // s, s, y // s, s, x // s, s).mean(axis=(1, 3, 5), dtype=np.float64).astype(np.float32)


def _block_mode(a: np.ndarray, s: int) -> np.ndarray:
    """Majority label of each ``s^3`` block (ties go to the lower id)."""
    z, y, x = a.shape
    sub = np.stack([a[i::s, j::s, k::s] for i in range(s) for j in range(s) for k in range(s)])
    lo, hi = sub.min(axis=0), sub.max(axis=0)
    out = lo.copy()
    mixed = np.nonzero(lo != hi)
    if mixed[0].size:
        vals = sub[(slice(None), *mixed)]  # (s^3, M)
        ids = np.unique(vals)
        counts = np.stack([(vals == i).sum(axis=0) for i in ids])
        out[mixed] = ids[np.argmax(counts, axis=0)]
    return out


def partial_volume(anatomy: Anatomy, ct: Grid, supersample: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Noise-free CT with partial volume: (mean HU, majority label, lesion mask or None) on ``ct``."""
    s = int(supersample)
    require_positive("supersample", s, integer=True)
    nz, ny, nx = ct.shape
    per = max(1, SLAB_VOXELS // (ny * nx * s**3))
    hu = np.empty(ct.shape, np.float32)
    lab = np.empty(ct.shape, np.uint8)
    les: np.ndarray | None = None
    for k0 in range(0, nz, per):
        k1 = min(nz, k0 + per)
        r = anatomy.rasterize_grid(_fine_grid(ct, s, k0, k1))
        hu[k0:k1] = _block_mean(r.hu, s) if s > 1 else r.hu
        lab[k0:k1] = _block_mode(r.labels, s) if s > 1 else r.labels
        if r.lesion is not None:
            if les is None:
                les = np.zeros(ct.shape, np.uint8)
            les[k0:k1] = (_block_mean(r.lesion.astype(np.float32), s) >= 0.5) if s > 1 else r.lesion
        del r
    return hu, lab, les


def scan(anatomy: Anatomy, spacing_mm: float, params: ScanParams,
         bounds_lps: tuple[np.ndarray, np.ndarray] | None = None
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, Grid]:
    """Simulate a CT of ``anatomy``: returns (HU float32 [z,y,x], labels uint8, lesion mask or None, grid)."""
    grid = ct_grid(anatomy, spacing_mm, bounds_lps)
    hu, lab, les = partial_volume(anatomy, grid, params.supersample)
    apply_scanner(hu, grid, params)
    return hu, lab, les, grid


def apply_scanner(hu: np.ndarray, grid: Grid, params: ScanParams, noise_grid: Grid | None = None) -> None:
    """Blur, HU calibration, cupping, noise, field of view and quantization, in place on ``hu``
    (on ``grid``). When ``hu`` is a sub-box of a larger CT grid ``noise_grid``, the noise is the
    larger grid's, so a region re-scanned this way matches a full scan away from its border."""
    sp = np.asarray(grid.spacing)
    fwhm = np.array([params.fwhm_xy_mm, params.fwhm_xy_mm, params.fwhm_z_mm])
    sigma_vox = fwhm / 2.3548 / sp  # x, y, z
    ndimage.gaussian_filter(hu, sigma=(sigma_vox[2], sigma_vox[1], sigma_vox[0]), output=hu, mode="nearest",
                            truncate=3.0)
    x = grid.axis(0) - params.fov_center_xy[0]
    y = grid.axis(1) - params.fov_center_xy[1]
    r2 = (x[None, :] ** 2 + y[:, None] ** 2) / (params.fov_mm / 2) ** 2  # [y, x]
    inside = r2 <= 1.0
    tissue = hu > -500
    hu *= np.float32(params.gain)
    hu += np.float32(params.offset_hu)
    hu -= (np.float32(params.cupping_hu) * np.clip(1 - r2, 0, 1).astype(np.float32))[None] * tissue
    full = noise_grid or grid
    noise = scanner_noise(full, params)
    if noise_grid is not None:
        off = np.rint((np.asarray(grid.origin) - np.asarray(full.origin)) / sp).astype(int)
        noise = noise[off[2]:off[2] + hu.shape[0], off[1]:off[1] + hu.shape[1], off[0]:off[0] + hu.shape[2]]
    hu += noise
    del noise
    hu[:, ~inside] = HU_OUTSIDE
    np.rint(hu, out=hu)
    np.clip(hu, HU_MIN, HU_MAX, out=hu)


def scanner_noise(grid: Grid, params: ScanParams) -> np.ndarray:
    """Correlated Gaussian CT noise on ``grid`` (HU), seeded by the scan and the grid shape."""
    rng = seeded_rng(*params.seed_keys, "ct-noise", *grid.shape)
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    ndimage.gaussian_filter(noise, sigma=0.6, output=noise, mode="wrap")
    sd = float(noise.std())
    voxel_mm = float(np.prod(grid.spacing)) ** (1 / 3)
    noise *= np.float32(params.noise_sd_1mm * voxel_mm ** -1.5 / max(sd, 1e-6))
    return noise


def rescan_region(anatomy: Anatomy, grid: Grid, params: ScanParams, base_hu: np.ndarray, lo: np.ndarray,
                  hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice, slice]]:
    """Re-scan the box [lo, hi] (mm) of a CT on ``grid`` after the anatomy changed there (a tool
    was inserted): returns (new HU volume, labels of the re-scanned box, the box's slices).

    The box is grown by the blur support; only its interior is replaced, so the result equals a
    full scan of the changed anatomy (same partial volume, blur, calibration and noise)."""
    sp = np.asarray(grid.spacing)
    fwhm = np.array([params.fwhm_xy_mm, params.fwhm_xy_mm, params.fwhm_z_mm])
    margin = int(np.ceil(3.0 * float(np.max(fwhm / 2.3548 / sp)))) + 2
    sl = grid.index_range(np.asarray(lo) - margin * sp, np.asarray(hi) + margin * sp)
    if sl is None:
        return base_hu.copy(), np.zeros((0, 0, 0), np.uint8), (slice(0, 0),) * 3
    sub = grid.region(sl)
    hu, lab, _ = partial_volume(anatomy, sub, params.supersample)
    apply_scanner(hu, sub, params, noise_grid=grid)
    inner, local = [], []
    for ax in range(3):
        a0, a1 = sl[ax].start, sl[ax].stop
        b0 = a0 + (margin if a0 > 0 else 0)
        b1 = a1 - (margin if a1 < grid.shape[ax] else 0)
        inner.append(slice(b0, max(b0, b1)))
        local.append(slice(b0 - a0, max(b0, b1) - a0))
    out = base_hu.copy()
    out[tuple(inner)] = hu[tuple(local)]
    return out, lab, sl
