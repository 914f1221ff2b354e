"""Procedural hip specimens: pelvis, sacrum, lumbar spine, femurs and soft tissue.

Frames: the *pelvis frame* is LPS-aligned with its origin midway between the femoral head
centres (x = patient left, y = posterior, z = superior). The specimen (world, LPS mm) frame is
the CT table frame: bones are placed by the pelvic tilt/obliquity/rotation, the femurs in
addition by each hip's flexion and abduction; the body outline stays aligned with the table.

The shapes are built from signed-distance primitives (:mod:`synthex_lib.anatomy.sdf`): thin
fan plates with rim tubes for the iliac wings, round cones for rami and femoral necks, a
cylinder cut for the greater sciatic notch, an ellipsoid cut for the obturator foramen, and a
sphere cut for the acetabular socket, irregular elliptic canals for the sacral foramina. The 14
landmarks are then found *on the generated surfaces* by ray casting, following their anatomical
definitions, and placed just beneath them inside the bone.

The concerns are split: the parameters and their sampling in :mod:`~synthex_lib.anatomy.hip_params`,
the shapes of the bones in :mod:`~synthex_lib.anatomy.hip_bones`, the landmarks in
:mod:`~synthex_lib.anatomy.hip_landmarks`, the bowel's course, gas and faeces in
:mod:`~synthex_lib.anatomy.hip_bowel`; this module assembles them (with the soft tissue) into
:class:`HipAnatomy`. Its hooks :meth:`HipAnatomy.femur_motion`, :meth:`~HipAnatomy.bowel_gas`,
:meth:`~HipAnatomy.fat_mm` and :meth:`~HipAnatomy.extra_parts` are what an X-ray session changes
(:mod:`~synthex_lib.anatomy.session`).
Dimensions follow adult averages (inter-ASIS about 230-260 mm, femoral head radius 21-26 mm,
neck-shaft angle about 128 deg, anteversion about 13 deg).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthex_lib.anatomy.hip_bones import femur_local, hemipelvis, pelvis_rotation, sacrum, smoothstep, vertebra
from synthex_lib.anatomy.hip_bowel import (
    COLON_PATH,
    COLON_RADIUS,
    COLON_SEGMENTS,
    FAECES_GAS_THRESHOLD,
    RECTUM_PATH,
    RECTUM_RADIUS,
    BowelContent,
    content_sdf,
)
from synthex_lib.anatomy.hip_landmarks import pelvis_landmarks
from synthex_lib.anatomy.hip_params import HipParams
from synthex_lib.anatomy.raster import Anatomy, Part
from synthex_lib.anatomy.sdf import (
    SDF,
    Ellipsoid,
    EllipticCylinder,
    EllipticLoft,
    RoundCone,
    Transform,
    Union,
    frame_from_z,
    polyline_tube,
    unit,
)
from synthex_lib.anatomy.tissues import Tissue, tissue_tables
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.geometry import rot_x, rot_y

#: hip label ids (DeepFluoro)
LEFT_HEMIPELVIS, RIGHT_HEMIPELVIS, VERTEBRAE, UPPER_SACRUM, LEFT_FEMUR, RIGHT_FEMUR = 1, 2, 3, 4, 5, 6


def _extent(sdf: SDF, lo: np.ndarray, hi: np.ndarray, margin: float, step: float = 4.0
            ) -> tuple[np.ndarray, np.ndarray]:
    """Box of the points of [lo, hi] inside ``sdf`` (sampled every ``step`` mm), grown by ``margin``;
    z keeps [lo, hi]."""
    axes = [np.arange(lo[i], hi[i] + step, step) for i in range(3)]
    X, Y, Z = np.meshgrid(*axes, indexing="ij")  # noqa: N806
    inside = sdf(np.stack([X, Y, Z], -1)) < 0
    xs, ys = X[inside], Y[inside]
    out_lo = np.array([xs.min() - step - margin, ys.min() - step - margin, lo[2]])
    out_hi = np.array([xs.max() + step + margin, ys.max() + step + margin, hi[2]])
    return out_lo, out_hi


class HipAnatomy(Anatomy):
    """The continuous anatomy of one hip specimen (parameters in :class:`HipParams`)."""

    kind = "hip"

    def __init__(self, params: HipParams) -> None:
        super().__init__()
        self.params = params

    @property
    def seed_keys(self) -> tuple[Any, ...]:
        return tuple(self.params.seed_keys)

    @property
    def marbling(self) -> dict[int, float]:  # type: ignore[override]
        vf = self.params.visceral_fat
        return {Tissue.MUSCLE: 1.5, Tissue.BOWEL: float(1.0 - 1.6 * vf)}

    @property
    def mottling(self) -> dict[int, float]:  # type: ignore[override]
        return {Tissue.FAECES: FAECES_GAS_THRESHOLD}

    # -- what an imaging session may change (see synthex_lib.anatomy.session) -------------------
    def femur_motion(self, side: str) -> np.ndarray | None:
        """Rotation (3x3, specimen frame) of the ``side`` femur about its head centre relative to
        the CT, or None (as scanned)."""
        return None

    def bowel_gas(self) -> list[BowelContent]:
        """The bowel gas present (as scanned: :attr:`HipParams.gas`)."""
        return list(self.params.gas)

    def fat_mm(self) -> list[float]:
        """Subcutaneous fat thickness (mm): anterior, lateral, posterior, buttock."""
        return list(self.params.fat_mm)

    def extra_parts(self) -> list[Part]:
        """Parts painted after the anatomy (none for the CT; drapes in an imaging session)."""
        return []

    def tables(self):
        p = self.params
        return tissue_tables(bone_density=p.bone_density, fat_hu=p.fat_hu, muscle_hu=p.muscle_hu)

    # -- geometry ---------------------------------------------------------------------------------
    def _skeleton(self) -> dict[str, Any]:
        if "skeleton" in self._cache:
            return self._cache["skeleton"]
        p = self.params
        Rg = pelvis_rotation(p)  # noqa: N806
        out: dict[str, Any] = {"Rg": Rg}
        for side, sign, sp in (("l", 1, p.left), ("r", -1, p.right)):
            hemi = hemipelvis(sign, p, sp)
            out[f"hemi-{side}"] = hemi
            bone, canal, ax = femur_local(sp, sign, p.size)
            # hip flexion (distal moves anteriorly) and abduction (distal moves laterally) about H
            Rf = rot_x(-sp.flexion_deg) @ rot_y(-sign * sp.abduction_deg)  # noqa: N806
            R_w = Rg @ Rf
            motion = self.femur_motion(side)
            if motion is not None:  # repositioned about the head centre (another session)
                R_w = np.asarray(motion, np.float64) @ R_w
            t_w = Rg @ hemi.H
            out[f"femur-{side}"] = (Transform(bone, R_w, t_w), Transform(canal, R_w, t_w), R_w, t_w, ax)
        sac, lower, endplate = sacrum(p)
        out["sacrum"] = (Transform(sac, Rg, np.zeros(3)), Transform(lower, Rg, np.zeros(3)))
        # lumbar spine stacked on S1 with lordosis
        e = endplate[:3]
        phi = np.deg2rad(p.sacral_slope_deg)
        dphi = np.deg2rad(p.lordosis_deg) / 4
        verts, discs = [], []
        s = p.size
        for level in (5, 4, 3, 2):
            phi_next = phi - dphi
            up_d = unit([0, -np.sin(0.5 * (phi + phi_next)), np.cos(0.5 * (phi + phi_next))])
            disc_h = (10.0 if level >= 4 else 9.0) * s
            discs.append(Transform(EllipticCylinder([0, 0, 0], 24 * s, 16 * s, disc_h / 2 + 1.5 * s, rounding=3 * s),
                                   frame_from_z(up_d, [1, 0, 0]) @ np.diag([1, 1, 1]), Rg @ (e + up_d * disc_h / 2)))
            up_v = unit([0, -np.sin(phi_next), np.cos(phi_next)])
            c = e + up_d * disc_h + up_v * 13.5 * s
            fr = np.stack([np.array([1.0, 0, 0]), np.cross(up_v, [1.0, 0, 0]), up_v], axis=1)
            verts.append(Transform(vertebra(level, s), Rg @ fr, Rg @ c))
            e = c + up_v * 13.5 * s
            phi = phi_next
        out["vertebrae"] = Union(verts)
        out["discs"] = Union(discs)
        out["spine_top"] = Rg @ e
        self._cache["skeleton"] = out
        return out

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """LPS box (mm) of the scanned body: the skin outline's extent within the scanned z range."""
        if "bounds" not in self._cache:
            body = self._body()[0]
            z0, z1 = np.asarray(self.params.z_range) * self.params.size
            self._cache["bounds"] = _extent(body, np.array([body.lo[0], body.lo[1], z0]),
                                            np.array([body.hi[0], body.hi[1], z1]), margin=6.0)
        return self._cache["bounds"]

    def _body(self) -> tuple[SDF, SDF, list[SDF]]:
        """Skin outline, muscle compartment and thigh axes (world)."""
        if "body" in self._cache:
            return self._cache["body"]
        p, s = self.params, self.params.size
        sk = self._skeleton()
        fa, fl, fp, fb = self.fat_mm()
        mu = p.muscle
        z = np.array([-120, -70, -20, 30, 90, 160, 230, 300]) * s
        a_m = np.array([130, 150, 160, 160, 152, 148, 135, 130]) * s * mu
        b_m = np.array([80, 92, 100, 100, 98, 96, 90, 88]) * s * mu
        cy_m = np.array([28, 26, 22, 18, 16, 16, 22, 22]) * s
        muscle = EllipticLoft(z, np.zeros_like(z), cy_m, a_m, b_m, rounding=30 * s)
        fpost = np.array([fb, fb, fb, fp, fp, fp, fp, fp])
        b_b = b_m + 0.5 * (fa + fpost)
        cy_b = cy_m + 0.5 * (fpost - fa)
        body = EllipticLoft(z - np.array([10, 0, 0, 0, 0, 0, 0, 0]), np.zeros_like(z), cy_b, a_m + fl, b_b,
                            rounding=30 * s)
        thighs_m, thighs_b = [], []
        for side in ("l", "r"):
            _, _, R_w, t_w, ax = sk[f"femur-{side}"]
            J = R_w @ ax["J"] + t_w  # noqa: N806
            sw = R_w @ ax["s0"]
            off = np.array([-np.sign(J[0]) * 8, -10.0, 0])
            a, b = J + off - sw * 10 * s, J + off + sw * 320 * s
            thighs_m.append(RoundCone(a, b, 78 * s * mu, 62 * s * mu))
            thighs_b.append(RoundCone(a, b, 78 * s * mu + fl * 0.9, 62 * s * mu + fl * 0.8))
        out = (Union([body, *thighs_b], k=35 * s), Union([muscle, *thighs_m], k=30 * s), thighs_m)
        self._cache["body"] = out
        return out

    def _build(self) -> list[Part]:
        p, s = self.params, self.params.size
        sk = self._skeleton()
        Rg = sk["Rg"]  # noqa: N806
        body, muscle, _ = self._body()
        parts = [Part("body", body, Tissue.FAT, shell_mm=2.0, shell_tissue=Tissue.SKIN),
                 Part("muscle", muscle, Tissue.MUSCLE)]

        def pelvic(sdf: SDF) -> SDF:
            return Transform(sdf, Rg, np.zeros(3))

        abdomen = EllipticLoft(np.array([40, 120, 200, 320]) * s, np.zeros(4), np.array([-25, -30, -30, -25]) * s,
                               np.array([95, 125, 125, 120]) * s * p.muscle, np.array([55, 72, 72, 70]) * s * p.muscle,
                               rounding=25 * s)
        pelvic_cavity = Ellipsoid(np.array([0, 15, 15]) * s, np.array([62, 58, 55]) * s)
        colon = [polyline_tube(COLON_PATH[a:b] * s, COLON_RADIUS * s, k=5 * s) for a, b in COLON_SEGMENTS]
        parts += [Part("abdomen", abdomen, Tissue.BOWEL, only_over=(Tissue.MUSCLE,)),
                  Part("pelvic-cavity", pelvic(pelvic_cavity), Tissue.BOWEL, only_over=(Tissue.MUSCLE,)),
                  *[Part(f"colon-{i}", c, Tissue.BOWEL, only_over=(Tissue.MUSCLE, Tissue.BOWEL))
                    for i, c in enumerate(colon)]]
        bl = np.array(p.bladder) * s
        parts.append(Part("bladder", pelvic(Ellipsoid(np.array([0, -12, -8 + bl[2] * 0.5]) * s, bl)), Tissue.FLUID))
        rectum = polyline_tube(RECTUM_PATH * s, RECTUM_RADIUS * s, k=4 * s)
        parts.append(Part("rectum", pelvic(rectum), Tissue.BOWEL))
        for i, c in enumerate(p.faeces):
            parts.append(Part(f"faeces-{i}", content_sdf(c, s, Rg), Tissue.FAECES, only_over=(Tissue.BOWEL,)))
        for i, c in enumerate(self.bowel_gas()):
            parts.append(Part(f"gas-{i}", content_sdf(c, s, Rg), Tissue.AIR, only_over=(Tissue.BOWEL, Tissue.FAECES)))
        for sg in (-1, 1):
            psoas = polyline_tube(np.array([[sg * 28, 28, 240], [sg * 45, 20, 110], [sg * 68, -10, 20],
                                            [sg * 88, -18, -30]]) * s, np.array([14, 24, 24, 17]) * s * p.muscle,
                                  k=6 * s)
            parts.append(Part(f"psoas-{sg}", pelvic(psoas), Tissue.MUSCLE))
        # skeleton
        parts.append(Part("discs", sk["discs"], Tissue.DISC))
        for side, lab in (("l", LEFT_HEMIPELVIS), ("r", RIGHT_HEMIPELVIS)):
            parts.append(Part(f"hemipelvis-{side}", pelvic(sk[f"hemi-{side}"].sdf), Tissue.CANCELLOUS, label=lab,
                              shell_mm=1.6, shell_tissue=Tissue.CORTICAL))
        sac, lower = sk["sacrum"]
        parts.append(Part("sacrum", sac, Tissue.CANCELLOUS, label=UPPER_SACRUM, shell_mm=1.4,
                          shell_tissue=Tissue.CORTICAL))
        parts.append(Part("lower-sacrum", lower, Tissue.CANCELLOUS, label=0, relabel_from=UPPER_SACRUM))
        parts.append(Part("vertebrae", sk["vertebrae"], Tissue.CANCELLOUS, label=VERTEBRAE, shell_mm=1.4,
                          shell_tissue=Tissue.CORTICAL))
        for side, lab in (("l", LEFT_FEMUR), ("r", RIGHT_FEMUR)):
            bone, canal, R_w, t_w, ax = sk[f"femur-{side}"]
            J, s0 = ax["J"], ax["s0"]  # noqa: N806

            def thickness(pts: np.ndarray, R_w=R_w, t_w=t_w, J=J, s0=s0) -> np.ndarray:  # noqa: N803
                loc = (pts - t_w.astype(np.float32)) @ R_w.astype(np.float32)
                along = (loc - J.astype(np.float32)) @ s0.astype(np.float32)
                return (1.3 + 4.2 * smoothstep(along, 40 * s, 110 * s)).astype(np.float32)

            parts.append(Part(f"femur-{side}", bone, Tissue.CANCELLOUS, label=lab, shell_mm=5.5,
                              shell_tissue=Tissue.CORTICAL, shell_fn=thickness, shell_min_mm=1.3))
            parts.append(Part(f"canal-{side}", canal, Tissue.MARROW, only_over=(Tissue.CANCELLOUS,)))
        return parts + self.extra_parts()

    @property
    def pelvis_rotation(self) -> np.ndarray:
        """Rotation from the pelvis frame to the specimen (LPS) frame (tilt, obliquity, rotation)."""
        return pelvis_rotation(self.params)

    def landmarks(self) -> dict[str, np.ndarray]:
        """The 14 hip landmarks (LPS mm), found on the generated surfaces."""
        if "landmarks" in self._cache:
            return self._cache["landmarks"]
        sk = self._skeleton()
        Rg = sk["Rg"]  # noqa: N806
        out: dict[str, np.ndarray] = {}
        for side in ("l", "r"):
            for name, v in pelvis_landmarks(sk[f"hemi-{side}"], side).items():
                out[name] = Rg @ v
        out = {name: out[name] for name in HIP_LANDMARKS}  # the official order
        self._cache["landmarks"] = out
        return out

    def part_sdf(self, name: str) -> SDF:
        """The signed-distance field (world frame) of a named part (see :attr:`parts`)."""
        for part in self.parts:
            if part.name == name:
                return part.sdf
        raise KeyError(name)
