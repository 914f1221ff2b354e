"""The specimen type shared by the virtual lab and the real-data loaders.

Frames: ``ct_hu`` and ``labels`` are indexed ``[z, y, x]`` with array axes aligned with LPS
(x index last, increasing x = patient left, y = posterior, z = superior). The world (LPS mm)
position of voxel ``[k, j, i]`` is ``origin + (i * spacing[0], j * spacing[1], k * spacing[2])``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthex_lib.core.errors import DataError


@dataclass
class Specimen:
    """A CT volume with its labels and 3D landmarks.

    Attributes:
        kind: ``"hip"``, ``"chest"`` or ``"tool"`` (a tool configuration inside a hip).
        ct_hu: CT in Hounsfield units, float32 ``[z, y, x]``.
        labels: label volume, uint8 ``[z, y, x]`` (hip: ids of :data:`synthex_lib.core.constants.HIP_LABELS`).
        spacing: voxel size (x, y, z) in mm.
        origin: LPS mm of voxel ``[0, 0, 0]``.
        landmarks: name -> LPS mm, shape (3,).
        specimen_id: a short identifier (``"lab-01"``, ``"17-1882"``, ...).
        lesion_mask: chest only: uint8 ``[z, y, x]`` 3D COVID-19 lesion mask.
        anatomy: lab only: the continuous anatomy (the truth the emulated scanners image).
        meta: provenance (generator version, seed, profile, source file ...).
    """

    kind: str
    ct_hu: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    landmarks: dict[str, np.ndarray]
    specimen_id: str = "specimen"
    lesion_mask: np.ndarray | None = None
    anatomy: Any = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.ct_hu = np.asarray(self.ct_hu, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.uint8)
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.landmarks = {k: np.asarray(v, dtype=np.float64).reshape(3) for k, v in self.landmarks.items()}
        if self.ct_hu.ndim != 3:
            raise DataError(f"specimen {self.specimen_id}: ct_hu must be 3D [z, y, x], got {self.ct_hu.shape}")
        if self.labels.shape != self.ct_hu.shape:
            raise DataError(
                f"specimen {self.specimen_id}: labels shape {self.labels.shape} != ct_hu shape {self.ct_hu.shape}"
            )
        if not np.isfinite(self.ct_hu).all():
            raise DataError(f"specimen {self.specimen_id}: ct_hu contains NaN or inf; clean the volume first")
        if any(s <= 0 for s in self.spacing):
            raise DataError(f"specimen {self.specimen_id}: spacing must be positive, got {self.spacing}")

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.ct_hu.shape
        return x, y, z

    @property
    def extent_mm(self) -> np.ndarray:
        """Physical size (x, y, z) in mm covered by voxel centres."""
        return (np.array(self.shape_xyz) - 1) * np.array(self.spacing)

    @property
    def center_lps(self) -> np.ndarray:
        """LPS mm of the volume centre."""
        return np.array(self.origin) + self.extent_mm / 2

    def index_to_world(self, ijk: np.ndarray) -> np.ndarray:
        """(..., 3) voxel indices (i=x, j=y, k=z) -> LPS mm."""
        return np.asarray(self.origin) + np.asarray(ijk, dtype=np.float64) * np.asarray(self.spacing)

    def world_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """(..., 3) LPS mm -> continuous voxel indices (i=x, j=y, k=z)."""
        return (np.asarray(xyz, dtype=np.float64) - np.asarray(self.origin)) / np.asarray(self.spacing)

    def landmark_array(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """(L, 3) LPS mm in the given order; NaN rows for landmarks this specimen lacks."""
        out = np.full((len(names), 3), np.nan)
        for i, n in enumerate(names):
            if n in self.landmarks:
                out[i] = self.landmarks[n]
        return out
