"""C-arm devices, poses and projection matrices.

Frames and conventions:

* World: LPS millimetres (x = patient left, y = posterior, z = superior).
* Camera: right-handed, origin at the X-ray source, +x along increasing detector columns,
  +y along increasing rows, +z along the principal ray from the source towards the detector.
  Depth (camera z) is positive for points between source and detector.
* Pixels: (col, row) = (x, y), the centre of the top-left pixel at (0, 0).
* ``P = K [R | t]`` (3x4) maps homogeneous LPS mm to homogeneous pixels; ``[R | t]`` maps world to
  camera. Any 3x4 matrix with that meaning is accepted by the projectors (also DeepFluoro's,
  whose focal lengths are negative).

Transforms are named deepdrr-style ``a_from_b`` (maps coordinates of frame ``b`` to frame ``a``), so
that compositions read right to left: ``pixel_from_world = pixel_from_camera @ camera_from_world``.
A :class:`Camera` holds one view (intrinsics, pose, SDD, pitch, size); :meth:`Camera.from_projection`
is the one place where a bare ``P`` is decomposed (RQ) into intrinsics and pose.

The default view is the anteroposterior (AP) projection: source anterior, detector posterior,
rows running inferior, so the image shows the patient's right on the viewer's left, as a
radiograph is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.linalg import rq

from synthex_lib.core.errors import ConfigError, require_positive


@dataclass(frozen=True)
class Device:
    """A flat-panel C-arm: detector size in pixels, pixel pitch and source-to-detector distance (mm)."""

    name: str
    rows: int
    cols: int
    pixel_mm: float
    sdd_mm: float
    description: str = ""

    def __post_init__(self) -> None:
        require_positive("rows", self.rows, integer=True)
        require_positive("cols", self.cols, integer=True)
        require_positive("pixel_mm", self.pixel_mm)
        require_positive("sdd_mm", self.sdd_mm)

    @property
    def focal_px(self) -> float:
        """Focal length in pixels (SDD / pixel pitch)."""
        return self.sdd_mm / self.pixel_mm

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsics, principal point at the detector centre."""
        f = self.focal_px
        return np.array([[f, 0.0, (self.cols - 1) / 2], [0.0, f, (self.rows - 1) / 2], [0.0, 0.0, 1.0]])

    def binned(self, size: int, field_px: int | None = None) -> Device:
        """The central ``field_px`` square of the detector binned to ``size`` x ``size`` pixels.

        The paper crops DeepFluoro's 1536 px detector to 1440 px and downsamples by 4, 8 or 3
        to 360, 180 or 480 px (0.776, 1.552, 0.582 mm pixels); ``field_px`` defaults to that
        crop (15/16 of the detector).
        """
        require_positive("size", size, integer=True)
        field = field_px if field_px is not None else int(round(min(self.rows, self.cols) * 15 / 16))
        return replace(self, rows=int(size), cols=int(size), pixel_mm=self.pixel_mm * field / size,
                       name=f"{self.name}@{size}px")


#: Siemens CIOS Fusion-like C-arm (DeepFluoro): 1536^2 px at 0.194 mm, SDD 1020 mm.
CIOS_FUSION = Device("cios-fusion", 1536, 1536, 0.194, 1020.0,
                     "Siemens CIOS Fusion-like mobile C-arm (DeepFluoro geometry)")
#: Brainlab Loop-X-like device for the cross-scanner test. The numbers are assumptions chosen to
#: differ from the CIOS (larger panel, coarser pixels, longer SDD), not vendor specifications.
LOOPX = Device("loopx", 1600, 1600, 0.274, 1140.0,
               "Brainlab Loop-X-like imaging ring (assumed parameters, documented in the book)")

DEVICES: dict[str, Device] = {d.name: d for d in (CIOS_FUSION, LOOPX)}


def get_device(name: str) -> Device:
    if name not in DEVICES:
        raise ConfigError(f"unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    return DEVICES[name]


# --- rotations and poses ---------------------------------------------------------------------

def rot_x(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def rot_y(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rot_z(deg: float) -> np.ndarray:
    a = np.deg2rad(deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


#: Camera axes of the AP view as columns, in LPS: x_cam = +x (patient left), y_cam = -z
#: (inferior), z_cam = +y (posterior: the beam runs anterior -> posterior).
_AP_CAM_TO_WORLD = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True)
class Pose:
    """A C-arm pose: rotation ``R`` (world -> camera) and translation ``t`` (mm)."""

    R: np.ndarray
    t: np.ndarray

    @property
    def extrinsic(self) -> np.ndarray:
        """3x4 [R | t]."""
        return np.concatenate([self.R, self.t.reshape(3, 1)], axis=1)

    @property
    def source_lps(self) -> np.ndarray:
        """LPS mm of the X-ray source (camera centre)."""
        return -self.R.T @ self.t


def carm_pose(isocenter_lps: np.ndarray, sid_mm: float, lao_deg: float = 0.0, cran_deg: float = 0.0,
              roll_deg: float = 0.0) -> Pose:
    """Pose of a C-arm looking at ``isocenter_lps`` from ``sid_mm`` (source-to-isocentre distance).

    Starting from the AP view, the C-arm is rotated by ``lao_deg`` about the patient's
    superior axis (+z, LAO positive), then by ``cran_deg`` about the patient's left axis (+x,
    cranial positive), then the detector is rolled by ``roll_deg`` about the principal ray.
    """
    require_positive("sid_mm", sid_mm)
    cam_to_world = rot_z(lao_deg) @ rot_x(cran_deg) @ _AP_CAM_TO_WORLD @ rot_z(roll_deg)
    R = cam_to_world.T
    source = np.asarray(isocenter_lps, dtype=np.float64) - sid_mm * cam_to_world[:, 2]
    return Pose(R=R, t=-R @ source)


def projection_matrix(device: Device, pose: Pose) -> np.ndarray:
    """3x4 ``P = K [R | t]`` mapping LPS mm to pixel (col, row)."""
    return device.K @ pose.extrinsic


def project_points(P: np.ndarray, points_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) LPS points with a 3x4 ``P``: returns (N, 2) pixel (col, row) and (N,) depth.

    The depth is the third homogeneous coordinate; it is the camera z in mm when ``P``'s
    intrinsics have a unit last row (true for :func:`projection_matrix`).
    """
    X = np.concatenate([np.asarray(points_lps, np.float64).reshape(-1, 3), np.ones((len(points_lps), 1))], 1)
    h = X @ np.asarray(P, np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = h[:, :2] / h[:, 2:3]
    return uv, h[:, 2]


def decompose_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split a 3x4 ``P`` into source position (LPS mm), ``M^-1`` (pixel -> ray direction) and ``M``.

    A pixel (u, v) looks along the world direction ``M^-1 @ [u, v, 1]`` from the source, where
    ``M = P[:, :3]``; the direction points away from the source towards the detector when the
    third coordinate of ``P @ [X, 1]`` is positive in front of the source (true for our
    devices; for DeepFluoro's negative-focal matrices the sign is handled by the caller's P).
    """
    P = np.asarray(P, np.float64)
    M = P[:, :3]
    Minv = np.linalg.inv(M)
    source = -Minv @ P[:, 3]
    return source, Minv, M


def view_angles(P: np.ndarray) -> dict[str, np.ndarray]:
    """The C-arm view of projection matrices ``P`` [N, 3, 4] (or one [3, 4]) relative to the AP view of the
    world frame, in degrees: ``lao`` (rotation about the patient's superior axis, LAO positive) and ``cran``
    (cranial positive), the inverse of :func:`carm_pose`'s ``lao_deg`` and ``cran_deg``, and ``off_ap``, the
    angle between the principal ray and the AP direction (anterior to posterior, +y in LPS). Each is [N]
    (a scalar array for one ``P``). The detector roll does not enter."""
    P = np.asarray(P, np.float64)
    one = P.ndim == 2
    Ps = P[None] if one else P
    if Ps.ndim != 3 or Ps.shape[1:] != (3, 4):
        raise ConfigError(f"parameter 'P' must be [N, 3, 4] or [3, 4], got shape {P.shape}")
    ray = np.stack([rq_projection(p)[1][2] for p in Ps])  # camera +z (source -> detector) in world axes
    out = {"lao": np.degrees(np.arctan2(-ray[:, 0], ray[:, 1])),
           "cran": np.degrees(np.arcsin(np.clip(ray[:, 2], -1.0, 1.0))),
           "off_ap": np.degrees(np.arccos(np.clip(ray[:, 1], -1.0, 1.0)))}
    return {k: v[0] if one else v for k, v in out.items()}


# --- cameras -------------------------------------------------------------------------------------

def _homogeneous(rt: np.ndarray) -> np.ndarray:
    return np.concatenate([rt, [[0.0, 0.0, 0.0, 1.0]]], axis=0)


def rq_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``P ~ K [R | t]``: intrinsics ``K`` (3x3, ``K[2, 2] = 1``, positive diagonal), rotation ``R``
    (world -> camera, ``det(R) = +1``) and translation ``t`` (mm), by RQ decomposition of ``P[:, :3]``.

    ``P`` and ``-P`` (any non-zero scale) are the same projective map; the sign is chosen so that
    ``det(P[:, :3]) > 0``, then ``K``'s diagonal is made positive (a 180 degree turn of the camera
    about its principal ray for DeepFluoro's negative focal lengths). Use :meth:`Camera.from_projection`;
    this is its decomposition.
    """
    P = np.asarray(P, np.float64)
    if P.shape != (3, 4) or not np.isfinite(P).all():
        raise ConfigError(f"parameter 'P' must be a finite 3x4 matrix, got shape {P.shape}")
    if np.linalg.det(P[:, :3]) < 0:
        P = -P
    K, R = rq(P[:, :3])
    S = np.diag(np.sign(np.diag(K)))  # noqa: N806 - S S = I: K S has a positive diagonal, S R stays proper
    K, R = K @ S, S @ R
    t = np.linalg.solve(K, P[:, 3])
    return K / K[2, 2], R, t


@dataclass(frozen=True)
class Camera:
    """One X-ray view: intrinsics, pose, source-to-detector distance, pixel pitch and image size.

    Frames (see the module docstring): world = LPS mm; camera = mm, origin at the source, +z along the
    principal ray towards the detector; pixel = (col, row), pixel centres on integers.

    Attributes:
        intrinsic: ``K`` 3x3, ``pixel_from_camera`` (camera mm -> homogeneous pixels), ``K[2, 2] = 1``.
        pose: :class:`Pose` ``[R | t]``, ``camera_from_world`` (R 3x3, t (3,) mm).
        sdd_mm: source-to-detector distance (mm).
        size: image size ``(cols, rows)`` = (W, H) pixels, or ``None`` when unknown (a camera recovered
            from a bare ``P`` whose image size was not given).
    """

    intrinsic: np.ndarray
    pose: Pose
    sdd_mm: float
    size: tuple[int, int] | None = None
    _P: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        K = np.asarray(self.intrinsic, np.float64)
        if K.shape != (3, 3) or not np.isfinite(K).all() or abs(np.linalg.det(K)) < 1e-12:
            raise ConfigError(f"camera intrinsic must be a finite invertible 3x3 matrix, got {K!r}")
        require_positive("sdd_mm", self.sdd_mm)
        if self.size is not None:
            if len(self.size) != 2:
                raise ConfigError(f"camera size must be (cols, rows), got {self.size!r}")
            require_positive("size[0] (cols)", self.size[0], integer=True)
            require_positive("size[1] (rows)", self.size[1], integer=True)
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))
        object.__setattr__(self, "intrinsic", K)
        object.__setattr__(self, "sdd_mm", float(self.sdd_mm))
        object.__setattr__(self, "_P", K @ self.pose.extrinsic)

    # constructors
    @classmethod
    def from_device(cls, device: Device, pose: Pose) -> Camera:
        """The camera of ``device`` (its K, SDD and detector size) at ``pose``."""
        return cls(device.K, pose, device.sdd_mm, (device.cols, device.rows))

    @classmethod
    def from_projection(cls, P: np.ndarray, sdd_mm: float, size: Sequence[int] | None = None) -> Camera:
        """The camera of a bare 3x4 ``P`` (LPS mm -> pixel (col, row)), any scale or sign: the ONE place
        where a projection matrix is decomposed (:func:`rq_projection`). ``sdd_mm`` is not in ``P`` (only
        focal length / pitch is) and must be given; ``size`` (cols, rows) may be ``None``."""
        K, R, t = rq_projection(P)
        return cls(K, Pose(R=R, t=t), sdd_mm, None if size is None else tuple(size))

    # intrinsics
    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsics (alias of :attr:`intrinsic`)."""
        return self.intrinsic

    @property
    def focal_px(self) -> tuple[float, float]:
        """Focal lengths (fx, fy) in pixels (``K[0, 0]``, ``K[1, 1]``)."""
        return float(self.intrinsic[0, 0]), float(self.intrinsic[1, 1])

    @property
    def principal_point(self) -> tuple[float, float]:
        """Pixel (col, row) of the principal ray."""
        return float(self.intrinsic[0, 2]), float(self.intrinsic[1, 2])

    @property
    def pixel_mm(self) -> float:
        """Detector pixel pitch (mm): SDD over the focal length in pixels (geometric mean of |fx|, |fy|)."""
        fx, fy = self.focal_px
        return float(self.sdd_mm / np.sqrt(abs(fx * fy)))

    @property
    def cols(self) -> int | None:
        return None if self.size is None else self.size[0]

    @property
    def rows(self) -> int | None:
        return None if self.size is None else self.size[1]

    # transforms (a_from_b maps frame b to frame a)
    @property
    def pixel_from_camera(self) -> np.ndarray:
        """3x3 ``K``: camera mm -> homogeneous pixel (col, row, 1) (divide by the third coordinate)."""
        return self.intrinsic

    @property
    def camera_from_pixel(self) -> np.ndarray:
        """3x3 ``K^-1``: homogeneous pixel -> camera direction (mm, up to scale; z = 1 for K[2] = (0, 0, 1))."""
        return np.linalg.inv(self.intrinsic)

    @property
    def camera_from_world(self) -> np.ndarray:
        """4x4 rigid ``[[R, t], [0, 1]]``: homogeneous LPS mm -> camera mm."""
        return _homogeneous(self.pose.extrinsic)

    @property
    def world_from_camera(self) -> np.ndarray:
        """4x4 rigid ``[[R^T, -R^T t], [0, 1]]``: camera mm -> homogeneous LPS mm."""
        R, t = self.pose.R, self.pose.t
        return _homogeneous(np.concatenate([R.T, (-R.T @ t).reshape(3, 1)], axis=1))

    @property
    def pixel_from_world(self) -> np.ndarray:
        """3x4 ``P = K [R | t]``: homogeneous LPS mm -> homogeneous pixel (col, row, 1)."""
        return self._P.copy()

    @property
    def P(self) -> np.ndarray:
        """Alias of :attr:`pixel_from_world`."""
        return self.pixel_from_world

    @property
    def source_lps(self) -> np.ndarray:
        """LPS mm of the X-ray source (the camera centre)."""
        return self.pose.source_lps

    def project(self, points_lps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) pixel (col, row) and (N,) camera depth (mm) of (N, 3) LPS mm points."""
        return project_points(self._P, points_lps)

    def ray_direction(self, uv: np.ndarray) -> np.ndarray:
        """(N, 3) unit LPS directions from the source through pixels ``uv`` (N, 2) (col, row)."""
        uv = np.asarray(uv, np.float64).reshape(-1, 2)
        h = np.concatenate([uv, np.ones((len(uv), 1))], axis=1)
        d = h @ (self.pose.R.T @ self.camera_from_pixel).T
        return d / np.linalg.norm(d, axis=1, keepdims=True)

    def with_intrinsic(self, intrinsic: np.ndarray) -> Camera:
        """The same pose, SDD and size with other intrinsics."""
        return Camera(intrinsic, self.pose, self.sdd_mm, self.size)


def as_cameras(P: Camera | Sequence[Camera] | np.ndarray, sdd_mm: float,
               size: Sequence[int] | None = None) -> list[Camera]:
    """A list of cameras from one :class:`Camera`, a sequence of them, or a 3x4 / [B, 3, 4] ``P`` (decomposed
    with :meth:`Camera.from_projection` for ``sdd_mm`` and ``size``; a camera keeps its own SDD)."""
    if isinstance(P, Camera):
        return [P]
    if isinstance(P, Sequence) and len(P) and all(isinstance(c, Camera) for c in P):
        return list(P)
    arr = np.asarray(P, np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (3, 4):
        raise ConfigError(f"parameter 'P' must be a Camera, cameras, or [3, 4] / [B, 3, 4], got shape {arr.shape}")
    return [Camera.from_projection(Pi, sdd_mm, size) for Pi in arr]


def projection_array(P: Camera | Sequence[Camera] | np.ndarray) -> np.ndarray:
    """``P`` as given (array-like) or the stacked ``pixel_from_world`` [B, 3, 4] of a camera / cameras."""
    if isinstance(P, Camera):
        return P.pixel_from_world
    if isinstance(P, Sequence) and len(P) and all(isinstance(c, Camera) for c in P):
        return np.stack([c.pixel_from_world for c in P])
    return P


def pixel_size_at_isocenter(device: Device, sid_mm: float) -> float:
    """Pixel pitch projected to the isocentre plane, mm (demagnification by SID/SDD)."""
    return device.pixel_mm * sid_mm / device.sdd_mm


# --- pose samplers of the paper's Methods ----------------------------------------------------

@dataclass(frozen=True)
class HipPoseSampler:
    """Hip imaging (paper, Methods 'Hip imaging'): CT rotation uniform in +-45 deg, translation
    left/right +-50 mm, inferior/superior +-20 mm, anterior/posterior +-100 mm.

    The rotation is applied as LAO/RAO and cranial/caudal C-arm angles (each uniform in
    +-``rot_deg``) about the specimen's centre; the translation moves the isocentre relative to
    the pelvis centre. The nominal source-to-isocentre distance is ``sid_mm`` (the CIOS's 600 mm
    with the A/P translation moving the specimen along the beam).
    """

    rot_deg: float = 45.0
    lr_mm: float = 50.0
    is_mm: float = 20.0
    ap_mm: float = 100.0
    sid_mm: float = 600.0

    def sample(self, rng: np.random.Generator, center_lps: np.ndarray) -> Pose:
        lao, cran = rng.uniform(-self.rot_deg, self.rot_deg, size=2)
        d = np.array([rng.uniform(-self.lr_mm, self.lr_mm), rng.uniform(-self.ap_mm, self.ap_mm),
                      rng.uniform(-self.is_mm, self.is_mm)])
        return carm_pose(np.asarray(center_lps) + d, self.sid_mm, lao_deg=lao, cran_deg=cran)


@dataclass(frozen=True)
class ToolPoseSampler:
    """Continuum-manipulator detection (paper, Methods): LAO/RAO uniform in +-30 deg, CRAN/CAUD in
    +-10 deg, source-to-isocentre 600-900 mm, isocentre offset x/y ~ N(0, 10 mm) around the tool."""

    lao_deg: float = 30.0
    cran_deg: float = 10.0
    sid_range_mm: tuple[float, float] = (600.0, 900.0)
    offset_sd_mm: float = 10.0

    def sample(self, rng: np.random.Generator, center_lps: np.ndarray) -> Pose:
        lao = rng.uniform(-self.lao_deg, self.lao_deg)
        cran = rng.uniform(-self.cran_deg, self.cran_deg)
        sid = rng.uniform(*self.sid_range_mm)
        d = np.array([rng.normal(0, self.offset_sd_mm), rng.normal(0, self.offset_sd_mm), 0.0])
        return carm_pose(np.asarray(center_lps) + d, sid, lao_deg=lao, cran_deg=cran)


@dataclass(frozen=True)
class ChestPoseSampler:
    """COVID-19 chest X-ray (paper, Methods): rotation uniform in +-5 deg about each axis and
    source-to-isocentre 350-650 mm. (The +-30 deg CT shear of the paper is applied to the
    volume by the simulator, not to the pose.)"""

    rot_deg: float = 5.0
    sid_range_mm: tuple[float, float] = (350.0, 650.0)

    def sample(self, rng: np.random.Generator, center_lps: np.ndarray) -> Pose:
        lao, cran, roll = rng.uniform(-self.rot_deg, self.rot_deg, size=3)
        sid = rng.uniform(*self.sid_range_mm)
        return carm_pose(np.asarray(center_lps), sid, lao_deg=lao, cran_deg=cran, roll_deg=roll)


POSE_SAMPLERS = {"hip": HipPoseSampler, "tool": ToolPoseSampler, "chest": ChestPoseSampler}
