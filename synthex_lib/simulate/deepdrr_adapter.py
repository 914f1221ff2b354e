"""Optional DeepDRR back end (``pip install -c constraints.txt '.[gpu]'``; NVIDIA GPU with CUDA, nvcc and EGL).

DeepDRR (arcadelab/deepdrr, GPL-3.0) is used as a library only; no code of it is copied here. It has no CPU
path, so this adapter checks what is missing before doing anything and raises ONE line naming it.

Parameter mapping (our name -> DeepDRR 1.2.x):

* the CT -> ``deepdrr.Volume.from_hu(hu[x, y, z], origin, spacing=spacing, use_thresholding=True)``: our
  ``[z, y, x]`` array is transposed to DeepDRR's IJK order with I along x; with no anatomical coordinate
  system its anatomical frame is ``origin + spacing * ijk``, i.e. our LPS world, and world = anatomical;
* ``P`` (3x4) -> :class:`~synthex_lib.geometry.Camera` (:meth:`Camera.from_projection`, the RQ
  decomposition ``P ~ K [R | t]`` with det(R) = +1, for ``sdd_mm``; a given camera is used as is) ->
  ``killeengeo.CameraProjection(CameraIntrinsicTransform(K', H, W), FrameTransform.from_rt(R, t))`` with
  ``K' =`` :func:`deepdrr_intrinsic` (the principal point moved by half a pixel: DeepDRR casts the ray of
  pixel (u, v) through (u + 0.5, v + 0.5), our ``P`` puts pixel centres on integers);
* ``photon_count`` (per flat-field pixel of pitch ``photon_pixel_mm``, as
  :class:`~synthex_lib.simulate.projectors.RealisticProjector`) -> DeepDRR's ``photon_count`` per output
  pixel, :func:`deepdrr_photon_count` (scaled by the pixel area, so both give the same photons per mm^2);
* ``step_mm`` -> ``step`` (DeepDRR's kernel steps in world mm; default 0.1), ``spectrum`` -> ``spectrum``
  (default ``"90KV_AL40"``), ``noise`` -> ``add_noise``; ``neglog=False`` always and the
  log is taken here against the spectrum's mean energy, so ``neglog`` is an absolute line integral like ours
  (DeepDRR's own ``neglog`` min-max rescales each image); ``scatter_num=0`` (scatter is deprecated in 1.2).

Not verified on hardware in this project's CI (no GPU): DeepDRR's pixel-centre convention (the
half-pixel shift above assumes DeepDRR casts the ray of pixel (u, v) through (u + 0.5, v + 0.5)) and
its handling of negative focal lengths (avoided: the decomposition gives positive focal lengths).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthex_lib.core.errors import ConfigError, SynthexError
from synthex_lib.geometry import Camera, as_cameras
from synthex_lib.simulate.projectors import NaiveProjector, _check_quantity, check_volume, photons_per_pixel
from synthex_lib.simulate.raymarch import _check_size, as_projection_batch


class BackendUnavailableError(SynthexError):
    """An optional back end cannot run here; the message names what is missing."""


def missing_requirements() -> str | None:
    """``None`` if DeepDRR can run here, else one line naming what is missing (checked without importing
    deepdrr, whose import itself fails without cupy/CUDA)."""
    missing = [m for m in ("deepdrr", "cupy", "killeengeo") if importlib.util.find_spec(m) is None]
    if missing:
        return (f"the deepdrr projector needs the Python packages {', '.join(missing)} (install the 'gpu' extra: "
                "pip install -c constraints.txt '.[gpu]') and an NVIDIA GPU with CUDA")
    has_cuda = torch.cuda.is_available()
    if not has_cuda:
        try:
            import cupy  # optional: CUDA only, in the gpu extra

            has_cuda = cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:
            has_cuda = False
    if not has_cuda:
        return "the deepdrr projector needs an NVIDIA GPU with a working CUDA driver; none was found"
    return None


def decompose_p(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P ~ K [R | t]`` with ``K[2, 2] = 1`` and ``det(R) = +1`` (P and -P are the same projective map):
    the intrinsics and pose of :meth:`Camera.from_projection`."""
    cam = Camera.from_projection(P, sdd_mm=1.0)  # the SDD does not enter K, R or t
    return cam.intrinsic, cam.pose.R, cam.pose.t


#: Offset (pixels) of DeepDRR's pixel centres: it casts the ray of pixel (u, v) through (u + 0.5, v + 0.5).
DEEPDRR_PIXEL_CENTRE = 0.5


def deepdrr_intrinsic(camera: Camera) -> np.ndarray:
    """3x3 intrinsics for DeepDRR such that its ray through (u + 0.5, v + 0.5) is our ray through pixel
    (u, v) of ``camera`` (pixel centres on integers): ``K' = T(0.5, 0.5) K``, the principal point moved by
    half a pixel (for ``K``'s last row (0, 0, 1))."""
    shift = np.array([[1.0, 0.0, DEEPDRR_PIXEL_CENTRE], [0.0, 1.0, DEEPDRR_PIXEL_CENTRE], [0.0, 0.0, 1.0]])
    return shift @ camera.intrinsic


def deepdrr_photon_count(projector: Any, camera: Camera) -> float:
    """DeepDRR's ``photon_count`` (photons per output pixel, flat field) equivalent to ``projector``'s
    ``photon_count`` per pixel of pitch ``photon_pixel_mm`` (a :class:`DeepDRRProjector` or a
    :class:`~synthex_lib.simulate.projectors.RealisticProjector`), for the pixels of ``camera``: the same
    photons per mm^2 of detector."""
    return photons_per_pixel(projector.photon_count, getattr(projector, "photon_pixel_mm", None), camera.pixel_mm)


@dataclass
class DeepDRRProjector:
    """The ``render`` interface on DeepDRR (see the module docstring for the mapping)."""

    step_mm: float = 0.1
    spectrum: str = "90KV_AL40"
    #: flat-field photons per pixel of pitch ``photon_pixel_mm`` (mm; ``None``: per output pixel), as
    #: RealisticProjector; mapped to DeepDRR's per-pixel count by :func:`deepdrr_photon_count`
    photon_count: float = 10000.0
    photon_pixel_mm: float | None = 0.194
    noise: bool = True
    #: source-to-detector distance (mm) of cameras recovered from bare ``P`` matrices
    sdd_mm: float = 1020.0
    name: str = "deepdrr"

    def __post_init__(self) -> None:
        why = missing_requirements()
        if why is not None:
            raise BackendUnavailableError(why)

    def render(self, volume: Any, P, size, quantity: str = "neglog", rng: np.random.Generator | None = None,
               device=None) -> np.ndarray:
        import deepdrr  # optional: GPL-3.0 back end in its own environment, CUDA only
        import killeengeo as kg  # optional: installed with deepdrr


        _check_quantity(quantity)
        W, H = _check_size(size)
        Pb = as_projection_batch(P)
        if quantity == "water-path-mm":  # geometry only: the shared engine at DeepDRR's step
            return NaiveProjector(step_mm=self.step_mm).render(volume, Pb, (W, H), quantity, device=device)
        cams = as_cameras(P, self.sdd_mm, (W, H))
        counts = [deepdrr_photon_count(self, c) for c in cams]
        if not np.allclose(counts, counts[0], rtol=1e-9):
            raise ConfigError("the deepdrr projector renders one batch at one pixel pitch; split the batch by pitch")
        hu, spacing, origin = check_volume(volume)
        if rng is not None:  # DeepDRR draws its noise from numpy's global generator
            np.random.seed(int(rng.integers(0, 2**32 - 1)))  # noqa: NPY002 - DeepDRR's own generator
        vol = deepdrr.Volume.from_hu(np.ascontiguousarray(np.asarray(hu, np.float32).transpose(2, 1, 0)),
                                     origin=kg.point(*origin), spacing=spacing, use_thresholding=True)
        images = []
        intrinsic = kg.CameraIntrinsicTransform(deepdrr_intrinsic(cams[0]), sensor_height=H, sensor_width=W)
        with deepdrr.Projector(vol, camera_intrinsics=intrinsic, step=self.step_mm, spectrum=self.spectrum,
                               photon_count=counts[0], add_noise=self.noise, neglog=False,
                               scatter_num=0) as projector:
            flat = _mean_energy_kev(projector, self.spectrum)
            for cam in cams:
                view = kg.CameraProjection(
                    kg.CameraIntrinsicTransform(deepdrr_intrinsic(cam), sensor_height=H, sensor_width=W),
                    kg.FrameTransform.from_rt(cam.pose.R, cam.pose.t))
                img = np.asarray(projector.project(view), np.float32)
                images.append(img if quantity == "intensity" else -np.log(np.clip(img / flat, 1e-6, None)))
        return np.stack(images).astype(np.float32)


def _mean_energy_kev(projector: Any, name: str) -> float:
    """Mean photon energy (keV) of DeepDRR's spectrum: its flat-field signal per emitted photon."""
    spec = getattr(projector, "spectrum", None)
    if not (isinstance(spec, np.ndarray) and spec.ndim == 2 and spec.shape[1] == 2):
        from deepdrr.projector import spectral_data  # optional: DeepDRR's spectra, CUDA only

        spec = np.asarray(spectral_data.spectrums[name])
    e_kev, w = spec[:, 0] / 1000.0, spec[:, 1]
    return float(np.sum(e_kev * w) / np.sum(w))
