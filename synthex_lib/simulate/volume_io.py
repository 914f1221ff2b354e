"""Reading CT volumes (NIfTI, NRRD, MHA and anything else SimpleITK reads) into the projectors' frame.

SimpleITK reports every image in LPS physical coordinates (ITK converts NIfTI's RAS on reading). The
projectors need array axes aligned with LPS (``[z, y, x]``, increasing index = increasing L, P, S), so:

* an axis-aligned direction matrix (a permutation with flips; e.g. RAS-stored NIfTI) is reoriented exactly
  with ``SimpleITK.DICOMOrient`` (no interpolation);
* an oblique direction matrix is resampled (trilinear, air = -1024 HU outside) onto an axis-aligned grid that
  covers the volume, at the input's finest spacing.

Both are :func:`synthex_lib.anatomy.io.to_lps_axes`, the library's one reorientation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from synthex_lib.anatomy.io import to_lps_axes
from synthex_lib.core.errors import DataError
from synthex_lib.core.volumes import check_ct_array, check_volume_file

AIR_HU = -1024.0


@dataclass
class Volume:
    """A CT volume in the projectors' frame: ``ct_hu`` float32 ``[z, y, x]`` (HU, axes aligned with LPS),
    ``spacing`` (x, y, z) mm, ``origin`` LPS mm of voxel ``[0, 0, 0]``."""

    ct_hu: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def center_lps(self) -> np.ndarray:
        """LPS mm of the volume centre."""
        z, y, x = self.ct_hu.shape
        return np.asarray(self.origin) + (np.array([x, y, z]) - 1) / 2 * np.asarray(self.spacing)


def volume_from_file(path: str | Path) -> Volume:
    """Read a CT (HU) file into a :class:`Volume` usable by every projector's ``render``.

    Raises :class:`DataError` naming the file if it is missing, unreadable, truncated, not 3D, too small, of a
    voxel type that cannot hold HU, or contains NaN/inf or values outside the plausible HU range
    (:mod:`synthex_lib.core.volumes`, the checks every volume reader makes).
    """

    p = Path(path)
    if not p.is_file():
        raise DataError(f"CT file {p}: not found; give a NIfTI (.nii/.nii.gz), NRRD or MHA file")
    check_volume_file(p)
    try:
        img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise DataError(f"CT file {p}: SimpleITK cannot read it ({first}); is it a valid NIfTI/NRRD/MHA?") from None
    if img.GetDimension() != 3 or img.GetNumberOfComponentsPerPixel() != 1:
        raise DataError(f"CT file {p}: expected a 3D scalar image, got dimension {img.GetDimension()} with "
                        f"{img.GetNumberOfComponentsPerPixel()} components")
    check_ct_array(sitk.GetArrayViewFromImage(img), f"CT file {p}")
    img, how = to_lps_axes(img, default=AIR_HU, isotropic=True)
    hu = sitk.GetArrayFromImage(img).astype(np.float32)  # [z, y, x]
    if any(s <= 0 for s in img.GetSpacing()):
        raise DataError(f"CT file {p}: non-positive spacing {img.GetSpacing()}")
    return Volume(ct_hu=hu, spacing=tuple(float(s) for s in img.GetSpacing()),
                  origin=tuple(float(o) for o in img.GetOrigin()), source=str(p), meta={"orientation": how})
