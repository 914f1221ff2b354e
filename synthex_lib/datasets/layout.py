"""The HDF5 layout of every image dataset: SyntheX / DeepFluoro-preprocessed, plus our fields.

One file holds one image domain of one task (``real.h5``, ``realistic.h5``, ``heuristic.h5``,
``naive.h5``, ...). Keys::

    /land-names/num-lands            int scalar
    /land-names/land-00 ...          landmark names (str), in the order of ``lands``
    /<group>/projs   float32 [N, H, W]  images, log (line-integral) domain, bone bright
    /<group>/segs    uint8   [N, H, W]  2D label map (task ids; 0 background)
    /<group>/lands   float32 [N, 2, L]  row 0 = x = col, row 1 = y = row, pixels of the stored image
    /<group>/visible bool    [N, L]     landmark inside the image and its structure in view (ours)
    /<group>/P       float64 [N, 3, 4]  projection matrix, LPS mm -> pixel (col, row) (ours): the
                                        registered pose that the labels and the replicas use
    /<group>/P_true  float64 [N, 3, 4]  lab only: the true pose the emulated real image was acquired at
    /<group>/P_left_femur, P_right_femur  float64 [N, 3, 4]  lab only: each femur's own registered
                                        projection (of the CT's femur), as DeepFluoro's cam-to-*-femur-vol

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

from synthex_lib.core.constants import HIP_NUM_CLASSES
from synthex_lib.core.errors import DataError
from synthex_lib.core.h5io import node, open_h5, read_array, read_scalar, read_str

REQUIRED_KEYS = ("projs", "segs", "lands")
#: HDF5 format versions of the files we write: object headers and the superblock carry checksums (HDF5 >= 1.10),
#: and every dataset has the Fletcher-32 filter, so a flipped byte is an error on reading, never a changed value
H5_LIBVER = ("v110", "v110")


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


#: number of label ids (0 = background) of each task kind, by the prefix of the file attribute ``task``;
#: files without the attribute hold the hip labels of the DeepFluoro layout
TASK_NUM_CLASSES: dict[str, int] = {"hip": HIP_NUM_CLASSES, "tool": 2, "chest": 2}
_HINT = "generate it with 'synthex simulate' or check the path"


def _open(path: str | os.PathLike[str]) -> h5py.File:
    return open_h5(path, _HINT)


def num_classes_of(attrs: dict[str, Any]) -> int:
    """The number of label ids a file of this task may hold (from its ``task`` attribute)."""
    task = str(attrs.get("task", "hip"))
    return next((n for kind, n in TASK_NUM_CLASSES.items() if task.startswith(kind)), 256)


def read_landmark_names(path: str | os.PathLike[str]) -> list[str]:
    p = Path(path)
    with _open(p) as f:
        return _landmark_names(f, p)


def _landmark_names(f: h5py.File, p: Path) -> list[str]:
    if "land-names" not in f:
        raise DataError(f"{p}: missing key 'land-names'; not a SyntheX/DeepFluoro-preprocessed file")
    g = node(f, "land-names", p, "group")
    n = read_scalar(g, "num-lands", p, dtype="int")
    if n < 0:
        raise DataError(f"{p}: 'land-names/num-lands' must be >= 0, got {n}")
    return [read_str(g, f"land-{i:02d}", p) for i in range(int(n))]


def _read_labels(f: h5py.File, p: Path, group: str, index: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if group not in f:
        raise DataError(f"{p}: missing group {group!r}")
    lg = node(f, group, p, "group")
    for key in ("segs", "lands"):
        if key not in lg:
            raise DataError(f"{p}: group {group!r} is missing required key '{key}'")
    segs = read_array(lg, "segs", p, dtype="int", index=index)
    lands = read_array(lg, "lands", p, dtype="number", index=index).astype(np.float32)
    visible = read_array(lg, "visible", p, dtype="int", index=index).astype(bool) if "visible" in lg else None
    return segs, lands, visible


def list_groups(path: str | os.PathLike[str]) -> list[str]:
    p = Path(path)
    with _open(p) as f:
        try:
            return sorted(k for k in f.keys() if k != "land-names" and isinstance(f[k], h5py.Group))
        except (OSError, RuntimeError, KeyError) as exc:
            raise DataError(f"{p}: cannot list the groups ({exc}); the file may be corrupted: delete and "
                            "regenerate it") from None


def read_file_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    with _open(p) as f:
        try:
            return {k: _py(v) for k, v in f.attrs.items()}
        except (OSError, RuntimeError, KeyError, TypeError) as exc:
            raise DataError(f"{p}: cannot read the file attributes ({exc}); the file may be corrupted") from None


def check_images(images: SpecimenImages, path: str | os.PathLike[str], group: str,
                 num_classes: int | None = HIP_NUM_CLASSES, num_landmarks: int | None = None) -> SpecimenImages:
    """The dataset validation layer every reader calls: raise :class:`DataError` naming the file and key unless
    ``projs`` is N x H x W and finite, ``segs`` has the same shape and labels in ``0 .. num_classes - 1``,
    ``lands`` is N x 2 x L (L = ``num_landmarks`` when given; NaN marks an absent landmark, inf is refused),
    ``visible`` (when present) N x L and ``P`` (when present) N x 3 x 4 and finite. Returns ``images``."""
    p, g = Path(path), group
    projs, segs, lands = images.projs, images.segs, images.lands
    if projs.ndim != 3:
        raise DataError(f"{p}: '{g}/projs' must be N x H x W, found shape {projs.shape}")
    n = projs.shape[0]
    if not np.isfinite(projs).all():
        raise DataError(f"{p}: '{g}/projs' contains NaN or inf; delete and regenerate the file")
    if segs.shape != projs.shape:
        raise DataError(f"{p}: '{g}/segs' has shape {segs.shape}, expected {projs.shape} like '{g}/projs'")
    if num_classes is not None and segs.size and (int(segs.min()) < 0 or int(segs.max()) >= num_classes):
        raise DataError(f"{p}: '{g}/segs' holds labels outside 0-{num_classes - 1} (the task's label set; found "
                        f"{int(segs.min())}..{int(segs.max())})")
    if lands.ndim != 3 or lands.shape[0] != n or lands.shape[1] != 2 or \
            (num_landmarks is not None and lands.shape[2] != num_landmarks):
        want = f"({n}, 2, {num_landmarks if num_landmarks is not None else 'L'})"
        raise DataError(f"{p}: '{g}/lands' has shape {lands.shape}, expected {want} (N x 2 x L)")
    if np.isinf(lands).any():
        raise DataError(f"{p}: '{g}/lands' contains inf (an absent landmark is NaN)")
    if images.visible is not None and images.visible.shape != (n, lands.shape[2]):
        raise DataError(f"{p}: '{g}/visible' has shape {images.visible.shape}, expected {(n, lands.shape[2])} "
                        "(N x L)")
    if images.P is not None:
        if images.P.shape != (n, 3, 4):
            raise DataError(f"{p}: '{g}/P' has shape {images.P.shape}, expected {(n, 3, 4)}")
        if not np.isfinite(images.P).all():
            raise DataError(f"{p}: '{g}/P' contains NaN or inf")
    return images


def read_group(path: str | os.PathLike[str], group: str, label_file: str | os.PathLike[str] | None = None,
               index: slice | np.ndarray | None = None, num_classes: int | None = None) -> SpecimenImages:
    """Read one specimen group (optionally a subset of its images), checked by :func:`check_images`.

    ``num_classes`` bounds the label ids (default: from the file's ``task`` attribute, see
    :data:`TASK_NUM_CLASSES`); the landmark count must match ``land-names`` when the file has it.
    """
    p = Path(path)
    lab_p = Path(label_file) if label_file is not None else p
    with _open(p) as f:
        try:
            attrs_f = {k: _py(v) for k, v in f.attrs.items()}
        except (OSError, RuntimeError, KeyError, TypeError) as exc:
            raise DataError(f"{p}: cannot read the file attributes ({exc}); the file may be corrupted") from None
        if group not in f:
            raise DataError(f"{p}: missing group {group!r}; groups present: {sorted(f.keys())}")
        g = node(f, group, p, "group")
        projs = read_array(g, "projs", p, dtype="number", index=index).astype(np.float32)
        P = read_array(g, "P", p, dtype="number", index=index).astype(np.float64) if "P" in g else None
        try:
            attrs = {k: _py(v) for k, v in g.attrs.items()}
        except (OSError, RuntimeError, KeyError, TypeError) as exc:
            raise DataError(f"{p}: cannot read the attributes of '{group}' ({exc})") from None
        n_lands = len(_landmark_names(f, p)) if "land-names" in f else None
        if label_file is None:
            segs, lands, visible = _read_labels(f, p, group, index)
    if label_file is not None:
        with _open(lab_p) as lab_f:
            segs, lands, visible = _read_labels(lab_f, lab_p, group, index)
    nc = num_classes if num_classes is not None else num_classes_of(attrs_f)
    images = SpecimenImages(projs, segs, lands, visible, P, attrs)
    check_images(images, p, group, nc, n_lands)
    images.segs = segs.astype(np.uint8)
    return images


def read_poses(path: str | os.PathLike[str], group: str) -> dict[str, np.ndarray]:
    """Every stored projection of a group: ``P`` and, when present, ``P_true`` and the per-structure ones
    (``P_left_femur`` ...), float64 [N, 3, 4] each, checked finite and of one length."""
    p = Path(path)
    out: dict[str, np.ndarray] = {}
    with _open(p) as f:
        if group not in f:
            raise DataError(f"{p}: missing group {group!r}; groups present: {sorted(f.keys())}")
        g = node(f, group, p, "group")
        for key in sorted(k for k in g.keys() if k == "P" or k.startswith("P_")):
            out[key] = read_array(g, key, p, dtype="number").astype(np.float64)
    n = {v.shape[0] for v in out.values()}
    for key, v in out.items():
        if v.ndim != 3 or v.shape[1:] != (3, 4) or not np.isfinite(v).all() or len(n) > 1:
            raise DataError(f"{p}: '{group}/{key}' must be a finite [N, 3, 4] array like the group's other poses, "
                            f"got shape {v.shape}")
    return out


def write_group(f: h5py.File, group: str, images: SpecimenImages) -> None:
    """Write one specimen group into an open file (the caller makes the whole file atomic)."""
    g = f.require_group(group)
    g.create_dataset("projs", data=images.projs.astype(np.float32), compression="gzip", compression_opts=1,
                     fletcher32=True)
    g.create_dataset("segs", data=images.segs.astype(np.uint8), compression="gzip", compression_opts=1,
                     fletcher32=True)
    g.create_dataset("lands", data=images.lands.astype(np.float32), fletcher32=True)
    if images.visible is not None:
        g.create_dataset("visible", data=images.visible.astype(bool), fletcher32=True)
    if images.P is not None:
        g.create_dataset("P", data=images.P.astype(np.float64), fletcher32=True)
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
