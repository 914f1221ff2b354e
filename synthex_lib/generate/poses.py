"""Pose sampling of the generation tasks: where each task's C-arm sampler is centred, and the projection
matrices of a specimen's images, image ``i`` seeded by ``(seed, *keys, i, "pose")``."""

from __future__ import annotations

from typing import Any

import numpy as np

from synthex_lib import geometry
from synthex_lib.core.constants import HIP_LANDMARKS, TOOL_LANDMARKS
from synthex_lib.core.seeding import seeded_rng


def group_of(specimen: Any, index: int) -> str:
    """The HDF5 group key of a lab specimen: ``meta["group"]``, else the digits ending its id, else ``index + 1``."""
    g = getattr(specimen, "meta", {}).get("group")
    if g:
        return str(g)
    sid = str(getattr(specimen, "specimen_id", ""))
    tail = sid.rsplit("-", 1)[-1]
    return tail if tail.isdigit() else f"{index + 1:02d}"


def pose_center(specimen: Any, kind: str) -> np.ndarray:
    """Where the task's pose sampler is centred (LPS mm): the centroid of the hip landmarks, the middle of
    the tool's centreline, else the centre of the CT volume."""
    names = {"hip": HIP_LANDMARKS, "tool": TOOL_LANDMARKS}.get(kind, ())
    pts = specimen.landmark_array(names) if names else np.zeros((0, 3))
    pts = pts[np.isfinite(pts).all(axis=1)]
    return pts.mean(axis=0) if len(pts) else np.asarray(specimen.center_lps, np.float64)


def sample_projections(kind: str, specimen: Any, device: geometry.Device, n: int, seed: int, *keys: Any
                       ) -> np.ndarray:
    """[n, 3, 4] projection matrices from the task's pose sampler, image ``i`` seeded by
    ``(seed, *keys, i, "pose")``."""
    sampler = geometry.POSE_SAMPLERS[kind]()
    centre = pose_center(specimen, kind)
    out = np.zeros((n, 3, 4))
    for i in range(n):
        pose = sampler.sample(seeded_rng(seed, *keys, i, "pose"), centre)
        out[i] = geometry.projection_matrix(device, pose)
    return out
