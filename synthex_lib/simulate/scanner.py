"""Emulated C-arm scanners: the "reality" of the virtual cadaver lab.

A training simulator sees only the specimen's *CT* (voxelized, blurred, noisy, HU thresholds for
materials) and the training projectors' physics (:mod:`synthex_lib.simulate.physics`). An emulated
scanner images the specimen's *anatomy* with physics of its own (:mod:`synthex_lib.simulate.reality`;
a test checks that no module of the training physics is in its import closure) and adds what a real
C-arm adds (:mod:`synthex_lib.simulate.hardware`, :mod:`synthex_lib.simulate.foreign`). The signal chain:

1. anatomy -> density channels: the anatomy is rasterized ``supersample`` times finer than the
   scanner's raster (``raster_factor`` x the CT spacing, strictly finer than the CT at every profile),
   each fine voxel turned into the density of its true material and the densities block-averaged
   (partial volume, :mod:`~synthex_lib.simulate.reality.partial_volume`): no staircase aliasing of the
   thin cortical shells;
2. polychromatic Beer-Lambert through the channels (the shared, purely geometric ray marcher
   :func:`~synthex_lib.simulate.raymarch.line_integrals`) with per-element cross sections mixed by
   the ICRU-44 mass fractions (:mod:`~synthex_lib.simulate.reality.attenuation`) and the tube
   spectrum *at each detector row*: the heel effect (``spekpy``'s off-axis spectra);
3. foreign objects that are in no CT and no label (K-wires, screws, cables, ECG electrodes, the
   operating table), their transmission averaged over sub-pixel rays (primary only);
4. collimator blades (and an iris) with focal-spot penumbra and lead leakage;
5. scatter by coarse Monte Carlo photon transport (:mod:`~synthex_lib.simulate.reality.montecarlo`:
   photoelectric, Klein-Nishina Compton and form-factor Rayleigh interactions in a 6 mm copy of the
   density channels), scored with the CsI absorption at each photon's angle, without and behind the
   anti-scatter grid (angle-dependent transmission), then smoothed; the primary passes the grid's
   ``primary_transmission`` times the aliased line pattern of its lamellae;
6. automatic exposure control (the tube output is scaled so that the median detected fluence in
   the central field reaches ``aec_quanta_per_mm2``), Poisson quantum noise at those physical
   counts, detector blur (MTF, which correlates the noise);
7. the detector's fixed pattern, defined on the *native* pixel grid and binned to the output
   (pixel gain spread, dark offset, dead and hot pixels, dead column segments), vignetting, a small
   gain drift since calibration, electronic noise, analogue-to-digital conversion (12 or 14 bits,
   saturation);
8. offset/gain (flat-field) correction with a dark and a flood image acquired without the object,
   defective pixels found in them and interpolated from good neighbours
   (:mod:`~synthex_lib.simulate.reality.flatfield`; residuals documented there: flood noise, 0.3 %
   gain drift, and the heel's *spectral* gradient, which no gain correction removes);
9. vendor processing: log with the calibrated air value, a sigmoid tone curve (look-up table),
   and edge enhancement (unsharp masking).

The result is stored like every image of the project: float32, log domain, bone bright; but the
tone curve makes it a monotone, non-linear function of the line integral, as a vendor's image is.

Two C-arm models, documented in :data:`CIOS_SCANNER` and :data:`LOOPX_SCANNER` (and a chest
radiography unit, :data:`CHEST_SCANNER`, for the COVID-19 task); their numbers are
plausible assumptions for the device classes (the vendors do not publish them), chosen so that
the two scanners differ as two real devices do: spectrum, detector, grid, collimation, ADC depth
and processing.
"""
from __future__ import annotations

import weakref
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from synthex_lib import geometry
from synthex_lib.anatomy.raster import Grid, Raster
from synthex_lib.anatomy.tissues import Material
from synthex_lib.core.errors import ConfigError, DataError, require_positive
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.simulate import foreign as fo
from synthex_lib.simulate import hardware as hw
from synthex_lib.simulate.raymarch import line_integrals
from synthex_lib.simulate.reality import attenuation as attn
from synthex_lib.simulate.reality import flatfield as ff
from synthex_lib.simulate.reality import montecarlo as mc
from synthex_lib.simulate.reality import partial_volume as pv
from synthex_lib.simulate.reality.partial_volume import density_channels

__all__ = ["CHEST_PANEL", "CHEST_SCANNER", "CIOS_SCANNER", "LOOPX_SCANNER", "SCANNERS", "EmulatedScanner",
           "ScanStages", "ScannerModel", "VoxelAnatomy", "density_channels", "get_scanner", "material_mu_rho",
           "prepare"]

#: CsI scintillator: formula and density (g/cm^3); its cross sections come from
#: :data:`synthex_lib.simulate.reality.attenuation.CSI_FRACTIONS`
CSI = ("CsI", 4.51)


@dataclass(frozen=True)
class ScannerModel:
    """Parameters of an emulated C-arm (units in the names; see the module docstring for the chain).

    Attributes:
        name: scanner id (also seeds its fixed defective pixels).
        device: the full-resolution detector geometry (:mod:`synthex_lib.geometry`).
        kvp: tube voltage; filtration: (spekpy material, mm) pairs; anode_angle_deg: target angle.
        heel_axis: ``"row"`` (anode-cathode axis along the image rows, i.e. the heel varies from top to
            bottom) or ``"col"``; anode_first: the anode side is at row/col 0.
        focal_spot_mm: nominal focal spot (FWHM); penumbra at the detector scales with (SDD - SOD) / SOD.
        mtf50_cyc_per_mm: frequency where the scintillator's MTF is 0.5; csi_mm: scintillator thickness.
        grid: anti-scatter grid (None: no grid).
        scatter: simulate scatter (Monte Carlo) at all; mc_photons: photons per image;
            mc_voxel_mm: voxel size of the transport volume; mc_cell_mm: scoring cell at the detector;
            mc_smooth_mm: standard deviation of the Gaussian that smooths the scored scatter (detector mm).
            The defaults (400,000 photons, 50 mm) were chosen on a 200 mm water slab at 128 px, AP, by the
            noise they leave in the flat-field corrected image (central half of the field, 2 seeds): 1.2 %
            relative noise with a low/high-band NPS ratio of 3-4, against 0.83 % and 1.0 (white) without
            scatter; 60,000 photons and 20 mm left 5 % with a ratio of 60 (a low-frequency Monte Carlo mottle
            that no real scatter field has). About 0.5 s per image on one core. Scatter behind a pelvis varies
            over tens of millimetres (scatter kernels are 40-100 mm wide; Sun and Star-Lack, Phys. Med. Biol.
            2010), so 50 mm smooths the Monte Carlo noise, not the scatter's structure.
        collimator: blades and iris; vignetting: residual radial gain loss at the corners.
        defects: the native detector's defective pixels and fixed-pattern gain and offset.
        flat_field: offset/gain calibration and defect correction (None: an uncalibrated detector).
        bits: ADC depth; saturation_ratio: full scale / the AEC's target signal.
        aec_quanta_per_mm2: median detected photon fluence in the central field set by the AEC.
        electronic_noise_lsb: standard deviation of the read-out noise in ADC steps.
        tone: vendor look-up table on the log image; edge_sigma_mm / edge_amount: unsharp masking.
        raster_factor: anatomy voxel size / CT voxel size (< 1: finer than the CT), never below
            ``min_raster_mm`` (memory: about 0.9 GB of channels per hip at 1 mm, 2.1 GB at 0.75 mm);
        supersample: point samples per raster voxel side (partial volume; 1: point classification);
        step_factor: ray step / anatomy voxel size
            (None: Joseph slice stepping, one sample per slice of the anatomy raster).
        foreign_supersample: sub-rays per pixel side for the foreign objects.
    """

    name: str
    device: geometry.Device
    kvp: float
    filtration: tuple[tuple[str, float], ...]
    anode_angle_deg: float
    heel_axis: str
    anode_first: bool
    focal_spot_mm: float
    mtf50_cyc_per_mm: float
    csi_mm: float
    grid: hw.AntiScatterGrid | None
    collimator: hw.Collimator
    vignetting: float
    defects: hw.DefectSpec
    bits: int
    saturation_ratio: float
    aec_quanta_per_mm2: float
    electronic_noise_lsb: float
    tone: hw.ToneCurve
    edge_sigma_mm: float
    edge_amount: float
    raster_factor: float = 0.75
    min_raster_mm: float = 0.5
    supersample: int = 2
    scatter: bool = True
    mc_photons: int = 400_000
    mc_voxel_mm: float = 6.0
    mc_cell_mm: float = 8.0
    mc_smooth_mm: float = 50.0
    flat_field: ff.FlatFieldSpec | None = ff.FlatFieldSpec()
    step_factor: float | None = None
    foreign_supersample: int = 3
    description: str = ""

    def __post_init__(self) -> None:
        if self.heel_axis not in ("row", "col"):
            raise ConfigError(f"scanner {self.name}: heel_axis must be 'row' or 'col', got {self.heel_axis!r}")
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"scanner {self.name}: bits must be within 1-16, got {self.bits}")
        if not 0.0 < self.raster_factor < 1.0:
            raise ConfigError(f"scanner {self.name}: raster_factor must be within (0, 1) (finer than the CT), "
                              f"got {self.raster_factor}")
        require_positive(f"scanner {self.name}: supersample", self.supersample, integer=True)
        require_positive(f"scanner {self.name}: mc_photons", self.mc_photons, integer=True)
        for k in ("mc_voxel_mm", "mc_cell_mm", "min_raster_mm"):
            require_positive(f"scanner {self.name}: {k}", float(getattr(self, k)))


#: Siemens CIOS Fusion-like mobile C-arm (DeepFluoro's device): 85 kVp with 3 mm Al + 0.1 mm Cu, 12 deg
#: anode, 0.6 mm focal spot, 0.6 mm CsI flat panel (MTF50 1.2 cycles/mm), 70 lines/cm grid of ratio 10,
#: an iris that rounds the corners, 12-bit ADC, a steep sigmoid tone curve and strong edge enhancement.
CIOS_SCANNER = ScannerModel(
    name="cios-fusion", device=geometry.CIOS_FUSION, kvp=85.0, filtration=(("Al", 3.0), ("Cu", 0.1)),
    anode_angle_deg=12.0, heel_axis="row", anode_first=True, focal_spot_mm=0.6, mtf50_cyc_per_mm=1.2, csi_mm=0.6,
    grid=hw.AntiScatterGrid(ratio=10.0, lines_per_cm=70.0, primary_transmission=0.72, scatter_transmission=0.14,
                            line_amplitude=0.12),
    collimator=hw.Collimator(margins=(0.03, 0.03, 0.03, 0.03), jitter=0.012, rotation_deg=1.5, iris_radius=0.93,
                             penumbra_mm=1.5, leakage=0.02),
    vignetting=0.10, defects=hw.DefectSpec(dead_fraction=3e-4, hot_fraction=1e-4, dead_columns=1), bits=12,
    saturation_ratio=3.0, aec_quanta_per_mm2=3.0e4, electronic_noise_lsb=1.5,
    tone=hw.ToneCurve(center=0.5, width=0.17, gamma=1.0), edge_sigma_mm=2.5, edge_amount=0.6,
    description="Siemens CIOS Fusion-like mobile C-arm (assumed parameters)",
)

#: Brainlab Loop-X-like imaging ring (cross-scanner test): 100 kVp with 2.5 mm Al + 0.2 mm Cu, 15 deg anode,
#: 0.4 mm focal spot, coarser 0.274 mm pixels (0.5 mm CsI, MTF50 1.0 cycles/mm), a 40 lines/cm grid of ratio 8,
#: rectangular collimation only, 14-bit ADC, a softer tone curve with gamma and mild edge enhancement.
LOOPX_SCANNER = ScannerModel(
    name="loopx", device=geometry.LOOPX, kvp=100.0, filtration=(("Al", 2.5), ("Cu", 0.2)), anode_angle_deg=15.0,
    heel_axis="col", anode_first=False, focal_spot_mm=0.4, mtf50_cyc_per_mm=1.0, csi_mm=0.5,
    grid=hw.AntiScatterGrid(ratio=8.0, lines_per_cm=40.0, primary_transmission=0.75, scatter_transmission=0.2,
                            line_amplitude=0.08),
    collimator=hw.Collimator(margins=(0.05, 0.05, 0.02, 0.02), jitter=0.008, rotation_deg=0.5, iris_radius=None,
                             penumbra_mm=1.0, leakage=0.015),
    vignetting=0.04, defects=hw.DefectSpec(dead_fraction=2e-4, hot_fraction=2e-4, dead_columns=2), bits=14,
    saturation_ratio=4.0, aec_quanta_per_mm2=5.0e4, electronic_noise_lsb=3.0,
    tone=hw.ToneCurve(center=0.45, width=0.3, gamma=0.85), edge_sigma_mm=3.5, edge_amount=0.35,
    description="Brainlab Loop-X-like imaging ring (assumed parameters)",
)

#: Chest radiography detector of the COVID-19 task (assumed: the paper does not state it): a virtual 645 mm
#: square panel at 1020 mm, so that the chest fits at the paper's source-to-isocentre distances (350-650 mm).
CHEST_PANEL = geometry.Device("chest-panel", 1500, 1500, 0.43, 1020.0,
                              "virtual chest radiography panel (assumed; fits the chest at SID 350-650 mm)")

#: The chest task's emulated radiography unit: the CIOS-like chain on the large panel, with a 20 deg anode
#: (so that the panel's 16.5 deg half-field stays inside the anode's coverage), rectangular collimation,
#: a 40 lines/cm grid and softer processing.
CHEST_SCANNER = replace(
    CIOS_SCANNER, name="chest-dr", device=CHEST_PANEL, kvp=110.0, filtration=(("Al", 3.0), ("Cu", 0.1)),
    anode_angle_deg=20.0, focal_spot_mm=1.0,
    grid=hw.AntiScatterGrid(ratio=10.0, lines_per_cm=40.0, primary_transmission=0.7, scatter_transmission=0.12,
                            line_amplitude=0.1),
    collimator=hw.Collimator(margins=(0.03, 0.03, 0.03, 0.03), jitter=0.01, rotation_deg=1.0, iris_radius=None,
                             penumbra_mm=2.0, leakage=0.02),
    vignetting=0.05, tone=hw.ToneCurve(center=0.5, width=0.22, gamma=1.0), edge_sigma_mm=4.0, edge_amount=0.5,
    description="chest radiography unit (assumed parameters)",
)

SCANNERS: dict[str, ScannerModel] = {m.name: m for m in (CIOS_SCANNER, LOOPX_SCANNER, CHEST_SCANNER)}


# --- materials --------------------------------------------------------------------------------------

def material_mu_rho(material_id: int, energies_kev: np.ndarray) -> np.ndarray:
    """Mass attenuation (cm^2/g) of an anatomy material class at ``energies_kev``: the ICRU-44 elemental
    mixture of :mod:`synthex_lib.simulate.reality.attenuation` (per-element ``xraydb`` cross sections)."""
    return attn.material_mu_rho(int(material_id), np.asarray(energies_kev, np.float64))


@dataclass
class VoxelAnatomy:
    """A voxel phantom standing in for a continuous anatomy (``rasterize_grid`` resamples it).

    Attributes: ``hu`` (true HU), ``labels``, ``materials`` (anatomy material ids), all ``[z, y, x]``;
    ``origin`` (LPS mm of voxel [0, 0, 0]) and ``spacing`` (x, y, z) mm.
    """

    hu: np.ndarray
    labels: np.ndarray
    materials: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]

    #: HU thresholds of :meth:`from_ct` (upper bounds of air, lung, fat, soft tissue, cancellous, cortical)
    THRESHOLDS = (-900.0, -400.0, -30.0, 200.0, 700.0, 3000.0)

    @classmethod
    def from_ct(cls, specimen: Any) -> VoxelAnatomy:
        """Materials of a CT by HU thresholds (air, lung, fat, soft, cancellous, cortical, metal).

        Only for wrapping a real CT as a scanner input; the lab's specimens are imaged from their anatomy.
        """

        hu = np.asarray(specimen.ct_hu, np.float32)
        order = (Material.AIR, Material.LUNG, Material.FAT, Material.SOFT, Material.CANCELLOUS, Material.CORTICAL,
                 Material.METAL)
        mats = np.asarray(order, np.uint8)[np.searchsorted(np.asarray(cls.THRESHOLDS), hu)]
        return cls(hu, np.asarray(specimen.labels), mats, tuple(specimen.origin), tuple(specimen.spacing))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.asarray(self.origin, np.float64)
        return lo, lo + (np.array(self.hu.shape[::-1]) - 1) * np.asarray(self.spacing)

    def rasterize_grid(self, grid: Grid) -> Raster:
        """Resample on ``grid`` (trilinear HU, nearest labels and materials; air outside the phantom)."""
        axes = [grid.axis(2), grid.axis(1), grid.axis(0)]
        idx = [(a - o) / s for a, o, s in zip(axes, self.origin[::-1], self.spacing[::-1], strict=True)]
        coords = np.stack(np.meshgrid(*idx, indexing="ij"))
        hu = ndimage.map_coordinates(self.hu, coords, order=1, mode="nearest").astype(np.float32)
        lab = ndimage.map_coordinates(self.labels, coords, order=0, mode="constant", cval=0).astype(np.uint8)
        mat = ndimage.map_coordinates(self.materials, coords, order=0, mode="constant",
                                      cval=int(Material.AIR)).astype(np.uint8)
        return Raster(hu=hu, labels=lab, materials=mat, tissues=mat.copy(), origin=grid.origin, spacing=grid.spacing)

    def rasterize(self, spacing_mm: float, bounds_lps: tuple[np.ndarray, np.ndarray] | None = None) -> Raster:
        """Resample on an isotropic grid of ``spacing_mm`` over ``bounds_lps`` (default the phantom's box)."""
        lo, hi = self.bounds if bounds_lps is None else bounds_lps
        return self.rasterize_grid(Grid.from_bounds(lo, hi, spacing_mm))


# --- raster cache ------------------------------------------------------------------------------------

@dataclass
class _Prepared:
    ids: tuple[int, ...]
    channels: torch.Tensor  # [M, Z, Y, X] view of channels-last memory
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    bounds: tuple[np.ndarray, np.ndarray]
    mc_volumes: dict[float, mc.MCVolume] = field(default_factory=dict)

    def mc_volume(self, voxel_mm: float) -> mc.MCVolume:
        """The coarse transport volume of the channels (cached per voxel size)."""
        key = float(voxel_mm)
        if key not in self.mc_volumes:
            ch = self.channels.permute(1, 2, 3, 0).numpy()
            self.mc_volumes[key] = mc.coarse_volume(ch, self.ids, self.origin, self.spacing, key)
        return self.mc_volumes[key]


_CACHE: OrderedDict[tuple[int, float, int], tuple[weakref.ref, _Prepared]] = OrderedDict()


def _anatomy_of(specimen: Any) -> Any:
    anat = getattr(specimen, "anatomy", None)
    if anat is None:
        raise DataError(f"specimen {getattr(specimen, 'specimen_id', '?')}: no anatomy to image; an emulated scanner "
                        "needs a lab specimen (or wrap a CT with VoxelAnatomy.from_ct)")
    return anat


def _ct_spacing(specimen: Any) -> float:
    return float(min(getattr(specimen, "spacing", (1.0, 1.0, 1.0))))


def raster_grid(anatomy: Any, spacing_mm: float) -> Grid:
    """The scanner's raster grid over the anatomy's bounds at ``spacing_mm``."""
    lo, hi = anatomy.bounds
    return Grid.from_bounds(lo, hi, float(spacing_mm))


def prepare(specimen: Any, spacing_mm: float, supersample: int = 2) -> _Prepared:
    """Partial-volume density channels of the specimen's anatomy at ``spacing_mm`` (cached, two entries)."""
    anat = _anatomy_of(specimen)
    key = (id(anat), float(spacing_mm), int(supersample))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is anat:
        _CACHE.move_to_end(key)
        return hit[1]
    grid = raster_grid(anat, spacing_mm)
    ids, ch, body = pv.partial_volume_channels(anat, grid, supersample)
    prep = _Prepared(ids, torch.from_numpy(ch).permute(3, 0, 1, 2), tuple(grid.origin), tuple(grid.spacing), body)
    try:
        _CACHE[key] = (weakref.ref(anat), prep)
    except TypeError:
        return prep
    while len(_CACHE) > 2:
        _CACHE.popitem(last=False)
    return prep


# --- the scanner -------------------------------------------------------------------------------------

@dataclass
class ScanStages:
    """Intermediate images of one emulated acquisition (for the notebook and the tests), [H, W] each."""

    primary: np.ndarray  # expected detected signal of the primary beam behind the grid, keV per pixel (after AEC)
    quanta: np.ndarray  # expected detected photons per pixel (primary and scatter, after AEC)
    scatter: np.ndarray  # expected detected scatter signal without the grid, keV per pixel (after AEC)
    detected: np.ndarray  # noisy, blurred signal before the detector electronics, keV per pixel
    counts: np.ndarray  # raw ADC counts (uint16), before the flat-field correction
    log: np.ndarray  # -log(corrected counts / calibrated air counts)
    output: np.ndarray  # after the tone curve and edge enhancement (stored image)
    foreign: list[str] = field(default_factory=list)  # kinds of foreign objects in the image
    mas: float = 0.0  # tube current-time product chosen by the AEC
    scatter_grid: np.ndarray | None = None  # expected detected scatter behind the grid, keV per pixel (after AEC)
    primary_nogrid: np.ndarray | None = None  # expected detected primary without the grid, keV per pixel
    corrected: np.ndarray | None = None  # flat-field corrected, defect-interpolated counts (float64)
    defects: np.ndarray | None = None  # bool: pixels found defective in the calibration (interpolated)
    gain: np.ndarray | None = None  # the binned pixel gain (native gain, defects and vignetting) of the detector


_CALIBRATIONS: dict[tuple[Any, ...], ff.Calibration] = {}


class EmulatedScanner:
    """An emulated C-arm of a :class:`ScannerModel` (see the module docstring for the signal chain)."""

    def __init__(self, model: ScannerModel, bin_kev: float = 2.0) -> None:
        self.model = model
        self.bin_kev = float(bin_kev)

    @property
    def name(self) -> str:
        return self.model.name

    # -- pieces -------------------------------------------------------------------------------------
    def spectra(self, size: tuple[int, int], pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Energies [E] (keV) and fluence [n_axis, E] (photons / mm^2 / mAs) per row or column of the heel axis."""
        m = self.model
        w, h = size
        n = h if m.heel_axis == "row" else w
        pos = (np.arange(n) - (n - 1) / 2) * pixel_mm
        half = n * pixel_mm / 2  # the detector's edges: the same knots (and cached spectra) at every binning
        knots = np.linspace(-half, half, 5)
        # spekpy's x > 0 is towards the cathode: the anode side is at index 0 when anode_first
        sign = 1.0 if m.anode_first else -1.0
        e, f = hw.heel_spectra(m.kvp, m.anode_angle_deg, m.filtration, tuple(sign * knots), m.device.sdd_mm,
                               self.bin_kev)
        fl = np.stack([np.interp(pos, knots, f[:, k]) for k in range(f.shape[1])], axis=1)
        return e, fl

    def detector_efficiency(self, energies_kev: np.ndarray) -> np.ndarray:
        """Fraction of photons absorbed in the CsI scintillator at normal incidence, ``1 - exp(-mu(E) t)``."""
        return attn.csi_absorption(np.asarray(energies_kev, np.float64), self.model.csi_mm)

    def raster_spacing(self, specimen: Any) -> float:
        """The anatomy raster's voxel size (mm): ``raster_factor`` x the CT spacing, at least ``min_raster_mm``."""
        return max(self.model.raster_factor * _ct_spacing(specimen), self.model.min_raster_mm)

    def area_densities(self, specimen: Any, P: np.ndarray, size: tuple[int, int]
                       ) -> tuple[tuple[int, ...], np.ndarray, _Prepared]:
        """Per-material area densities [B, M, H, W] (g/cm^2) through the partial-volume anatomy raster."""

        spacing = self.raster_spacing(specimen)
        prep = prepare(specimen, spacing, self.model.supersample)
        step = None if self.model.step_factor is None else self.model.step_factor * spacing
        a = line_integrals(prep.channels, prep.spacing, prep.origin, P, size, step)
        return prep.ids, a.numpy().astype(np.float64) / 10.0, prep

    def grid_pattern(self, w: int, pixel_mm: float) -> np.ndarray:
        """[W] relative primary transmission of the grid's lamellae per column (1 without a grid).

        The grid is fixed to the detector: its phase is the detector's (seeded by the scanner's name), the
        same in the flood and in every image.
        """
        if self.model.grid is None:
            return np.ones(w)
        phase = float(seeded_rng("grid-phase", self.model.name).uniform(0, 2 * np.pi))
        return self.model.grid.line_pattern(w, pixel_mm, phase)

    def detector_maps(self, size: tuple[int, int], pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
        """Binned gain (native gain and defects x vignetting) and offset (fraction of full scale), [H, W] each."""
        m = self.model
        gain, offset = hw.binned_gain_offset(m.device, m.defects, m.name, (int(size[0]), int(size[1])),
                                             float(pixel_mm))
        return gain * hw.vignetting(size, m.vignetting), offset

    def calibration(self, size: tuple[int, int], pixel_mm: float, e: np.ndarray, fluence: np.ndarray,
                    eta: np.ndarray) -> tuple[ff.Calibration, float]:
        """The detector mode's dark/flood calibration (cached) and the mean of its flood shape.

        The flood: tube on, grid in, collimator open, no object; its shape is the expected detected energy
        per pixel per mAs ``Tp x grid pattern x sum_E phi(E) eta(E) E x pixel area``.
        """
        m = self.model
        w, h = size
        area = pixel_mm**2
        phi = fluence.T[:, :, None] if m.heel_axis == "row" else fluence.T[:, None, :]
        air_open = np.broadcast_to(np.sum(phi * (eta * e)[:, None, None] * area, axis=0), (h, w))
        tp = 1.0 if m.grid is None else m.grid.primary_transmission
        shape = tp * air_open * self.grid_pattern(w, pixel_mm)[None, :]
        key = (m, int(w), int(h), round(float(pixel_mm), 9), self.bin_kev)
        cal = _CALIBRATIONS.get(key)
        if cal is None:
            assert m.flat_field is not None
            gain, offset = self.detector_maps(size, pixel_mm)
            quanta = m.flat_field.flood_level * m.saturation_ratio * m.aec_quanta_per_mm2 * area * shape / shape.mean()
            rng = seeded_rng("flat-field", m.name, int(w), int(h), int(round(pixel_mm * 1e6)))
            cal = ff.acquire_calibration(gain, offset, shape, quanta, m.bits, m.electronic_noise_lsb, m.flat_field,
                                         rng)
            if len(_CALIBRATIONS) > 16:
                _CALIBRATIONS.clear()
            _CALIBRATIONS[key] = cal
        return cal, float(shape.mean())

    def scatter_mc(self, prep: _Prepared, camera: geometry.Camera, size: tuple[int, int], pixel_mm: float,
                   coll: np.ndarray, e: np.ndarray, fluence: np.ndarray, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Monte Carlo scatter per mAs, [H, W] each: (energy, quanta) detected without the grid, and behind it.

        Photons are drawn over the collimated field from the row (column) spectra; the tallies are scaled by
        the emitted photons per MC photon and smoothed (:func:`.montecarlo.smooth_to_pixels`).
        """
        m = self.model
        w, h = size
        area = pixel_mm**2
        per_axis = fluence.sum(axis=1) * area  # photons per pixel per mAs along the heel axis
        emitted = coll * (per_axis[:, None] if m.heel_axis == "row" else per_axis[None, :])
        n_emitted = float(emitted.sum())
        zero = np.zeros((h, w))
        if not m.scatter or n_emitted <= 0:
            return zero, zero, zero, zero
        photons = mc.sample_photons(camera, (w, h), emitted, e, fluence, m.mc_photons, rng, m.heel_axis)
        vol = prep.mc_volume(m.mc_voxel_mm)
        ratio, tp = (0.0, 1.0) if m.grid is None else (m.grid.ratio, m.grid.primary_transmission)
        cell = max(1.0, m.mc_cell_mm / pixel_mm)
        lead = 0.0 if m.grid is None else m.grid.lead_path_mm
        tal = mc.transport(vol, camera, (w, h), photons, int(rng.integers(0, 2**62)), m.csi_mm, ratio, tp, cell,
                           e_max_kev=float(e.max() + self.bin_kev), grid_lead_mm=lead)
        weight = n_emitted / tal.n
        out = [weight * mc.smooth_to_pixels(c, (w, h), cell, m.mc_smooth_mm, pixel_mm)
               for c in (tal.scatter_energy, tal.scatter_quanta, tal.scatter_energy_grid, tal.scatter_quanta_grid)]
        return out[0], out[1], out[2], out[3]

    # -- the acquisition ----------------------------------------------------------------------------
    def render(self, specimen: Any, P: np.ndarray, size: Sequence[int], rngs: Sequence[np.random.Generator],
               kind: str = "hip", seed: int = 0, foreign: bool = True, return_stages: bool = False
               ) -> np.ndarray | tuple[np.ndarray, list[ScanStages]]:
        """Emulated images float32 [B, H, W] (log domain, vendor-processed) of ``specimen`` at ``P``.

        Args:
            specimen: a lab specimen (with ``.anatomy``) or any object with an ``anatomy`` exposing
                ``bounds`` and ``rasterize_grid(grid)`` (e.g. :class:`VoxelAnatomy`).
            P: [B, 3, 4] or [3, 4], or :class:`~synthex_lib.geometry.Camera` s; size: (W, H);
            rngs: one generator per image (collimation, foreign objects, gain drift, Monte Carlo, noise).
            kind: ``hip``, ``tool`` or ``chest`` (which foreign objects, see :mod:`~synthex_lib.simulate.foreign`).
            seed: experiment seed of the per-specimen implants.
            foreign: add foreign objects.
            return_stages: also return the :class:`ScanStages` of each image.
        """

        m = self.model
        Pb = np.asarray(geometry.projection_array(P), np.float64)
        if Pb.ndim == 2:
            Pb = Pb[None]
        w, h = (int(s) for s in size)
        if len(rngs) != len(Pb):
            raise ConfigError(f"scanner {m.name}: {len(rngs)} generators for {len(Pb)} images; give one per image")
        cams = geometry.as_cameras(P, m.device.sdd_mm, (w, h))  # given cameras keep their own SDD
        pixel_mm = cams[0].pixel_mm
        area = pixel_mm**2
        ids, A, prep = self.area_densities(specimen, Pb, (w, h))
        e, fluence = self.spectra((w, h), pixel_mm)  # [n_axis, E]
        eta = self.detector_efficiency(e)
        mu = np.stack([material_mu_rho(i, e) for i in ids])  # [M, E]
        gain, offset = self.detector_maps((w, h), pixel_mm)
        pattern = self.grid_pattern(w, pixel_mm)[None, :]
        tp = 1.0 if m.grid is None else m.grid.primary_transmission
        cal, flood_shape_mean = (None, 0.0)
        if m.flat_field is not None:
            cal, flood_shape_mean = self.calibration((w, h), pixel_mm, e, fluence, eta)
        top = 2**m.bits - 1
        sid = getattr(specimen, "specimen_id", "specimen")
        outs = np.zeros((len(Pb), h, w), np.float32)
        stages: list[ScanStages] = []
        for b in range(len(Pb)):
            r_coll, r_foreign, r_drift, r_mc, r_noise = rngs[b].spawn(5)
            # expected detected quanta and energy per energy bin (per mAs)
            att = np.exp(-np.einsum("mhw,me->ehw", A[b], mu))  # [E, H, W]
            scene = fo.ForeignScene()
            if foreign:
                scene = fo.sample_scene(kind, getattr(specimen, "landmarks", {}), prep.bounds,
                                        seeded_rng(seed, "implants", sid), r_foreign)
                if scene.objects:
                    att = att * fo.transmission(scene.objects, Pb[b], (w, h), e, m.foreign_supersample)[0]
            coll = m.collimator.transmission((w, h), pixel_mm, r_coll)
            phi = fluence.T[:, :, None] if m.heel_axis == "row" else fluence.T[:, None, :]  # [E, h|1, 1|w]
            q_e = phi * eta[:, None, None] * area * coll[None]  # incident detected quanta per mAs, no object
            quanta = np.sum(q_e * att, axis=0)
            signal = np.sum(q_e * att * e[:, None, None], axis=0)  # keV per mAs
            air_signal = np.sum(q_e * e[:, None, None], axis=0)
            scat_s, scat_q, scat_s_g, scat_q_g = self.scatter_mc(prep, cams[b], (w, h), pixel_mm, coll, e, fluence,
                                                                 r_mc)
            if m.grid is not None:
                det_s = tp * pattern * signal + scat_s_g
                det_q = tp * pattern * quanta + scat_q_g
            else:
                det_s, det_q = signal + scat_s, quanta + scat_q
            # automatic exposure control on the central half of the field
            c0, c1 = h // 4, h - h // 4
            d0, d1 = w // 4, w - w // 4
            central = det_q[c0:c1, d0:d1] / area
            mas = m.aec_quanta_per_mm2 / max(float(np.median(central)), 1e-30)
            n_mean = det_q * mas
            s_mean = det_s * mas
            counts_ph = r_noise.poisson(n_mean)
            noisy = counts_ph * (s_mean / np.maximum(n_mean, 1e-30))
            focal_sigma = self._focal_sigma_at_detector(cams[b], prep)
            blurred = hw.apply_mtf(noisy, pixel_mm, hw.detector_mtf(m.mtf50_cyc_per_mm, focal_sigma))
            full_scale = m.saturation_ratio * float(np.median(s_mean[c0:c1, d0:d1]))
            drift = 1.0 if m.flat_field is None else ff.gain_drift_field((w, h), m.flat_field.gain_drift, r_drift)
            x = gain * drift * blurred / full_scale + offset + r_noise.normal(0.0, m.electronic_noise_lsb / top,
                                                                              blurred.shape)
            counts = hw.quantize(x, 1.0, m.bits)
            if cal is not None:
                corrected = ff.interpolate_defects(ff.correct(counts, cal), cal.defects)
                air_counts = cal.flood_mean * mas * flood_shape_mean / (full_scale * m.flat_field.flood_level)
                defects = cal.defects
            else:  # an uncalibrated detector: the raw counts against the mean air level
                corrected = counts.astype(np.float64)
                air_counts = float(np.mean(gain)) * tp * float(np.max(air_signal)) * mas / full_scale * top
                air_counts += float(np.mean(offset)) * top
                defects = np.zeros((h, w), bool)
            log = np.clip(-np.log(np.maximum(corrected, 0.5) / air_counts), 0.0, None)
            # the vendor knows its field and its defective pixels: they do not steer the window
            window = hw.auto_window(log, (coll > 0.5 * (1.0 + m.collimator.leakage)) & ~defects)
            out = hw.unsharp_mask(m.tone(log, window), m.edge_sigma_mm / pixel_mm, m.edge_amount)
            outs[b] = np.clip(out, 0.0, None).astype(np.float32)
            if return_stages:
                stages.append(ScanStages(primary=tp * pattern * signal * mas, quanta=n_mean, scatter=scat_s * mas,
                                         detected=blurred, counts=counts, log=log, output=outs[b].copy(),
                                         foreign=list(scene.kinds), mas=mas, scatter_grid=scat_s_g * mas,
                                         primary_nogrid=signal * mas, corrected=corrected, defects=defects,
                                         gain=gain))
        return (outs, stages) if return_stages else outs

    def _focal_sigma_at_detector(self, camera: geometry.Camera, prep: _Prepared) -> float:
        """Focal-spot penumbra (standard deviation, mm) at the detector for an object at the anatomy's centre."""
        src = camera.source_lps
        centre = 0.5 * (prep.bounds[0] + prep.bounds[1])
        sod = float(np.linalg.norm(centre - src))
        sdd = self.model.device.sdd_mm
        return (self.model.focal_spot_mm / 2.355) * max(sdd - sod, 0.0) / max(sod, 1e-6)


def get_scanner(name: str, **overrides: Any) -> EmulatedScanner:
    """An emulated scanner by device name (``cios-fusion``, ``loopx``), optionally with model fields changed."""
    if name not in SCANNERS:
        raise ConfigError(f"unknown scanner {name!r}: choose one of {', '.join(SCANNERS)}")
    model = SCANNERS[name]
    if overrides:
        try:
            model = replace(model, **overrides)
        except TypeError as exc:
            raise ConfigError(f"scanner {name!r}: invalid field(s) {sorted(overrides)} ({exc})") from None
    return EmulatedScanner(model)
