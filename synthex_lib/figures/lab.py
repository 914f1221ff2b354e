"""Figures and tables of the virtual lab (used by ``notebooks/00_virtual_lab.ipynb``).

Digitally reconstructed radiographs come from the project's projectors
(:func:`synthex_lib.simulate.registry.get_projector`); this module only chooses views and draws.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synthex_lib import geometry
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.figures.style import COLUMN_IN, LABEL_COLORS, OKABE_ITO, label_color, label_legend, landmark_handle
from synthex_lib.simulate.registry import get_projector

#: the book's label colours (one map for every chapter: :mod:`synthex_lib.figures.style`)
LABEL_COLOURS = LABEL_COLORS
#: landmark markers and names on DRRs and slices
LANDMARK_COLOUR = OKABE_ITO["yellow"]
#: outline of projected masks (chest lesions)
MASK_COLOUR = OKABE_ITO["vermillion"]


def radiograph_device(size: int) -> geometry.Device:
    """A conventional 43 cm flat-panel radiography geometry (SDD 1100 mm), binned to ``size`` px:
    large enough for a whole pelvis or chest, unlike the CIOS C-arm's ~17 cm field at the isocentre."""
    return geometry.Device("radiograph-43cm", size, size, 430.0 / size, 1100.0, "43 cm radiography panel")


def views(center: np.ndarray, device: geometry.Device, sid_mm: float, angles: Sequence[tuple[float, float]]
          ) -> np.ndarray:
    """``[B, 3, 4]`` projection matrices of C-arm views (LAO, CRAN deg) around ``center`` (LPS mm)."""
    return np.stack([geometry.projection_matrix(device, geometry.carm_pose(center, sid_mm, lao_deg=a, cran_deg=c))
                     for a, c in angles])


def render(volume: Any, P: np.ndarray, size: int, projector: str = "naive", quantity: str = "neglog"
           ) -> np.ndarray:
    """Render ``[B, H, W]`` images of a specimen (or any object with ``ct_hu``, ``spacing``, ``origin``)."""

    return get_projector(projector).render(volume, P, (size, size), quantity=quantity)


def lesion_projection(spec: Specimen, P: np.ndarray, size: int) -> np.ndarray:
    """``[B, H, W]`` bool: pixels whose ray crosses the 3D lesion mask (the 2D lesion label)."""
    vol = SimpleNamespace(ct_hu=np.where(spec.lesion_mask > 0, 0.0, -1000.0).astype(np.float32),
                          spacing=spec.spacing, origin=spec.origin, specimen_id=f"{spec.specimen_id}-lesion")
    return render(vol, P, size, quantity="water-path-mm") > 0.5 * min(spec.spacing)


def _show(ax, img: np.ndarray, title: str = "") -> None:
    body = img[img > img.min() + 0.25 * (img.max() - img.min())]  # window on the body, not the background
    lo, hi = np.percentile(body if body.size > 100 else img, [0.5, 99.8])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_drrs(images: np.ndarray, P: np.ndarray | None = None,
              landmarks: dict[str, np.ndarray] | Sequence[dict[str, np.ndarray]] | None = None,
              titles: Sequence[str] | None = None, masks: np.ndarray | None = None, ncols: int | None = None):
    """Show images with projected 3D landmarks (one dict for all images or one per image) and
    optional mask outlines."""

    n = len(images)
    ncols = ncols or n
    nrows = -(-n // ncols)
    w = min(COLUMN_IN / ncols, 3.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(w * ncols, (w + 0.25) * nrows), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        _show(ax, images[i], titles[i] if titles else "")
        if masks is not None:
            ax.contour(masks[i].astype(float), levels=[0.5], colors=MASK_COLOUR, linewidths=0.8)
        lms = landmarks if isinstance(landmarks, dict) or landmarks is None else landmarks[i]
        if lms and P is not None:
            names = list(lms)
            uv, _ = geometry.project_points(P[i], np.stack([lms[k] for k in names]))
            h, w = images[i].shape
            for name, (u, v) in zip(names, uv, strict=True):
                if 0 <= u < w and 0 <= v < h:
                    ax.plot(u, v, "o", ms=3, color=LANDMARK_COLOUR)
                    ax.text(u + 2, v - 2, name, color=LANDMARK_COLOUR, fontsize=6)
    fig.tight_layout()
    extra = []
    if masks is not None:
        extra.append(plt.Line2D([], [], color=MASK_COLOUR, lw=1.2, label="projected lesion mask"))
    if landmarks and P is not None:
        extra.append(landmark_handle("landmark (projected)", color=LANDMARK_COLOUR))
    if extra:
        label_legend(fig, labels=[], extra=extra)
    return fig


def orthogonal_slices(spec: Specimen, point: np.ndarray | None = None, window: tuple[float, float] = (-400, 1400)):
    """Axial, coronal and sagittal CT slices through ``point`` (LPS mm) with label outlines and the
    landmarks within two voxels of each slice. Images are drawn in radiological convention
    (patient right on the viewer's left, superior up)."""

    point = spec.center_lps if point is None else np.asarray(point, float)
    i, j, k = np.clip(np.rint(spec.world_to_index(point)).astype(int), 0, np.array(spec.shape_xyz) - 1)
    o, sp, (nx, ny, nz) = np.array(spec.origin), np.array(spec.spacing), spec.shape_xyz
    ext_x = (o[0] - sp[0] * 0.5, o[0] + sp[0] * (nx - 0.5))  # +x (patient left) on the viewer's right
    ext_y = (o[1] - 0.5 * sp[1], o[1] + sp[1] * (ny - 0.5))
    ext_z = (o[2] - 0.5 * sp[2], o[2] + sp[2] * (nz - 0.5))
    planes = [
        ("axial", spec.ct_hu[k], spec.labels[k], (ext_x[0], ext_x[1], ext_y[1], ext_y[0]), 2, (0, 1), False),
        ("coronal", spec.ct_hu[:, j, :], spec.labels[:, j, :], (ext_x[0], ext_x[1], ext_z[0], ext_z[1]), 1, (0, 2),
         True),
        ("sagittal", spec.ct_hu[:, :, i], spec.labels[:, :, i], (ext_y[0], ext_y[1], ext_z[0], ext_z[1]), 0, (1, 2),
         True),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(COLUMN_IN, 2.9))
    present: set[int] = set()
    for ax, (name, img, lab, ext, normal, (a0, a1), lower) in zip(axes, planes, strict=True):
        origin = "lower" if lower else "upper"
        ax.imshow(img, cmap="gray", vmin=window[0], vmax=window[1], extent=ext, origin=origin)
        for lid in range(1, int(lab.max()) + 1):
            if (lab == lid).any():
                present.add(lid)
                ax.contour((lab == lid).astype(float), levels=[0.5], colors=label_color(lid),
                           linewidths=0.8, extent=ext, origin=origin)
        for nm, p in spec.landmarks.items():
            if abs(p[normal] - point[normal]) <= 2 * sp[normal]:
                ax.plot(p[a0], p[a1], "o", color=LANDMARK_COLOUR, ms=3)
                ax.text(p[a0], p[a1], " " + nm, color=LANDMARK_COLOUR, fontsize=6)
        ax.set_title(f"{name} at {('x', 'y', 'z')[normal]} = {point[normal]:.0f} mm", fontsize=9)
        ax.set_xlabel(("x", "y", "z")[a0] + " (mm)")
        ax.set_ylabel(("x", "y", "z")[a1] + " (mm)")
        if normal == 2:
            ax.set_ylim(ext[2], ext[3])
    fig.tight_layout()
    label_legend(fig, labels=present, kind=spec.kind, ncol=4,
                 extra=[landmark_handle("landmark within 2 voxels", color=LANDMARK_COLOUR)] if spec.landmarks else [])
    return fig


def landmarks_3d(spec: Specimen, max_points: int = 6000, seed: int = 0):
    """3D scatter of the labelled bone (sub-sampled voxels, coloured by label) and the landmarks."""

    rng = seeded_rng(seed, "figure-landmarks-3d", spec.specimen_id)
    idx = np.argwhere(spec.labels > 0)
    if len(idx) > max_points:
        idx = idx[rng.choice(len(idx), max_points, replace=False)]
    xyz = spec.index_to_world(idx[:, ::-1])
    ids = spec.labels[tuple(idx.T)]
    col = [label_color(v) for v in ids]
    fig = plt.figure(figsize=(COLUMN_IN, 0.8 * COLUMN_IN))
    ax = fig.add_subplot(projection="3d")
    ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], s=1, c=col, alpha=0.25)
    for nm, p in spec.landmarks.items():
        ax.scatter(*p, s=25, c="k")
        ax.text(*p, " " + nm, fontsize=7)
    ax.set_xlabel("x: patient left (mm)")
    ax.set_ylabel("y: posterior (mm)")
    ax.set_zlabel("z: superior (mm)")
    ax.view_init(elev=12, azim=-70)
    ax.set_box_aspect(np.ptp(xyz, axis=0))
    ax.locator_params(nbins=4)
    label_legend(ax, labels=np.unique(ids), kind=spec.kind, loc="upper left",
                 extra=[landmark_handle("landmark", color="black")])
    return fig


def ct_vs_anatomy(spec: Specimen, center: np.ndarray, half_mm: float = 30.0, fine_mm: float = 0.5,
                  window: tuple[float, float] = (-300, 1600)):
    """Coronal patch of the anatomy (true HU at ``fine_mm``) beside the simulated CT, with a line
    profile along x through ``center``: partial volume, blur and noise are what the CT adds."""

    c = np.asarray(center, float)
    lo, hi = c - half_mm, c + half_mm
    lo[1] = hi[1] = c[1]
    r = spec.anatomy.rasterize(fine_mm, (lo, hi))
    fine = r.hu[:, 0, :]
    i0, j, k0 = np.clip(np.rint(spec.world_to_index(lo)).astype(int), 0, np.array(spec.shape_xyz) - 1)
    i1, _, k1 = np.clip(np.rint(spec.world_to_index(hi)).astype(int), 0, np.array(spec.shape_xyz) - 1)
    ct = spec.ct_hu[k0:k1 + 1, j, i0:i1 + 1]
    fig, axes = plt.subplots(1, 3, figsize=(COLUMN_IN, 2.6))
    ext = (lo[0], hi[0], lo[2], hi[2])
    axes[0].imshow(np.clip(fine, -1000, 3071), cmap="gray", vmin=window[0], vmax=window[1], origin="lower", extent=ext)
    axes[0].set_title(f"anatomy (true HU, {fine_mm} mm)", fontsize=8)
    axes[1].imshow(ct, cmap="gray", vmin=window[0], vmax=window[1], origin="lower", extent=ext)
    axes[1].set_title(f"simulated CT ({spec.spacing[0]:g} mm)", fontsize=8)
    xs_f = lo[0] + np.arange(fine.shape[1]) * fine_mm
    xs_c = spec.origin[0] + np.arange(i0, i1 + 1) * spec.spacing[0]
    axes[2].plot(xs_f, fine[fine.shape[0] // 2], label="anatomy")
    kc = int(np.clip(np.rint(spec.world_to_index(c))[2], 0, spec.shape_xyz[2] - 1))
    axes[2].step(xs_c, spec.ct_hu[kc, j, i0:i1 + 1], where="mid", label="CT")
    axes[2].set_xlabel("x (mm)")
    axes[2].set_ylabel("HU")
    axes[2].legend(fontsize=7)
    axes[2].set_title("profile along x", fontsize=8)
    fig.tight_layout()
    return fig


def specimen_table(specs: Sequence[Specimen], transpose: bool = True):
    """The main parameters and measured anatomy (mm, deg) of hip specimens: one column per specimen (the
    default, which fits the page's width), or one row per specimen with ``transpose=False``."""

    rows = []
    for s in specs:
        a = s.anatomy
        host = getattr(a, "host", a)
        p = host.params
        lm = host.landmarks()
        rows.append({
            "specimen": s.specimen_id, "group": s.meta.get("group", ""),
            "cross-scanner": bool(s.meta.get("cross_scanner", False)),
            "size": round(p.size, 3), "female-like": round(p.female, 2),
            "inter-ASIS (mm)": round(float(np.linalg.norm(lm["ASIS-l"] - lm["ASIS-r"])), 1),
            "FH radius L/R (mm)": f"{p.left.fh_radius:.1f}/{p.right.fh_radius:.1f}",
            "NSA L/R (deg)": f"{p.left.nsa_deg:.0f}/{p.right.nsa_deg:.0f}",
            "anteversion L/R (deg)": f"{p.left.anteversion_deg:.0f}/{p.right.anteversion_deg:.0f}",
            "tilt (deg)": round(p.tilt_deg, 1), "lordosis (deg)": round(p.lordosis_deg, 1),
            "fat ant. (mm)": round(p.fat_mm[0], 1), "gas pockets": len(p.gas),
            "CT voxels": "x".join(str(v) for v in s.shape_xyz),
        })
    df = pd.DataFrame(rows)
    if not transpose:
        return df
    out = df.set_index("specimen").T.astype(object)
    out.columns.name = "specimen"
    return out
