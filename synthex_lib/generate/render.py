"""Rendering of one work unit: a chunk of one image set, its 2D labels and each domain's images.

Every random draw comes from :func:`image_rng` ``(seed, task, group, set, index, purpose)``; images
are rendered one by one and units run single-threaded, so the bytes depend neither on the number
of workers nor on the chunking. Each output (the labels, each domain's images) is written
atomically to the unit's chunk folder; a rerun skips the outputs already there.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from synthex_lib.core import paths
from synthex_lib.core.config import Profile
from synthex_lib.core.constants import HIP_LABELS, HIP_LANDMARK_LABELS
from synthex_lib.core.errors import DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.datasets.cases import ControlledCase
from synthex_lib.generate.annotation import annotate
from synthex_lib.generate.tasks import (
    CHEST_SHEAR_DEG,
    LABEL_RULE,
    LABEL_THRESHOLD_MM,
    REAL,
    TOOL_ID,
    TaskSpec,
    get_task,
    task_device,
)
from synthex_lib.simulate import labels as lab
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.scanner import get_scanner

#: environment variable of the tests: raise inside a unit once this many chunk outputs exist
FAULT_ENV = "SYNTHEX_FAULT_AFTER_CHUNKS"


@dataclass
class ImageSet:
    """Images that share poses and labels, rendered in one or more domains.

    Attributes:
        key: set name in the work folder (``ctl``, ``sim``, ``real``).
        case: specimen, ``P`` [N, 3, 4], image size, device and (DeepFluoro) the real images.
        domains: domains rendered for this set.
        suffix: file-name suffix of its files (``""``, ``"-loopx"``).
        shear: chest simulations: shear the CT per image.
    """

    key: str
    case: ControlledCase
    domains: tuple[str, ...]
    suffix: str = ""
    shear: bool = False

    @property
    def n(self) -> int:
        return int(len(self.case.P))


@dataclass(frozen=True)
class Unit:
    """One chunk of one image set: the outputs to compute (picklable; the case travels separately)."""

    work_dir: str
    task: str
    seed: int
    profile: Profile
    set_key: str
    group: str
    chunk: int
    start: int
    stop: int
    labels: bool
    domains: tuple[str, ...]
    shear: bool
    device: str
    pixel_mm: float

    @property
    def chunk_dir(self) -> Path:
        return Path(self.work_dir) / self.set_key / self.group


def chunk_file(chunk_dir: Path, chunk: int, what: str) -> Path:
    return chunk_dir / f"{chunk:05d}-{what}.npz"


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    paths.atomic_write_bytes(path, buf.getvalue())


def load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: unreadable work file ({exc}); delete it and rerun to recompute it") from exc


@dataclass
class _Sheared:
    """A CT (and its lesion mask) sheared about its centre: ``x' = x + tan(angle) (z - z_c)``."""

    ct_hu: np.ndarray
    labels: np.ndarray
    lesion_mask: np.ndarray | None
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    specimen_id: str = "sheared"
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)


def shear_volume(specimen: Any, angle_deg: float) -> _Sheared:
    """The specimen's CT sheared by ``angle_deg`` (x as a function of z, about the volume centre).

    Implemented with ``scipy.ndimage.affine_transform`` (linear interpolation, air outside); the lesion
    mask is resampled linearly and thresholded at 0.5, as in the paper.
    """
    t = np.tan(np.deg2rad(angle_deg))
    sx, _, sz = specimen.spacing
    nz, _, nx = specimen.ct_hu.shape
    # output voxel (k, j, i) samples input (k, j, i - t * (z - z_c) / sx) with z - z_c = (k - kc) * sz
    kc = (nz - 1) / 2
    mat = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [-t * sz / sx, 0.0, 1.0]])
    off = np.array([0.0, 0.0, t * sz / sx * kc])
    hu = ndimage.affine_transform(specimen.ct_hu, mat, off, order=1, mode="constant", cval=-1000.0)
    lab = ndimage.affine_transform(specimen.labels, mat, off, order=0, mode="constant", cval=0)
    les = None
    if getattr(specimen, "lesion_mask", None) is not None:
        m = ndimage.affine_transform(specimen.lesion_mask.astype(np.float32), mat, off, order=1, mode="constant")
        les = (m >= 0.5).astype(np.uint8)
    return _Sheared(hu.astype(np.float32), lab, les, tuple(specimen.spacing), tuple(specimen.origin),
                    f"{getattr(specimen, 'specimen_id', 'ct')}-shear{angle_deg:+.1f}")


# --- labels and images of one chunk --------------------------------------------------------------------

#: ray step of the label projection: None = the ray marcher's slice stepping (one bilinear sample per
#: slice of the label volume: exact path lengths through slabs, and fast)
LABEL_STEP_MM = None


def chunk_labels(task: TaskSpec, volumes: Sequence[Any], P: np.ndarray, size: tuple[int, int],
                 profile: Profile, P_parts: dict[int, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """2D labels of the images of a chunk: ``segs`` uint8 [n, H, W], ``lands`` float32 [n, 2, L],
    ``visible`` bool [n, L] (``volumes[i]`` is the volume imaged by ``P[i]``; they may all be one).

    ``P_parts`` (hip): structures registered on their own, id -> [n, 3, 4] (the femurs); their label and the
    landmarks that lie on them are projected with their own projection."""
    P_parts = P_parts or {}
    n = len(P)
    w, h = size
    segs = np.zeros((n, h, w), np.uint8)
    xy = np.zeros((n, len(task.landmarks), 2), np.float32)
    vis = np.zeros((n, len(task.landmarks)), bool)
    # volumes shared by consecutive images are projected in one batch
    i = 0
    while i < n:
        j = i + 1
        while j < n and volumes[j] is volumes[i]:
            j += 1
        vol, Pc = volumes[i], P[i:j]
        step = LABEL_STEP_MM
        if task.kind == "hip":
            ids = tuple(k for k in HIP_LABELS if k != 0)
            parts = {k: v[i:j] for k, v in P_parts.items()}
            pl = lab.project_labels_per_structure(vol.labels, vol.spacing, vol.origin, Pc, size, step, ids, parts,
                                                  threshold_mm=LABEL_THRESHOLD_MM, rule=LABEL_RULE,
                                                  priority=lab.HIP_PRIORITY)
            segs[i:j] = pl.seg
            cov = {k: pl.covered(k) for k in ids}
            structs = [HIP_LANDMARK_LABELS[name] for name in task.landmarks]
            pts = vol.landmark_array(task.landmarks)
            xy[i:j], vis[i:j] = lab.project_landmarks(Pc, pts, size, cov, structs)
            for li, st in enumerate(structs):  # a landmark on a separately registered bone moves with it
                own = [k for k in st if k in parts]
                if own:
                    xy_l, vis_l = lab.project_landmarks(parts[own[0]], pts[li:li + 1], size, cov, [st])
                    xy[i:j, li], vis[i:j, li] = xy_l[:, 0], vis_l[:, 0]
        elif task.kind == "tool":
            m = lab.project_mask(vol.labels == TOOL_ID, vol.spacing, vol.origin, Pc, size, step, LABEL_THRESHOLD_MM)
            segs[i:j] = m.astype(np.uint8) * TOOL_ID
            xy[i:j], vis[i:j] = lab.project_landmarks(Pc, vol.landmark_array(task.landmarks), size)
        else:
            mask = vol.lesion_mask if vol.lesion_mask is not None else np.zeros_like(vol.labels)
            if mask.any():
                m = lab.project_mask(mask, vol.spacing, vol.origin, Pc, size, step, LABEL_THRESHOLD_MM)
                segs[i:j] = m.astype(np.uint8)
        i = j
    return {"segs": segs, "lands": lab.lands_array(xy), "visible": vis}


def pose_key(label_id: int) -> str:
    """Name of the stored registered projection of a separately registered structure (``P_left_femur``)."""
    return "P_" + HIP_LABELS[int(label_id)].replace("-", "_")


@functools.lru_cache(maxsize=8)
def _projector(name: str, sdd_mm: float) -> Any:
    return get_projector(name, sdd_mm=sdd_mm) if name == "realistic" else get_projector(name)


def image_rng(seed: int, task: str, group: str, set_key: str, index: int, purpose: str) -> np.random.Generator:
    """The generator of one random draw of one image (``purpose``: a domain name for its noise and, for
    ``real``, the collimation and foreign objects; ``shear`` for the chest CT shear). Image sets: ``ctl``
    (hip-controlled), ``sim`` and ``real`` (the other tasks)."""
    return seeded_rng(seed, task, group, set_key, index, purpose)


def _image_rng(unit: Unit, index: int, purpose: str) -> np.random.Generator:
    return image_rng(unit.seed, unit.task, unit.group, unit.set_key, index, purpose)


def render_domain(domain: str, unit: Unit, case: ControlledCase, volumes: Sequence[Any]) -> np.ndarray:
    """float32 [n, H, W] images of one domain for the images ``unit.start:unit.stop`` of ``case``."""
    P = case.P[unit.start:unit.stop]
    size = tuple(int(s) for s in case.image_size)
    if domain == REAL:
        if case.real is not None:
            return np.asarray(case.real.projs[unit.start:unit.stop], np.float32)
        scanner = get_scanner(case.device)
        rngs = [_image_rng(unit, i, REAL) for i in range(unit.start, unit.stop)]
        kind = get_task(unit.task).kind
        P_acq = case.P_acquired[unit.start:unit.stop]
        return scanner.render(case.imaged_specimen, P_acq, size, rngs=rngs, kind=kind,
                              seed=unit.seed).astype(np.float32)
    sdd = task_device(get_task(unit.task).kind, case.device, size[0]).sdd_mm
    proj = _projector(domain, float(sdd))
    out = np.zeros((len(P), size[1], size[0]), np.float32)
    for k, i in enumerate(range(unit.start, unit.stop)):
        out[k] = proj.render(volumes[k], P[k], size, quantity="neglog", rng=_image_rng(unit, i, domain))[0]
    return out


def _count_chunk_outputs(work_dir: Path) -> int:
    return sum(1 for _ in work_dir.rglob("*.npz")) if work_dir.exists() else 0


@contextlib.contextmanager
def _single_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_unit(unit: Unit, case: ControlledCase) -> list[str]:
    """Compute the missing outputs of one chunk (labels and each domain's images), each written atomically.

    Returns the paths written. Runs single-threaded (torch) so that its bytes do not depend on the worker.
    """
    fault = os.environ.get(FAULT_ENV)
    if fault is not None and _count_chunk_outputs(Path(unit.work_dir)) >= int(fault):
        raise RuntimeError(f"injected fault ({FAULT_ENV}={fault}): simulated kill of a worker")
    task = get_task(unit.task)
    written: list[str] = []
    with _single_thread():
        n = unit.stop - unit.start
        if unit.shear:
            vols = [shear_volume(case.specimen, _image_rng(unit, i, "shear").uniform(-CHEST_SHEAR_DEG, CHEST_SHEAR_DEG))
                    for i in range(unit.start, unit.stop)]
        else:
            vols = [case.specimen] * n
        if unit.labels:
            if case.real is not None:
                sel = slice(unit.start, unit.stop)
                real = case.real
                vis = real.visibility()[sel]
                lab = {"segs": real.segs[sel].astype(np.uint8), "lands": real.lands[sel].astype(np.float32),
                       "visible": vis.astype(bool)}
            else:
                sel = slice(unit.start, unit.stop)
                parts = {k: np.asarray(v[sel]) for k, v in case.P_parts.items()}
                lab = chunk_labels(task, vols, case.P[sel], tuple(case.image_size), unit.profile, parts)
                if task.kind == "tool" and unit.set_key == REAL:  # annotated by hand, as the paper's real images
                    rngs = [_image_rng(unit, i, "annotation") for i in range(unit.start, unit.stop)]
                    lab["segs"], lab["lands"], lab["visible"] = annotate(lab["segs"], lab["lands"], lab["visible"],
                                                                         unit.pixel_mm, rngs)
            sel = slice(unit.start, unit.stop)
            lab["P"] = np.asarray(case.P[sel], np.float64)
            if case.P_true is not None:
                lab["P_true"] = np.asarray(case.P_true[sel], np.float64)
            for k, v in case.P_parts.items():
                lab[pose_key(k)] = np.asarray(v[sel], np.float64)
            path = chunk_file(unit.chunk_dir, unit.chunk, "labels")
            save_npz(path, **lab)
            written.append(str(path))
        for d in unit.domains:
            projs = render_domain(d, unit, case, vols)
            path = chunk_file(unit.chunk_dir, unit.chunk, d)
            save_npz(path, projs=projs)
            written.append(str(path))
    return written
