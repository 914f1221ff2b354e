"""The CT projectors: naive, heuristic and realistic physics on the one ray-marching engine.

Every projector has ``render(volume, P, size, quantity="neglog", rng=None, device=None) -> float32 [B, H, W]``
where ``volume`` is anything with ``.ct_hu`` ``[z, y, x]`` (HU, LPS-aligned axes), ``.spacing`` (x, y, z) mm and
``.origin`` (LPS mm of voxel [0, 0, 0]) -- a :class:`~synthex_lib.anatomy.specimen.Specimen` or the result of
:func:`~synthex_lib.simulate.volume_io.volume_from_file` -- and ``P`` is one ``[3, 4]`` or a batch ``[B, 3, 4]``
of projection matrices (LPS mm -> pixel (col, row)). Quantities:

* ``"water-path-mm"``: the integral of ``max(1 + HU/1000, 0)`` along the ray (mm), noiseless, sampled with the
  projector's step (the same definition for every projector: the contract of ``synthex render``);
* ``"intensity"``: the detector signal; its unit depends on the physics (see each class);
* ``"neglog"``: ``-log(I / I0)``, the line-integral domain (bone bright), the domain of stored images.

Noise is drawn from ``rng`` (a numpy Generator): the same seed gives the same image; ``rng=None`` draws from a
fresh unseeded generator.
"""

from __future__ import annotations

import math
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.geometry import Camera, as_cameras
from synthex_lib.simulate.physics import density as dens
from synthex_lib.simulate.physics import detector as det
from synthex_lib.simulate.physics import noise as nz
from synthex_lib.simulate.physics import scatter as sc
from synthex_lib.simulate.physics.materials import mass_attenuation, mass_attenuation_table
from synthex_lib.simulate.physics.spectrum import Spectrum, monoenergetic, tube_spectrum
from synthex_lib.simulate.raymarch import as_projection_batch, line_integrals, material_line_integrals

QUANTITIES: tuple[str, ...] = ("water-path-mm", "intensity", "neglog")


def check_volume(volume: Any) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """``(ct_hu, spacing, origin)`` of a volume-like object; :class:`DataError` if unusable."""
    name = getattr(volume, "specimen_id", None) or getattr(volume, "source", None) or type(volume).__name__
    try:
        hu = volume.ct_hu
        spacing = tuple(float(s) for s in volume.spacing)
        origin = tuple(float(o) for o in volume.origin)
    except AttributeError as exc:
        raise DataError(f"volume {name}: needs .ct_hu [z, y, x], .spacing and .origin ({exc})") from None
    if getattr(hu, "ndim", 0) != 3 or len(spacing) != 3 or len(origin) != 3:
        raise DataError(f"volume {name}: ct_hu must be 3D [z, y, x] with 3 spacings and 3 origin values")
    if any(not (s > 0 and math.isfinite(s)) for s in spacing):
        raise DataError(f"volume {name}: spacing must be positive, got {spacing}")
    return hu, spacing, origin


def _check_quantity(quantity: str) -> None:
    if quantity not in QUANTITIES:
        raise ConfigError(f"parameter 'quantity' must be one of {', '.join(QUANTITIES)}, got {quantity!r}")


def pixel_pitch_mm(P: np.ndarray | Camera, sdd_mm: float) -> float:
    """Detector pixel pitch (mm) implied by ``P`` for a source-to-detector distance ``sdd_mm``: SDD divided by
    the focal length in pixels (geometric mean of |fx| and |fy|; :meth:`Camera.from_projection`). A
    :class:`~synthex_lib.geometry.Camera` gives its own pitch (``sdd_mm`` is then ignored)."""
    if isinstance(P, Camera):
        return P.pixel_mm
    return Camera.from_projection(P, sdd_mm).pixel_mm


def photons_per_pixel(photon_count: float, photon_pixel_mm: float | None, pixel_mm: float) -> float:
    """Expected flat-field photons per detector pixel of pitch ``pixel_mm`` (mm) when ``photon_count`` photons
    fall on one pixel of pitch ``photon_pixel_mm`` (binning sums photons, so the count scales with the pixel
    area); ``photon_pixel_mm=None``: ``photon_count`` per pixel whatever its size."""
    if photon_pixel_mm is None:
        return float(photon_count)
    return float(photon_count) * (float(pixel_mm) / float(photon_pixel_mm)) ** 2


@contextmanager
def _few_threads_for_small(n_pixels: int, limit: int = 1_000_000):
    """Run per-pixel torch work on one thread for images below ``limit`` pixels: there the OpenMP barriers of
    the ~50 small operations cost more than they save (measured: 0.40 s on 2 threads against 0.012 s on one
    for a 256 x 256 realistic image on a loaded 2-core machine)."""
    before = torch.get_num_threads()
    if n_pixels > limit or before == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class _ChannelCache:
    """Per-projector cache of the voxel channels of the last volumes (keyed by the HU array's identity), so
    that rendering many poses of one CT prepares its channels once."""

    def __init__(self, maxsize: int = 4) -> None:
        self._items: list[tuple[weakref.ref, str, str, torch.Tensor]] = []
        self.maxsize = maxsize

    def get(self, hu: np.ndarray, key: str, device: torch.device, make: Callable[[torch.Tensor], torch.Tensor]):
        for ref, k, d, val in self._items:
            if ref() is hu and k == key and d == str(device):
                return val
        hu_t = torch.as_tensor(np.asarray(hu, np.float32), device=device)
        val = make(hu_t)
        try:
            self._items.append((weakref.ref(hu), key, str(device), val))
        except TypeError:  # objects without weak references are not cached
            return val
        self._items = self._items[-self.maxsize:]
        return val

    def clear(self) -> None:
        self._items.clear()


@dataclass
class _CTProjector(ABC):
    """Shared plumbing: volume checks, channel cache, the water path, batching of P."""

    step_mm: float | None = None
    device: str | None = None
    name: str = field(default="base", init=False)

    def __post_init__(self) -> None:
        if self.step_mm is not None and not (self.step_mm > 0):
            raise ConfigError(f"parameter 'step_mm' must be None or positive, got {self.step_mm!r}")
        self._cache = _ChannelCache()

    def _device(self, device: str | torch.device | None) -> torch.device:
        return torch.device(device or self.device or "cpu")

    def _march(self, volume: Any, P, size, key: str, make, device) -> torch.Tensor:
        hu, spacing, origin = check_volume(volume)
        chans = self._cache.get(hu, key, device, make)
        return line_integrals(chans, spacing, origin, P, size, self.step_mm, device=device)

    def water_path_mm(self, volume: Any, P, size, device=None) -> torch.Tensor:
        """``[B, H, W]`` integral of ``max(1 + HU/1000, 0)`` (mm)."""
        dev = self._device(device)
        out = self._march(volume, P, size, "water", lambda h: dens.water_fraction(h)[None], dev)
        return out[:, 0]

    def render(self, volume: Any, P, size: Sequence[int], quantity: str = "neglog",
               rng: np.random.Generator | None = None, device: str | torch.device | None = None) -> np.ndarray:
        _check_quantity(quantity)
        as_projection_batch(P)
        dev = self._device(device)
        if quantity == "water-path-mm":
            out = self.water_path_mm(volume, P, size, dev)
        else:
            out = self._render(volume, P, size, quantity, rng, dev)
        return out.detach().to("cpu", torch.float32).numpy()

    @abstractmethod
    def _render(self, volume, P, size, quantity, rng, device) -> torch.Tensor:
        """``[B, H, W]`` intensity or neglog image of this physics (on ``device``)."""

    def clear_cache(self) -> None:
        """Forget prepared channels (call after changing a volume's HU array in place)."""
        self._cache.clear()


@dataclass
class NaiveProjector(_CTProjector):
    """Mono-energetic, noiseless: ``mu = mu_water (1 + HU/1000)`` (clamped at 0).

    ``intensity`` is the relative transmission ``I / I0 = exp(-line integral)`` (unitless, 1 in air).
    ``mu_water_per_mm`` defaults to NIST water at ``energy_kev`` (40 keV: 0.02683 /mm, xreg's constant).
    Default sampling: Joseph slice stepping (``step_mm=None``).
    """

    energy_kev: float = 40.0
    mu_water_per_mm: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = "naive"
        if self.mu_water_per_mm is None:
            self.mu_water_per_mm = float(mass_attenuation("water", self.energy_kev)) / 10.0

    def _render(self, volume, P, size, quantity, rng, device) -> torch.Tensor:
        line = self.mu_water_per_mm * self.water_path_mm(volume, P, size, device)
        return line if quantity == "neglog" else torch.exp(-line)


@dataclass
class HeuristicProjector(_CTProjector):
    """xreg-style DRR: ``mu = max(HU - hu_lower, 0) (mu_water - mu_air) / 1000`` (1/mm), trilinear samples every
    ``step_mm`` = 1 mm, then Poisson photon counts with ``photons`` = 2000 in the flat field.

    ``intensity`` is the photon count per pixel (flat field ``photons``); ``neglog = -log(max(count, 1) / photons)``
    (a zero count is read as one photon so the log stays finite). ``noise=False`` gives the expected image.
    """

    step_mm: float | None = 1.0
    hu_lower: float = -130.0
    mu_water: float = 0.02683
    mu_air: float = 2.485e-6
    photons: float = 2000.0
    noise: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = "heuristic"
        if not self.photons > 0:
            raise ConfigError(f"parameter 'photons' must be positive, got {self.photons!r}")

    def line_integral(self, volume, P, size, device=None) -> torch.Tensor:
        """``[B, H, W]`` noiseless integral of the heuristic mu (unitless)."""
        dev = self._device(device)
        key = f"heuristic:{self.hu_lower}:{self.mu_water}:{self.mu_air}"
        make = lambda h: dens.heuristic_mu(h, self.hu_lower, self.mu_water, self.mu_air)[None]  # noqa: E731
        return self._march(volume, P, size, key, make, dev)[:, 0]

    def _render(self, volume, P, size, quantity, rng, device) -> torch.Tensor:
        line = self.line_integral(volume, P, size, device)
        with _few_threads_for_small(line.numel() if line.device.type == "cpu" else 2**62):
            expected = self.photons * torch.exp(-line)
            counts = nz.poisson_counts(expected, nz.torch_generator(rng, device)) if self.noise else expected
            if quantity == "intensity":
                return counts
            return -torch.log(torch.clamp(counts, min=1.0 if self.noise else 1e-30) / self.photons)


@dataclass
class RealisticProjector(_CTProjector):
    """DeepDRR-equivalent physics.

    1. HU -> density (DeepDRR's piecewise-linear formula) and threshold materials (air <= -800 < soft tissue
       <= 350 < bone); the engine integrates density x fraction per material in one pass: area densities
       (g/cm^2). ``area_density`` can also be supplied by the caller (the emulated scanner's true materials).
    2. NIST mass attenuation (``xraydb``) of each material at the bins of a ``spekpy`` spectrum (default 90 kVp,
       4 mm Al, 2 keV bins; see :mod:`~synthex_lib.simulate.physics.spectrum`; ``energy_kev`` makes it
       mono-energetic); Beer-Lambert per bin; energy-integrating detector signal.
    3. Scatter by kernel superposition (:mod:`~synthex_lib.simulate.physics.scatter`), quantum noise for
       ``photon_count`` photons per flat-field pixel of pitch ``photon_pixel_mm`` (DeepDRR's default 10,000 per
       native 0.194 mm CIOS pixel; a binned pixel collects the photons of the native pixels it bins, so the count
       scales with its area; ``photon_pixel_mm=None`` applies ``photon_count`` to every pixel as is) correlated
       like a flat-panel
       detector, electronic noise (``electronic_noise_photons``, in photon-equivalents), saturation at
       ``saturation_rel`` x the flat field, and the log transform.

    ``intensity`` is the detector signal in keV per photon emitted towards the pixel (flat field = the
    spectrum's mean energy, 48.7 keV by default); ``neglog = -log(signal / flat field)``, an absolute line
    integral (DeepDRR instead min-max rescales each image).
    """

    kvp: float = 90.0
    al_mm: float = 4.0
    bin_kev: float = 2.0
    energy_kev: float | None = None
    materials: tuple[str, ...] = dens.MATERIALS
    photon_count: float = 10000.0
    photon_pixel_mm: float | None = 0.194
    noise: bool = True
    electronic_noise_photons: float = 2.0
    scatter: bool = True
    scatter_amplitude: float = sc.DEFAULT_AMPLITUDE
    scatter_beta: float = sc.DEFAULT_BETA
    scatter_sigma_mm: float = sc.DEFAULT_SIGMA_MM
    sdd_mm: float = 1020.0
    saturation_rel: float | None = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        self.name = "realistic"
        if len(self.materials) != 3:
            raise ConfigError("parameter 'materials' must name 3 materials (air, soft tissue, bone thresholds)")
        self.spectrum: Spectrum = (tube_spectrum(self.kvp, self.al_mm, bin_kev=self.bin_kev) if self.energy_kev is None
                                   else monoenergetic(self.energy_kev))
        self.mu_table = mass_attenuation_table(self.materials, self.spectrum.energies_kev)

    def area_density(self, volume, P, size, device=None) -> torch.Tensor:
        """``[B, 3, H, W]`` area density (g/cm^2) of air, soft tissue and bone along each ray."""
        dev = self._device(device)
        hu, spacing, origin = check_volume(volume)
        density = self._cache.get(hu, "density", dev, dens.hu_to_density)
        material = self._cache.get(hu, "material", dev, dens.material_index)
        out = material_line_integrals(density, material, len(self.materials), spacing, origin, P, size,
                                      self.step_mm, device=dev)
        return out / 10.0

    def image_from_area_density(self, area_density_g_cm2: torch.Tensor, P, quantity: str = "neglog",
                                rng: np.random.Generator | None = None,
                                mu_table: np.ndarray | None = None) -> torch.Tensor:
        """Detector image ``[B, H, W]`` from per-material area densities ``[B, M, H, W]`` (g/cm^2).

        ``mu_table`` ``[M, E]`` (cm^2/g at ``self.spectrum``'s energies) defaults to this projector's three
        materials; pass :func:`~synthex_lib.simulate.physics.materials.mass_attenuation_table` of other
        materials to image area densities computed elsewhere.
        """
        _check_quantity(quantity)
        A = area_density_g_cm2
        if A.device.type == "cpu":
            with _few_threads_for_small(A[:, 0].numel()):
                return self._image(A, P, quantity, rng, mu_table)
        return self._image(A, P, quantity, rng, mu_table)

    def _image(self, A, P, quantity, rng, mu_table) -> torch.Tensor:
        mu = self.mu_table if mu_table is None else mu_table
        signal, trans = det.polychromatic_signal(A, mu, self.spectrum)
        flat = det.flat_field_signal(self.spectrum)
        if self.scatter:
            cams = self.cameras(P, (signal.shape[-1], signal.shape[-2]))
            for b in range(signal.shape[0]):
                pitch = cams[min(b, len(cams) - 1)].pixel_mm
                s = sc.scatter_estimate(signal[b], trans[b], pitch, self.scatter_amplitude, self.scatter_beta,
                                        self.scatter_sigma_mm)
                trans[b] = trans[b] + s / flat
                signal[b] = signal[b] + s
        counts = self.photons_per_pixel(P, signal.shape[0])
        if self.noise:
            gen = nz.torch_generator(rng, signal.device)
            signal = torch.stack([nz.quantum_noise(signal[b:b + 1], trans[b:b + 1], counts[b], gen)[0]
                                  for b in range(signal.shape[0])])
            signal = torch.stack([nz.electronic_noise(signal[b:b + 1], self.electronic_noise_photons * flat / counts[b],
                                                      gen)[0] for b in range(signal.shape[0])])
        upper = None if self.saturation_rel is None else self.saturation_rel * flat
        signal = det.saturate(signal, upper)
        if quantity == "intensity":
            return signal
        return det.neglog(signal, flat, floor=0.1 / max(counts))

    def cameras(self, P, size: Sequence[int] | None = None) -> list[Camera]:
        """The :class:`~synthex_lib.geometry.Camera` of each view: given cameras as they are, a bare ``P``
        decomposed for this projector's ``sdd_mm``."""
        as_projection_batch(P)
        return as_cameras(P, self.sdd_mm, size)

    def photons_per_pixel(self, P, batch: int) -> list[float]:
        """Expected flat-field photons per pixel of each image: ``photon_count`` scaled by the pixel area
        relative to ``photon_pixel_mm`` (binning sums photons; :func:`photons_per_pixel`)."""
        if self.photon_pixel_mm is None:
            return [float(self.photon_count)] * batch
        cams = self.cameras(P)
        return [photons_per_pixel(self.photon_count, self.photon_pixel_mm, cams[min(b, len(cams) - 1)].pixel_mm)
                for b in range(batch)]

    def _render(self, volume, P, size, quantity, rng, device) -> torch.Tensor:
        return self.image_from_area_density(self.area_density(volume, P, size, device), P, quantity, rng)
