"""The 14 hip landmarks, found on the generated bone surfaces by ray casting.

Each landmark follows its anatomical definition (see :func:`pelvis_landmarks`) and is located on
the surface of the hemipelvis built by :func:`synthex_lib.anatomy.hip_bones.hemipelvis`, in the
pelvis frame, then placed :data:`LANDMARK_DEPTH_MM` beneath that surface point, inside the bone
(an annotator marks a landmark on the bone of the CT, not in the air or soft tissue next to
it). A surface point itself lies on the boundary of its label volume: at 4 mm CT voxels its
nearest labelled voxel centre may then be 1.2-1.5 voxels away (1.49 voxels measured on 8
specimens), while at this depth every landmark is within one voxel of its structure at 4, 2 and
1 mm (:mod:`tests.test_anatomy_landmarks`). The femoral head centre is deep inside the femur.
"""

from __future__ import annotations

import numpy as np

from synthex_lib.anatomy.hip_bones import HemiPelvis
from synthex_lib.anatomy.sdf import frame_from_z, inset, ray_to_surface, unit
from synthex_lib.geometry import rot_x, rot_z

#: depth (mm) of the surface landmarks beneath the bone surface, along the surface normal (an edge
#: point goes in along the bisector of its faces). An assumption, chosen as the smallest round
#: depth that keeps every landmark within one CT voxel of its label at 4 mm voxels with a margin
#: (at 4 mm a voxel is labelled when most of its 2 mm sub-voxels are bone, which erodes the label
#: by up to 1 mm); about the thickness of the model's pelvic cortex (1.6 mm) plus a millimetre.
LANDMARK_DEPTH_MM = 2.5


def pelvis_landmarks(hp: HemiPelvis, side: str) -> dict[str, np.ndarray]:
    """Landmarks of one hemipelvis in the pelvis frame, found on its generated surface.

    * FH: femoral head centre (the acetabular socket centre).
    * ASIS: the most anterior surface point of the anterior superior iliac spine.
    * MOF / IOF: the most medial / most inferior point of the obturator foramen's bony rim.
    * SPS / IPS: the superior / inferior end of this side's symphyseal surface.
    * GSN: the apex of the greater sciatic notch (its rim point farthest from the line joining
      the posterior inferior iliac spine and the ischial spine).

    Every landmark but FH is then moved :data:`LANDMARK_DEPTH_MM` into the bone
    (:func:`~synthex_lib.anatomy.sdf.inset`).
    """
    out: dict[str, np.ndarray] = {f"FH-{side}": hp.H.copy()}
    sign = 1.0 if side == "l" else -1.0
    # ASIS: rays from inside the spine in a cone around the anterior direction
    base = hp.asis + np.array([0, 8.0, -3.0])
    dirs = []
    for el in np.linspace(-40, 40, 9):
        for az in np.linspace(-50, 50, 11):
            d = rot_z(az) @ rot_x(el) @ np.array([0.0, -1.0, 0.0])
            dirs.append(d)
    dirs = np.array(dirs)
    t = ray_to_surface(hp.sdf, base, dirs, max_mm=60)
    hits = base + dirs * t[:, None]
    ok = np.isfinite(t)
    out[f"ASIS-{side}"] = hits[ok][np.argmin(hits[ok][:, 1])]
    # obturator foramen rim: rays from the hole centre in its plane
    ang = np.deg2rad(np.arange(0, 360, 1.0))
    e1, e2 = hp.obt_axes[:, 0], hp.obt_axes[:, 1]
    dirs = np.cos(ang)[:, None] * e1 + np.sin(ang)[:, None] * e2
    t = ray_to_surface(hp.sdf, hp.obt_center, dirs, max_mm=60)
    hits = hp.obt_center + dirs * t[:, None]
    ok = np.isfinite(t)
    h = hits[ok]
    out[f"MOF-{side}"] = h[np.argmin(sign * h[:, 0])]
    out[f"IOF-{side}"] = h[np.argmin(h[:, 2])]
    # symphysis: this side's symphyseal face is the plane x = sym_x; sample it
    ys = np.arange(-80, -5, 0.5)
    zs = np.arange(-100, 0, 0.5)
    yy, zz = np.meshgrid(ys, zs, indexing="ij")
    pts = np.stack([np.full_like(yy, hp.sym_x + sign * 0.6), yy, zz], -1)
    inside = hp.sdf(pts) < 0
    q = pts[inside]
    proj = q[:, 1:] @ hp.sym_up[1:]
    sps, ips = q[np.argmax(proj)].copy(), q[np.argmin(proj)].copy()
    sps[0] = ips[0] = hp.sym_x
    out[f"SPS-{side}"], out[f"IPS-{side}"] = sps, ips
    # GSN: rays from the notch-cutter axis in its cross-section plane
    fr = frame_from_z(hp.gsn_axis)
    dirs = np.cos(ang)[:, None] * fr[:, 0] + np.sin(ang)[:, None] * fr[:, 1]
    t = ray_to_surface(hp.sdf, hp.gsn_center, dirs, max_mm=hp.gsn_radius + 6)
    ok = np.isfinite(t)
    hits = (hp.gsn_center + dirs * t[:, None])[ok]
    a, b = hp.gsn_chord
    u = unit(b - a)
    rel = hits - a
    dist = np.linalg.norm(rel - (rel @ u)[:, None] * u, axis=1)
    out[f"GSN-{side}"] = hits[np.argmax(dist)]
    names = [n for n in out if not n.startswith("FH")]
    deep = inset(hp.sdf, np.array([out[n] for n in names]), LANDMARK_DEPTH_MM)
    for n, p in zip(names, deep, strict=True):
        out[n] = p
    return out
