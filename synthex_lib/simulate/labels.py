"""Projection of 3D annotations to 2D labels: label maps, structure masks, landmarks, heatmaps.

Frames: volumes are indexed ``[z, y, x]`` with spacing (x, y, z) mm and ``origin`` the LPS mm of
voxel ``[0, 0, 0]``; ``P`` (3x4, or a batch [B, 3, 4]) maps LPS mm to pixel (col, row) of an image
of ``size = (W, H)``; 2D landmarks are (col, row) = (x, y) with the centre of the top-left pixel
at (0, 0).

How a 2D label map is made (the SyntheX / DeepFluoro convention of forward-projecting the 3D
segmentation with the imaging geometry):

1. The path length of every ray through every structure is the line integral of that
   structure's indicator function, computed by the shared ray marcher
   (:func:`synthex_lib.simulate.raymarch.line_integrals`, trilinear sampling, so a partially
   covered voxel counts partially) in mm, all structures in one pass.
2. A pixel belongs to a structure when its path length exceeds ``threshold_mm`` (default 1 mm):
   thinner grazing chords are below what an annotator or a segmentation network could see.
3. Overlaps are resolved by one of two documented rules. ``rule="priority"`` takes the first
   structure of an explicit order that covers the pixel; the hip datasets use
   :data:`HIP_PRIORITY` (femurs over hemipelves over vertebrae over sacrum), so a femoral head
   seen through the acetabulum is labelled femur, as the official evaluation expects of the
   femoral-head landmarks. ``rule="longest"`` (the default of the functions, for structures
   without a natural order) gives the pixel to the structure the ray traverses longest.

Per-structure masks (the surgical tool, COVID-19 lesions) use the same path length and threshold
for one binary volume. Landmarks are projected with ``P``; a landmark is *visible* when it lies in
front of the source, inside the image (0 <= x <= W - 1, 0 <= y <= H - 1) and, when its
structures are given, one of them covers its pixel (path length above the threshold). Invisible
landmarks keep their projected coordinates and are flagged, never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from synthex_lib.core.errors import ConfigError, DataError, require_positive
from synthex_lib.geometry import Camera, projection_array
from synthex_lib.simulate.raymarch import line_integrals

#: default minimum projected path length (mm) for a pixel to belong to a structure
DEFAULT_THRESHOLD_MM = 1.0
#: the overlap order of the hip's 2D label maps (rule "priority"): femurs (5, 6) over the hemipelves
#: (1, 2) over the vertebrae (3) over the upper sacrum (4). The femoral head stays femur inside the
#: acetabulum (the official code looks for the femoral-head landmarks on the femur labels), the iliac
#: wings cover the sacro-iliac joints, and L5 covers the sacral promontory.
HIP_PRIORITY: tuple[int, ...] = (5, 6, 1, 2, 3, 4)


@dataclass
class ProjectedLabels:
    """2D labels of a batch of views.

    Attributes:
        seg: uint8 [B, H, W] label map (the structure ids; 0 background).
        path_mm: float32 [B, K, H, W] path length of each ray through each structure, mm.
        ids: the K structure ids, in the order of ``path_mm``'s channel axis.
        threshold_mm: the path length above which a pixel belongs to a structure.
    """

    seg: np.ndarray
    path_mm: np.ndarray
    ids: tuple[int, ...]
    threshold_mm: float

    def covered(self, label_id: int) -> np.ndarray:
        """bool [B, H, W]: pixels whose ray traverses structure ``label_id`` longer than the threshold."""
        if label_id not in self.ids:
            raise ConfigError(f"label id {label_id} was not projected; projected ids: {self.ids}")
        return self.path_mm[:, self.ids.index(label_id)] > self.threshold_mm


def _as_batch_P(P: np.ndarray | Camera | Sequence[Camera]) -> np.ndarray:
    """[B, 3, 4] float64 of a 3x4 / [B, 3, 4] ``P`` or the ``pixel_from_world`` of one or more cameras."""
    P = np.asarray(projection_array(P), dtype=np.float64)
    if P.shape == (3, 4):
        P = P[None]
    if P.ndim != 3 or P.shape[1:] != (3, 4):
        raise ConfigError(f"parameter 'P' must be a 3x4 matrix or a [B, 3, 4] batch, got shape {P.shape}")
    if not np.isfinite(P).all():
        raise ConfigError("parameter 'P' contains NaN or inf")
    return P


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    if len(size) != 2:
        raise ConfigError(f"parameter 'size' must be (W, H), got {size!r}")
    w, h = (int(s) if float(s).is_integer() else s for s in size)
    require_positive("size[0] (W)", w, integer=True)
    require_positive("size[1] (H)", h, integer=True)
    return int(w), int(h)


def structure_path_lengths(volume: np.ndarray, spacing: Sequence[float], origin: Sequence[float], P: np.ndarray,
                           size: Sequence[int], ids: Sequence[int], step_mm: float | None,
                           device: str | torch.device | None = None) -> torch.Tensor:
    """Path length (mm) of every ray through every structure ``ids`` of a label ``volume``.

    Args:
        volume: integer label volume ``[z, y, x]`` (or a binary mask).
        spacing: voxel size (x, y, z) mm; ``origin``: LPS mm of voxel [0, 0, 0].
        P: 3x4 or [B, 3, 4], LPS mm -> pixel (col, row), or a :class:`~synthex_lib.geometry.Camera` / cameras.
        size: (W, H) of the image.
        ids: structure ids to measure (one channel each).
        step_mm: ray-marching step in mm, or None for the ray marcher's slice stepping (one bilinear
            sample per slice of the volume: exact through slabs, and the fastest).

    Returns:
        float32 torch tensor [B, K, H, W], mm.
    """

    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise DataError(f"label volume must be 3D [z, y, x], got shape {vol.shape}")
    ids = tuple(int(i) for i in ids)
    if not ids:
        raise ConfigError("parameter 'ids' must name at least one structure")
    if step_mm is not None:
        require_positive("step_mm", float(step_mm))
    size = _check_size(size)
    P = _as_batch_P(P)
    t = torch.from_numpy(np.ascontiguousarray(vol))
    channels = torch.stack([(t == i).to(torch.float32) for i in ids])
    out = line_integrals(channels, tuple(float(s) for s in spacing), tuple(float(o) for o in origin),
                         torch.from_numpy(P), size, None if step_mm is None else float(step_mm), device=device)
    return out.to(torch.float32)


def resolve_overlaps(path_mm: np.ndarray | torch.Tensor, ids: Sequence[int], threshold_mm: float = DEFAULT_THRESHOLD_MM,
                     rule: str = "longest", priority: Sequence[int] | None = None) -> np.ndarray:
    """Turn per-structure path lengths [B, K, H, W] (mm) into a uint8 label map [B, H, W].

    ``rule="longest"``: each pixel takes the id whose path length is largest among those above
    ``threshold_mm`` (ties go to the earlier id in ``ids``). ``rule="priority"``: the first id of
    ``priority`` (default: ``ids`` in order) above the threshold wins.
    """
    pl = path_mm.detach().cpu().numpy() if isinstance(path_mm, torch.Tensor) else np.asarray(path_mm)
    ids = tuple(int(i) for i in ids)
    if pl.ndim != 4 or pl.shape[1] != len(ids):
        raise ConfigError(f"path lengths must be [B, {len(ids)}, H, W] for ids {ids}, got {pl.shape}")
    if not 0 <= float(threshold_mm):
        raise ConfigError(f"parameter 'threshold_mm' must be >= 0, got {threshold_mm}")
    if any(not 0 <= i <= 255 for i in ids):
        raise ConfigError(f"label ids must fit uint8 (0..255), got {ids}")
    above = pl > threshold_mm
    seg = np.zeros((pl.shape[0],) + pl.shape[2:], dtype=np.uint8)
    if rule == "longest":
        masked = np.where(above, pl, -np.inf)
        best = np.argmax(masked, axis=1)  # first maximum: ties go to the earlier id
        any_above = above.any(axis=1)
        lut = np.asarray(ids, dtype=np.uint8)
        seg[any_above] = lut[best[any_above]]
    elif rule == "priority":
        order = tuple(int(i) for i in (priority if priority is not None else ids))
        unknown = sorted(set(order) - set(ids))
        if unknown:
            raise ConfigError(f"priority names ids {unknown} that were not projected (ids {ids})")
        for i in reversed(order):  # the first of the order is written last and wins
            seg[above[:, ids.index(i)]] = i
    else:
        raise ConfigError(f"unknown overlap rule {rule!r}: choose 'longest' or 'priority'")
    return seg


def project_labels(volume: np.ndarray, spacing: Sequence[float], origin: Sequence[float], P: np.ndarray,
                   size: Sequence[int], step_mm: float | None, ids: Sequence[int] | None = None,
                   threshold_mm: float = DEFAULT_THRESHOLD_MM, rule: str = "longest",
                   priority: Sequence[int] | None = None, device: str | torch.device | None = None) -> ProjectedLabels:
    """2D label maps of a label volume for a batch of views (see the module docstring for the rule).

    ``ids`` defaults to every non-zero id present in ``volume``. Returns :class:`ProjectedLabels`.
    """
    vol = np.asarray(volume)
    if ids is None:
        ids = tuple(int(i) for i in np.unique(vol) if i != 0)
        if not ids:
            raise DataError("label volume holds no structure (all zeros); nothing to project")
    path = structure_path_lengths(vol, spacing, origin, P, size, ids, step_mm, device=device).cpu().numpy()
    seg = resolve_overlaps(path, ids, threshold_mm, rule, priority)
    return ProjectedLabels(seg=seg, path_mm=path.astype(np.float32), ids=tuple(int(i) for i in ids),
                           threshold_mm=float(threshold_mm))


def project_labels_per_structure(volume: np.ndarray, spacing: Sequence[float], origin: Sequence[float],
                                 P: np.ndarray, size: Sequence[int], step_mm: float | None, ids: Sequence[int],
                                 P_of: Mapping[int, np.ndarray] | None = None,
                                 threshold_mm: float = DEFAULT_THRESHOLD_MM, rule: str = "longest",
                                 priority: Sequence[int] | None = None,
                                 device: str | torch.device | None = None) -> ProjectedLabels:
    """:func:`project_labels` where some structures have their own projection (separately registered
    bones: DeepFluoro projects each femur with its own pose).

    ``P_of`` maps a structure id to its [B, 3, 4] projection (of the same label volume); the other ids use
    ``P``. Path lengths are measured per structure with its projection, then overlaps are resolved once.
    """
    ids = tuple(int(i) for i in ids)
    P_of = {int(k): v for k, v in (P_of or {}).items()}
    unknown = sorted(set(P_of) - set(ids))
    if unknown:
        raise ConfigError(f"P_of names structure ids {unknown} that are not projected (ids {ids})")
    base = tuple(i for i in ids if i not in P_of)
    channels: dict[int, np.ndarray] = {}
    if base:
        path = structure_path_lengths(volume, spacing, origin, P, size, base, step_mm, device=device).cpu().numpy()
        channels.update({i: path[:, k] for k, i in enumerate(base)})
    for i, P_i in P_of.items():
        channels[i] = structure_path_lengths(volume, spacing, origin, P_i, size, (i,), step_mm,
                                             device=device).cpu().numpy()[:, 0]
    path = np.stack([channels[i] for i in ids], axis=1)
    seg = resolve_overlaps(path, ids, threshold_mm, rule, priority)
    return ProjectedLabels(seg=seg, path_mm=path.astype(np.float32), ids=ids, threshold_mm=float(threshold_mm))


def project_mask(mask: np.ndarray, spacing: Sequence[float], origin: Sequence[float], P: np.ndarray,
                 size: Sequence[int], step_mm: float | None, threshold_mm: float = DEFAULT_THRESHOLD_MM,
                 device: str | torch.device | None = None) -> np.ndarray:
    """bool [B, H, W]: pixels whose ray traverses the binary ``mask`` (tool, lesion) longer than ``threshold_mm``."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    path = structure_path_lengths(m, spacing, origin, P, size, (1,), step_mm, device=device)
    return (path[:, 0] > threshold_mm).cpu().numpy()


def project_landmarks(P: np.ndarray, points_lps: np.ndarray, size: Sequence[int],
                      coverage: Mapping[int, np.ndarray] | None = None,
                      structures: Sequence[Sequence[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Project 3D landmarks (LPS mm) into a batch of views.

    Args:
        P: 3x4 or [B, 3, 4], or a :class:`~synthex_lib.geometry.Camera` / cameras.
        points_lps: (L, 3) LPS mm; NaN rows (landmark missing on this specimen) give NaN and invisible.
        size: (W, H).
        coverage: optional id -> bool [B, H, W] (e.g. ``{i: labels.covered(i)}``); with
            ``structures`` it adds the "structure in view" test.
        structures: for each landmark the ids of the structures it lies on (e.g. FH -> femur).

    Returns:
        xy float32 [B, L, 2] as (col, row), and visible bool [B, L].
    """
    P = _as_batch_P(P)
    w, h = _check_size(size)
    pts = np.asarray(points_lps, dtype=np.float64).reshape(-1, 3)
    hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    proj = np.einsum("bij,lj->bli", P, hom)
    depth = proj[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = proj[..., :2] / depth[..., None]
    # a point is in front of the source when its homogeneous depth has the sign of det(M)
    # (positive for K [R|t] with positive focal lengths; DeepFluoro's negative-focal P flips both)
    sign = np.sign(np.linalg.det(P[:, :, :3]))[:, None]
    visible = np.isfinite(xy).all(-1) & (depth * sign > 0)
    visible &= (xy[..., 0] >= 0) & (xy[..., 0] <= w - 1) & (xy[..., 1] >= 0) & (xy[..., 1] <= h - 1)
    if structures is not None:
        if coverage is None:
            raise ConfigError("parameter 'structures' needs 'coverage' (id -> bool [B, H, W])")
        if len(structures) != len(pts):
            raise ConfigError(f"'structures' has {len(structures)} entries for {len(pts)} landmarks")
        col = np.clip(np.rint(np.nan_to_num(xy[..., 0])), 0, w - 1).astype(np.int64)
        row = np.clip(np.rint(np.nan_to_num(xy[..., 1])), 0, h - 1).astype(np.int64)
        b_idx = np.arange(P.shape[0])[:, None]
        for li, ids in enumerate(structures):
            on = np.zeros(P.shape[0], dtype=bool)
            for i in ids:
                if i not in coverage:
                    raise ConfigError(f"landmark {li} needs coverage of structure {i}; given: {sorted(coverage)}")
                on |= np.asarray(coverage[i])[b_idx[:, 0], row[:, li], col[:, li]]
            visible[:, li] &= on
    return xy.astype(np.float32), visible


def lands_array(xy: np.ndarray) -> np.ndarray:
    """[B, L, 2] (col, row) -> the HDF5 layout's [B, 2, L] (row 0 = x = col, row 1 = y = row)."""
    return np.ascontiguousarray(np.transpose(np.asarray(xy, dtype=np.float32), (0, 2, 1)))


def gaussian_heatmaps(xy: np.ndarray | torch.Tensor, size: Sequence[int], sigma_px: float,
                      visible: np.ndarray | torch.Tensor | None = None) -> np.ndarray | torch.Tensor:
    """Gaussian heatmaps exp(-d^2 / (2 sigma^2)) with peak 1 at each landmark (col, row).

    Args:
        xy: [..., L, 2] landmarks (col, row) in pixels (numpy or torch).
        size: (W, H) of the heatmaps.
        sigma_px: standard deviation in pixels (the paper: 5 px at 360 px).
        visible: optional [..., L] bool; invisible (or non-finite) landmarks give all-zero maps.

    Returns:
        float32 [..., L, H, W], the type (numpy or torch, and torch's device) of ``xy``.
    """
    require_positive("sigma_px", float(sigma_px))
    w, h = _check_size(size)
    is_torch = isinstance(xy, torch.Tensor)
    t = xy.to(torch.float32) if is_torch else torch.from_numpy(np.asarray(xy, dtype=np.float32))
    if t.shape[-1] != 2:
        raise ConfigError(f"landmarks must be [..., L, 2] (col, row), got shape {tuple(t.shape)}")
    ok = torch.isfinite(t).all(-1)
    if visible is not None:
        v = visible if isinstance(visible, torch.Tensor) else torch.from_numpy(np.asarray(visible, dtype=bool))
        ok = ok & v.to(device=t.device, dtype=torch.bool)
    t = torch.nan_to_num(t, nan=0.0, posinf=0.0, neginf=0.0)
    cols = torch.arange(w, dtype=torch.float32, device=t.device)
    rows = torch.arange(h, dtype=torch.float32, device=t.device)
    gx = torch.exp(-((cols - t[..., 0:1]) ** 2) / (2 * sigma_px**2))  # [..., L, W]
    gy = torch.exp(-((rows - t[..., 1:2]) ** 2) / (2 * sigma_px**2))  # [..., L, H]
    out = gy[..., :, None] * gx[..., None, :] * ok[..., None, None].to(torch.float32)
    return out if is_torch else out.numpy()
