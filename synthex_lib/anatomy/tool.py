"""The continuum manipulator (CM) of the paper's robotic tool detection task, placed in a hip.

The CM (Methods, 'Robotic surgical tool detection'; Alambeigi et al. 2017; Gao et al. 2021) is
a nitinol tube of 6 mm outer diameter and 35 mm length with 27 alternating notches; it bends in
one plane, each notch being a joint whose curvature control angle is drawn from N(0, 2.5 deg).
Its landmarks are the start (``base``) and end (``tip``) of the centreline, found by forward
kinematics. It is inserted, as for core decompression of the femoral head, through a tunnel
along the femoral neck of a hip specimen (one of the ``scale`` cohort, as the paper used its
NMDID CTs) with its tip in the head. An unlabelled rigid steel shaft holds the base, and some
scenes have a flexible steel drill through the lumen or another metal object (a Kirschner wire or
a cannulated screw). The C-arm views of the paper (LAO/RAO +-30, CRAN/CAUD +-10 deg, 600-900 mm,
N(0, 10 mm) offsets) are drawn by :class:`synthex_lib.geometry.ToolPoseSampler` around
:attr:`ToolParams` ``center``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from synthex_lib.anatomy.hip import HipAnatomy
from synthex_lib.anatomy.raster import Anatomy, Part
from synthex_lib.anatomy.sdf import (
    SDF,
    Box,
    Capsule,
    EllipticCylinder,
    Subtract,
    Transform,
    Union,
    frame_from_z,
    polyline_tube,
    unit,
)
from synthex_lib.anatomy.tissues import Tissue
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.geometry import rot_x, rot_y

#: CM design (mm): outer/inner diameter, length, number of notches, notch width and depth
CM_OUTER_D, CM_INNER_D, CM_LENGTH, CM_NOTCHES = 6.0, 4.5, 35.0, 27
CM_NOTCH_WIDTH, CM_NOTCH_DEPTH = 0.6, 4.2
#: standard deviation of the curvature control angle of each joint (deg), paper Methods
CM_JOINT_SD_DEG = 2.5
TOOL_LABEL = 1


@dataclass
class ToolParams:
    """One CM configuration and its placement (mm, deg; JSON-serializable)."""

    seed_keys: list[Any]
    host_index: int  #: index of the host hip in the ``scale`` cohort
    side: str  #: "l" or "r": the femur it is inserted into
    joint_deg: list[float]  #: curvature control angle of each of the 27 joints
    insertion_mm: float  #: distance of the base from the femoral head centre along the neck
    tilt_deg: list[float]  #: tilt of the insertion axis away from the neck axis (two angles)
    offset_mm: list[float]  #: base offset perpendicular to the axis (two components)
    roll_deg: float  #: orientation of the bending plane about the axis
    shaft_mm: float  #: length of the rigid steel shaft behind the base (0: none)
    drill: bool  #: flexible steel drill through the lumen
    drill_protrusion_mm: float
    extra: list[list[float]] = field(default_factory=list)  #: other metal: [kind, x0,y0,z0, x1,y1,z1, radius]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_tool_params(n_hosts: int, *keys: Any) -> ToolParams:
    """Draw a CM configuration and placement from ``seeded_rng(*keys)``."""
    rng = seeded_rng(*keys, "tool-params")
    extra: list[list[float]] = []
    if rng.random() < 0.35:
        kind = float(rng.integers(0, 2))  # 0: K-wire, 1: cannulated screw
        extra.append([kind, *rng.normal(0, 1, 6).tolist(), 1.0 if kind == 0 else 3.25])
    return ToolParams(
        seed_keys=[str(k) if not isinstance(k, int | np.integer) else int(k) for k in keys],
        host_index=int(rng.integers(0, max(1, n_hosts))), side=str(rng.choice(["l", "r"])),
        joint_deg=rng.normal(0, CM_JOINT_SD_DEG, CM_NOTCHES).tolist(),
        insertion_mm=float(rng.uniform(48, 62)), tilt_deg=rng.normal(0, 5, 2).tolist(),
        offset_mm=rng.normal(0, 2.0, 2).tolist(), roll_deg=float(rng.uniform(0, 360)),
        shaft_mm=float(rng.uniform(40, 90)) if rng.random() < 0.85 else 0.0,
        drill=bool(rng.random() < 0.5), drill_protrusion_mm=float(rng.uniform(0, 8)), extra=extra,
    )


def cm_kinematics(joint_deg: list[float] | np.ndarray, base: np.ndarray, frame: np.ndarray
                  ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """Forward kinematics: per-segment rotations (columns: notch side, bending axis, tube axis) and
    origins, and the centreline points from base to tip (28 segments of equal length)."""
    n_seg = len(joint_deg) + 1
    pitch = CM_LENGTH / n_seg
    R, t = np.asarray(frame, np.float64), np.asarray(base, np.float64)
    rots, origins, pts = [], [], [t.copy()]
    for i in range(n_seg):
        rots.append(R.copy())
        origins.append(t.copy())
        t = t + R @ np.array([0.0, 0.0, pitch])
        pts.append(t.copy())
        if i < len(joint_deg):
            R = R @ rot_y(joint_deg[i])
    return rots, origins, np.array(pts)


def cm_sdf(joint_deg: list[float] | np.ndarray, base: np.ndarray, frame: np.ndarray) -> tuple[SDF, SDF, np.ndarray]:
    """The notched nitinol tube and its solid envelope (for the label), and the centreline."""
    rots, origins, pts = cm_kinematics(joint_deg, base, frame)
    pitch = CM_LENGTH / len(rots)
    ro, ri = CM_OUTER_D / 2, CM_INNER_D / 2
    segs, env = [], []
    for i, (R, t) in enumerate(zip(rots, origins, strict=True)):
        tube = EllipticCylinder([0, 0, pitch / 2], ro, ro, pitch / 2 + 0.02)
        cuts: list[SDF] = [EllipticCylinder([0, 0, pitch / 2], ri, ri, pitch / 2 + 0.5)]
        if i < len(rots) - 1:
            side = 1.0 if i % 2 == 0 else -1.0
            cuts.append(Box([side * (ro - CM_NOTCH_DEPTH / 2 + 0.5), 0, pitch - CM_NOTCH_WIDTH / 2],
                            [CM_NOTCH_DEPTH / 2 + 0.5, ro + 0.5, CM_NOTCH_WIDTH / 2]))
        segs.append(Transform(Subtract(tube, cuts), R, t))
        env.append(Transform(EllipticCylinder([0, 0, pitch / 2], ro, ro, pitch / 2 + 0.02), R, t))
    return Union(segs), Union(env), pts


class ToolSceneAnatomy(Anatomy):
    """A hip anatomy with the CM (label 1) and other, unlabelled metal inserted."""

    kind = "tool"

    def __init__(self, host: HipAnatomy, params: ToolParams) -> None:
        super().__init__()
        self.host, self.params = host, params

    @property
    def seed_keys(self) -> tuple[Any, ...]:
        return self.host.seed_keys  # same tissue texture as the host, so the host CT can be reused

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        return self.host.bounds

    @property
    def marbling(self) -> dict[int, float]:  # type: ignore[override]
        return self.host.marbling

    @property
    def mottling(self) -> dict[int, float]:  # type: ignore[override]
        return self.host.mottling

    def tables(self):
        return self.host.tables()

    def placement(self) -> tuple[np.ndarray, np.ndarray]:
        """Base position (LPS mm) and frame (columns: notch side, bending axis, insertion axis)."""
        if "placement" in self._cache:
            return self._cache["placement"]
        p = self.params
        sk = self.host._skeleton()
        _, _, R_w, t_w, ax = sk[f"femur-{p.side}"]
        v = unit(-ax["J"])  # neck axis towards the head (femur frame)
        axis = R_w @ v
        fr = frame_from_z(axis)
        axis = fr @ (rot_x(p.tilt_deg[0]) @ rot_y(p.tilt_deg[1]) @ np.array([0.0, 0.0, 1.0]))
        fr = frame_from_z(axis)
        c, s = np.cos(np.deg2rad(p.roll_deg)), np.sin(np.deg2rad(p.roll_deg))
        fr = fr @ np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
        base = t_w - axis * p.insertion_mm + fr[:, 0] * p.offset_mm[0] + fr[:, 1] * p.offset_mm[1]
        self._cache["placement"] = (base, fr)
        return base, fr

    def tool(self) -> tuple[SDF, SDF, np.ndarray]:
        if "tool" not in self._cache:
            base, fr = self.placement()
            self._cache["tool"] = cm_sdf(self.params.joint_deg, base, fr)
        return self._cache["tool"]

    def _metal(self) -> list[Part]:
        p = self.params
        base, fr = self.placement()
        _, _, line = self.tool()
        axis = fr[:, 2]
        parts: list[Part] = []
        if p.shaft_mm > 0:
            shaft = Subtract(EllipticCylinder(base - axis * (p.shaft_mm / 2 + 0.3), 3.0, 3.0, p.shaft_mm / 2,
                                              fr), [EllipticCylinder(base - axis * (p.shaft_mm / 2), 2.0, 2.0,
                                                                     p.shaft_mm / 2 + 1, fr)])
            parts.append(Part("cm-shaft", shaft, Tissue.STEEL))
        if p.drill:
            tip_dir = unit(line[-1] - line[-2])
            pts = [base - axis * (p.shaft_mm + 60), *line, line[-1] + tip_dir * p.drill_protrusion_mm]
            parts.append(Part("drill", polyline_tube(pts, 1.2), Tissue.STEEL))
        lms = self.host.landmarks()
        head = lms[f"FH-{p.side}"]
        other_head = lms["FH-r" if p.side == "l" else "FH-l"]
        other_axis = axis * np.array([-1.0, 1.0, 1.0])
        for i, e in enumerate(p.extra):
            kind, d = int(e[0]), np.asarray(e[1:7])
            if kind == 0:  # K-wire through the proximal femur/pelvis region
                a = head + np.array([0, 0, 40.0]) + d[:3] * 25
                b = a + unit(np.array([0.3, 0.2, -1.0]) + 0.4 * d[3:]) * 140
            else:  # cannulated screw along the other femur's neck
                a = other_head + d[:3] * 4 - other_axis * 70
                b = a + unit(other_axis + 0.1 * d[3:]) * 60
            parts.append(Part(f"metal-{i}", Capsule(a, b, float(e[7])), Tissue.STEEL))
        return parts

    def _build(self) -> list[Part]:
        host = [replace(part, label=None) for part in self.host.parts if part.relabel_from is None]
        body, env, _ = self.tool()
        return [*host, *self._metal(), Part("cm", body, Tissue.NITINOL),
                Part("cm-label", env, None, label=TOOL_LABEL)]

    def landmarks(self) -> dict[str, np.ndarray]:
        _, _, line = self.tool()
        return {"base": line[0].copy(), "tip": line[-1].copy()}

    @property
    def center(self) -> np.ndarray:
        """Midpoint of the CM centreline (the isocentre of the paper's tool views), LPS mm."""
        lm = self.landmarks()
        return 0.5 * (lm["base"] + lm["tip"])

    def tool_box(self, margin: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """Box (LPS mm) holding every inserted object."""
        los, his = [], []
        for part in self.parts[len(self.parts) - len(self._metal()) - 2:]:
            los.append(part.sdf.lo)
            his.append(part.sdf.hi)
        lo, hi = self.bounds
        return (np.maximum(np.min(los, 0) - margin, lo), np.minimum(np.max(his, 0) + margin, hi))
