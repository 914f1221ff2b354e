"""What a real C-arm adds to an X-ray image and no training simulator models.

Each effect is a small, separately testable function or dataclass acting on 2D detector images
indexed (row, col); lengths at the detector plane are in mm, frequencies in cycles/mm, signals in
detector units (ADC counts after :func:`quantize`). The emulated scanners
(:mod:`synthex_lib.simulate.scanner`) chain them in the order of the physical signal path:

1. heel effect (:func:`heel_spectra`): the X-ray spectrum and its intensity vary along the
   anode-cathode axis because photons leaving towards the anode side cross more tungsten;
   computed with ``spekpy`` (its ``x`` displacement along the anode-cathode axis);
2. collimator (:class:`Collimator`): lead blades and an iris shape the field; outside it only the
   leakage fraction passes; the edges are blurred by the focal-spot penumbra;
3. anti-scatter grid (:class:`AntiScatterGrid`): passes a fraction ``primary_transmission`` of the
   primary, scattered photons according to their angle to the focused lamellae
   (:meth:`AntiScatterGrid.angular_transmission`, scored by the Monte Carlo of
   :mod:`synthex_lib.simulate.reality.montecarlo`), and its lamellae leave a periodic pattern that
   the pixel grid aliases;
4. vignetting (:func:`vignetting`): radial fall-off of the detector's gain (removed by the gain
   calibration of :mod:`synthex_lib.simulate.reality.flatfield`, up to its residual);
5. quantum noise, then detector blur (:func:`apply_mtf`: the scintillator's light spread and the
   focal spot, as a modulation transfer function), which correlates the noise, then electronic noise;
6. the native detector's fixed pattern (:func:`native_gain_offset`: pixel gain spread, dark offset,
   dead and hot pixels and dead column segments of :func:`defect_map`, all defined on the native
   ``rows x cols`` grid) binned to the output pixels (:func:`binned_gain_offset`), then
   analogue-to-digital conversion with saturation (:func:`quantize`);
7. vendor processing: a tone look-up table (:class:`ToneCurve`) and edge enhancement
   (:func:`unsharp_mask`).

Written with numpy/scipy because these are few-line array operations on 2D images, each with a
documented physical parameter; no maintained library models a C-arm's detector chain.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import spekpy
from scipy import fft as sfft
from scipy import ndimage
from scipy.special import erf

from synthex_lib.core.errors import ConfigError, require_positive
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.geometry import Device

# --- heel effect ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=32)
def _spekpy_spectrum(kvp: float, anode_angle_deg: float, filtration: tuple[tuple[str, float], ...],
                     x_cm: float, z_cm: float) -> tuple[np.ndarray, np.ndarray]:

    s = spekpy.Spek(kvp=float(kvp), th=float(anode_angle_deg), x=float(x_cm), z=float(z_cm))
    for material, mm in filtration:
        s.filter(material, float(mm))
    k, f = s.get_spectrum()
    return np.asarray(k, np.float64), np.asarray(f, np.float64)


def heel_spectra(kvp: float, anode_angle_deg: float, filtration: Sequence[tuple[str, float]],
                 positions_mm: Sequence[float], sdd_mm: float, energy_step_kev: float = 2.0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Spectra at several positions along the anode-cathode axis of the detector (heel effect).

    Args:
        kvp: tube voltage (kV); ``anode_angle_deg``: target angle (degrees; smaller = stronger heel).
        filtration: (material, thickness mm) pairs, ``spekpy`` names (``"Al"``, ``"Cu"``, ...).
        positions_mm: positions on the detector along the anode-cathode axis, mm from the central
            ray, positive towards the cathode (``spekpy``'s ``x``).
        sdd_mm: source-to-detector distance (mm).
        energy_step_kev: width of the returned energy bins (spekpy's 0.5 keV bins are summed).

    Returns:
        energies_kev [E] (bin centres) and fluence [len(positions), E] in photons / mm^2 / mAs
        at the detector per bin.
    """
    require_positive("kvp", float(kvp))
    require_positive("sdd_mm", float(sdd_mm))
    filt = tuple((str(m), float(t)) for m, t in filtration)
    rows = []
    k = None
    for p in positions_mm:
        k, f = _spekpy_spectrum(float(kvp), float(anode_angle_deg), filt, round(float(p) / 10.0, 3),
                                float(sdd_mm) / 10.0)
        rows.append(f / 100.0)  # photons / cm^2 / mAs -> / mm^2
    assert k is not None
    dk = float(k[1] - k[0])
    group = max(1, int(round(energy_step_kev / dk)))
    n = (len(k) // group) * group
    k_b = k[:n].reshape(-1, group).mean(axis=1)
    f_b = np.stack(rows)[:, :n].reshape(len(rows), -1, group).sum(axis=2)
    keep = f_b.sum(axis=0) > 0
    return k_b[keep], f_b[:, keep]


# --- collimator ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Collimator:
    """Lead collimator: four blades (rectangular field) and an optional circular iris.

    Attributes:
        margins: fraction of the detector width/height covered by each blade (left, right, top,
            bottom) at the nominal setting.
        jitter: standard deviation of the per-image blade positions (fraction of the size).
        rotation_deg: standard deviation of the per-image rotation of the blade pair (degrees).
        iris_radius: radius of the circular iris as a fraction of the half-diagonal (None: no iris).
        penumbra_mm: standard deviation of the edge blur at the detector (focal-spot penumbra), mm.
        leakage: transmission of the blades (lead, about 1-3 %).
    """

    margins: tuple[float, float, float, float] = (0.04, 0.04, 0.04, 0.04)
    jitter: float = 0.01
    rotation_deg: float = 1.5
    iris_radius: float | None = None
    penumbra_mm: float = 1.5
    leakage: float = 0.02

    def transmission(self, size: tuple[int, int], pixel_mm: float, rng: np.random.Generator | None = None
                     ) -> np.ndarray:
        """float64 [H, W] transmission in [leakage, 1]: 1 inside the field, ``leakage`` under the blades.

        With ``rng`` the blades are jittered and rotated per image; without, the nominal field.
        """
        w, h = size
        require_positive("pixel_mm", float(pixel_mm))
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
        xc, yc = (w - 1) / 2, (h - 1) / 2
        ml, mr, mt, mb = self.margins
        ang = 0.0
        if rng is not None:
            ml, mr, mt, mb = (max(0.0, m + rng.normal(0, self.jitter)) for m in (ml, mr, mt, mb))
            ang = np.deg2rad(rng.normal(0, self.rotation_deg))
        # blade frame: rotate pixel coordinates about the centre (mm)
        x = ((cols - xc) * np.cos(ang) + (rows - yc) * np.sin(ang)) * pixel_mm
        y = (-(cols - xc) * np.sin(ang) + (rows - yc) * np.cos(ang)) * pixel_mm
        half_w, half_h = w * pixel_mm / 2, h * pixel_mm / 2
        # signed distances inside the field (mm) to each blade edge
        d = [x - (-half_w + 2 * half_w * ml), (half_w - 2 * half_w * mr) - x,
             y - (-half_h + 2 * half_h * mt), (half_h - 2 * half_h * mb) - y]
        if self.iris_radius is not None:
            r_iris = self.iris_radius * np.hypot(half_w, half_h)
            d.append(r_iris - np.hypot((cols - xc) * pixel_mm, (rows - yc) * pixel_mm))
        open_frac = np.ones((h, w))
        s = max(self.penumbra_mm, 1e-6) * np.sqrt(2.0)
        for di in d:
            open_frac *= 0.5 * (1.0 + erf(di / s))
        return self.leakage + (1.0 - self.leakage) * open_frac


# --- anti-scatter grid -----------------------------------------------------------------------------

def aliased_frequency(f: float, pixel_mm: float) -> float:
    """The frequency (cycles/mm) at which a pattern of frequency ``f`` appears when sampled every ``pixel_mm``."""
    fs = 1.0 / pixel_mm
    return float(abs(f - fs * np.round(f / fs)))


@dataclass(frozen=True)
class AntiScatterGrid:
    """A focused linear lead grid (lamellae parallel to the image columns).

    Attributes:
        ratio: grid ratio (lamella height / gap): sets the angular acceptance (:meth:`angular_transmission`).
        lines_per_cm: lamella frequency (typical 60-80 lines/cm).
        primary_transmission: fraction of primary photons passed (Tp, typical 0.65-0.75).
        scatter_transmission: nominal fraction of scattered photons passed (Ts, typical 0.1-0.2; the
            datasheet value for a broad scatter field; the emulated scanners score the actual
            transmission of every scattered photon by its angle instead).
        line_amplitude: relative modulation of the primary by the lamella shadows at the detector
            (fundamental of the periodic pattern, before pixel integration).
    """

    ratio: float = 10.0
    lines_per_cm: float = 70.0
    primary_transmission: float = 0.72
    scatter_transmission: float = 0.14
    line_amplitude: float = 0.12

    @property
    def frequency(self) -> float:
        """Lamella frequency, cycles/mm."""
        return self.lines_per_cm / 10.0

    def line_pattern(self, cols: int, pixel_mm: float, phase: float = 0.0) -> np.ndarray:
        """float64 [cols] relative primary transmission per pixel column (mean 1).

        The pattern ``1 + a cos(2 pi f x + phase)`` integrated over each pixel's width gives
        ``1 + a sinc(f p) cos(2 pi f x_c + phase)``; sampled at the pixel centres x_c it appears at
        the aliased frequency :func:`aliased_frequency`.
        """
        x = np.arange(cols) * pixel_mm
        a = self.line_amplitude * np.sinc(self.frequency * pixel_mm)
        return 1.0 + a * np.cos(2 * np.pi * self.frequency * x + phase)

    @property
    def lead_path_mm(self) -> float:
        """Lead (mm) crossed by a photon that meets the lamellae: ``h (1 - Tp)`` with the lamella height
        ``h = ratio x D`` and the interspace ``D = Tp / frequency`` (the open fraction taken as ``Tp``); the
        path grows as 1 / cos(delta): more lamellae are crossed, each at a grazing angle."""
        tp = self.primary_transmission
        return self.ratio * tp / self.frequency * (1.0 - tp)

    def angular_transmission(self, tan_delta: np.ndarray | float, mu_lead_per_mm: float = np.inf) -> np.ndarray:
        """Transmission of a photon at angle delta to the focused lamellae, across them (``tan_delta``).

        A channel of height r x its width passes ``f = max(0, 1 - r |tan delta|)`` of the photons entering it;
        the others cross :attr:`lead_path_mm` / cos(delta) of lead (linear attenuation ``mu_lead_per_mm``;
        infinite: opaque). Times ``primary_transmission`` (open fraction and interspace), so that
        ``tan_delta = 0`` (a primary photon) gives ``primary_transmission``. Photons tilted along the
        lamellae are not rejected (a linear grid).
        """
        t = np.abs(np.asarray(tan_delta, np.float64))
        f = np.clip(1.0 - self.ratio * t, 0.0, None)
        pen = np.exp(-mu_lead_per_mm * self.lead_path_mm * np.sqrt(1.0 + t**2)) if np.isfinite(mu_lead_per_mm) else 0.0
        return self.primary_transmission * (f + (1.0 - f) * pen)

    def apply(self, primary: np.ndarray, scatter: np.ndarray, pixel_mm: float, phase: float = 0.0) -> np.ndarray:
        """Detected signal behind the grid: ``Tp * pattern * primary + Ts * scatter`` (same units)."""
        pattern = self.line_pattern(primary.shape[-1], pixel_mm, phase)
        return self.primary_transmission * primary * pattern + self.scatter_transmission * scatter


# --- vignetting ------------------------------------------------------------------------------------

def vignetting(size: tuple[int, int], strength: float, center: tuple[float, float] | None = None) -> np.ndarray:
    """float64 [H, W] radial gain ``1 - strength * (r / r_corner)^2`` (1 at ``center``, 1 - strength at the corners).

    ``center`` is (col, row), default the image centre; ``r_corner`` is the centre-to-corner distance.
    """
    w, h = size
    if not 0.0 <= strength < 1.0:
        raise ConfigError(f"parameter 'strength' must be in [0, 1), got {strength}")
    cx, cy = center if center is not None else ((w - 1) / 2, (h - 1) / 2)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    r2 = (cols - cx) ** 2 + (rows - cy) ** 2
    r2_corner = ((w - 1) / 2) ** 2 + ((h - 1) / 2) ** 2
    return 1.0 - strength * r2 / max(r2_corner, 1e-12)


# --- detector blur (MTF) ---------------------------------------------------------------------------

def detector_mtf(mtf50_cyc_per_mm: float, focal_sigma_mm: float = 0.0) -> Callable[[np.ndarray], np.ndarray]:
    """MTF of an indirect (CsI) flat panel and the focal spot: ``1 / (1 + (f / f50)^2) * exp(-2 pi^2 s^2 f^2)``.

    The Lorentzian factor is the transfer function of the scintillator's exponential light spread
    (it equals 0.5 at ``mtf50_cyc_per_mm``); the Gaussian is the focal-spot penumbra of standard
    deviation ``focal_sigma_mm`` at the detector.
    """
    require_positive("mtf50_cyc_per_mm", float(mtf50_cyc_per_mm))

    def mtf(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        return 1.0 / (1.0 + (f / mtf50_cyc_per_mm) ** 2) * np.exp(-2 * np.pi**2 * focal_sigma_mm**2 * f**2)

    return mtf


def apply_mtf(image: np.ndarray, pixel_mm: float, mtf: Callable[[np.ndarray], np.ndarray], pad: int = 16
              ) -> np.ndarray:
    """Blur ``image`` [..., H, W] by a radially symmetric MTF (cycles/mm) in the Fourier domain.

    The image is padded by reflection (``pad`` pixels) so that the circular convolution of the FFT
    does not wrap edges around; a sinusoid of frequency f keeps its phase and is scaled by mtf(f).
    """
    require_positive("pixel_mm", float(pixel_mm))
    img = np.asarray(image, np.float64)
    h, w = img.shape[-2:]
    p = int(min(pad, h - 1, w - 1)) if pad > 0 else 0
    padw = [(0, 0)] * (img.ndim - 2) + [(p, p), (p, p)]
    x = np.pad(img, padw, mode="reflect") if p else img
    fy = sfft.fftfreq(x.shape[-2], d=pixel_mm)
    fx = sfft.rfftfreq(x.shape[-1], d=pixel_mm)
    f = np.hypot(fy[:, None], fx[None, :])
    out = sfft.irfft2(sfft.rfft2(x) * mtf(f), s=x.shape[-2:])
    return out[..., p:p + h, p:p + w] if p else out


# --- quantization and defects ----------------------------------------------------------------------

def quantize(signal: np.ndarray, full_scale: float, bits: int = 12) -> np.ndarray:
    """Analogue-to-digital conversion: ``round(signal / full_scale * (2^bits - 1))`` clipped to [0, 2^bits - 1].

    Returns integer ADC counts (uint16 for bits <= 16); values beyond ``full_scale`` saturate.
    """
    require_positive("full_scale", float(full_scale))
    require_positive("bits", bits, integer=True)
    top = 2**int(bits) - 1
    q = np.rint(np.asarray(signal, np.float64) / full_scale * top)
    return np.clip(q, 0, top).astype(np.uint16 if bits <= 16 else np.uint32)


DEFECT_OK, DEFECT_DEAD, DEFECT_HOT = 0, 1, 2


@dataclass(frozen=True)
class DefectSpec:
    """Defective elements and fixed-pattern gain/offset of the *native* detector grid (fixed for a detector).

    Attributes:
        dead_fraction: fraction of native pixels with no response (they read their offset).
        hot_fraction: fraction of native pixels stuck at full scale.
        dead_columns: number of dead native column segments (a failed read-out line from an image
            edge, 30-70 % of the height).
        gain_sigma: relative standard deviation of the native pixels' gain (photodiode and TFT
            spread, a few percent before calibration: an assumption for a-Si panels).
        offset_fraction, offset_sigma: mean and spread of the native dark offset, fractions of full scale
            (assumptions).
    """

    dead_fraction: float = 3e-4
    hot_fraction: float = 1e-4
    dead_columns: int = 1
    gain_sigma: float = 0.02
    offset_fraction: float = 0.02
    offset_sigma: float = 0.002


def defect_map(device: Device, spec: DefectSpec, detector_key: str) -> np.ndarray:
    """uint8 [device.rows, device.cols] map of native defects (0 ok, 1 dead, 2 hot), fixed for a detector.

    Seeded by ``detector_key`` (the scanner's name) and the native size only, never by an image or by
    the binning: a binned image sees the same physical defects at every output size.
    """
    h, w = int(device.rows), int(device.cols)
    rng = seeded_rng("defects", detector_key, w, h)
    out = np.zeros((h, w), np.uint8)
    n = h * w
    n_dead = int(round(spec.dead_fraction * n))
    n_hot = int(round(spec.hot_fraction * n))
    idx = rng.choice(n, size=n_dead + n_hot, replace=False)
    out.flat[idx[:n_dead]] = DEFECT_DEAD
    out.flat[idx[n_dead:]] = DEFECT_HOT
    if spec.dead_columns > 0 and w > 4:
        cols = rng.choice(np.arange(2, w - 2), size=min(spec.dead_columns, w - 4), replace=False)
        for c in cols:
            length = int(round(rng.uniform(0.3, 0.7) * h))
            if rng.uniform() < 0.5:
                out[:length, c] = DEFECT_DEAD
            else:
                out[h - length:, c] = DEFECT_DEAD
    return out


def apply_defects(counts: np.ndarray, dmap: np.ndarray, full_scale_counts: int) -> np.ndarray:
    """Set dead pixels to 0 and hot pixels to ``full_scale_counts`` (``counts`` [..., H, W], same grid as ``dmap``)."""
    out = np.array(counts, copy=True)
    out[..., dmap == DEFECT_DEAD] = 0
    out[..., dmap == DEFECT_HOT] = full_scale_counts
    return out


def binning_weights(n_native: int, n_out: int, out_over_native: float) -> np.ndarray:
    """float64 [n_out, n_native]: the fraction of output pixel j covered by native pixel i (rows sum to 1).

    The output pixels (``out_over_native`` native pixels wide, any real number >= 1) tile the central
    ``n_out * out_over_native`` native pixels; a binned pixel is the area-weighted mean of the native pixels
    it covers (exact for integer binning; fractional overlaps at the edges otherwise).
    """
    require_positive("out_over_native", float(out_over_native))
    span = n_out * float(out_over_native)
    if span > n_native + 1e-6:
        raise ConfigError(f"binning: {n_out} output pixels of {out_over_native:.3f} native pixels exceed the "
                          f"{n_native}-pixel detector; use a smaller field or fewer pixels")
    start = 0.5 * (n_native - span)
    edges = start + np.arange(n_out + 1) * float(out_over_native)
    lo = np.maximum(edges[:-1, None], np.arange(n_native)[None, :])
    hi = np.minimum(edges[1:, None], np.arange(n_native)[None, :] + 1.0)
    return np.clip(hi - lo, 0.0, None) / float(out_over_native)


@functools.lru_cache(maxsize=16)
def native_gain_offset(device: Device, spec: DefectSpec, detector_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Native gain and dark offset maps, float64 [rows, cols], fixed for a detector.

    gain: ``1 + gain_sigma N(0, 1)``, 0 at dead and hot pixels (no response to X-rays); offset (fraction of
    full scale): ``offset_fraction + offset_sigma N(0, 1)``, 1 (full scale) at hot pixels.
    """
    dmap = defect_map(device, spec, detector_key)
    rng = seeded_rng("gain-offset", detector_key, int(device.cols), int(device.rows))
    gain = 1.0 + spec.gain_sigma * rng.standard_normal(dmap.shape)
    offset = spec.offset_fraction + spec.offset_sigma * rng.standard_normal(dmap.shape)
    gain[dmap != DEFECT_OK] = 0.0
    offset[dmap == DEFECT_HOT] = 1.0
    return gain, offset


@functools.lru_cache(maxsize=32)
def binned_gain_offset(device: Device, spec: DefectSpec, detector_key: str, size: tuple[int, int],
                       pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Gain and offset [H, W] of output pixels of ``pixel_mm`` binned from the native grid (``size`` = (W, H)).

    A binned pixel is the mean of its native pixels (:func:`binning_weights`): a dead native column
    lowers its binned column's gain by 1 / binning, a hot native pixel raises its binned pixel's offset
    by 1 / binning^2 of full scale.
    """
    w, h = (int(s) for s in size)
    ratio = float(pixel_mm) / float(device.pixel_mm)
    gain, offset = native_gain_offset(device, spec, detector_key)
    br = binning_weights(int(device.rows), h, ratio)
    bc = binning_weights(int(device.cols), w, ratio)
    return br @ gain @ bc.T, br @ offset @ bc.T


# --- vendor processing -----------------------------------------------------------------------------

def auto_window(log_image: np.ndarray, field: np.ndarray | None = None, low_pct: float = 1.0,
                high_pct: float = 99.0) -> tuple[float, float]:
    """The vendor's automatic window: percentiles of the log image inside the exposed ``field`` (bool mask)."""
    vals = np.asarray(log_image)[field] if field is not None and np.any(field) else np.asarray(log_image).ravel()
    lo, hi = np.percentile(vals, [low_pct, high_pct])
    return float(lo), float(max(hi, lo + 1e-6))


@dataclass(frozen=True)
class ToneCurve:
    """Vendor look-up table: a sigmoid over the automatic window, in log units.

    The log image ``L`` is normalised to ``z = (L - lo) / (hi - lo)`` over the window (lo, hi) of
    :func:`auto_window` and mapped by ``y = (s(z) - s(0)) / (s(1) - s(0))`` with
    ``s(z) = 1 / (1 + exp(-(z - center) / width))``, then ``y ** gamma``; the output is
    ``lo + (hi - lo) * y``, so it stays in log (line-integral) units, monotone in ``L``, with the
    contrast raised around ``center`` and compressed towards the window's ends. Values outside
    the window are clipped to its ends (collimated areas become flat white).
    """

    center: float = 0.5
    width: float = 0.2
    gamma: float = 1.0

    def __call__(self, log_image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
        require_positive("width", float(self.width))
        lo, hi = window
        z = np.clip((np.asarray(log_image, np.float64) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)

        def sig(v: np.ndarray | float) -> np.ndarray:
            return 1.0 / (1.0 + np.exp(-(np.asarray(v) - self.center) / self.width))

        y = (sig(z) - sig(0.0)) / (sig(1.0) - sig(0.0))
        return lo + (hi - lo) * np.clip(y, 0.0, 1.0) ** self.gamma


def unsharp_mask(image: np.ndarray, sigma_px: float, amount: float) -> np.ndarray:
    """Edge enhancement ``image + amount * (image - gaussian(image, sigma_px))`` over the last two axes.

    Its transfer function is ``1 + amount * (1 - exp(-2 pi^2 sigma^2 f^2))``: 1 at zero frequency
    (flat regions and means are kept), ``1 + amount`` at high frequencies (edges overshoot).
    """
    require_positive("sigma_px", float(sigma_px))
    img = np.asarray(image, np.float64)
    sig = [0.0] * (img.ndim - 2) + [float(sigma_px)] * 2
    return img + amount * (img - ndimage.gaussian_filter(img, sig, mode="reflect"))
