"""The HDF5 layout of every image dataset: SyntheX / DeepFluoro-preprocessed, plus our fields.

One file holds one image domain of one task (``real.h5``, ``realistic.h5``, ``heuristic.h5``,
``naive.h5``, ...). Keys::

    /land-names/num-lands            int scalar
    /land-names/land-00 ...          landmark names (str), in the order of ``lands``
    /<group>/projs   float32 [N, H, W]  images, log (line-integral) domain, bone bright
    /<group>/segs    uint8   [N, H, W]  2D label map (task ids; 0 background)
    /<group>/lands   float32 [N, 2, L]  row 0 = x = col, row 1 = y = row, pixels of the stored image
    /<group>/visible bool    [N, L]     landmark inside the image and its structure in view (ours)
    /<group>/P       float64 [N, 3, 4]  projection matrix, LPS mm -> pixel (col, row) (ours)

``<group>`` is the specimen key (``"01"`` ... as in DeepFluoro's preprocessed files). File
attributes record provenance: ``task``, ``projector``, ``profile``, ``seed``, ``image_size``,
``pixel_mm``, ``synthex_version``, ``created``. The official code splits images and labels into
two files; readers of this project accept both (labels from ``label_file`` when given).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from synthex_lib.core.errors import DataError

REQUIRED_KEYS = ("projs", "segs", "lands")


@dataclass
class SpecimenImages:
    """All images of one specimen group, in memory."""

    projs: np.ndarray  # float32 [N, H, W]
    segs: np.ndarray  # uint8 [N, H, W]
    lands: np.ndarray  # float32 [N, 2, L]
    visible: np.ndarray | None = None  # bool [N, L]
    P: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def landmarks_xy(self) -> np.ndarray:
        """(N, L, 2) landmarks as (x = col, y = row)."""
        return np.transpose(self.lands, (0, 2, 1))

    def visibility(self) -> np.ndarray:
        """(N, L) bool: stored visibility, or inside-the-image when the file has none."""
        if self.visible is not None:
            return self.visible.astype(bool)
        h, w = self.projs.shape[1:]
        xy = self.landmarks_xy
        return np.isfinite(xy).all(-1) & (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & \
            (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)


def _open(path: str | os.PathLike[str]) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found; generate it with 'synthex simulate' or check the path")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(
            f"{path}: not a readable HDF5 file ({exc}); it may be truncated: delete and regenerate it"
        ) from exc


def read_landmark_names(path: str | os.PathLike[str]) -> list[str]:
    with _open(path) as f:
        if "land-names" not in f:
            raise DataError(f"{path}: missing key 'land-names'; not a SyntheX/DeepFluoro-preprocessed file")
        g = f["land-names"]
        n = int(g["num-lands"][()])
        return [_as_str(g[f"land-{i:02d}"][()]) for i in range(n)]


def list_groups(path: str | os.PathLike[str]) -> list[str]:
    with _open(path) as f:
        return sorted(k for k in f.keys() if k != "land-names" and isinstance(f[k], h5py.Group))


def read_file_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    with _open(path) as f:
        return {k: _py(v) for k, v in f.attrs.items()}


def read_group(path: str | os.PathLike[str], group: str, label_file: str | os.PathLike[str] | None = None,
               index: slice | np.ndarray | None = None) -> SpecimenImages:
    """Read one specimen group (optionally a subset of its images)."""
    sel = slice(None) if index is None else index
    with _open(path) as f:
        if group not in f:
            raise DataError(f"{path}: missing group {group!r}; groups present: {sorted(f.keys())}")
        g = f[group]
        if "projs" not in g:
            raise DataError(f"{path}: group {group!r} has no 'projs' dataset")
        projs = np.asarray(g["projs"][sel], dtype=np.float32)
        lab_g = g
        lab_f = None
        if label_file is not None:
            lab_f = _open(label_file)
            if group not in lab_f:
                raise DataError(f"{label_file}: missing group {group!r}")
            lab_g = lab_f[group]
        try:
            for key in ("segs", "lands"):
                if key not in lab_g:
                    src = label_file or path
                    raise DataError(f"{src}: group {group!r} is missing required key '{key}'")
            segs = np.asarray(lab_g["segs"][sel]).astype(np.uint8)
            lands = np.asarray(lab_g["lands"][sel], dtype=np.float32)
            visible = np.asarray(lab_g["visible"][sel]).astype(bool) if "visible" in lab_g else None
            P = np.asarray(g["P"][sel], dtype=np.float64) if "P" in g else None
            attrs = {k: _py(v) for k, v in g.attrs.items()}
        finally:
            if lab_f is not None:
                lab_f.close()
    n, h, w = projs.shape
    if segs.shape != projs.shape:
        raise DataError(f"{path}: group {group!r}: segs shape {segs.shape} != projs shape {projs.shape}")
    if lands.ndim != 3 or lands.shape[0] != n or lands.shape[1] != 2:
        raise DataError(f"{path}: group {group!r}: lands must be [N, 2, L], got {lands.shape}")
    return SpecimenImages(projs, segs, lands, visible, P, attrs)


def write_group(f: h5py.File, group: str, images: SpecimenImages) -> None:
    """Write one specimen group into an open file (the caller makes the whole file atomic)."""
    g = f.require_group(group)
    g.create_dataset("projs", data=images.projs.astype(np.float32), compression="gzip", compression_opts=1)
    g.create_dataset("segs", data=images.segs.astype(np.uint8), compression="gzip", compression_opts=1)
    g.create_dataset("lands", data=images.lands.astype(np.float32))
    if images.visible is not None:
        g.create_dataset("visible", data=images.visible.astype(bool))
    if images.P is not None:
        g.create_dataset("P", data=images.P.astype(np.float64))
    for k, v in images.attrs.items():
        g.attrs[k] = v


def write_landmark_names(f: h5py.File, names: list[str] | tuple[str, ...]) -> None:
    g = f.require_group("land-names")
    g.create_dataset("num-lands", data=len(names))
    for i, n in enumerate(names):
        g.create_dataset(f"land-{i:02d}", data=n)


def _as_str(v: Any) -> str:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.ndarray):
        return _as_str(v.reshape(-1)[0])
    return str(v)


def _py(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v
