"""The gap between each simulated domain and the (emulated) real images, measured.

Per domain, against the real images at the same poses (a controlled dataset's domain files):

- **pixel correlation**: Pearson's r of the two images over the image (invariant to the affine grey-level
  scales the domains live on), mean over the images;
- **SSIM** (Wang et al., IEEE TIP 2004; ``kornia.metrics.ssim``, Gaussian window sigma 1.5) after each image
  is windowed to [0, 1] between its 1st and 99th percentiles, as a viewer would show it;
- **noise sigma**: Immerkaer's fast noise estimate (Comput. Vis. Image Underst. 1996, 64:300-302) of the
  stored image, in units of its own 1-99 % window (so domains on different scales compare);
- **bone / soft-tissue CNR**: (median of the bone pixels - median of the unlabelled pixels in a ring
  around them) over the noise sigma; bone = the pixels of the hemipelves;

and, on a uniform 200 mm water-equivalent slab (the standard test object of scatter and noise-power
measurements), imaged at an AP pose by each physics-based domain:

- **scatter-to-primary ratio** at the field centre (after the grid for the scanner);
- **noise power spectrum** (NPS) of the slab image, detrended and normalised by the squared mean
  (NNPS), radially averaged: its level over the lower half of the band and the ratio of the lower to the
  upper half (1 for white noise; above 1 when the detector's blur correlates the noise).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kornia
import numpy as np
import pandas as pd
import torch
from scipy import ndimage

from synthex_lib import geometry
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import SpecimenImages
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.scanner import VoxelAnatomy, get_scanner

#: label ids counted as bone in the CNR (the hemipelves: large, flat bone seen in every hip view)
BONE_IDS = (1, 2)
#: Immerkaer's Laplacian-difference mask
_IMMERKAER = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])


def window01(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> np.ndarray:
    """The image linearly mapped so that its ``lo_pct`` and ``hi_pct`` percentiles become 0 and 1, clipped."""
    lo, hi = np.percentile(img, [lo_pct, hi_pct])
    return np.clip((np.asarray(img, np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def pixel_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's r between two images of one shape (NaN when either is constant)."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ConfigError(f"pixel_correlation: images of different sizes {a.shape} and {b.shape}")
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def ssim(a: np.ndarray, b: np.ndarray, window: int = 11) -> float:
    """Mean SSIM of the two images, each windowed by :func:`window01` (data range 1)."""
    ta = torch.from_numpy(window01(a)).float()[None, None]
    tb = torch.from_numpy(window01(b)).float()[None, None]
    return float(kornia.metrics.ssim(ta, tb, window, max_val=1.0).mean())


def noise_sigma(img: np.ndarray) -> float:
    """Immerkaer's estimate of the standard deviation of additive white noise (image units):
    ``sqrt(pi / 2) / (6 (W - 2)(H - 2)) * sum |I * M|`` with ``M`` the Laplacian-difference mask."""
    x = np.asarray(img, np.float64)
    if min(x.shape) < 3:
        raise ConfigError(f"noise_sigma: the image must be at least 3 x 3, got {x.shape}")
    h, w = x.shape
    conv = sum(_IMMERKAER[i, j] * x[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    return float(np.sqrt(np.pi / 2) * np.abs(conv).sum() / (6.0 * (w - 2) * (h - 2)))


def bone_cnr(img: np.ndarray, seg: np.ndarray, bone_ids: tuple[int, ...] = BONE_IDS) -> float:
    """Local contrast-to-noise ratio of bone: (median of the bone pixels - median of the unlabelled pixels in a
    ring around them) / noise sigma. The ring is the bone mask dilated by ``max(2, W / 32)`` pixels minus
    every labelled pixel, so the soft tissue compared is the tissue next to the bone, as a reader sees an
    edge. NaN without enough of both."""
    x = np.asarray(img, np.float64)
    bone = np.isin(seg, bone_ids)
    r = max(2, x.shape[1] // 32)
    ring = ndimage.binary_dilation(bone, iterations=r) & (seg == 0)
    if bone.sum() < 4 or ring.sum() < 4:
        return float("nan")
    sigma = noise_sigma(x)
    diff = float(np.median(x[bone]) - np.median(x[ring]))
    return diff / sigma if sigma > 0 else float("inf") * np.sign(diff)


def gap_to_real(images: Mapping[str, SpecimenImages], real: str = "real") -> pd.DataFrame:
    """Per domain (rows, the real domain included as the reference): mean pixel correlation and SSIM with the
    real image at the same pose, the noise sigma (in units of each image's 1-99 % window) and the bone CNR."""
    if real not in images:
        raise ConfigError(f"gap_to_real: no {real!r} domain among {sorted(images)}")
    ref = images[real]
    rows = []
    for name, im in images.items():
        if im.projs.shape != ref.projs.shape:
            raise ConfigError(f"gap_to_real: domain {name!r} has {im.projs.shape} images, "
                              f"the real ones {ref.projs.shape}")
        r = [pixel_correlation(a, b) for a, b in zip(im.projs, ref.projs, strict=True)]
        s = [ssim(a, b) for a, b in zip(im.projs, ref.projs, strict=True)]
        sig = [noise_sigma(window01(a)) for a in im.projs]
        cnr = [bone_cnr(a, seg) for a, seg in zip(im.projs, ref.segs, strict=True)]
        rows.append({"domain": name, "images": len(im.projs), "pixel correlation with real": np.nanmean(r),
                     "SSIM with real": float(np.mean(s)), "noise sigma (window units)": float(np.mean(sig)),
                     "bone/soft-tissue CNR": float(np.nanmedian(cnr))})
    return pd.DataFrame(rows).set_index("domain")


# --- the water slab ----------------------------------------------------------------------------------

def water_slab(thickness_mm: float = 200.0, width_mm: float = 320.0, spacing_mm: float = 4.0) -> Specimen:
    """A uniform water-equivalent slab (0 HU), ``thickness_mm`` along y (the AP beam), centred at the origin,
    in air; with a :class:`~synthex_lib.simulate.scanner.VoxelAnatomy` so that the scanners can image it."""
    n_w = int(round(width_mm / spacing_mm)) + 1
    n_t = int(round(thickness_mm / spacing_mm)) + 5
    hu = np.full((n_w, n_t, n_w), -1000.0, np.float32)  # [z, y, x]
    hu[:, 2:n_t - 2, :] = 0.0
    origin = (-(n_w - 1) / 2 * spacing_mm, -(n_t - 1) / 2 * spacing_mm, -(n_w - 1) / 2 * spacing_mm)
    spec = Specimen("hip", hu, np.zeros(hu.shape, np.uint8), (spacing_mm,) * 3, origin, {},
                    specimen_id=f"water-slab-{thickness_mm:.0f}mm")
    spec.anatomy = VoxelAnatomy.from_ct(spec)
    return spec


def radial_nps(img: np.ndarray, pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged normalised NPS of a nominally uniform image: detrended by a 2D quadratic fit,
    ``|FFT|^2 * pixel area / N / mean^2`` (mm^2), in frequency bins of 1 / (N pixel) cycles/mm.
    Returns (frequency cycles/mm, NNPS)."""
    x = np.asarray(img, np.float64)
    h, w = x.shape
    yy, xx = np.mgrid[0:h, 0:w]
    A = np.stack([np.ones(x.size), xx.ravel(), yy.ravel(), xx.ravel() ** 2, yy.ravel() ** 2,
                  (xx * yy).ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(A, x.ravel(), rcond=None)
    mean = float(np.mean(x))
    resid = x - (A @ coef).reshape(h, w)
    nps = np.abs(np.fft.fft2(resid)) ** 2 * pixel_mm**2 / (h * w) / max(mean**2, 1e-30)
    fy = np.fft.fftfreq(h, pixel_mm)[:, None]
    fx = np.fft.fftfreq(w, pixel_mm)[None, :]
    fr = np.sqrt(fx**2 + fy**2)
    df = 1.0 / (max(h, w) * pixel_mm)
    bins = np.arange(0.0, 0.5 / pixel_mm + df, df)
    idx = np.digitize(fr.ravel(), bins) - 1
    keep = (idx >= 1) & (idx < len(bins) - 1)  # drop the DC bin and the corners beyond Nyquist
    sums = np.bincount(idx[keep], nps.ravel()[keep], len(bins))
    counts = np.bincount(idx[keep], minlength=len(bins))
    ok = counts > 0
    return (bins[ok] + df / 2), sums[ok] / counts[ok]


def nps_bands(f: np.ndarray, nps: np.ndarray) -> tuple[float, float]:
    """(mean NNPS over the lower half of the band, its ratio to the mean over the upper half): a white NPS
    has a ratio near 1, a correlated (blurred) one above 1."""
    half = max(1, len(nps) // 2)
    low, high = float(np.mean(nps[:half])), float(np.mean(nps[half:])) if len(nps) > half else float("nan")
    return low, low / high if high > 0 else float("nan")


@dataclass(frozen=True)
class SlabFigures:
    """Scatter and noise of one domain imaging the water slab (centre quarter of the field)."""

    domain: str
    spr: float
    nps_f: np.ndarray
    nnps: np.ndarray
    noise_rel: float
    spr_without_grid: float = float("nan")

    @property
    def bands(self) -> tuple[float, float]:
        return nps_bands(self.nps_f, self.nnps)


def _centre(img: np.ndarray, frac: float = 0.5) -> np.ndarray:
    h, w = img.shape
    dh, dw = int(h * (1 - frac) / 2), int(w * (1 - frac) / 2)
    return img[dh:h - dh, dw:w - dw]


def slab_figures(device: str = "cios-fusion", size: int = 128, thickness_mm: float = 200.0, seed: int = 0
                 ) -> dict[str, SlabFigures]:
    """Scatter-to-primary ratio and NPS of the realistic projector and the emulated scanner ``device`` on the
    water slab at an AP pose (SID 600 mm), images ``size`` px. The naive and heuristic domains have no scatter
    (SPR 0 by construction) and are left out of the SPR; the heuristic's Poisson noise is white."""
    slab = water_slab(thickness_mm)
    dev = geometry.get_device(device).binned(size)
    P = geometry.projection_matrix(dev, geometry.carm_pose(np.zeros(3), 600.0))[None]
    pixel_mm = dev.pixel_mm
    out: dict[str, SlabFigures] = {}
    rng = np.random.default_rng(seed)
    # the realistic projector: scatter on vs off, noiseless, in intensity; the noisy image for the NPS
    kw = {"sdd_mm": dev.sdd_mm}
    with_s = get_projector("realistic", noise=False, **kw).render(slab, P, (size, size), quantity="intensity")[0]
    no_s = get_projector("realistic", noise=False, scatter=False, **kw).render(slab, P, (size, size),
                                                                               quantity="intensity")[0]
    noisy = get_projector("realistic", **kw).render(slab, P, (size, size), quantity="intensity", rng=rng)[0]
    c = _centre(np.asarray(noisy, np.float64))
    f, nn = radial_nps(c, pixel_mm)
    spr = float(np.median(_centre(with_s - no_s)) / np.median(_centre(no_s)))
    out["realistic"] = SlabFigures("realistic", spr, f, nn, float(np.std(c - c.mean()) / c.mean()))
    # the emulated scanner: its own stages
    sc = get_scanner(device)
    _, stages = sc.render(slab, P, (size, size), [np.random.default_rng(seed + 1)], foreign=False,
                          return_stages=True)
    st = stages[0]
    spr_sc, spr_nogrid = scanner_spr(st)
    det = _centre(np.asarray(st.corrected if st.corrected is not None else st.detected, np.float64))
    f, nn = radial_nps(det, pixel_mm)
    out["real"] = SlabFigures("real", spr_sc, f, nn, float(np.std(det - det.mean()) / det.mean()), spr_nogrid)
    return out


def scanner_spr(stages: Any, grid: bool = True) -> tuple[float, float]:
    """Scatter-to-primary ratio at the field centre of one emulated acquisition: (behind the grid, without
    it); the second is NaN when the scanner has no grid record."""
    def ratio(s: Any, p: Any) -> float:
        if s is None or p is None:
            return float("nan")
        return float(np.median(_centre(np.asarray(s, np.float64))) / np.median(_centre(np.asarray(p, np.float64))))

    behind = ratio(stages.scatter_grid, stages.primary) if stages.scatter_grid is not None else ratio(
        stages.scatter, stages.primary)
    return behind, ratio(stages.scatter, stages.primary_nogrid)


def slab_table(figures: Mapping[str, SlabFigures]) -> pd.DataFrame:
    """The slab figures as a table (SPR, relative noise, low-frequency NNPS and its low/high band ratio)."""
    rows = [{"domain": k, "scatter-to-primary (field centre)": v.spr, "SPR without the grid": v.spr_without_grid,
             "relative noise (sigma / mean)": v.noise_rel,
             "NNPS low band (mm^2)": v.bands[0], "NPS low/high band ratio": v.bands[1]}
            for k, v in figures.items()]
    return pd.DataFrame(rows).set_index("domain")
