"""Optional DeepDRR back end (``pip install -c constraints.txt '.[gpu]'``; NVIDIA GPU with CUDA, nvcc and EGL).

DeepDRR (arcadelab/deepdrr, GPL-3.0) is used as a library only; no code of it is copied here. It has no CPU
path, so this adapter checks what is missing before doing anything and raises ONE line naming it.

Parameter mapping (our name -> DeepDRR 1.2.x):

* the CT -> ``deepdrr.Volume.from_hu(hu[x, y, z], origin, spacing=spacing, use_thresholding=True)``: our
  ``[z, y, x]`` array is transposed to DeepDRR's IJK order with I along x; with no anatomical coordinate
  system its anatomical frame is ``origin + spacing * ijk``, i.e. our LPS world, and world = anatomical;
* ``P`` (3x4) -> RQ decomposition ``P ~ K [R | t]`` (sign chosen so that det(R) = +1) ->
  ``killeengeo.CameraProjection(CameraIntrinsicTransform(K, H, W), FrameTransform.from_rt(R, t))``;
* ``step_mm`` -> ``step`` (DeepDRR's kernel steps in world mm; default 0.1), ``spectrum`` -> ``spectrum``
  (default ``"90KV_AL40"``), ``photon_count``, ``noise`` -> ``add_noise``; ``neglog=False`` always and the
  log is taken here against the spectrum's mean energy, so ``neglog`` is an absolute line integral like ours
  (DeepDRR's own ``neglog`` min-max rescales each image); ``scatter_num=0`` (scatter is deprecated in 1.2).

Not verified on hardware in this project's CI (no GPU): DeepDRR's pixel-centre convention (our P puts the
centre of the top-left pixel at (0, 0)) and its handling of negative focal lengths.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import rq

from synthex_lib.core.errors import SynthexError
from synthex_lib.simulate.projectors import NaiveProjector, _check_quantity, check_volume
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
    """``P ~ K [R | t]`` with ``K[2, 2] = 1`` and ``det(R) = +1`` (P and -P are the same projective map)."""

    P = np.asarray(P, np.float64)
    if np.linalg.det(P[:, :3]) < 0:
        P = -P
    K, R = rq(P[:, :3])
    # make K's diagonal positive (S S = I); then det(R) = det(M) / det(K) > 0, a proper rotation
    S = np.diag(np.sign(np.diag(K)))  # noqa: N806
    K, R = K @ S, S @ R
    t = np.linalg.solve(K, P[:, 3])
    scale = K[2, 2]
    return K / scale, R, t


@dataclass
class DeepDRRProjector:
    """The ``render`` interface on DeepDRR (see the module docstring for the mapping)."""

    step_mm: float = 0.1
    spectrum: str = "90KV_AL40"
    photon_count: float = 10000.0
    noise: bool = True
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
        hu, spacing, origin = check_volume(volume)
        if rng is not None:  # DeepDRR draws its noise from numpy's global generator
            np.random.seed(int(rng.integers(0, 2**32 - 1)))  # noqa: NPY002 - DeepDRR's own generator
        vol = deepdrr.Volume.from_hu(np.ascontiguousarray(np.asarray(hu, np.float32).transpose(2, 1, 0)),
                                     origin=kg.point(*origin), spacing=spacing, use_thresholding=True)
        images = []
        K0, _, _ = decompose_p(Pb[0])  # noqa: N806
        intrinsic = kg.CameraIntrinsicTransform(K0, sensor_height=H, sensor_width=W)
        with deepdrr.Projector(vol, camera_intrinsics=intrinsic, step=self.step_mm, spectrum=self.spectrum,
                               photon_count=self.photon_count, add_noise=self.noise, neglog=False,
                               scatter_num=0) as projector:
            flat = _mean_energy_kev(projector, self.spectrum)
            for Pi in Pb:  # noqa: N806
                K, R, t = decompose_p(Pi)
                cam = kg.CameraProjection(kg.CameraIntrinsicTransform(K, sensor_height=H, sensor_width=W),
                                          kg.FrameTransform.from_rt(R, t))
                img = np.asarray(projector.project(cam), np.float32)
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
