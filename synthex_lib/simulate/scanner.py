"""Emulated C-arm scanners: the "reality" of the virtual cadaver lab.

A training simulator sees only the specimen's *CT* (voxelized, blurred, noisy, HU thresholds for
materials). An emulated scanner images the specimen's *anatomy* instead: rasterized finer than
the CT (``raster_factor`` x the CT spacing, at least ``min_raster_mm`` = 1 mm for memory), free of
the CT's blur, noise and partial-volume calibration, with the true material of every voxel (air, lung,
fat, soft tissue, cancellous and cortical bone, metal, lesion; compositions of
:mod:`synthex_lib.anatomy.tissues`) and its true density, and then adds what a real C-arm adds
(see :mod:`synthex_lib.simulate.hardware` and :mod:`synthex_lib.simulate.foreign`):

1. polychromatic Beer-Lambert (NIST attenuation via ``xraydb``) with the spectrum of the tube
   *at each detector row*: the heel effect (``spekpy``'s off-axis spectra);
2. foreign objects that are in no CT and no label (K-wires, screws, cables, ECG electrodes, the
   operating table), their transmission averaged over sub-pixel rays;
3. collimator blades (and an iris) with focal-spot penumbra and lead leakage;
4. scatter (kernel superposition, :func:`synthex_lib.simulate.physics.scatter.scatter_estimate`)
   reduced by an anti-scatter grid whose lamellae alias into a faint line pattern;
5. the energy-dependent absorption of the CsI scintillator, vignetting;
6. automatic exposure control (the tube output is scaled so that the median detected fluence in
   the central field reaches ``aec_quanta_per_mm2``), Poisson quantum noise at those physical
   counts, detector blur (MTF, which correlates the noise), electronic noise;
7. analogue-to-digital conversion (12 or 14 bits, saturation) and uncorrected defective pixels;
8. vendor processing: log with the calibrated air value, a sigmoid tone curve (look-up table),
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
import xraydb
from scipy import ndimage

from synthex_lib import geometry
from synthex_lib.anatomy.raster import Grid, Raster
from synthex_lib.anatomy.tissues import MATERIAL_COMPOSITION, Material, metal_hu
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.simulate import foreign as fo
from synthex_lib.simulate import hardware as hw
from synthex_lib.simulate.physics.scatter import scatter_estimate
from synthex_lib.simulate.raymarch import line_integrals

#: CsI scintillator: xraydb formula and density (g/cm^3)
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
        scatter_amplitude, scatter_sigma_mm: the scatter kernel (amplitude x T x (-ln T); Gaussian width).
        collimator: blades and iris; vignetting: residual radial gain loss at the corners.
        defects: defective pixels left after the vendor's correction.
        bits: ADC depth; saturation_ratio: full scale / the AEC's target signal.
        aec_quanta_per_mm2: median detected photon fluence in the central field set by the AEC.
        electronic_noise_lsb: standard deviation of the read-out noise in ADC steps.
        tone: vendor look-up table on the log image; edge_sigma_mm / edge_amount: unsharp masking.
        raster_factor: anatomy voxel size / CT voxel size, never below ``min_raster_mm``;
        min_raster_mm: finest anatomy voxel (memory: about 0.9 GB of channels per hip at 1 mm);
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
    scatter_amplitude: float
    scatter_sigma_mm: float
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
    min_raster_mm: float = 1.0
    step_factor: float | None = None
    foreign_supersample: int = 3
    description: str = ""

    def __post_init__(self) -> None:
        if self.heel_axis not in ("row", "col"):
            raise ConfigError(f"scanner {self.name}: heel_axis must be 'row' or 'col', got {self.heel_axis!r}")
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"scanner {self.name}: bits must be within 1-16, got {self.bits}")


#: Siemens CIOS Fusion-like mobile C-arm (DeepFluoro's device): 85 kVp with 3 mm Al + 0.1 mm Cu, 12 deg
#: anode, 0.6 mm focal spot, 0.6 mm CsI flat panel (MTF50 1.2 cycles/mm), 70 lines/cm grid of ratio 10,
#: an iris that rounds the corners, 12-bit ADC, a steep sigmoid tone curve and strong edge enhancement.
CIOS_SCANNER = ScannerModel(
    name="cios-fusion", device=geometry.CIOS_FUSION, kvp=85.0, filtration=(("Al", 3.0), ("Cu", 0.1)),
    anode_angle_deg=12.0, heel_axis="row", anode_first=True, focal_spot_mm=0.6, mtf50_cyc_per_mm=1.2, csi_mm=0.6,
    grid=hw.AntiScatterGrid(ratio=10.0, lines_per_cm=70.0, primary_transmission=0.72, scatter_transmission=0.14,
                            line_amplitude=0.12),
    scatter_amplitude=0.16, scatter_sigma_mm=45.0,
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
    scatter_amplitude=0.14, scatter_sigma_mm=60.0,
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

def _material_tables() -> tuple[dict[int, tuple[str, float]], dict[int, float]]:
    """Anatomy material id -> (xraydb formula, nominal density), and -> nominal HU at 70 keV."""

    comp = {int(k): (str(v[0]), float(v[1])) for k, v in MATERIAL_COMPOSITION.items()}
    hu_nom = {k: metal_hu(f, rho) for k, (f, rho) in comp.items()}
    return comp, hu_nom


def material_mu_rho(material_id: int, energies_kev: np.ndarray) -> np.ndarray:
    """Mass attenuation (cm^2/g) of an anatomy material class at ``energies_kev`` (``xraydb``)."""

    comp, _ = _material_tables()
    formula, rho = comp[int(material_id)]
    return np.asarray(xraydb.material_mu(formula, np.asarray(energies_kev) * 1000.0, density=rho)) / rho


def density_channels(hu: np.ndarray, materials: np.ndarray, skip_air: bool = True
                     ) -> tuple[tuple[int, ...], np.ndarray]:
    """Density channels, channels-last float32 [Z, Y, X, C] (g/cm^3), one per distinct composition.

    The density of a voxel of material m is its nominal density scaled by ``(1000 + HU) / (1000 + HU_m)``,
    ``HU_m`` the HU of m at its nominal density (70 keV, xraydb): linear attenuation is proportional to
    density for a fixed composition, and so is ``1000 + HU``. Materials of the same composition (lung and
    lesion) share a channel; the returned ids are one material id per channel (its mu/rho). Air is left
    out by default: 500 mm of it attenuate less than 1.5 % at 60 keV, uniformly.
    """

    comp, hu_nom = _material_tables()
    present = [int(i) for i in np.unique(materials) if int(i) in comp and not (skip_air and i == Material.AIR)]
    formulas: list[str] = []
    rep: list[int] = []
    for m in present:
        if comp[m][0] not in formulas:
            formulas.append(comp[m][0])
            rep.append(m)
    if not formulas:  # nothing but air: one empty soft-tissue channel keeps the shapes valid
        return (int(Material.SOFT),), np.zeros(hu.shape + (1,), np.float32)
    out = np.zeros(hu.shape + (len(formulas),), np.float32)
    for m in present:
        c = formulas.index(comp[m][0])
        sel = materials == m
        rho = comp[m][1] * (1000.0 + hu[sel].astype(np.float64)) / (1000.0 + hu_nom[m])
        out[..., c][sel] = np.maximum(rho, 0.0)
    return tuple(rep), out


@dataclass
class VoxelAnatomy:
    """A voxel phantom standing in for a continuous anatomy (``rasterize`` resamples it).

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
        """Materials of a CT by HU thresholds (air, lung, fat, soft, cancellous, cortical, metal)."""

        hu = np.asarray(specimen.ct_hu, np.float32)
        order = (Material.AIR, Material.LUNG, Material.FAT, Material.SOFT, Material.CANCELLOUS, Material.CORTICAL,
                 Material.METAL)
        mats = np.asarray(order, np.uint8)[np.searchsorted(np.asarray(cls.THRESHOLDS), hu)]
        return cls(hu, np.asarray(specimen.labels), mats, tuple(specimen.origin), tuple(specimen.spacing))

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.asarray(self.origin, np.float64)
        return lo, lo + (np.array(self.hu.shape[::-1]) - 1) * np.asarray(self.spacing)

    def rasterize(self, spacing_mm: float, bounds_lps: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
        """Resample on an isotropic grid (trilinear HU, nearest labels and materials)."""


        lo, hi = self.bounds if bounds_lps is None else bounds_lps
        grid = Grid.from_bounds(lo, hi, spacing_mm)
        axes = [grid.axis(2), grid.axis(1), grid.axis(0)]
        idx = [(a - o) / s for a, o, s in zip(axes, self.origin[::-1], self.spacing[::-1], strict=True)]
        coords = np.stack(np.meshgrid(*idx, indexing="ij"))
        hu = ndimage.map_coordinates(self.hu, coords, order=1, mode="nearest").astype(np.float32)
        lab = ndimage.map_coordinates(self.labels, coords, order=0, mode="nearest").astype(np.uint8)
        mat = ndimage.map_coordinates(self.materials, coords, order=0, mode="nearest").astype(np.uint8)
        return Raster(hu=hu, labels=lab, materials=mat, tissues=mat.copy(), origin=grid.origin, spacing=grid.spacing)


# --- raster cache ------------------------------------------------------------------------------------

@dataclass
class _Prepared:
    ids: tuple[int, ...]
    channels: torch.Tensor  # [M, Z, Y, X] view of channels-last memory
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    bounds: tuple[np.ndarray, np.ndarray]


_CACHE: OrderedDict[tuple[int, float], tuple[weakref.ref, _Prepared]] = OrderedDict()


def _anatomy_of(specimen: Any) -> Any:
    anat = getattr(specimen, "anatomy", None)
    if anat is None:
        raise DataError(f"specimen {getattr(specimen, 'specimen_id', '?')}: no anatomy to image; an emulated scanner "
                        "needs a lab specimen (or wrap a CT with VoxelAnatomy.from_ct)")
    return anat


def _ct_spacing(specimen: Any) -> float:
    return float(min(getattr(specimen, "spacing", (1.0, 1.0, 1.0))))


def prepare(specimen: Any, spacing_mm: float) -> _Prepared:
    """Rasterize the specimen's anatomy at ``spacing_mm`` into density channels (cached, two entries)."""
    anat = _anatomy_of(specimen)
    key = (id(anat), float(spacing_mm))
    hit = _CACHE.get(key)
    if hit is not None and hit[0]() is anat:
        _CACHE.move_to_end(key)
        return hit[1]
    r = anat.rasterize(float(spacing_mm))
    ids, ch = density_channels(np.asarray(r.hu), np.asarray(r.materials))

    body = np.argwhere(np.asarray(r.materials) != Material.AIR)
    sp = np.asarray(r.spacing, np.float64)
    org = np.asarray(r.origin, np.float64)
    if len(body):
        lo = org + body.min(axis=0)[::-1] * sp
        hi = org + body.max(axis=0)[::-1] * sp
    else:
        lo, hi = org, org + (np.array(r.hu.shape[::-1]) - 1) * sp
    prep = _Prepared(ids, torch.from_numpy(ch).permute(3, 0, 1, 2), tuple(r.origin), tuple(r.spacing), (lo, hi))
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

    primary: np.ndarray  # expected detected signal of the primary beam, keV per pixel (after AEC)
    quanta: np.ndarray  # expected detected photons per pixel (primary and scatter, after AEC)
    scatter: np.ndarray  # expected scatter signal before the grid, keV per pixel
    detected: np.ndarray  # noisy, blurred signal before the ADC, keV per pixel
    counts: np.ndarray  # ADC counts (uint16)
    log: np.ndarray  # -log(counts / air counts)
    output: np.ndarray  # after the tone curve and edge enhancement (stored image)
    foreign: list[str] = field(default_factory=list)  # kinds of foreign objects in the image
    mas: float = 0.0  # tube current-time product chosen by the AEC


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
        """Fraction of photons absorbed in the CsI scintillator, ``1 - exp(-mu(E) t)``."""

        mu = np.asarray(xraydb.material_mu(CSI[0], np.asarray(energies_kev) * 1000.0, density=CSI[1]))  # 1/cm
        return 1.0 - np.exp(-mu * self.model.csi_mm / 10.0)

    def area_densities(self, specimen: Any, P: np.ndarray, size: tuple[int, int]
                       ) -> tuple[tuple[int, ...], np.ndarray, _Prepared]:
        """Per-material area densities [B, M, H, W] (g/cm^2) through the finely rasterized anatomy."""

        spacing = max(self.model.raster_factor * _ct_spacing(specimen), self.model.min_raster_mm)
        prep = prepare(specimen, spacing)
        step = None if self.model.step_factor is None else self.model.step_factor * spacing
        a = line_integrals(prep.channels, prep.spacing, prep.origin, P, size, step)
        return prep.ids, a.numpy().astype(np.float64) / 10.0, prep

    # -- the acquisition ----------------------------------------------------------------------------
    def render(self, specimen: Any, P: np.ndarray, size: Sequence[int], rngs: Sequence[np.random.Generator],
               kind: str = "hip", seed: int = 0, foreign: bool = True, return_stages: bool = False
               ) -> np.ndarray | tuple[np.ndarray, list[ScanStages]]:
        """Emulated images float32 [B, H, W] (log domain, vendor-processed) of ``specimen`` at ``P``.

        Args:
            specimen: a lab specimen (with ``.anatomy``) or any object with an ``anatomy`` exposing
                ``rasterize(spacing_mm)`` (e.g. :class:`VoxelAnatomy`).
            P: [B, 3, 4] or [3, 4], or :class:`~synthex_lib.geometry.Camera` s; size: (W, H);
            rngs: one generator per image (noise, collimation,
                foreign objects, grid phase).
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
        dmap = hw.defect_map((w, h), m.defects, m.name)
        vig = hw.vignetting((w, h), m.vignetting)
        top = 2**m.bits - 1
        sid = getattr(specimen, "specimen_id", "specimen")
        outs = np.zeros((len(Pb), h, w), np.float32)
        stages: list[ScanStages] = []
        for b in range(len(Pb)):
            r_coll, r_foreign, r_grid, r_noise = rngs[b].spawn(4)
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
            trans = np.clip(signal / np.maximum(air_signal, 1e-30), 1e-12, 1.0)
            scat = scatter_estimate(torch.from_numpy(signal), torch.from_numpy(trans), pixel_mm,
                                    amplitude=m.scatter_amplitude, sigma_mm=m.scatter_sigma_mm).numpy()
            e_mean = signal / np.maximum(quanta, 1e-30)
            scat_q = scat / np.maximum(e_mean, 1e-30)
            phase = r_grid.uniform(0, 2 * np.pi)
            if m.grid is not None:
                det_s = m.grid.apply(signal, scat, pixel_mm, phase)
                det_q = m.grid.apply(quanta, scat_q, pixel_mm, phase)
                prim_after = m.grid.primary_transmission * signal
            else:
                det_s, det_q, prim_after = signal + scat, quanta + scat_q, signal
            det_s, det_q = det_s * vig, det_q * vig
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
            x = blurred / full_scale + r_noise.normal(0.0, m.electronic_noise_lsb / top, blurred.shape)
            counts = hw.quantize(x, 1.0, m.bits)
            counts = hw.apply_defects(counts, dmap, top)
            air_counts = float(np.max(air_signal)) * mas / full_scale * top
            log = np.clip(-np.log(np.maximum(counts.astype(np.float64), 0.5) / air_counts), 0.0, None)
            # the vendor knows its field and its defective pixels: they do not steer the window
            window = hw.auto_window(log, (coll > 0.5 * (1.0 + m.collimator.leakage)) & (dmap == hw.DEFECT_OK))
            out = hw.unsharp_mask(m.tone(log, window), m.edge_sigma_mm / pixel_mm, m.edge_amount)
            outs[b] = np.clip(out, 0.0, None).astype(np.float32)
            if return_stages:
                stages.append(ScanStages(primary=prim_after * mas, quanta=n_mean, scatter=scat * mas, detected=blurred,
                                         counts=counts,
                                         log=log, output=outs[b].copy(), foreign=list(scene.kinds), mas=mas))
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
