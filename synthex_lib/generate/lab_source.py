"""The virtual lab as a controlled-study source: lab specimens with sampled poses, real images emulated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from synthex_lib import geometry
from synthex_lib.anatomy import load_cohort, sample_session, session_specimen
from synthex_lib.anatomy.hip import HipAnatomy
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.datasets.cases import ControlledCase
from synthex_lib.generate.poses import group_of, pose_center, sample_projections
from synthex_lib.generate.registration import (
    DEFAULT_REGISTRATION_ERROR,
    RegistrationErrorModel,
    registered_projections,
)
from synthex_lib.generate.tasks import task_device


def load_lab_cohort(cohort: str, profile: Profile, seed: int = 0) -> list[Any]:
    """The lab cohort's specimens (generated and cached by :mod:`synthex_lib.anatomy` on first use)."""
    return list(load_cohort(cohort, profile, seed=seed))


#: what the lab's emulated "reality" models, with the digest of the code that makes it: recorded in every lab
#: ``real*.h5`` (attribute ``reality_version``) so a results page can say which reality produced its numbers
REALITY_VERSION = ("reality-2: registration error, X-ray session differences, Monte Carlo scatter, "
                   "flat-field detector; code " + code_digest("synthex_lib.generate.lab_source",
                                                              "synthex_lib.simulate.scanner")[:10])

#: the separately registered structures of a hip image (Grupp et al. 2020: the pelvis and each femur),
#: label id -> the landmark whose 3D position is the rotation centre of that structure's registration error
FEMUR_CENTRES: dict[int, str] = {5: "FH-l", 6: "FH-r"}


def registered_case(spec: Any, group: str, P_true: np.ndarray, seed: int,
                    femur_from_ct: dict[int, np.ndarray] | None = None,
                    model: RegistrationErrorModel = DEFAULT_REGISTRATION_ERROR
                    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The registered projections of a lab specimen's images acquired at ``P_true`` [N, 3, 4].

    The pelvis (with the vertebrae and sacrum, rigidly attached) is registered with an error about the
    centroid of the hip landmarks; each femur is registered on its own, with its own error about its femoral
    head, starting from its true projection in the session ``P_true @ femur_from_ct[id]`` (the femur of the
    CT moved to where it lies in the X-ray session; identity when the session does not move it). Draws come
    from ``seeded_rng(seed, "hip-controlled", "lab", group, i, "registration", part)``.

    Returns: (P registered [N, 3, 4] of the pelvis, {5: P of the left femur, 6: ... of the right femur}).
    """
    n = len(P_true)
    rngs = [seeded_rng(seed, "hip-controlled", "lab", group, i, "registration", "pelvis") for i in range(n)]
    P_reg, _ = registered_projections(P_true, pose_center(spec, "hip"), rngs, model)
    parts: dict[int, np.ndarray] = {}
    for label, name in FEMUR_CENTRES.items():
        centre = np.asarray(spec.landmarks.get(name, np.full(3, np.nan)), np.float64)
        if not np.isfinite(centre).all():
            continue
        F = np.eye(4) if femur_from_ct is None else np.asarray(femur_from_ct.get(label, np.eye(4)), np.float64)
        P_fem_true = np.einsum("nij,jk->nik", P_true, F)
        rngs = [seeded_rng(seed, "hip-controlled", "lab", group, i, "registration", f"femur-{label}")
                for i in range(n)]
        parts[label], _ = registered_projections(P_fem_true, centre, rngs, model)
    return P_reg, parts


def xray_session(spec: Any, group: str, seed: int) -> Any:
    """The lab specimen as it lies in its X-ray session (:mod:`synthex_lib.anatomy.session`: femurs
    articulated, bowel gas moved, soft tissue changed, drapes), drawn from
    ``seeded_rng(seed, "hip-controlled", "lab", group, "xray-session")``; None when the specimen has no
    procedural hip anatomy to change (a voxel phantom, a real CT)."""
    if not isinstance(getattr(spec, "anatomy", None), HipAnatomy):
        return None
    return session_specimen(spec, sample_session(spec, seed, "hip-controlled", "lab", group, "xray-session"))


def lab_source(profile: str | Profile, seed: int = 0, **options: Any) -> Iterator[ControlledCase]:
    """The virtual lab's controlled-study cases: each lab specimen with ``profile.sim.real_per_specimen``
    poses of the hip sampler; the cross-scanner specimen is imaged by the Loop-X-like device.

    ``real`` is None: the real images are emulated by :mod:`synthex_lib.simulate.scanner` at the true poses
    ``P_true`` of the specimen as it lies in its X-ray session (:func:`xray_session`); the labels and the
    replicas use the registered poses ``P`` (and each femur its own registered pose, ``P_parts``),
    :func:`registered_case`."""
    if options:
        raise ConfigError(f"the 'lab' dataset takes no options, got {sorted(options)}")
    prof = get_profile(profile)
    for i, spec in enumerate(load_lab_cohort("lab", prof, seed)):
        group = group_of(spec, i)
        dev_name = geometry.LOOPX.name if spec.meta.get("cross_scanner") else geometry.CIOS_FUSION.name
        dev = task_device("hip", dev_name, prof.sim.detector_px)
        P_true = sample_projections("hip", spec, dev, prof.sim.real_per_specimen, seed, "hip-controlled", "lab",
                                    group)
        acq = xray_session(spec, group, seed)
        moved = {} if acq is None else acq.anatomy.femur_from_ct()
        P, parts = registered_case(spec, group, P_true, seed, moved)
        yield ControlledCase(group=group, specimen=spec, P=P, image_size=(dev.cols, dev.rows), real=None,
                             device=dev_name, P_true=P_true, P_parts=parts, part_from_ct=moved, acquisition=acq)
