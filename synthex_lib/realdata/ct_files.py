"""Bring your own CT: NIfTI, NRRD, MHA or a DICOM series, a label map and landmarks, into a :class:`Specimen`.

Everything goes through SimpleITK, whose physical space is LPS millimetres (NIfTI's RAS is
converted on reading; DICOM slices are sorted and rescaled to HU by GDCM through
RescaleSlope/Intercept). Volumes are reoriented to axes aligned with LPS
(``SimpleITK.DICOMOrient(image, "LPS")``), and oblique volumes are resampled onto an
axis-aligned grid, so the arrays are ``[z, y, x]`` with ``origin`` the LPS position of voxel
``[0, 0, 0]`` as :class:`~synthex_lib.anatomy.specimen.Specimen` requires. Label maps are
resampled onto the CT grid (nearest neighbour) when their grid differs.

Landmarks come from 3D Slicer markups, read by :func:`synthex_lib.anatomy.io.read_markups`:
``.mrk.json`` (``coordinateSystem`` LPS or RAS) or the older ``.fcsv`` (``# CoordinateSystem = LPS |
RAS | 0 | 1``; RAS when absent, as older Slicer wrote). Points whose position is undefined are left
out (the specimen reports them as NaN). Reorientation is :func:`synthex_lib.anatomy.io.to_lps_axes`.

Label maps of other datasets are mapped to the hip ids of :data:`synthex_lib.core.constants.HIP_LABELS`
with ``label_map`` (a dict, or a preset name from :data:`LABEL_MAPS`); a folder of per-structure
masks (TotalSegmentator's ``segmentations/``) is combined with :data:`TOTALSEG_HIP_ROIS`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from synthex_lib.anatomy.io import read_markups, to_lps_axes
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.volumes import check_ct_array, check_volume_file

#: Label presets: file value -> hip label id (values not listed become background).
LABEL_MAPS: dict[str, dict[int, int]] = {
    # DeepFluoro / the lab: ids 1-6 as they are; the lower sacrum (7) is not labelled in 2D
    "deepfluoro": {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6},
    # CTPelvic1K *_mask_4label: 1 sacrum, 2 right hip, 3 left hip, 4 lumbar vertebra (no femurs);
    # the whole sacrum becomes "upper sacrum" (an approximation: CTPelvic1K does not split it)
    "ctpelvic1k": {1: 4, 2: 2, 3: 1, 4: 3},
}

#: TotalSegmentator mask names -> hip label id (the lumbar vertebrae become "vertebrae").
TOTALSEG_HIP_ROIS: dict[str, int] = {
    "hip_left": 1, "hip_right": 2, "sacrum": 4, "femur_left": 5, "femur_right": 6,
    **{f"vertebrae_L{i}": 3 for i in range(1, 6)},
}

_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def _sitk() -> Any:
    return sitk


def read_image(path: str | os.PathLike[str], series_uid: str | None = None, *, nearest: bool = False) -> Any:
    """Read a NIfTI/NRRD/MHA file or a DICOM series folder as a SimpleITK image with axis-aligned LPS axes
    (an oblique volume is resampled: linearly, or by nearest neighbour for label maps)."""
    sitk = _sitk()
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: not found (expected a NIfTI, NRRD or MHA file, or a folder of DICOM slices)")
    try:
        if p.is_dir():
            reader = sitk.ImageSeriesReader()
            ids = list(reader.GetGDCMSeriesIDs(str(p)))
            if not ids:
                raise DataError(f"{p}: no DICOM series in this folder")
            if series_uid is None:
                if len(ids) > 1:
                    raise DataError(f"{p}: {len(ids)} DICOM series in this folder: pass series_uid, one of {ids}")
                series_uid = ids[0]
            elif series_uid not in ids:
                raise DataError(f"{p}: no DICOM series {series_uid!r}; series present: {ids}")
            files = reader.GetGDCMSeriesFileNames(str(p), series_uid)
            if len(files) < 2:
                raise DataError(f"{p}: DICOM series {series_uid} has {len(files)} slice(s); a CT needs at least 2")
            reader.SetFileNames(files)
            img = reader.Execute()
        else:
            if not p.name.lower().endswith(_SUFFIXES):
                raise DataError(f"{p}: unsupported file type; use NIfTI (.nii, .nii.gz), NRRD (.nrrd, .nhdr), "
                                "MetaImage (.mha, .mhd) or a DICOM series folder")
            check_volume_file(p)
            img = sitk.ReadImage(str(p))
    except RuntimeError as exc:
        msg = str(exc).strip().splitlines()
        raise DataError(f"{p}: cannot read the image ({msg[-1] if msg else exc}); the file may be truncated") from exc
    if img.GetDimension() != 3:
        raise DataError(f"{p}: expected a 3D volume, found {img.GetDimension()}D")
    if img.GetNumberOfComponentsPerPixel() != 1:
        n = img.GetNumberOfComponentsPerPixel()
        raise DataError(f"{p}: expected a scalar volume, found {n} components per voxel")
    return to_lps_axes(img, linear=not nearest)[0]


def _on_grid(img: Any, ref: Any, nearest: bool = True) -> Any:
    sitk = _sitk()
    same = img.GetSize() == ref.GetSize() and np.allclose(img.GetSpacing(), ref.GetSpacing(), atol=1e-4) and \
        np.allclose(img.GetOrigin(), ref.GetOrigin(), atol=1e-3) and \
        np.allclose(img.GetDirection(), ref.GetDirection(), atol=1e-5)
    if same:
        return img
    return sitk.Resample(img, ref, sitk.Transform(), sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear, 0,
                         img.GetPixelID())


def _read_labels(path: Path, ref: Any, label_map: Mapping[int, int] | Mapping[str, int] | str | None,
                 kind: str) -> np.ndarray:
    sitk = _sitk()
    if path.is_dir() and not any(path.glob("*.dcm")):  # a folder of per-structure masks
        rois = label_map if isinstance(label_map, Mapping) else TOTALSEG_HIP_ROIS
        out = np.zeros(sitk.GetArrayViewFromImage(ref).shape, np.uint8)
        found = 0
        for name, lab in rois.items():
            f = next((path / f"{name}{s}" for s in _SUFFIXES if (path / f"{name}{s}").exists()), None)
            if f is None:
                continue
            mask = sitk.GetArrayFromImage(_on_grid(read_image(f, nearest=True), ref))
            out[(mask > 0) & (out == 0)] = int(lab)
            found += 1
        if not found:
            raise DataError(f"{path}: none of the masks {sorted(rois)} found (expected <name>.nii.gz files)")
        return out
    lab_img = read_image(path, nearest=True)
    if lab_img.GetPixelID() in (sitk.sitkFloat32, sitk.sitkFloat64):
        arr = sitk.GetArrayViewFromImage(lab_img)
        if not np.allclose(arr, np.round(arr)):
            raise DataError(f"{path}: a label map must hold integer values, found fractional ones")
    lab_img = _on_grid(lab_img, ref)
    arr = np.rint(sitk.GetArrayFromImage(lab_img)).astype(np.int64)
    if isinstance(label_map, str):
        if label_map not in LABEL_MAPS:
            raise ConfigError(f"unknown label_map {label_map!r}: choose one of {sorted(LABEL_MAPS)} or pass a dict")
        label_map = LABEL_MAPS[label_map]
    if label_map is not None:
        lut = np.zeros(max(int(arr.max()), max(int(k) for k in label_map)) + 1, np.uint8)
        for k, v in label_map.items():
            lut[int(k)] = int(v)
        if arr.min() < 0:
            raise DataError(f"{path}: negative label values")
        return lut[arr]
    if kind == "hip" and (arr.min() < 0 or arr.max() > 6):
        raise DataError(f"{path}: hip labels must be 0-6 (DeepFluoro ids), found {arr.min()}..{arr.max()}: pass "
                        f"label_map (a dict or one of {sorted(LABEL_MAPS)})")
    if arr.min() < 0 or arr.max() > 255:
        raise DataError(f"{path}: label values must be 0-255, found {arr.min()}..{arr.max()}")
    return arr.astype(np.uint8)


def load_ct_specimen(ct: str | os.PathLike[str], labels: str | os.PathLike[str] | None = None,
                     landmarks: str | os.PathLike[str] | Mapping[str, Any] | None = None, *, kind: str = "hip",
                     specimen_id: str | None = None,
                     label_map: Mapping[int, int] | Mapping[str, int] | str | None = None,
                     lesions: str | os.PathLike[str] | None = None, series_uid: str | None = None,
                     check_hu: bool = True) -> Specimen:
    """A :class:`Specimen` from your own files.

    Args:
        ct: NIfTI/NRRD/MHA file or DICOM series folder, in HU.
        labels: label map file (or a folder of per-structure masks); None gives an all-background map.
        landmarks: Slicer ``.mrk.json`` / ``.fcsv`` file, or a mapping name -> LPS mm.
        kind: ``hip``, ``chest`` or ``tool``.
        label_map: file value -> hip id (dict or :data:`LABEL_MAPS` preset), or mask name -> id for a
            mask folder.
        lesions: chest only: a 3D lesion mask (non-zero = lesion), resampled onto the CT grid.
        series_uid: which DICOM series when the folder holds several.
        check_hu: refuse a CT whose minimum is >= 0 (raw scanner values rather than HU).
    """
    sitk = _sitk()
    if kind not in ("hip", "chest", "tool"):
        raise ConfigError(f"parameter 'kind' must be hip, chest or tool, got {kind!r}")
    ct_path = Path(ct)
    img = read_image(ct_path, series_uid)
    check_ct_array(sitk.GetArrayViewFromImage(img), ct_path, hu=check_hu)
    arr = sitk.GetArrayFromImage(img).astype(np.float32)
    if check_hu and arr.min() >= 0:
        raise DataError(f"{ct_path}: CT values {arr.min():.0f}..{arr.max():.0f} do not look like HU (air is about "
                        "-1000): the file may hold raw scanner values; apply RescaleSlope/Intercept first (or pass "
                        "check_hu=False)")
    lab = _read_labels(Path(labels), img, label_map, kind) if labels is not None else np.zeros(arr.shape, np.uint8)
    lesion = None
    if lesions is not None:
        les = _on_grid(read_image(lesions, nearest=True), img)
        lesion = (sitk.GetArrayFromImage(les) > 0).astype(np.uint8)
    if landmarks is None:
        lands: dict[str, np.ndarray] = {}
    elif isinstance(landmarks, Mapping):
        lands = {str(k): np.asarray(v, np.float64).reshape(3) for k, v in landmarks.items()}
    else:
        lands = read_markups(landmarks)
    sid = specimen_id or _stem(ct_path)
    return Specimen(kind=kind, ct_hu=arr, labels=lab, spacing=img.GetSpacing(), origin=img.GetOrigin(),
                    landmarks=lands, specimen_id=sid, lesion_mask=lesion,
                    meta={"source": str(ct_path), "labels": str(labels) if labels is not None else None,
                          "landmarks": str(landmarks) if isinstance(landmarks, str | os.PathLike) else None})


def _stem(p: Path) -> str:
    name = p.name
    for s in _SUFFIXES:
        if name.lower().endswith(s):
            return name[: -len(s)]
    return name
