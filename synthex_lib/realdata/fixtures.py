"""Tiny files in the exact layouts of the real datasets, for tests and examples (nothing large is committed).

* :func:`write_deepfluoro_fixture`: DeepFluoro's full-resolution HDF5 layout (keys, shapes, dtypes
  and ``xreg-type`` attributes) with a small hip phantom and projections whose 2D landmarks are
  the exact projections of the 3D ones (raw frame; every other projection flagged
  ``rot-180-for-up``), a splatted raw-intensity image (bone dark) and a splatted 2D label map.
* :func:`write_deepfluoro_preprocessed_fixture`: the 2x/4x/8x/16x preprocessed layout.
* :func:`write_qata_fixture`: QaTa-COV19 v1, v2 and the SyntheX 5-fold layouts.

The phantom is a geometric stand-in, not anatomy: ellipsoids carrying the DeepFluoro labels and
the 14 landmark names at plausible positions (LPS: +x patient left).
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import SimpleITK as sitk

from synthex_lib.core import paths
from synthex_lib.core.constants import HIP_LANDMARKS, MU_WATER_PER_MM
from synthex_lib.core.errors import ConfigError
from synthex_lib.geometry import rot_x, rot_z
from synthex_lib.realdata.deepfluoro import LABEL_NAMES

#: DeepFluoro's extrinsic as quoted from the file in deepdrr issue #110 (re-orthonormalized).
_EXTRINSIC = np.array([[0.0014173903, 5.773302e-6, 0.9999991, -157.58221],
                       [-0.99999076, -0.004075836, 0.0014174007, -2.6757495],
                       [0.0040758415, -0.99999183, 0.0, -631.7765], [0.0, 0.0, 0.0, 1.0]])
_FOCAL_PX_1536 = 5257.732  # |fx| of the real 1536 px detector
_PIXEL_MM_1536 = 0.194

#: Phantom structures: label -> (centre offset from the volume centre, radii), LPS mm.
_STRUCTURES: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    1: ((55, 5, 10), (40, 30, 55)), 2: ((-55, 5, 10), (40, 30, 55)), 3: ((0, 20, 62), (22, 20, 22)),
    4: ((0, 35, 22), (24, 18, 22)), 7: ((0, 45, -15), (16, 13, 16)), 5: ((65, -5, -50), (20, 20, 38)),
    6: ((-65, -5, -50), (20, 20, 38)),
}
#: Left-side landmark offsets from the volume centre (right side mirrored in x), LPS mm.
_LEFT_LANDMARKS: dict[str, tuple[float, float, float]] = {
    "FH": (65, -5, -25), "ASIS": (90, -40, 45), "GSN": (45, 35, 15), "IOF": (35, -15, -50),
    "MOF": (22, -20, -38), "SPS": (4, -40, -30), "IPS": (4, -38, -48),
}


def _rigid(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, t
    return T


def _orthonormal(T: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(T[:3, :3])
    return _rigid(u @ vt, T[:3, 3])


def _image_group(g: h5py.Group, pixels: np.ndarray, spacing: np.ndarray, origin: np.ndarray, xreg_type: str | None,
                 dims: int) -> None:
    g.create_dataset("pixels", data=pixels)
    g.create_dataset("spacing", data=np.asarray(spacing, np.float32).reshape(dims, 1))
    g.create_dataset("origin", data=np.asarray(origin, np.float32).reshape(dims, 1))
    g.create_dataset("dir-mat", data=np.eye(dims, dtype=np.float32))
    if xreg_type:
        g.attrs["xreg-type"] = xreg_type


def phantom_volume(shape_zyx: tuple[int, int, int] = (12, 14, 16),
                   spacing_xyz: tuple[float, float, float] = (14, 12, 14),
                   origin: tuple[float, float, float] = (-105.0, -78.0, -1020.0), seed: int = 0
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """(CT HU float32 [z, y, x], labels uint8 0-7, landmarks name -> LPS mm float32) of the hip phantom."""
    rng = np.random.default_rng(seed)
    z, y, x = (np.arange(n, dtype=np.float64) for n in shape_zyx)
    sp, org = np.asarray(spacing_xyz, float), np.asarray(origin, float)
    centre = org + (np.array(shape_zyx[::-1]) - 1) * sp / 2
    Z, Y, X = np.meshgrid(org[2] + z * sp[2], org[1] + y * sp[1], org[0] + x * sp[0], indexing="ij")  # noqa: N806
    d = (X - centre[0], Y - centre[1], Z - centre[2])
    ext = (np.array(shape_zyx[::-1]) - 1) * sp / 2
    body = (d[0] / ext[0]) ** 2 + (d[1] / ext[1]) ** 2 + (d[2] / (ext[2] * 1.2)) ** 2 <= 1.0
    ct = np.where(body, 30.0, -1000.0)
    labels = np.zeros(shape_zyx, np.uint8)
    for lab, (off, rad) in _STRUCTURES.items():
        inside = sum(((d[i] - off[i]) / rad[i]) ** 2 for i in range(3)) <= 1.0
        labels[inside & (labels == 0)] = lab
    ct[labels > 0] = 650.0
    ct += rng.normal(0, 5, ct.shape) * body
    lands = {}
    for name, off in _LEFT_LANDMARKS.items():
        for side, sx in (("l", 1.0), ("r", -1.0)):
            p = centre + np.array([sx * off[0], off[1], off[2]]) + rng.uniform(-2, 2, 3)
            lands[f"{name}-{side}"] = p.astype(np.float32)
    return ct.astype(np.float32), labels, lands


def write_deepfluoro_fixture(path: str | os.PathLike[str], *, n_px: int = 32,
                             specimen_ids: tuple[str, ...] = ("99-0001",), n_projections: int = 2, seed: int = 0,
                             xreg_attrs: bool = True) -> Path:
    """Write a DeepFluoro full-resolution-layout file (atomically) and return its path.

    The detector is ``n_px`` square with DeepFluoro's intrinsics scaled by ``n_px / 1536``
    (negative focal lengths, principal point at the centre) and its pixel spacing scaled by
    ``1536 / n_px`` (so the source-to-detector distance stays 1020 mm). Projection ``j`` is an
    AP-like view rotated by up to 15 degrees; odd ``j`` are stored upside down and flagged
    ``rot-180-for-up``. 2D landmarks are computed from the stored (float32) 3D landmarks and
    poses exactly as the loader composes ``P``.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    scale = n_px / 1536
    K = np.array([[-_FOCAL_PX_1536 * scale, 0, (n_px - 1) / 2], [0, -_FOCAL_PX_1536 * scale, (n_px - 1) / 2],
                  [0, 0, 1]])
    pix_mm = _PIXEL_MM_1536 / scale
    E = _orthonormal(_EXTRINSIC).astype(np.float32)
    with paths.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        pp = f.create_group("proj-params")
        pp.create_dataset("intrinsic", data=K.astype(np.float32))
        pp.create_dataset("extrinsic", data=E)
        pp.create_dataset("num-rows", data=np.uint64(n_px))
        pp.create_dataset("num-cols", data=np.uint64(n_px))
        pp.create_dataset("pixel-row-spacing", data=np.float32(pix_mm))
        pp.create_dataset("pixel-col-spacing", data=np.float32(pix_mm))
        K64 = pp["intrinsic"][()].astype(np.float64)  # noqa: N806
        E64 = E.astype(np.float64)  # noqa: N806
        for s_i, sid in enumerate(specimen_ids):
            ct, labels, lands = phantom_volume(seed=seed + s_i)
            spacing, origin = np.array([14.0, 12.0, 14.0]), np.array([-105.0, -78.0, -1020.0]) + 3.0 * s_i
            g = f.create_group(sid)
            _image_group(g.create_group("vol"), ct, spacing, origin, "image-3D" if xreg_attrs else None, 3)
            seg_g = g.create_group("vol-seg")
            _image_group(seg_g.create_group("image"), labels, spacing, origin,
                         "image-seg-3D" if xreg_attrs else None, 3)
            defs = seg_g.create_group("labels-def")
            for k, v in LABEL_NAMES.items():
                defs.create_dataset(str(k), data=np.bytes_(v))
            lg = g.create_group("vol-landmarks")
            if xreg_attrs:
                lg.attrs["xreg-type"] = "lands-map"
            for k, v in lands.items():
                lg.create_dataset(k, data=v.reshape(3, 1))
            centre = origin + (np.array(ct.shape[::-1]) - 1) * spacing / 2
            projs = g.create_group("projections")
            for j in range(n_projections):
                flip = j % 2 == 1
                base = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # upright PA (source posterior): rows inferior
                if flip:
                    base = np.diag([-1.0, -1.0, 1.0]) @ base
                R = base @ rot_z(rng.uniform(-15, 15)) @ rot_x(rng.uniform(-10, 10))
                t = np.array([rng.uniform(-10, 10), rng.uniform(-10, 10), -rng.uniform(600, 700)]) - R @ centre
                M = _rigid(R, t)
                C = (np.linalg.inv(M) @ E64).astype(np.float32)
                P = K64 @ (E64 @ np.linalg.inv(C.astype(np.float64)))[:3]
                image, seg = _splat(ct, labels, spacing, origin, P, n_px, pix_mm, _FOCAL_PX_1536 * scale)
                pg = projs.create_group(f"{j:03d}")
                _image_group(pg.create_group("image"), image, [pix_mm, pix_mm], [0, 0], "image-2D" if xreg_attrs
                             else None, 2)
                _image_group(pg.create_group("gt-seg"), seg, [pix_mm, pix_mm], [0, 0], "image-2D" if xreg_attrs
                             else None, 2)
                glg = pg.create_group("gt-landmarks")
                if xreg_attrs:
                    glg.attrs["xreg-type"] = "lands-map"
                for k, v in lands.items():
                    h = P @ np.append(v.astype(np.float64), 1.0)
                    glg.create_dataset(k, data=(h[:2] / h[2]).astype(np.float32).reshape(2, 1))
                poses = pg.create_group("gt-poses")
                poses.create_dataset("cam-to-pelvis-vol", data=C)
                dR = _rigid(rot_x(1.0), np.array([0.0, 1.0, 0.0]))  # noqa: N806
                poses.create_dataset("cam-to-left-femur-vol", data=(dR @ C).astype(np.float32))
                poses.create_dataset("cam-to-right-femur-vol", data=(np.linalg.inv(dR) @ C).astype(np.float32))
                poses.create_dataset("left-femur-good-fov", data=np.uint8(1))
                poses.create_dataset("right-femur-good-fov", data=np.uint8(j % 2))
                pg.create_dataset("rot-180-for-up", data=np.uint8(flip))
    return path


def _splat(ct: np.ndarray, labels: np.ndarray, spacing: np.ndarray, origin: np.ndarray, P: np.ndarray,
           n_px: int, pix_mm: float, focal_px: float, sub: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """A crude raw-intensity X-ray (I0 = 60000, bone dark) and 2D label map by splatting sub-voxel points."""
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    k, j, i = np.meshgrid(*(np.arange(n) for n in ct.shape), indexing="ij")
    pts, mus, labs = [], [], []
    mu = np.clip(MU_WATER_PER_MM * (1 + ct / 1000.0), 0, None)
    for dz in offs:
        for dy in offs:
            for dx in offs:
                idx = np.stack([i + dx, j + dy, k + dz], -1).reshape(-1, 3)
                pts.append(origin + idx * spacing)
                mus.append(mu.reshape(-1))
                labs.append(labels.reshape(-1))
    X = np.concatenate(pts)
    h = np.concatenate([X, np.ones((len(X), 1))], 1) @ P.T
    uv = h[:, :2] / h[:, 2:3]
    sdd = focal_px * pix_mm
    footprint = pix_mm * np.abs(h[:, 2]) / sdd  # pixel size at the point's depth, mm
    w = np.prod(spacing) / sub**3 / footprint**2  # path length (mm) per unit of the point's weight
    c, r = np.rint(uv[:, 0]).astype(int), np.rint(uv[:, 1]).astype(int)
    ok = (c >= 0) & (c < n_px) & (r >= 0) & (r < n_px)
    line = np.zeros((n_px, n_px))
    np.add.at(line, (r[ok], c[ok]), (np.concatenate(mus) * w)[ok])
    lab = np.concatenate(labs)
    acc = np.zeros((7, n_px, n_px))
    sel = ok & (lab >= 1) & (lab <= 6)
    np.add.at(acc, (lab[sel], r[sel], c[sel]), w[sel])
    seg = np.where(acc[1:].max(0) > 3.0, acc[1:].argmax(0) + 1, 0).astype(np.uint8)
    return (60000.0 * np.exp(-line)).astype(np.float32), seg


# --- preprocessed files ---------------------------------------------------------------------------

#: A landmark order different from the official one (``land-01`` is ``FH-r`` as documented).
FIXTURE_FILE_ORDER: tuple[str, ...] = (
    "ASIS-l", "FH-r", "FH-l", "GSN-l", "GSN-r", "IOF-l", "IOF-r", "MOF-l", "MOF-r", "SPS-l", "SPS-r", "IPS-l",
    "IPS-r", "ASIS-r",
)


def write_deepfluoro_preprocessed_fixture(path: str | os.PathLike[str], *, groups: tuple[str, ...] = ("01", "02"),
                                          n_images: int = 3, size: int = 24, seed: int = 0,
                                          order: tuple[str, ...] = FIXTURE_FILE_ORDER) -> dict[str, np.ndarray]:
    """Write a preprocessed-layout file (atomically); returns group -> lands [N, 2, 14] in official order."""
    rng = np.random.default_rng(seed)
    truth = {}
    with paths.atomic_path(path) as tmp, h5py.File(tmp, "w") as f:
        ln = f.create_group("land-names")
        ln.create_dataset("num-lands", data=np.int64(len(order)))
        for i, n in enumerate(order):
            ln.create_dataset(f"land-{i:02d}", data=np.bytes_(n))
        for g in groups:
            lands = rng.uniform(-4, size + 4, (n_images, 2, len(order))).astype(np.float32)
            grp = f.create_group(g)
            grp.create_dataset("projs", data=rng.uniform(0, 5, (n_images, size, size)).astype(np.float32))
            grp.create_dataset("segs", data=rng.integers(0, 7, (n_images, size, size)).astype(np.uint8))
            grp.create_dataset("lands", data=lands)
            truth[g] = lands[:, :, [order.index(n) for n in HIP_LANDMARKS]]
    return truth


# --- QaTa-COV19 -------------------------------------------------------------------------------------

def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(sitk.GetImageFromArray(arr.astype(np.uint8)), str(path))


def write_qata_fixture(root: str | os.PathLike[str], layout: str = "v1", *, n_images: int = 4, n_masks: int = 3,
                       size: tuple[int, int] = (20, 24), seed: int = 0) -> Path:
    """Write QaTa-COV19 PNGs under ``root/QaTa-COV19`` in the ``v1``, ``v2`` or ``folds`` layout; returns that folder.

    ``v1``: ``n_images`` images ``covid_<i>.png``, the first ``n_masks`` with ``mask_covid_<i>.png``
    (0/255). ``v2``: the same in ``Train Set`` and ``Test Set``. ``folds``: ``Fold1..5/{train,valid,test}/
    {proj,seg}/NNNNN.png`` with ``n_images`` per split.
    """
    rng = np.random.default_rng(seed)
    base = Path(root) / "QaTa-COV19"
    h, w = size

    def pair(img_path: Path, mask_path: Path | None) -> None:
        _png(img_path, rng.integers(0, 256, (h, w)))
        if mask_path is not None:
            m = np.zeros((h, w), np.uint8)
            m[h // 4: h // 2, w // 4: 3 * w // 4] = 255
            _png(mask_path, m)

    if layout in ("v1", "v2"):
        sets = [base / "QaTa-COV19-v1"] if layout == "v1" else [base / "QaTa-COV19-v2" / s for s in ("Train Set",
                                                                                                      "Test Set")]
        for d in sets:
            for i in range(n_images):
                pair(d / "Images" / f"covid_{i + 1}.png",
                     d / "Ground-truths" / f"mask_covid_{i + 1}.png" if i < n_masks else None)
    elif layout == "folds":
        for k in range(1, 6):
            for split in ("train", "valid", "test"):
                for i in range(n_images):
                    d = base / f"Fold{k}" / split
                    pair(d / "proj" / f"{i:05d}.png", d / "seg" / f"{i:05d}.png")
    else:
        raise ConfigError(f"unknown QaTa layout {layout!r}: choose v1, v2 or folds")
    return base
