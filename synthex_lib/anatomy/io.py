"""Reading and writing lab specimens: NIfTI volumes (SimpleITK), 3D Slicer markups, JSON.

Volumes are written with identity direction (array axes aligned with LPS, the ITK convention),
the specimen's origin (LPS mm of voxel [0, 0, 0]) and spacing; CT in int16 HU, labels and lesion
masks in uint8, gzip-compressed. Landmarks are a 3D Slicer markups point list (``.mrk.json``,
LPS). Every write is atomic and the same data give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from synthex_lib.core.errors import DataError
from synthex_lib.core.paths import atomic_write_text

SLICER_SCHEMA = ("https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/Resources/"
                 "Schema/markups-schema-v1.0.3.json#")


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(f"cannot read volume {path} (truncated or not NIfTI: {str(exc).splitlines()[0]}); "
                        "delete it and run 'synthex lab generate' again") from exc
    if not np.allclose(img.GetDirection(), np.eye(3).ravel(), atol=1e-6):
        raise DataError(f"volume {path} is not LPS-aligned (direction {img.GetDirection()}); resample it first")
    return sitk.GetArrayFromImage(img), img.GetSpacing(), img.GetOrigin()


def write_markups(path: str | os.PathLike[str], landmarks: dict[str, np.ndarray], name: str = "landmarks") -> None:
    """Write landmarks as a 3D Slicer markups point list (LPS mm)."""
    points = [{"id": str(i + 1), "label": k, "description": "", "associatedNodeID": "",
               "position": [round(float(v), 6) for v in np.asarray(p).reshape(3)],
               "orientation": [-1.0, -0.0, -0.0, -0.0, -1.0, -0.0, 0.0, 0.0, 1.0],
               "selected": True, "locked": True, "visibility": True, "positionStatus": "defined"}
              for i, (k, p) in enumerate(landmarks.items())]
    doc = {"@schema": SLICER_SCHEMA,
           "markups": [{"type": "Fiducial", "coordinateSystem": "LPS", "coordinateUnits": "mm", "locked": True,
                        "fixedNumberOfControlPoints": False, "labelFormat": "%N-%d", "lastUsedControlPointNumber":
                        len(points), "name": name, "controlPoints": points, "measurements": []}]}
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")


def read_markups(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a 3D Slicer markups JSON file: name -> LPS mm (RAS files are converted)."""
    path = Path(path)
    try:
        doc = json.loads(Path(path).read_text())
        mk = doc["markups"][0]
        sign = np.array([-1.0, -1.0, 1.0]) if mk.get("coordinateSystem", "LPS") == "RAS" else np.ones(3)
        return {p["label"]: np.asarray(p["position"], np.float64) * sign for p in mk["controlPoints"]}
    except FileNotFoundError as exc:
        raise DataError(f"landmark file {path} is missing; regenerate it with 'synthex lab generate'") from exc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise DataError(f"landmark file {path} is not a 3D Slicer markups JSON ({exc!r}); delete and regenerate it"
                        ) from exc


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
