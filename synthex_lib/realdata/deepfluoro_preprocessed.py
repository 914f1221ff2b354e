"""DeepFluoro's preprocessed files (``ipcai_2020_ds_{2,4,8,16}x.h5``): real X-rays and labels, no CT.

Layout (``data_manifests/deepfluoro-8x.yaml``)::

    /land-names/num-lands             L (14)
    /land-names/land-00 ... land-13   landmark names in the file's order
    /<01..06>/projs                   N x R x C  log domain (bone bright), patient-up
    /<01..06>/segs                    N x R x C  labels 0-6
    /<01..06>/lands                   N x 2 x L  [n, 0, l] = col, [n, 1, l] = row (may be out of bounds)

The reader returns the library's :class:`~synthex_lib.datasets.layout.SpecimenImages` with the
landmarks reordered to the official evaluation order (:data:`synthex_lib.core.constants.HIP_LANDMARKS`)
and visibility computed (inside the image), so models trained on simulated files test on these
unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from synthex_lib.core import paths
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.h5io import node, open_h5, read_array, read_scalar, read_str
from synthex_lib.datasets.layout import H5_LIBVER, SpecimenImages, check_images, write_group, write_landmark_names
from synthex_lib.realdata.deepfluoro import SPECIMEN_IDS

#: downsampling factor -> file name (8x and 16x documented by the authors; 2x and 4x inferred).
FILE_NAMES: dict[int, str] = {ds: f"ipcai_2020_ds_{ds}x.h5" for ds in (2, 4, 8, 16)}


class DeepFluoroPreprocessed:
    """Reader of one preprocessed DeepFluoro file.

    Args:
        path: the ``.h5`` file, or None with ``downsample`` to use
            ``paths.real_dir("deepfluoro-<ds>x")/ipcai_2020_ds_<ds>x.h5``.
        downsample: 2, 4, 8 or 16 (only used to locate the file when ``path`` is None or a folder).

    Opening checks ``land-names`` and each group's keys, dtypes and shapes; every problem raises
    one :class:`DataError` naming the file and the key.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, downsample: int | None = None) -> None:
        if downsample is not None and downsample not in FILE_NAMES:
            raise ConfigError(f"parameter 'downsample' must be one of {sorted(FILE_NAMES)}, got {downsample!r}")
        if path is None:
            if downsample is None:
                raise ConfigError("pass the file's path or 'downsample' (2, 4, 8 or 16)")
            p = paths.real_dir(f"deepfluoro-{downsample}x") / FILE_NAMES[downsample]
        else:
            p = Path(path)
            if p.is_dir():
                if downsample is None:
                    found = sorted(p.glob("ipcai_2020_ds_*x.h5"))
                    if len(found) != 1:
                        raise DataError(f"{p}: expected one ipcai_2020_ds_<N>x.h5 in the folder, found {len(found)}")
                    p = found[0]
                else:
                    p = p / FILE_NAMES[downsample]
        self.path = p
        m = re.search(r"_ds_(\d+)x", p.name)
        self.downsample = downsample or (int(m.group(1)) if m else None)
        hint = f"run 'synthex data fetch deepfluoro-{self.downsample or 8}x' or pass the file's path"
        with open_h5(p, hint) as f:
            ln = node(f, "land-names", p, "group")
            n = int(read_scalar(ln, "num-lands", p, dtype="int"))
            if n <= 0:
                raise DataError(f"{p}: 'land-names/num-lands' must be positive, got {n}")
            self.landmark_names = [read_str(ln, f"land-{i:02d}", p) for i in range(n)]
            unknown = sorted(set(self.landmark_names) - set(HIP_LANDMARKS))
            if unknown:
                raise DataError(f"{p}: 'land-names' holds unknown landmark names {unknown}; expected {HIP_LANDMARKS}")
            self.groups = sorted(k for k in f.keys() if k != "land-names")
            if not self.groups:
                raise DataError(f"{p}: no specimen groups ('01' ... '06') besides 'land-names'")
            self.sizes: dict[str, int] = {}
            for g in self.groups:
                grp = node(f, g, p, "group")
                shapes = {}
                for key in ("projs", "segs", "lands"):
                    ds = node(grp, key, p, "dataset")
                    want = {"projs": "fiu", "segs": "iub", "lands": "fiu"}[key]
                    if ds.dtype.kind not in want:
                        raise DataError(f"{p}: '{g}/{key}' has dtype {ds.dtype}, expected "
                                        f"{'integer labels' if key == 'segs' else 'numbers'}")
                    shapes[key] = ds.shape
                N, R, C = _shape3(shapes["projs"], p, f"{g}/projs")
                if shapes["segs"] != (N, R, C):
                    raise DataError(f"{p}: '{g}/segs' has shape {shapes['segs']}, expected {(N, R, C)} "
                                    f"like '{g}/projs'")
                if shapes["lands"] != (N, 2, n):
                    raise DataError(f"{p}: '{g}/lands' has shape {shapes['lands']}, expected {(N, 2, n)} (N x 2 x L)")
                self.sizes[g] = N

    def __repr__(self) -> str:
        return f"DeepFluoroPreprocessed({str(self.path)!r}: groups {self.groups}, {sum(self.sizes.values())} images)"

    def specimen_id(self, group: str) -> str:
        """The specimen ID of a group (``"01"`` -> ``"17-1882"``)."""
        i = int(group) - 1
        return SPECIMEN_IDS[i] if 0 <= i < len(SPECIMEN_IDS) else group

    def images(self, group: str, landmark_order: Sequence[str] = HIP_LANDMARKS,
               index: slice | np.ndarray | None = None) -> SpecimenImages:
        """One group's images as :class:`SpecimenImages` (float32 log images, uint8 labels, lands in
        ``landmark_order`` with NaN for a name the file lacks, visibility = inside the image)."""
        if group not in self.sizes:
            raise ConfigError(f"{self.path}: no group {group!r}; choose one of {self.groups}")
        p = self.path
        with open_h5(p) as f:
            g = f[group]
            projs = read_array(g, "projs", p, index=index).astype(np.float32)
            segs = read_array(g, "segs", p, dtype="int", index=index)
            lands = read_array(g, "lands", p, index=index).astype(np.float32)
        check_images(SpecimenImages(projs, segs, lands), p, group, HIP_NUM_CLASSES, len(self.landmark_names))
        out = np.full((lands.shape[0], 2, len(landmark_order)), np.nan, np.float32)
        for j, name in enumerate(landmark_order):
            if name in self.landmark_names:
                out[:, :, j] = lands[:, :, self.landmark_names.index(name)]
        h, w = projs.shape[1:]
        xy = np.transpose(out, (0, 2, 1))
        visible = np.isfinite(xy).all(-1) & (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & \
            (xy[..., 1] <= h - 1)
        return SpecimenImages(projs=projs, segs=segs.astype(np.uint8), lands=out, visible=visible,
                              attrs={"source": str(p), "specimen_id": self.specimen_id(group),
                                     "downsample": self.downsample or 0})

    def all_images(self, landmark_order: Sequence[str] = HIP_LANDMARKS) -> dict[str, SpecimenImages]:
        return {g: self.images(g, landmark_order) for g in self.groups}

    def write_layout_file(self, out: str | os.PathLike[str]) -> Path:
        """Write the images in the library's HDF5 layout (:mod:`synthex_lib.datasets.layout`: landmarks
        in official order, ``visible``, provenance attributes), atomically, so that the readers of
        simulated datasets (``ImageDataset``, ``read_group``) test models on these real images."""


        out = Path(out)
        with paths.atomic_path(out) as tmp, h5py.File(tmp, "w", libver=H5_LIBVER) as f:
            write_landmark_names(f, HIP_LANDMARKS)
            for g in self.groups:
                write_group(f, g, self.images(g))
            h, w = self.images(self.groups[0], index=slice(0, 1)).projs.shape[1:]
            f.attrs.update({"task": "hip-controlled", "projector": "real", "dataset": f"deepfluoro-{self.downsample}x",
                            "image_size": int(w) if w == h else [int(w), int(h)], "source": str(self.path),
                            "real_is_emulated": False})
        return out


def _shape3(shape: tuple[int, ...], path: Path, key: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise DataError(f"{path}: '{key}' must be N x R x C, found shape {shape}")
    return shape  # type: ignore[return-value]
