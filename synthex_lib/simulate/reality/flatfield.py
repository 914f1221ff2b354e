"""Offset / gain (flat-field) calibration and defect correction of a flat-panel detector.

Real flat panels are calibrated without an object: an offset (dark) image, the mean of
``dark_frames`` frames without X-rays, and a gain (flood) image, the mean of ``flood_frames``
uniform exposures (tube on, grid in, collimator open). Every raw frame is then corrected

    corrected = (raw - dark) / (flood - dark) x mean(flood - dark)

which divides out everything that multiplies the signal and is the same in the flood: the heel
effect's *intensity* gradient, the pixel gain spread, vignetting and a dead native column inside a
binned pixel. Defective pixels are found in the calibration images (gain far from its local median,
offset far from the local offset) and replaced by the mean of their good neighbours.

What is left (documented residuals, the numbers are assumptions of this emulation):

* the flood's own quantum and electronic noise: ``flood_frames`` = 16 frames at half of full scale
  (about 0.1 % rms per binned pixel at the lab's exposures: negligible against the image's noise);
* gain drift between calibration and acquisition: a smooth (planar) field of ``gain_drift`` = 0.3 % rms,
  drawn per image; a-Si panels' gain changes by a few tenths of a percent with temperature over a
  calibration interval (an assumption of the order vendors recalibrate for);
* the heel effect changes the *spectrum* across the field, not only the intensity: the anode side's
  harder beam is attenuated less by an object, so after a gain correction (which is exact only for
  the flood's spectrum, i.e. without an object) a thick object keeps a small gradient along the
  anode-cathode axis. This residual is physical and stays;
* interpolated pixels carry their neighbours' values (a defect column at a sharp edge is blurred),
  and binned pixels whose gain is only partly lost (a dead native column in an 11-pixel bin) are not
  flagged: the gain correction restores their mean, their noise stays higher.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from synthex_lib.core.errors import ConfigError, require_positive


@dataclass(frozen=True)
class FlatFieldSpec:
    """Calibration protocol and its residuals (see the module docstring for the chosen numbers).

    Attributes:
        dark_frames, flood_frames: frames averaged into the offset and gain images.
        flood_level: mean flood signal, fraction of full scale.
        gain_drift: rms relative gain change (smooth, planar) between calibration and acquisition.
        gain_tolerance: a pixel whose flood gain differs from its 5 x 5 median by more than this fraction
            is defective.
        offset_tolerance: a pixel whose dark offset exceeds its 5 x 5 median by more than this fraction of
            full scale is defective (a hot native pixel in a bin of n adds 1 / n).
    """

    dark_frames: int = 16
    flood_frames: int = 16
    flood_level: float = 0.5
    gain_drift: float = 0.003
    gain_tolerance: float = 0.15
    offset_tolerance: float = 0.01

    def __post_init__(self) -> None:
        require_positive("dark_frames", self.dark_frames, integer=True)
        require_positive("flood_frames", self.flood_frames, integer=True)
        if not 0.0 < self.flood_level < 1.0:
            raise ConfigError(f"parameter 'flood_level' must be within (0, 1), got {self.flood_level!r}")


@dataclass
class Calibration:
    """Calibration images of one detector mode (output size and pixel), ADC counts, float64 [H, W].

    ``defects``: bool [H, W] pixels found defective; ``flood_mean``: ``mean(flood - dark)`` over good pixels.
    """

    dark: np.ndarray
    flood: np.ndarray
    defects: np.ndarray
    flood_mean: float


def acquire_calibration(gain: np.ndarray, offset: np.ndarray, flood_shape: np.ndarray, flood_quanta: np.ndarray,
                        bits: int, electronic_noise_lsb: float, spec: FlatFieldSpec, rng: np.random.Generator
                        ) -> Calibration:
    """Dark and flood images of a detector and the defects found in them.

    Args:
        gain: [H, W] pixel gain (binned native gain x vignetting); offset: [H, W] dark offset (fraction of
            full scale).
        flood_shape: [H, W] expected flood signal without an object (any units; scaled so that its mean
            is ``flood_level`` of full scale).
        flood_quanta: [H, W] detected photons per pixel in one flood frame (its quantum noise).
        bits: ADC depth; electronic_noise_lsb: read-out noise per frame (ADC steps).
        spec: the protocol; rng: the calibration's generator (fixed per detector mode).
    """
    top = 2**int(bits) - 1
    shape = np.asarray(flood_shape, np.float64)
    if shape.shape != np.shape(gain) or not np.all(np.isfinite(shape)) or shape.mean() <= 0:
        raise ConfigError("parameter 'flood_shape' must be a finite positive [H, W] map matching the gain")
    sig = spec.flood_level * shape / shape.mean()
    nq = np.maximum(np.asarray(flood_quanta, np.float64), 1.0) * spec.flood_frames
    sig_mean = sig * rng.poisson(nq) / nq  # the averaged frames' quantum noise
    e_dark = rng.standard_normal(shape.shape) * electronic_noise_lsb / np.sqrt(spec.dark_frames)
    e_flood = rng.standard_normal(shape.shape) * electronic_noise_lsb / np.sqrt(spec.flood_frames)
    dark = np.clip(offset * top + e_dark, 0, top)
    flood = np.clip((gain * sig_mean + offset) * top + e_flood, 0, top)
    defects = find_defects(dark, flood, spec, top)
    diff = flood - dark
    good = ~defects
    flood_mean = float(diff[good].mean()) if good.any() else float(diff.mean())
    return Calibration(dark, flood, defects, flood_mean)


def find_defects(dark: np.ndarray, flood: np.ndarray, spec: FlatFieldSpec, top: int) -> np.ndarray:
    """bool [H, W]: pixels whose gain ``flood - dark`` deviates from its 5 x 5 median by more than
    ``gain_tolerance`` (dead, weak, saturated) or whose offset exceeds the local offset by ``offset_tolerance``
    of full scale (hot)."""
    g = np.asarray(flood, np.float64) - np.asarray(dark, np.float64)
    g_med = ndimage.median_filter(g, size=5, mode="reflect")
    bad_gain = np.abs(g - g_med) > spec.gain_tolerance * np.maximum(np.abs(g_med), 1e-9)
    d_med = ndimage.median_filter(np.asarray(dark, np.float64), size=5, mode="reflect")
    bad_off = (np.asarray(dark) - d_med) > spec.offset_tolerance * top
    saturated = np.asarray(flood) >= top
    return bad_gain | bad_off | saturated


def correct(raw: np.ndarray, cal: Calibration) -> np.ndarray:
    """Offset and gain correction ``(raw - dark) / (flood - dark) x mean(flood - dark)`` (float64 [H, W]).

    Pixels with no gain (``flood <= dark``) are left at 0 for :func:`interpolate_defects` to fill.
    """
    g = cal.flood - cal.dark
    ok = g > 1e-9
    out = np.zeros(np.shape(raw), np.float64)
    out[..., ok] = (np.asarray(raw, np.float64)[..., ok] - cal.dark[ok]) / g[ok] * cal.flood_mean
    return out


def interpolate_defects(image: np.ndarray, defects: np.ndarray, max_radius: int = 4) -> np.ndarray:
    """Replace ``defects`` (bool [H, W]) by the mean of the good pixels in the smallest square neighbourhood
    (3 x 3, then 5 x 5 ... up to ``2 max_radius + 1``) that holds any; float64 [..., H, W]."""
    out = np.array(image, np.float64, copy=True)
    bad = np.asarray(defects, bool)
    if not bad.any():
        return out
    good = (~bad).astype(np.float64)
    todo = bad.copy()
    for r in range(1, max_radius + 1):
        k = 2 * r + 1
        num = ndimage.uniform_filter(out * good, size=(1,) * (out.ndim - 2) + (k, k), mode="reflect")
        den = ndimage.uniform_filter(good, size=k, mode="reflect")
        fill = todo & (den > 1e-12)
        out[..., fill] = num[..., fill] / den[fill]
        todo &= ~fill
        if not todo.any():
            break
    return out


def gain_drift_field(size: tuple[int, int], rms: float, rng: np.random.Generator) -> np.ndarray:
    """A smooth relative gain change [H, W]: ``1 + rms (c0 + c1 x + c2 y) / sqrt(5/3)``, x, y in [-1, 1],
    ``c ~ N(0, 1)`` (its expected rms over the field is ``rms``)."""
    w, h = size
    c = rng.standard_normal(3)
    y, x = np.meshgrid(np.linspace(-1, 1, h), np.linspace(-1, 1, w), indexing="ij")
    return 1.0 + rms * (c[0] + c[1] * x + c[2] * y) / np.sqrt(5.0 / 3.0)
