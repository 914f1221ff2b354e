"""2D/3D registration error of the virtual lab's "real" images.

A real controlled-study image (DeepFluoro) is *acquired* at the C-arm's true pose, but its labels and its
simulated replicas use the pose that a 2D/3D registration *estimated* from the image: Grupp et al.
(IJCARS 2020, 15:759-769) registered the pelvis and each femur separately, per image, by a multi-resolution
intensity-based 2D/3D registration initialised by hand, and projected the 3D annotations with those poses
(``gt-poses/cam-to-pelvis-vol``, ``cam-to-left-femur-vol``, ``cam-to-right-femur-vol``). The registered pose
differs from the true one by the registration's error, which is part of the label noise that every method
of the paper is scored against. The lab draws that error per image (and per femur) from
:class:`RegistrationErrorModel` and keeps both poses: ``P_true`` renders the emulated real image, ``P``
(registered) projects the labels and renders the replicas.

The error model (assumptions, documented): DeepFluoro publishes no error bound of its ground-truth poses.
Grupp et al. 2020 score an intraoperative pelvis registration as successful within 1 deg of rotation; the
off-line ground truth, with manual initialisation and more views of attention, is taken to be at least that
good: rotations about each camera axis are normal with ``rotation_sd_deg = 0.4`` (the total angle is then
0.64 deg on average, below 1 deg for 88 % of the images). A single projection constrains the in-plane
position well and the distance along the beam poorly (a shift along the principal ray changes only the
magnification); the reviews of 2D/3D registration (Markelj et al., Med. Image Anal. 2012, 16:642-661) report
out-of-plane translation errors several times the in-plane ones for single-view registration: in-plane
translations are normal with ``inplane_sd_mm = 0.5`` and the depth translation with ``depth_sd_mm = 3.0``.
The rotation acts about the registered structure's centre (the pelvis landmark centroid, each femoral head).

Frames: the error is a rigid transform ``D`` of the camera frame (mm, origin at the source, +z along the
principal ray): ``camera_from_world_registered = D @ camera_from_world_true``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from synthex_lib.core.errors import ConfigError
from synthex_lib.geometry import rq_projection


@dataclass(frozen=True)
class RegistrationErrorModel:
    """Normal errors of a single-view 2D/3D registration (see the module docstring for the figures).

    Attributes:
        rotation_sd_deg: standard deviation of the rotation about each camera axis (deg).
        inplane_sd_mm: standard deviation of the translation along the camera's x and y axes (mm).
        depth_sd_mm: standard deviation of the translation along the principal ray (mm).
    """

    rotation_sd_deg: float = 0.4
    inplane_sd_mm: float = 0.5
    depth_sd_mm: float = 3.0

    def __post_init__(self) -> None:
        for name, v in asdict(self).items():
            if not np.isfinite(v) or v < 0:
                raise ConfigError(f"registration error model: {name} must be finite and >= 0, got {v}")

    def sample(self, rng: np.random.Generator, centre_cam_mm: np.ndarray) -> np.ndarray:
        """One error ``D`` (4x4 rigid, camera frame): a rotation about ``centre_cam_mm`` (camera mm) then a
        translation; draws rotation vector (3), in-plane (2) and depth (1) from ``rng`` in that order."""
        rotvec = np.deg2rad(rng.normal(0.0, self.rotation_sd_deg, 3))
        t = np.array([*rng.normal(0.0, self.inplane_sd_mm, 2), rng.normal(0.0, self.depth_sd_mm)])
        R = Rotation.from_rotvec(rotvec).as_matrix()
        c = np.asarray(centre_cam_mm, np.float64).reshape(3)
        D = np.eye(4)
        D[:3, :3] = R
        D[:3, 3] = c - R @ c + t
        return D


#: the lab's default model
DEFAULT_REGISTRATION_ERROR = RegistrationErrorModel()


def camera_from_world(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(K, camera_from_world)`` of a 3x4 projection (3x3 intrinsics with ``K[2, 2] = 1``, 4x4 rigid)."""
    K, R, t = rq_projection(P)
    E = np.eye(4)
    E[:3, :3], E[:3, 3] = R, t
    return K, E


def perturb_projection(P_true: np.ndarray, D: np.ndarray) -> np.ndarray:
    """The registered 3x4 projection ``K [D @ camera_from_world_true]`` (same scale convention as ``rq``)."""
    K, E = camera_from_world(P_true)
    return K @ (np.asarray(D, np.float64) @ E)[:3]


def registered_projections(P_true: np.ndarray, centres_lps: np.ndarray, rngs: list[np.random.Generator],
                           model: RegistrationErrorModel = DEFAULT_REGISTRATION_ERROR
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Registered projections of a batch of true ones.

    Args:
        P_true: [N, 3, 4] true projections (LPS mm -> pixel (col, row)).
        centres_lps: (3,) or [N, 3] LPS mm: the centre of the registered structure (rotation centre).
        rngs: one generator per image.
        model: the error model.

    Returns:
        (P_registered [N, 3, 4], D [N, 4, 4] the camera-frame errors).
    """
    P_all = np.asarray(P_true, np.float64).reshape(-1, 3, 4)
    if len(rngs) != len(P_all):
        raise ConfigError(f"registered_projections: {len(rngs)} generators for {len(P_all)} projections")
    centres = np.broadcast_to(np.asarray(centres_lps, np.float64), (len(P_all), 3))
    out = np.zeros_like(P_all)
    errors = np.zeros((len(P_all), 4, 4))
    for i, (P, rng) in enumerate(zip(P_all, rngs, strict=True)):
        _, E = camera_from_world(P)
        c_cam = (E @ np.append(centres[i], 1.0))[:3]
        errors[i] = model.sample(rng, c_cam)
        out[i] = perturb_projection(P, errors[i])
    return out, errors


def pose_difference(P_a: np.ndarray, P_b: np.ndarray, centre_lps: np.ndarray) -> tuple[float, np.ndarray]:
    """How a registered projection ``P_b`` differs from ``P_a``: (rotation angle in deg, displacement of
    ``centre_lps`` in ``P_a``'s camera frame (x, y, z) mm)."""
    _, E_a = camera_from_world(P_a)
    _, E_b = camera_from_world(P_b)
    D = E_b @ np.linalg.inv(E_a)
    angle = float(np.rad2deg(Rotation.from_matrix(D[:3, :3]).magnitude()))
    c = E_a @ np.append(np.asarray(centre_lps, np.float64), 1.0)
    return angle, (D @ c)[:3] - c[:3]
