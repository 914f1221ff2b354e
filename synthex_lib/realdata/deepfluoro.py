"""DeepFluoro full-resolution data (Grupp et al., IJCARS 2020): specimens, real X-rays, poses.

The file ``ipcai_2020_full_res_data.h5`` holds six cadaveric hip specimens (CT in HU, label
volume, 3D landmarks in LPS mm) and 366 real C-arm X-rays with 2D labels, 2D landmarks and the
registered pose of the pelvis (layout: ``data_manifests/deepfluoro.yaml``).

Projection matrices. DeepFluoro's camera ("projective frame") has its origin at the X-ray source,
+x along columns, +y along rows and +z pointing from the detector towards the source, so the
detector lies at negative z and the intrinsic matrix has negative focal lengths. A point ``X``
(LPS mm of the CT) projects as ``P = K @ (extrinsic @ inv(cam-to-pelvis-vol))[:3]``: this module
keeps that true projective map (its third coordinate is negative in front of the source;
``P`` and ``-P`` are the same projective map and the library's ray marcher accepts either), so
:func:`synthex_lib.geometry.project_points` reproduces the stored 2D landmarks. Pixels are
(col, row) with the centre of the top-left pixel at (0, 0), as in the rest of the library.

Orientation. Images, labels and landmarks are stored in the raw detector frame. Projections
flagged ``rot-180-for-up`` show the patient upside down; with ``upright=True`` they are rotated
by 180 degrees (image and labels flipped on both axes, ``c' = cols - 1 - c``, ``r' = rows - 1 - r``)
and ``P`` is composed with the same flip, so geometry stays exact.

The controlled study on real X-rays: importing this module registers the source
``"deepfluoro"`` (:func:`controlled_cases`) with :mod:`synthex_lib.datasets.cases`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

import h5py
import numpy as np

from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.h5io import node, open_h5, read_array, read_scalar, read_str
from synthex_lib.datasets.cases import ControlledCase
from synthex_lib.datasets.layout import SpecimenImages

FULL_RES_FILE = "ipcai_2020_full_res_data.h5"

#: Specimen IDs in the paper's order (paper specimen 1 ... 6 = preprocessed groups "01" ... "06").
SPECIMEN_IDS: tuple[str, ...] = ("17-1882", "18-1109", "18-0725", "18-2799", "18-2800", "17-1905")

#: Label names of the 3D label volume (``vol-seg/labels-def``); 7 is not labelled in 2D.
LABEL_NAMES: dict[int, str] = {
    1: "left-hemipelvis", 2: "right-hemipelvis", 3: "vertebrae", 4: "upper-sacrum",
    5: "left-femur", 6: "right-femur", 7: "lower-sacrum",
}
LOWER_SACRUM = 7

#: Pose datasets under ``gt-poses``: structure -> key.
POSE_KEYS: dict[str, str] = {
    "pelvis": "cam-to-pelvis-vol", "left-femur": "cam-to-left-femur-vol", "right-femur": "cam-to-right-femur-vol",
}

_HINT = "run 'synthex data fetch deepfluoro' (or 'synthex data import deepfluoro FILE') or pass the file's path"


def rot180_matrix(rows: int, cols: int) -> np.ndarray:
    """3x3 pixel map of a 180-degree image rotation: (c, r) -> (cols - 1 - c, rows - 1 - r)."""
    return np.array([[-1.0, 0.0, cols - 1.0], [0.0, -1.0, rows - 1.0], [0.0, 0.0, 1.0]])


@dataclass
class Projection:
    """One real X-ray of a DeepFluoro specimen.

    Attributes:
        specimen_id: ``"17-1882"`` ...
        index: projection number (the key ``"000"`` is 0).
        image: float32 (rows, cols): raw detector intensity (bone dark), or the log domain
            ``log(I0) - log(I)`` (bone bright) when loaded with ``log=True``.
        seg: uint8 (rows, cols) 2D labels 0-6 (:data:`synthex_lib.core.constants.HIP_LABELS`).
        landmarks: name -> (col, row) in pixels of ``image``; may lie outside the image.
        P: 3x4, LPS mm of the specimen's CT -> pixel (col, row) of ``image`` (pelvis pose).
        rot180: the file's ``rot-180-for-up`` flag.
        upright: whether the 180-degree rotation was applied (``rot180`` and ``upright=True``).
        log_domain: whether ``image`` is in the log domain.
        intrinsic: 3x3 ``K`` of the stored (raw) detector frame (negative focal lengths).
        extrinsic: 4x4 ``extrinsic`` of the file's ``proj-params``.
        poses: structure (``pelvis``, ``left-femur``, ``right-femur``) -> 4x4 ``cam-to-<structure>-vol``.
        femur_good_fov: ``left`` / ``right`` -> the file's ``<side>-femur-good-fov`` flag (when present).
        pixel_spacing: (col, row) detector pixel size in mm.
    """

    specimen_id: str
    index: int
    image: np.ndarray
    seg: np.ndarray
    landmarks: dict[str, np.ndarray]
    P: np.ndarray
    rot180: bool
    upright: bool
    log_domain: bool
    intrinsic: np.ndarray
    extrinsic: np.ndarray
    poses: dict[str, np.ndarray] = field(default_factory=dict)
    femur_good_fov: dict[str, bool] = field(default_factory=dict)
    pixel_spacing: tuple[float, float] = (0.194, 0.194)

    @property
    def labels(self) -> np.ndarray:
        """Alias of :attr:`seg` (the 2D label map)."""
        return self.seg

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape  # type: ignore[return-value]

    @property
    def visible(self) -> dict[str, bool]:
        """name -> inside the image (DeepFluoro's rule: 0 <= col < cols and 0 <= row < rows)."""
        rows, cols = self.image.shape
        return {k: bool(np.isfinite(v).all() and 0 <= v[0] < cols and 0 <= v[1] < rows)
                for k, v in self.landmarks.items()}

    def landmark_array(self, names: Sequence[str] = HIP_LANDMARKS) -> np.ndarray:
        """(L, 2) (col, row) in the given order; NaN rows for landmarks this projection lacks."""
        out = np.full((len(names), 2), np.nan)
        for i, n in enumerate(names):
            if n in self.landmarks:
                out[i] = self.landmarks[n]
        return out

    def projection_matrix(self, structure: str = "pelvis") -> np.ndarray:
        """3x4 P of a structure's own CT frame (``pelvis`` = :attr:`P`; femurs use their poses)."""
        if structure not in self.poses:
            raise ConfigError(f"structure {structure!r} has no pose here; choose one of {sorted(self.poses)}")
        P = self.intrinsic @ (self.extrinsic @ np.linalg.inv(self.poses[structure]))[:3]
        if self.upright:
            P = rot180_matrix(*self.image.shape) @ P
        return P

    def log_image(self, i0: float | None = None) -> np.ndarray:
        """float32 line-integral image ``log(I0) - log(I)`` (bone bright) of a raw image.

        ``I0`` (the unattenuated intensity) defaults to the image maximum; intensities are
        clipped at 1e-6 * I0 before the logarithm.
        """
        if self.log_domain:
            return self.image
        return to_log_domain(self.image, i0)


def to_log_domain(image: np.ndarray, i0: float | None = None) -> np.ndarray:
    """``log(I0) - log(I)`` of a raw intensity image, float32; ``I0`` defaults to the image maximum."""
    img = np.asarray(image, dtype=np.float64)
    i0 = float(img.max()) if i0 is None else float(i0)
    if not np.isfinite(i0) or i0 <= 0:
        raise DataError(f"cannot log-transform an image whose I0 is {i0}: the raw image must be positive intensity")
    return (np.log(i0) - np.log(np.clip(img, i0 * 1e-6, None))).astype(np.float32)


class _LazyProjections(Sequence[Projection]):
    """The projections of one specimen, read from the file on access (full-resolution images are large)."""

    def __init__(self, owner: DeepFluoro, specimen_id: str, keys: list[str], kwargs: dict[str, Any]) -> None:
        self._owner, self._id, self._keys, self._kwargs = owner, specimen_id, keys, kwargs

    def __len__(self) -> int:
        return len(self._keys)

    @overload
    def __getitem__(self, i: int) -> Projection: ...

    @overload
    def __getitem__(self, i: slice) -> list[Projection]: ...

    def __getitem__(self, i: int | slice) -> Projection | list[Projection]:
        if isinstance(i, slice):
            return [self._owner.projection(self._id, k, **self._kwargs) for k in self._keys[i]]
        return self._owner.projection(self._id, self._keys[i], **self._kwargs)

    def __repr__(self) -> str:
        return f"<{len(self)} DeepFluoro projections of {self._id}>"


class DeepFluoro:
    """Reader of DeepFluoro's full-resolution HDF5 file.

    Args:
        path: the ``.h5`` file, a folder holding ``ipcai_2020_full_res_data.h5``, or None for
            ``paths.real_dir("deepfluoro")``.

    Opening checks the layout (``proj-params`` and, per specimen, ``vol``, ``vol-seg``,
    ``vol-landmarks`` and ``projections``); reading a volume or projection checks dtypes and
    shapes. Every problem raises one :class:`DataError` naming the file and the key.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        p = Path(path) if path is not None else paths.real_dir("deepfluoro")
        if p.is_dir():
            p = p / FULL_RES_FILE
        self.path = p
        with open_h5(p, _HINT) as f:
            pp = node(f, "proj-params", p, "group")
            self.intrinsic = read_array(pp, "intrinsic", p, shape=(3, 3)).astype(np.float64)
            self.extrinsic = read_array(pp, "extrinsic", p, shape=(4, 4)).astype(np.float64)
            self.rows = int(read_scalar(pp, "num-rows", p))
            self.cols = int(read_scalar(pp, "num-cols", p))
            self.pixel_spacing = (float(read_scalar(pp, "pixel-col-spacing", p)),
                                  float(read_scalar(pp, "pixel-row-spacing", p)))
            _check_rigid(self.extrinsic, p, "proj-params/extrinsic")
            if self.rows <= 0 or self.cols <= 0:
                raise DataError(f"{p}: 'proj-params/num-rows' and 'num-cols' must be positive, "
                                f"got {self.rows}, {self.cols}")
            ids = [k for k in f.keys() if k != "proj-params"]
            if not ids:
                raise DataError(f"{p}: no specimen groups besides 'proj-params'; not a DeepFluoro full-resolution file")
            self._proj_keys: dict[str, list[str]] = {}
            for sid in ids:
                g = node(f, sid, p, "group")
                for key in ("vol", "vol-seg", "vol-landmarks", "projections"):
                    node(g, key, p, "group")
                self._proj_keys[sid] = sorted(node(g, "projections", p, "group").keys())
        known = [s for s in SPECIMEN_IDS if s in self._proj_keys]
        self.specimen_ids: list[str] = known + sorted(s for s in self._proj_keys if s not in SPECIMEN_IDS)

    def __repr__(self) -> str:
        return (f"DeepFluoro({str(self.path)!r}: {len(self.specimen_ids)} specimens, "
                f"{self.num_projections()} projections)")

    # --- bookkeeping --------------------------------------------------------------------------
    def _check_id(self, specimen_id: str) -> str:
        if specimen_id in self._proj_keys:
            return specimen_id
        groups = {self.group(s): s for s in self.specimen_ids}
        if specimen_id in groups:  # accept "01" ... as well
            return groups[specimen_id]
        raise ConfigError(f"unknown DeepFluoro specimen {specimen_id!r} in {self.path}: "
                          f"choose one of {self.specimen_ids}")

    def group(self, specimen_id: str) -> str:
        """The group key of a specimen (``"01"`` ...): the paper's specimen number when every specimen of
        the file is one of :data:`SPECIMEN_IDS`, else the position in :attr:`specimen_ids`."""
        if all(s in SPECIMEN_IDS for s in self.specimen_ids):
            return f"{SPECIMEN_IDS.index(specimen_id) + 1:02d}"
        return f"{self.specimen_ids.index(specimen_id) + 1:02d}"

    def num_projections(self, specimen_id: str | None = None) -> int:
        if specimen_id is None:
            return sum(len(v) for v in self._proj_keys.values())
        return len(self._proj_keys[self._check_id(specimen_id)])

    def projection_keys(self, specimen_id: str) -> list[str]:
        return list(self._proj_keys[self._check_id(specimen_id)])

    # --- specimens ----------------------------------------------------------------------------
    def label_names(self, specimen_id: str) -> dict[int, str]:
        """Label value -> name from ``vol-seg/labels-def`` (optional in the file; DeepFluoro's names otherwise)."""
        sid = self._check_id(specimen_id)
        with open_h5(self.path) as f:
            seg = f[sid]["vol-seg"]
            if "labels-def" not in seg:
                return dict(LABEL_NAMES)
            defs = node(seg, "labels-def", self.path, "group")
            out = {}
            for k in defs.keys():
                if not k.isdigit():
                    raise DataError(f"{self.path}: '{sid}/vol-seg/labels-def/{k}' must be named by a label number")
                out[int(k)] = read_str(defs, k, self.path)
            return dict(sorted(out.items()))

    def specimen(self, specimen_id: str, keep_lower_sacrum: bool = False) -> Specimen:
        """The specimen's CT (HU), label volume and 3D landmarks (LPS mm) as a :class:`Specimen`.

        The lower sacrum (label 7) is not labelled in DeepFluoro's 2D labels nor in the lab's
        specimens; it becomes background unless ``keep_lower_sacrum``. ``meta["label_names"]``
        holds the file's label names.
        """
        sid = self._check_id(specimen_id)
        p = self.path
        with open_h5(p) as f:
            g = f[sid]
            ct, spacing, origin = _read_image3d(node(g, "vol", p, "group"), p, "number")
            labels, lspacing, lorigin = _read_image3d(node(g, "vol-seg/image", p, "group"), p, "int")
            lands_g = node(g, "vol-landmarks", p, "group")
            landmarks = {k: read_array(lands_g, k, p, dtype="number", shape=(3,), squeeze_to=1).astype(np.float64)
                         for k in lands_g.keys()}
        if labels.shape != ct.shape or not np.allclose(lspacing, spacing, atol=1e-4) or \
                not np.allclose(lorigin, origin, atol=1e-3):
            raise DataError(f"{p}: '{sid}/vol-seg/image' is not on the grid of '{sid}/vol' "
                            f"(shape {labels.shape} vs {ct.shape}, spacing {lspacing} vs {spacing})")
        if labels.min() < 0 or labels.max() > LOWER_SACRUM:
            raise DataError(f"{p}: '{sid}/vol-seg/image/pixels' holds values outside 0-7 "
                            f"({labels.min()}..{labels.max()})")
        labels = labels.astype(np.uint8)
        if not keep_lower_sacrum:
            labels[labels == LOWER_SACRUM] = 0
        if not np.isfinite(ct).all():
            raise DataError(f"{p}: '{sid}/vol/pixels' contains NaN or inf")
        names = self.label_names(sid)
        return Specimen(kind="hip", ct_hu=ct.astype(np.float32), labels=labels, spacing=tuple(spacing),
                        origin=tuple(origin), landmarks=landmarks, specimen_id=sid,
                        meta={"source": str(p), "dataset": "deepfluoro", "group": self.group(sid),
                              "label_names": names, "lower_sacrum": "kept as 7" if keep_lower_sacrum else
                              "set to background (not labelled in 2D)"})

    # --- projections --------------------------------------------------------------------------
    def projections(self, specimen_id: str, upright: bool = True, log: bool = False,
                    i0: float | None = None) -> Sequence[Projection]:
        """The specimen's X-rays (read lazily, one at a time), in key order ``000``, ``001`` ..."""
        sid = self._check_id(specimen_id)
        return _LazyProjections(self, sid, self._proj_keys[sid], {"upright": upright, "log": log, "i0": i0})

    def projection(self, specimen_id: str, index: int | str, upright: bool = True, log: bool = False,
                   i0: float | None = None) -> Projection:
        """One X-ray by number (``3``) or key (``"003"``); see :class:`Projection`."""
        sid = self._check_id(specimen_id)
        key = index if isinstance(index, str) else f"{int(index):03d}"
        if key not in self._proj_keys[sid]:
            raise ConfigError(f"{self.path}: specimen {sid} has no projection {key!r} "
                              f"({len(self._proj_keys[sid])} projections: {self._proj_keys[sid][:3]} ...)")
        p = self.path
        where = f"{sid}/projections/{key}"
        with open_h5(p) as f:
            g = f[sid]["projections"][key]
            img = read_array(node(g, "image", p, "group"), "pixels", p, dtype="number", shape=(self.rows, self.cols))
            seg = read_array(node(g, "gt-seg", p, "group"), "pixels", p, dtype="int", shape=(self.rows, self.cols))
            lg = node(g, "gt-landmarks", p, "group")
            lands = {k: read_array(lg, k, p, shape=(2,), squeeze_to=1).astype(np.float64) for k in lg.keys()}
            pg = node(g, "gt-poses", p, "group")
            poses = {}
            for struct, k in POSE_KEYS.items():
                if struct == "pelvis" or k in pg:
                    poses[struct] = read_array(pg, k, p, shape=(4, 4)).astype(np.float64)
                    _check_rigid(poses[struct], p, f"{where}/gt-poses/{k}")
            fov = {side: bool(read_scalar(pg, f"{side}-femur-good-fov", p)) for side in ("left", "right")
                   if f"{side}-femur-good-fov" in pg}
            rot = bool(read_scalar(g, "rot-180-for-up", p))
        if not np.isfinite(img).all():
            raise DataError(f"{p}: '{where}/image/pixels' contains NaN or inf")
        P = self.intrinsic @ (self.extrinsic @ np.linalg.inv(poses["pelvis"]))[:3]
        img = img.astype(np.float32)
        seg = seg.astype(np.uint8)
        do_rot = bool(upright and rot)
        if do_rot:
            F = rot180_matrix(self.rows, self.cols)
            img = np.ascontiguousarray(img[::-1, ::-1])
            seg = np.ascontiguousarray(seg[::-1, ::-1])
            lands = {k: np.array([self.cols - 1 - v[0], self.rows - 1 - v[1]]) for k, v in lands.items()}
            P = F @ P
        if log:
            img = to_log_domain(img, i0)
        return Projection(specimen_id=sid, index=int(key) if key.isdigit() else self._proj_keys[sid].index(key),
                          image=img, seg=seg, landmarks=lands, P=P, rot180=rot, upright=do_rot, log_domain=log,
                          intrinsic=self.intrinsic.copy(), extrinsic=self.extrinsic.copy(), poses=poses,
                          femur_good_fov=fov, pixel_spacing=self.pixel_spacing)


def _check_rigid(T: np.ndarray, path: Path, key: str) -> None:
    R = T[:3, :3]
    if not np.isfinite(T).all() or not np.allclose(R.T @ R, np.eye(3), atol=2e-3) or \
            not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6) or np.linalg.det(R) < 0:
        raise DataError(f"{path}: '{key}' is not a rigid 4x4 transform (rotation + translation)")


def _read_image3d(g: h5py.Group, path: Path, dtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An xReg 3D image group: ``pixels`` [z, y, x], ``spacing`` and ``origin`` (x, y, z), identity ``dir-mat``."""
    pixels = read_array(g, "pixels", path, dtype=dtype, shape=(None, None, None))
    spacing = read_array(g, "spacing", path, shape=(3,), squeeze_to=1).astype(np.float64)
    origin = read_array(g, "origin", path, shape=(3,), squeeze_to=1).astype(np.float64)
    if "dir-mat" in g:
        d = read_array(g, "dir-mat", path, shape=(3, 3))
        if not np.allclose(d, np.eye(3), atol=1e-6):
            raise DataError(f"{path}: '{g.name.lstrip('/')}/dir-mat' is not the identity; DeepFluoro volumes are "
                            "axis-aligned LPS: resample the volume first")
    if (spacing <= 0).any():
        raise DataError(f"{path}: '{g.name.lstrip('/')}/spacing' must be positive, got {spacing}")
    return pixels, spacing, origin


# --- the controlled study on real X-rays --------------------------------------------------------------

def area_weights(n_in: int, n_out: int, offset: int = 0, length: int | None = None) -> np.ndarray:
    """(n_out, n_in) weights that bin the window ``[offset, offset + length)`` of ``n_in`` pixels to ``n_out``.

    Output pixel ``i`` is the mean of the linearly interpolated input over its footprint: input
    coordinates ``[offset - 0.5 + i f, offset - 0.5 + (i + 1) f)`` with ``f = length / n_out`` and
    input pixel centres at integers, so its centre sits at ``offset + (i + 0.5) f - 0.5``, the
    map of :func:`crop_and_bin_matrix`. Averaging the *interpolated* signal makes the binning exact
    for linear intensity ramps at fractional factors (1440 -> 64 px is 22.5), which area averaging
    of pixel boxes (torch's ``area`` mode, ``skimage`` ``downscale_local_mean``) is not: hence this
    small function. Rows are normalized (the window may reach past the outermost pixel centres).
    """
    length = n_in - offset if length is None else length
    f = length / n_out
    a = offset - 0.5 + np.arange(n_out)[:, None] * f
    c = np.arange(n_in)[None, :].astype(np.float64)

    def hat_cdf(t: np.ndarray) -> np.ndarray:  # integral of the unit triangle kernel from -inf to t
        return np.where(t < -1, 0.0, np.where(t < 0, (t + 1) ** 2 / 2, np.where(t < 1, 1 - (1 - t) ** 2 / 2, 1.0)))

    w = hat_cdf(a + f - c) - hat_cdf(a - c)
    return w / w.sum(1, keepdims=True)


def crop_and_bin_matrix(field_px: int, offset: tuple[int, int], n_out: int) -> np.ndarray:
    """3x3 pixel map of cropping at ``offset`` (col, row) then binning ``field_px`` to ``n_out`` pixels:
    ``u' = (u - offset + 0.5) / f - 0.5`` with ``f = field_px / n_out`` (pixel centres at integers)."""
    f = field_px / n_out
    return np.array([[1 / f, 0.0, (0.5 - offset[0]) / f - 0.5], [0.0, 1 / f, (0.5 - offset[1]) / f - 0.5],
                     [0.0, 0.0, 1.0]])


def controlled_cases(profile: Any = "smoke", seed: int = 0, path: str | os.PathLike[str] | None = None,
                     downsample: float | None = None, per_specimen: int | None = None,
                     specimens: Sequence[str] | None = None, i0: float | None = None) -> Iterator[ControlledCase]:
    """The paper's controlled study on real X-rays: one :class:`ControlledCase` per DeepFluoro specimen.

    Each real projection is rotated upright, cropped to the central 15/16 of the detector (1440 px
    of 1536, as :meth:`synthex_lib.geometry.Device.binned`), log-transformed (``I0`` = the image
    maximum unless ``i0``), and area-binned by ``downsample`` (default: to ``profile.sim.detector_px``);
    labels are sampled at the binned pixel centres, landmarks and ``P`` follow the same pixel map
    (:func:`crop_and_bin_matrix`). Landmarks are in :data:`HIP_LANDMARKS` order, visible when inside
    the binned image.

    Args:
        profile: profile name or :class:`~synthex_lib.core.config.Profile`.
        seed: unused (the real data are fixed); kept for the source interface.
        path: the full-resolution file or its folder (default ``paths.real_dir("deepfluoro")``).
        downsample: binning factor of the 1440 px field (4 -> 360 px, 8 -> 180 px).
        per_specimen: projections per specimen, evenly spaced; default: all of them for the
            ``full`` and ``paper`` profiles, ``profile.sim.real_per_specimen`` for smaller ones.
        specimens: specimen IDs or groups (``"01"``) to include (default: all).
    """

    prof = get_profile(profile)
    df = DeepFluoro(path)
    field_px = int(round(min(df.rows, df.cols) * 15 / 16))
    n_out = prof.sim.detector_px if downsample is None else int(round(field_px / float(downsample)))
    if n_out < 1:
        raise ConfigError(f"parameter 'downsample' ({downsample}) leaves no pixel of the {field_px} px field")
    off = ((df.cols - field_px) // 2, (df.rows - field_px) // 2)
    A = crop_and_bin_matrix(field_px, off, n_out)
    wc = area_weights(df.cols, n_out, off[0], field_px)
    wr = area_weights(df.rows, n_out, off[1], field_px)
    f = field_px / n_out
    centres = (np.arange(n_out) + 0.5) * f - 0.5
    sample_c = np.clip(np.rint(centres + off[0]).astype(int), 0, df.cols - 1)
    sample_r = np.clip(np.rint(centres + off[1]).astype(int), 0, df.rows - 1)
    limit = per_specimen if per_specimen is not None else (
        None if prof.name in ("full", "paper") else prof.sim.real_per_specimen)
    wanted = [df._check_id(s) for s in specimens] if specimens else df.specimen_ids
    for sid in df.specimen_ids:
        if sid not in wanted:
            continue
        keys = df.projection_keys(sid)
        if limit is not None and limit < len(keys):
            keys = [keys[i] for i in np.unique(np.linspace(0, len(keys) - 1, int(limit)).round().astype(int))]
        projs, segs, lands, vis, Ps = [], [], [], [], []
        for key in keys:
            pr = df.projection(sid, key, upright=True)
            projs.append((wr @ to_log_domain(pr.image, i0).astype(np.float64) @ wc.T).astype(np.float32))
            segs.append(pr.seg[np.ix_(sample_r, sample_c)])
            xy = pr.landmark_array(HIP_LANDMARKS)
            xy = (xy - np.array(off) + 0.5) / f - 0.5
            lands.append(xy.T.astype(np.float32))
            vis.append(np.isfinite(xy).all(1) & (xy[:, 0] >= 0) & (xy[:, 0] <= n_out - 1) &
                       (xy[:, 1] >= 0) & (xy[:, 1] <= n_out - 1))
            Ps.append(A @ pr.P)
        P = np.stack(Ps)
        real = SpecimenImages(
            projs=np.stack(projs), segs=np.stack(segs), lands=np.stack(lands), visible=np.stack(vis), P=P,
            attrs={"source": "deepfluoro", "specimen_id": sid, "projection_keys": list(keys),
                   "pixel_mm": float(df.pixel_spacing[0] * f), "downsample": float(f), "field_px": field_px,
                   "i0": "image maximum" if i0 is None else float(i0)},
        )
        yield ControlledCase(group=df.group(sid), specimen=df.specimen(sid), P=P, image_size=(n_out, n_out),
                             real=real, device="cios-fusion")

