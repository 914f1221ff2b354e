"""Reading and writing volumes and landmarks: NIfTI volumes (SimpleITK), LPS reorientation, 3D Slicer markups, JSON.

Volumes are written with identity direction (array axes aligned with LPS, the ITK convention),
the specimen's origin (LPS mm of voxel [0, 0, 0]) and spacing; CT in int16 HU, labels and lesion
masks in uint8, gzip-compressed. Images read from elsewhere are brought to that frame by
:func:`to_lps_axes` (the one reorientation of the library: ``SimpleITK.DICOMOrient`` for an
axis-aligned direction, resampling for an oblique one).

Landmarks are 3D Slicer markups: :func:`write_markups` writes a point list (``.mrk.json``, LPS
unless asked for RAS; ``.fcsv`` by suffix) and :func:`read_markups` reads ``.mrk.json``
(``coordinateSystem`` LPS or RAS) and the older ``.fcsv`` (``# CoordinateSystem = LPS | RAS | 0 | 1``;
RAS when absent, as older Slicer wrote), always returning LPS mm. Points whose position is
undefined are left out. Every write is atomic and the same data give the same bytes.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.paths import atomic_write_text
from synthex_lib.core.volumes import check_volume_file

SLICER_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                 "Schema/markups-schema-v1.0.3.json#")
_RAS_FLIP = np.array([-1.0, -1.0, 1.0])
_FCSV_COLUMNS = "id,x,y,z,ow,ox,oy,oz,vis,sel,lock,label,desc,associatedNodeID"


# --- volumes -------------------------------------------------------------------------------------

def write_volume(path: str | os.PathLike[str], array: np.ndarray, spacing: tuple[float, float, float],
                 origin: tuple[float, float, float]) -> None:
    """Write a ``[z, y, x]`` array as NIfTI (LPS-aligned axes), atomically."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = sitk.GetImageFromArray(np.ascontiguousarray(array))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetOrigin(tuple(float(o) for o in origin))
    img.SetDirection((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".nii.gz", dir=path.parent)
    os.close(fd)
    try:
        sitk.WriteImage(img, tmp, useCompression=True)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_volume(path: str | os.PathLike[str]) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """Read a NIfTI volume: (array ``[z, y, x]``, spacing (x, y, z), origin LPS). Volumes whose
    direction is not LPS-aligned identity raise :class:`DataError`."""

    path = Path(path)
    if not path.exists():
        raise DataError(f"volume file {path} is missing; regenerate it with 'synthex lab generate'")
    try:
        check_volume_file(path)
    except DataError as exc:
        raise DataError(f"{exc}; or delete it and run 'synthex lab generate' again") from None
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(f"cannot read volume {path} (truncated or not NIfTI: {str(exc).splitlines()[0]}); "
                        "delete it and run 'synthex lab generate' again") from exc
    if not np.allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-6):
        raise DataError(f"volume {path} is not LPS-aligned (direction {img.GetDirection()}); resample it first")
    return sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin()


def to_lps_axes(img: Any, *, linear: bool = True, default: float = -1000.0,
                isotropic: bool = False) -> tuple[Any, str]:
    """A SimpleITK image with array axes aligned with LPS, and how it was obtained.

    Returns ``(image, how)`` with ``how`` one of ``identity`` (already aligned, returned as is),
    ``reoriented`` (an axis-aligned direction: a permutation with flips, e.g. RAS-stored NIfTI,
    reoriented exactly with ``SimpleITK.DICOMOrient``, no interpolation) or ``resampled`` (an
    oblique direction: resampled onto an axis-aligned grid covering the 8 corners of the volume,
    linearly in float32 with ``default`` outside, or by nearest neighbour keeping the pixel type
    with 0 outside for label maps). The grid keeps the input's spacing, or its finest spacing on
    every axis when ``isotropic``.
    """
    eye = np.eye(3)
    if np.allclose(np.asarray(img.GetDirection(), np.float64).reshape(3, 3), eye, atol=1e-6):
        return img, "identity"
    img = sitk.DICOMOrient(img, "LPS")
    if np.allclose(np.asarray(img.GetDirection(), np.float64).reshape(3, 3), eye, atol=1e-5):
        return img, "reoriented"
    size = np.array(img.GetSize())
    idx = np.stack(np.meshgrid(*[[0, s - 1] for s in size], indexing="ij"), -1).reshape(-1, 3)
    corners = np.array([img.TransformContinuousIndexToPhysicalPoint([float(c) for c in i]) for i in idx])
    lo, hi = corners.min(0), corners.max(0)
    spacing = np.array(img.GetSpacing(), np.float64)
    if isotropic:
        spacing = np.full(3, spacing.min())
    out_size = [int(n) for n in np.ceil((hi - lo) / spacing).astype(int) + 1]
    if linear:
        src, interp, fill, pixel = sitk.Cast(img, sitk.sitkFloat32), sitk.sitkLinear, default, sitk.sitkFloat32
    else:
        src, interp, fill, pixel = img, sitk.sitkNearestNeighbor, 0, img.GetPixelID()
    out = sitk.Resample(src, out_size, sitk.Transform(), interp, lo.tolist(), spacing.tolist(), eye.ravel().tolist(),
                        fill, pixel)
    return out, "resampled"


# --- landmarks (3D Slicer markups) -----------------------------------------------------------------

def _system(coordinate_system: str) -> np.ndarray:
    if coordinate_system not in ("LPS", "RAS"):
        raise ConfigError(f"parameter 'coordinate_system' must be LPS or RAS, got {coordinate_system!r}")
    return _RAS_FLIP if coordinate_system == "RAS" else np.ones(3)


def write_markups(path: str | os.PathLike[str], landmarks: Mapping[str, Any], name: str = "landmarks",
                  coordinate_system: str = "LPS") -> None:
    """Write landmarks (name -> LPS mm) as a 3D Slicer markups file, atomically: a ``.mrk.json`` point
    list, or the older ``.fcsv`` when ``path`` ends so; coordinates in ``coordinate_system`` (LPS or RAS)."""
    flip = _system(coordinate_system)
    if str(path).lower().endswith(".fcsv"):
        lines = ["# Markups fiducial file version = 4.11", f"# CoordinateSystem = {coordinate_system}",
                 f"# columns = {_FCSV_COLUMNS}"]
        for i, (k, v) in enumerate(landmarks.items()):
            x, y, z = np.asarray(v, float).reshape(3) * flip
            lines.append(f"vtkMRMLMarkupsFiducialNode_{i},{x:.6f},{y:.6f},{z:.6f},0,0,0,1,1,1,0,{k},,")
        atomic_write_text(path, "\n".join(lines) + "\n")
        return
    points = [{"id": str(i + 1), "label": k, "description": "", "associatedNodeID": "",
               "position": [round(float(v), 6) for v in np.asarray(p, float).reshape(3) * flip],
               "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
               "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}
              for i, (k, p) in enumerate(landmarks.items())]
    doc = {"@schema": SLICER_SCHEMA,
           "markups": [{"type": "Fiducial", "coordinateSystem": coordinate_system, "coordinateUnits": "mm",
                        "locked": True, "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d",
                        "lastUsedControlPointNumber": len(points), "name": name, "controlPoints": points,
                        "measurements": []}]}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def read_markups(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Landmarks (name -> LPS mm) from a 3D Slicer ``.mrk.json`` (LPS or RAS) or ``.fcsv`` file.

    Raises :class:`DataError` naming the file when it is missing, malformed, has a landmark
    without a label or 3 finite coordinates, or names a landmark twice."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"landmark file {p} is missing (regenerate lab specimens with 'synthex lab generate')")
    if p.name.lower().endswith(".fcsv"):
        return _read_fcsv(p)
    if p.name.lower().endswith(".json"):
        return _read_markups_json(p)
    raise DataError(f"{p}: unsupported landmark file; use 3D Slicer markups (.mrk.json) or .fcsv")


def _add(out: dict[str, np.ndarray], name: str, xyz: Any, ras: bool, p: Path) -> None:
    try:
        v = np.asarray([float(c) for c in xyz], np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{p}: landmark {name!r} has a non-numeric position {xyz!r}") from exc
    if v.shape != (3,) or not np.isfinite(v).all():
        raise DataError(f"{p}: landmark {name!r} must have 3 finite coordinates, got {xyz!r}")
    if not name:
        raise DataError(f"{p}: a landmark has no label (name)")
    if name in out:
        raise DataError(f"{p}: landmark {name!r} appears twice")
    out[name] = v * _RAS_FLIP if ras else v


def _read_markups_json(p: Path) -> dict[str, np.ndarray]:
    try:
        data = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{p}: not a readable JSON file ({exc})") from exc
    markups = data.get("markups") if isinstance(data, dict) else None
    if not isinstance(markups, list) or not markups:
        raise DataError(f"{p}: not a 3D Slicer markups file (no 'markups' list)")
    out: dict[str, np.ndarray] = {}
    for mk in markups:
        if not isinstance(mk, dict):
            raise DataError(f"{p}: not a 3D Slicer markups file (a markups entry is not an object)")
        system = str(mk.get("coordinateSystem", "LPS")).upper()
        if system not in ("LPS", "RAS"):
            raise DataError(f"{p}: unknown coordinateSystem {system!r} (expected LPS or RAS)")
        if mk.get("coordinateUnits", "mm") != "mm":
            raise DataError(f"{p}: coordinateUnits must be mm, got {mk.get('coordinateUnits')!r}")
        for cp in mk.get("controlPoints", []):
            if cp.get("positionStatus", "defined") != "defined":
                continue
            if "position" not in cp:
                raise DataError(f"{p}: control point {cp.get('label', '?')!r} has no 'position'")
            _add(out, str(cp.get("label", "")), cp["position"], system == "RAS", p)
    return out


def _read_fcsv(p: Path) -> dict[str, np.ndarray]:
    columns = _FCSV_COLUMNS.split(",")
    ras = True
    out: dict[str, np.ndarray] = {}
    try:
        lines = p.read_text().splitlines()
    except OSError as exc:
        raise DataError(f"{p}: cannot read ({exc})") from exc
    for line in lines:
        if line.startswith("#"):
            key, _, val = line[1:].partition("=")
            key, val = key.strip().lower(), val.strip()
            if key == "coordinatesystem":
                if val.upper() in ("LPS", "1"):
                    ras = False
                elif val.upper() in ("RAS", "0"):
                    ras = True
                else:
                    raise DataError(f"{p}: unknown CoordinateSystem {val!r}")
            elif key == "columns":
                columns = [c.strip() for c in val.split(",")]
            continue
        if not line.strip():
            continue
        fields = line.split(",")
        if len(fields) < len(columns) - 2:
            raise DataError(f"{p}: malformed line {line!r} (expected columns {','.join(columns)})")
        row = dict(zip(columns, fields, strict=False))
        _add(out, row.get("label", "").strip(), (row.get("x"), row.get("y"), row.get("z")), ras, p)
    if not out:
        raise DataError(f"{p}: no landmark in the file")
    return out


# --- JSON ----------------------------------------------------------------------------------------

def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON (sorted keys, deterministic), atomically."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=_jsonable) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise DataError(f"file {path} is missing; regenerate it with 'synthex lab generate'") from exc
    except ValueError as exc:
        raise DataError(f"file {path} is not valid JSON ({exc}); delete it and regenerate") from exc


def _jsonable(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.integer | np.floating | np.bool_):
        return o.item()
    raise TypeError(f"not JSON serializable: {type(o)}")
