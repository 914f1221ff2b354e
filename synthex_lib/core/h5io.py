"""Checked reads from HDF5 files: every problem becomes one :class:`DataError` naming the file and key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from synthex_lib.core.errors import DataError


def open_h5(path: str | os.PathLike[str], hint: str = "") -> h5py.File:
    """Open an HDF5 file read-only; a missing or unreadable (truncated) file raises :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: file not found" + (f"; {hint}" if hint else ""))
    if path.is_dir():
        raise DataError(f"{path}: is a folder, expected an HDF5 file" + (f"; {hint}" if hint else ""))
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc}); it may be truncated or corrupted: "
                        "delete it and fetch or import it again") from exc


def node(f: h5py.File | h5py.Group, key: str, path: Path, kind: str = "any") -> Any:
    """``f[key]`` or a :class:`DataError` (missing key, or a group where a dataset is expected, or vice versa)."""
    try:
        obj = f[key]
    except KeyError as exc:
        raise DataError(f"{path}: missing key '{_full(f, key)}'") from exc
    except (OSError, RuntimeError) as exc:
        raise DataError(f"{path}: cannot read '{_full(f, key)}' ({exc}); the file may be truncated") from exc
    if kind == "group" and not isinstance(obj, h5py.Group):
        raise DataError(f"{path}: '{_full(f, key)}' must be a group, found a dataset")
    if kind == "dataset" and not isinstance(obj, h5py.Dataset):
        raise DataError(f"{path}: '{_full(f, key)}' must be a dataset, found a group")
    return obj


def _full(f: h5py.File | h5py.Group, key: str) -> str:
    base = f.name.rstrip("/")
    return f"{base}/{key}".lstrip("/") if not key.startswith("/") else key.lstrip("/")


def read_array(f: h5py.File | h5py.Group, key: str, path: Path, *, dtype: str = "number",
               shape: tuple[int | None, ...] | None = None, squeeze_to: int | None = None,
               index: Any = None) -> np.ndarray:
    """Read a dataset with checks.

    Args:
        dtype: ``"number"`` (float or integer), ``"float"``, ``"int"`` (integer or bool) or ``"str"``.
        shape: required shape; ``None`` entries match any size.
        squeeze_to: drop singleton axes down to this many dimensions first (``3x1`` -> ``(3,)``).
        index: an optional selection (read only part of the dataset).
    """
    ds = node(f, key, path, "dataset")
    name = _full(f, key)
    kind = ds.dtype.kind
    ok = {"number": kind in "fiub", "float": kind == "f", "int": kind in "iub", "str": kind in "SUO"}[dtype]
    if not ok:
        want = {"number": "numeric", "float": "floating-point", "int": "integer", "str": "string"}[dtype]
        raise DataError(f"{path}: '{name}' must be {want}, found dtype {ds.dtype}")
    try:
        arr = np.asarray(ds[()] if index is None else ds[index])
    except (OSError, RuntimeError, ValueError) as exc:
        raise DataError(f"{path}: cannot read '{name}' ({exc}); the file may be truncated or corrupted") from exc
    if squeeze_to is not None and arr.ndim != squeeze_to:
        dims = [d for d in arr.shape if d != 1]
        if len(dims) == squeeze_to:
            arr = arr.reshape(dims)
    if shape is not None and (arr.ndim != len(shape) or any(s is not None and a != s for a, s in zip(arr.shape, shape,
                                                                                                    strict=True))):
        want = "x".join("N" if s is None else str(s) for s in shape) or "scalar"
        raise DataError(f"{path}: '{name}' must have shape {want}, found {arr.shape}")
    return arr


def read_scalar(f: h5py.File | h5py.Group, key: str, path: Path, dtype: str = "number") -> float:
    arr = read_array(f, key, path, dtype=dtype)
    if arr.size != 1:
        raise DataError(f"{path}: '{_full(f, key)}' must be a scalar, found shape {arr.shape}")
    return arr.reshape(-1)[0].item()


def read_str(f: h5py.File | h5py.Group, key: str, path: Path) -> str:
    arr = read_array(f, key, path, dtype="str")
    if arr.size != 1:
        raise DataError(f"{path}: '{_full(f, key)}' must be one string, found shape {arr.shape}")
    v = arr.reshape(-1)[0]
    return v.decode() if isinstance(v, bytes) else str(v)
