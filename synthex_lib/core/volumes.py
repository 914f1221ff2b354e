"""Checks of CT volumes, whatever the format: the one validation layer every volume reader calls.

* :func:`check_volume_file` before a file is parsed: a gzip-compressed file (``.nii.gz``, ``.gz``)
  must decompress whole (SimpleITK reads a truncated ``.nii.gz`` as zeros), and a NIfTI file's raw
  voxels (read with nibabel, before any scaling) must be finite (SimpleITK's NIfTI reader turns NaN
  into 0) and its ``scl_slope`` / ``scl_inter`` finite.
* :func:`check_ct_array` on the voxel array once read: a real scalar dtype able to hold HU (no bool,
  complex or 8-bit integers), at least :data:`MIN_VOXELS_PER_AXIS` voxels along every axis, finite
  values and a plausible HU range (:data:`HU_RANGE`).

Every problem raises one :class:`~synthex_lib.core.errors.DataError` naming the file and what to do.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from synthex_lib.core.errors import DataError

#: plausible HU (air about -1000; scanners pad outside the field of view down to -3024; metal and extended
#: scales reach tens of thousands). Values outside mean raw values, a wrong scaling or a corrupted file.
HU_RANGE = (-4096.0, 40000.0)
#: a CT needs at least this many voxels along each axis (a single voxel renders nothing meaningful)
MIN_VOXELS_PER_AXIS = 2


def _is_nifti(p: Path) -> bool:
    name = p.name.lower()
    return name.endswith((".nii", ".nii.gz"))


def check_gzip_whole(path: str | os.PathLike[str]) -> None:
    """Raise :class:`DataError` unless the gzip file ``path`` decompresses to its end-of-stream marker."""
    p = Path(path)
    try:
        with gzip.open(p, "rb") as f:
            while f.read(1 << 22):
                pass
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise DataError(f"{p}: cannot read the image: the compressed data is truncated or corrupted ({exc}); "
                        "download or export it again") from None


def check_volume_file(path: str | os.PathLike[str]) -> None:
    """Check a volume file before it is parsed (compressed data whole, NIfTI raw voxels finite).

    Folders (DICOM series) and formats other than gzip / NIfTI pass unchanged: their voxels are checked by
    :func:`check_ct_array` after reading.
    """
    p = Path(path)
    if not p.is_file():
        return
    if _is_nifti(p):
        _check_nifti(p)
    elif p.name.lower().endswith(".gz"):
        check_gzip_whole(p)


def _check_nifti(p: Path) -> None:
    try:
        img: Any = nib.load(str(p))
        raw = np.asarray(img.dataobj.get_unscaled())
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{p}: cannot read the image: the compressed data is truncated or corrupted ({exc}); "
                        "download or export it again") from None
    except Exception as exc:  # nibabel raises many types (ImageFileError, ValueError, OSError) on bad files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{p}: cannot read the image ({first}); the file may be truncated or corrupted") from None
    slope, inter = img.dataobj.slope, img.dataobj.inter
    if not (np.isfinite(slope) and np.isfinite(inter)):
        raise DataError(f"{p}: the NIfTI header's scaling (scl_slope {slope}, scl_inter {inter}) is not finite; "
                        "fix the header")
    if raw.dtype.kind in "fc" and not np.isfinite(raw).all():
        bad = int((~np.isfinite(raw)).sum())
        raise DataError(f"{p}: {bad} NaN or inf voxel(s) in the stored data; clean the volume first")


def check_ct_array(arr: np.ndarray, source: str | os.PathLike[str], *, hu: bool = True) -> None:
    """Raise :class:`DataError` naming ``source`` unless ``arr`` is a usable CT volume.

    Args:
        arr: the voxel array as read (its dtype is checked, so pass it before any cast).
        hu: also check the HU range (:data:`HU_RANGE`).
    """
    arr = np.asarray(arr)
    kind = arr.dtype.kind
    if kind not in "iuf" or (kind in "iu" and arr.dtype.itemsize < 2):
        raise DataError(f"{source}: voxel type {arr.dtype} cannot hold CT values in HU; store the CT as int16, "
                        "float32 or float64")
    if arr.ndim != 3:
        raise DataError(f"{source}: expected a 3D volume, found shape {arr.shape}")
    if min(arr.shape) < MIN_VOXELS_PER_AXIS:
        raise DataError(f"{source}: volume of shape {arr.shape} is too small; a CT needs at least "
                        f"{MIN_VOXELS_PER_AXIS} voxels along every axis")
    if kind == "f" and not np.isfinite(arr).all():
        raise DataError(f"{source}: the CT contains NaN or inf voxels; clean the volume first")
    if hu:
        lo, hi = float(arr.min()), float(arr.max())
        if lo < HU_RANGE[0] or hi > HU_RANGE[1]:
            raise DataError(f"{source}: CT values {lo:.4g}..{hi:.4g} are outside the plausible HU range "
                            f"{HU_RANGE[0]:.0f}..{HU_RANGE[1]:.0f}; check the file's scaling (RescaleSlope/"
                            "Intercept, scl_slope) or whether it holds HU at all")
