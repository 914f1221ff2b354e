"""Building :class:`Specimen` objects (anatomy + simulated CT) from a seed."""

from __future__ import annotations

from typing import Any

import numpy as np

from synthex_lib import __version__
from synthex_lib.anatomy.chest import ChestAnatomy, ChestParams, sample_chest_params
from synthex_lib.anatomy.ctscan import ScanParams, sample_scan_params, scan
from synthex_lib.anatomy.hip import HipAnatomy
from synthex_lib.anatomy.hip_params import HipParams, sample_hip_params
from synthex_lib.anatomy.raster import Anatomy
from synthex_lib.anatomy.session import SessionAnatomy, SessionParams
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.anatomy.tool import ToolParams, ToolSceneAnatomy
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest

#: version of the specimen generator (release + digest of its source): cached cohorts made by
#: another version are regenerated
GENERATOR_VERSION = f"lab-1.0+{code_digest('synthex_lib.anatomy.cohorts')[:10]}"

KINDS = ("hip", "chest")


def _keys(seed: int, cohort: str, index: int) -> tuple[Any, ...]:
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"parameter 'seed' must be a non-negative integer, got {seed!r}")
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or index < 0:
        raise ConfigError(f"parameter 'index' must be a non-negative integer, got {index!r}")
    return (int(seed), str(cohort), int(index))


def build_anatomy(kind: str, seed: int, cohort: str | None = None, index: int = 0) -> Anatomy:
    """The continuous anatomy of specimen ``index`` of ``cohort`` (default: the kind) for ``seed``."""
    keys = _keys(seed, cohort or kind, index)
    if kind == "hip":
        return HipAnatomy(sample_hip_params(*keys))
    if kind == "chest":
        return ChestAnatomy(sample_chest_params(*keys))
    raise ConfigError(f"unknown specimen kind {kind!r}: choose one of {', '.join(KINDS)} (or use make_tool_scene)")


def scan_params_for(anatomy: Anatomy, profile: Profile) -> ScanParams:
    lo, hi = anatomy.bounds
    c = 0.5 * (lo + hi)
    params = sample_scan_params((c[0], c[1]), *anatomy.seed_keys)
    return params


def specimen_from_anatomy(anatomy: Anatomy, profile: str | Profile, specimen_id: str,
                          meta: dict[str, Any] | None = None) -> Specimen:
    """Scan ``anatomy`` with the profile's CT spacing and wrap it as a :class:`Specimen`."""
    prof = get_profile(profile)
    sp = prof.lab.ct_spacing_mm
    params = scan_params_for(anatomy, prof)
    ct, lab, les, grid = scan(anatomy, sp, params)
    m = {"generator_version": GENERATOR_VERSION, "synthex_version": __version__, "profile": prof.name,
         "seed_keys": list(anatomy.seed_keys), "scan": params.to_dict()}
    m.update(meta or {})
    return Specimen(kind=anatomy.kind, ct_hu=ct, labels=lab, spacing=grid.spacing, origin=grid.origin,
                    landmarks=anatomy.landmarks(), specimen_id=specimen_id, lesion_mask=les, anatomy=anatomy, meta=m)


def make_specimen(kind: str, seed: int, profile: str | Profile, *, cohort: str | None = None, index: int = 0,
                  specimen_id: str | None = None) -> Specimen:
    """A lab specimen of ``kind`` (``"hip"`` or ``"chest"``): its anatomy and a CT scan of it at the
    profile's ``ct_spacing_mm``. The same (seed, cohort, index) gives the same specimen, bit for bit.

    ``cohort``/``index`` select a member of a cohort (default: cohort = kind, index 0).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown specimen kind {kind!r}: choose one of {', '.join(KINDS)}")
    anatomy = build_anatomy(kind, seed, cohort, index)
    sid = specimen_id or f"{cohort or kind}-{index:02d}"
    return specimen_from_anatomy(anatomy, profile, sid, {"kind": kind, "seed": int(seed), "cohort": cohort or kind,
                                                         "index": int(index)})


def anatomy_to_dict(anatomy: Anatomy | None) -> dict[str, Any] | None:
    """The parameters that rebuild ``anatomy`` (JSON-serializable)."""
    if anatomy is None:
        return None
    if isinstance(anatomy, SessionAnatomy):
        return {"kind": "hip-session", "params": anatomy.params.to_dict(), "session": anatomy.session.to_dict(),
                "generator_version": GENERATOR_VERSION}
    if anatomy.kind == "tool":
        return {"kind": "tool", "host": anatomy.host.params.to_dict(), "params": anatomy.params.to_dict(),
                "generator_version": GENERATOR_VERSION}
    return {"kind": anatomy.kind, "params": anatomy.params.to_dict(), "generator_version": GENERATOR_VERSION}


def anatomy_from_dict(d: dict[str, Any] | None) -> Anatomy | None:
    """Rebuild an anatomy from :func:`anatomy_to_dict`'s output."""
    if d is None:
        return None

    kind = d.get("kind")
    if kind == "hip":
        return HipAnatomy(HipParams.from_dict(d["params"]))
    if kind == "hip-session":
        return SessionAnatomy(HipAnatomy(HipParams.from_dict(d["params"])), SessionParams.from_dict(d["session"]))
    if kind == "chest":
        return ChestAnatomy(ChestParams.from_dict(d["params"]))
    if kind == "tool":
        return ToolSceneAnatomy(HipAnatomy(HipParams.from_dict(d["host"])), ToolParams(**d["params"]))
    raise ConfigError(f"unknown anatomy kind {kind!r} in stored parameters")
