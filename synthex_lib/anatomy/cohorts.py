"""Cohorts of lab specimens on disk: generation (resumable, atomic, byte-identical) and loading.

Cohorts (sizes from the profile):

* ``lab``: ``profile.lab.lab_specimens`` hip specimens, groups ``"01"`` ... (DeepFluoro's six), plus
  one cross-scanner specimen, group ``"07"`` (``cross_scanner=True``), imaged by the Loop-X-like
  device;
* ``scale``: ``profile.lab.scale_specimens`` hips (the paper's 20 NMDID CTs);
* ``chest``: ``profile.lab.chest_specimens`` chests with COVID-19 lesions (the paper's 143 CTs);
* ``chest-real``: ``profile.lab.chest_real_specimens`` other chests with lesions, the patients of the
  emulated chest radiographs (QaTa-COV19's real images are of other patients than the paper's CTs);
* ``tool``: ``profile.lab.tool_configs`` continuum-manipulator scenes (the paper's 100), hosted by
  ``scale`` hips: the synthetic training scenes;
* ``tool-lab``: one CM scene in each ``lab`` hip (groups ``"01"`` ...), the lab's cadaveric tests whose
  emulated real images the tool detection is tested on (never a training scene's CT).

Layout under :func:`synthex_lib.core.paths.lab_dir` ``(profile, cohort)``::

    manifest.json                       generator version, seed, members, sha256 of every file
    <specimen_id>/ct.nii.gz             CT, int16 HU
    <specimen_id>/labels.nii.gz         uint8 labels
    <specimen_id>/lesion.nii.gz         uint8 lesion mask (chest)
    <specimen_id>/landmarks.mrk.json    3D Slicer markups (LPS mm)
    <specimen_id>/specimen.json         kind, group, metadata and the anatomy's parameters

Every random draw comes from ``seeded_rng(seed, cohort, index)``; the same seed gives
the same bytes. A cohort directory holds one seed: asking for another seed regenerates it.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from synthex_lib import __version__
from synthex_lib.anatomy import io
from synthex_lib.anatomy.ctscan import ct_grid, rescan_region
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.anatomy.specimens import (
    GENERATOR_VERSION,
    _keys,
    anatomy_from_dict,
    anatomy_to_dict,
    make_specimen,
    scan_params_for,
)
from synthex_lib.anatomy.tool import ToolSceneAnatomy, sample_tool_params
from synthex_lib.core import paths
from synthex_lib.core.config import PROFILES, Profile, get_profile
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.hashing import sha256_file, stable_hash

COHORTS = ("lab", "scale", "chest", "chest-real", "tool", "tool-lab")
#: the cohort whose hips host each tool cohort's scenes
TOOL_HOSTS = {"tool": "scale", "tool-lab": "lab"}
#: group of the lab's cross-scanner specimen (DeepFluoro has six; the paper's Loop-X specimen is the 7th)
CROSS_SCANNER_GROUP = "07"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Member:
    """One specimen of a cohort. ``key_index`` is the index in ``seeded_rng(seed, cohort, key_index)``."""

    cohort: str
    key_index: int
    specimen_id: str
    group: str
    kind: str
    cross_scanner: bool = False


def _check_cohort(cohort: str) -> None:
    if cohort not in COHORTS:
        raise ConfigError(f"unknown cohort {cohort!r}: choose one of {', '.join(COHORTS)} (or 'all' on the CLI)")


def cohort_members(cohort: str, profile: str | Profile) -> list[Member]:
    """The members of a cohort in order (the index of :func:`load_specimen`)."""
    _check_cohort(cohort)
    prof = get_profile(profile)
    if cohort == "lab":
        out = [Member("lab", i, f"lab-{i + 1:02d}", f"{i + 1:02d}", "hip") for i in range(prof.lab.lab_specimens)]
        k = int(CROSS_SCANNER_GROUP) - 1
        return [*out, Member("lab", k, f"lab-{CROSS_SCANNER_GROUP}", CROSS_SCANNER_GROUP, "hip", True)]
    if cohort == "scale":
        return [Member("scale", i, f"scale-{i:02d}", f"{i:02d}", "hip") for i in range(prof.lab.scale_specimens)]
    if cohort == "chest":
        return [Member("chest", i, f"chest-{i:03d}", f"{i:03d}", "chest") for i in range(prof.lab.chest_specimens)]
    if cohort == "chest-real":
        return [Member(cohort, i, f"chest-real-{i:03d}", f"{i + 1:02d}", "chest")
                for i in range(prof.lab.chest_real_specimens)]
    if cohort == "tool-lab":
        return [Member(cohort, i, f"tool-lab-{i + 1:02d}", f"{i + 1:02d}", "tool")
                for i in range(prof.lab.lab_specimens)]
    return [Member("tool", i, f"tool-{i:03d}", f"{i:03d}", "tool") for i in range(prof.lab.tool_configs)]


def lab_groups(profile: str | Profile) -> dict[str, list[str]]:
    """Groups of the ``lab`` cohort: ``{"train_test": ["01", ...], "cross_scanner": ["07"]}``."""
    m = cohort_members("lab", profile)
    return {"train_test": [x.group for x in m if not x.cross_scanner],
            "cross_scanner": [x.group for x in m if x.cross_scanner]}


def _make(member: Member, seed: int, prof: Profile) -> Specimen:
    if member.kind == "tool":
        s = make_tool_scene(seed, prof, index=member.key_index, cohort=member.cohort)
    else:
        s = make_specimen(member.kind, seed, prof, cohort=member.cohort, index=member.key_index,
                          specimen_id=member.specimen_id)
    s.specimen_id = member.specimen_id
    s.meta.update({"group": member.group, "cross_scanner": member.cross_scanner})
    return s


def save_specimen(s: Specimen, folder: Path) -> dict[str, str]:
    """Write one specimen's files; returns file name -> sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {"ct.nii.gz": None, "labels.nii.gz": None, "landmarks.mrk.json": None, "specimen.json": None}
    io.write_volume(folder / "ct.nii.gz", np.rint(s.ct_hu).astype(np.int16), s.spacing, s.origin)
    io.write_volume(folder / "labels.nii.gz", s.labels, s.spacing, s.origin)
    if s.lesion_mask is not None:
        io.write_volume(folder / "lesion.nii.gz", s.lesion_mask.astype(np.uint8), s.spacing, s.origin)
        files["lesion.nii.gz"] = None
    io.write_markups(folder / "landmarks.mrk.json", s.landmarks, name=s.specimen_id)
    io.write_json(folder / "specimen.json", {"kind": s.kind, "specimen_id": s.specimen_id, "meta": s.meta,
                                             "anatomy": anatomy_to_dict(s.anatomy)})
    return {name: sha256_file(folder / name) for name in sorted(files)}


def read_specimen(folder: Path) -> Specimen:
    """Load a specimen written by :func:`save_specimen` (its anatomy rebuilt from the parameters)."""
    info = io.read_json(folder / "specimen.json")
    ct, sp, org = io.read_volume(folder / "ct.nii.gz")
    lab, sp2, org2 = io.read_volume(folder / "labels.nii.gz")
    if lab.shape != ct.shape or not np.allclose(sp, sp2) or not np.allclose(org, org2):
        raise DataError(f"{folder}: labels.nii.gz does not match ct.nii.gz; delete the folder and regenerate")
    lesion = None
    if (folder / "lesion.nii.gz").exists():
        lesion = io.read_volume(folder / "lesion.nii.gz")[0].astype(np.uint8)
    return Specimen(kind=info["kind"], ct_hu=ct.astype(np.float32), labels=lab.astype(np.uint8), spacing=sp,
                    origin=org, landmarks=io.read_markups(folder / "landmarks.mrk.json"),
                    specimen_id=info["specimen_id"], lesion_mask=lesion, anatomy=anatomy_from_dict(info["anatomy"]),
                    meta=info["meta"])


def cohort_dir(cohort: str, profile: str | Profile) -> Path:
    """The folder of a cohort: ``paths.lab_dir(profile, cohort)`` for a registered profile's lab configuration,
    else ``lab_dir(profile, cohort + "-custom<hash>")`` (a cohort depends on the ``lab`` section only)."""
    prof = get_profile(profile)
    registered = PROFILES.get(prof.name)
    if registered is not None and registered.lab == prof.lab:
        return paths.lab_dir(prof.name, cohort)
    return paths.lab_dir(prof.name, f"{cohort}-custom{stable_hash(asdict(prof.lab), 8)}")


def _manifest_ok(man: dict[str, Any] | None, seed: int, prof: Profile, cohort: str) -> bool:
    return bool(man) and man.get("generator_version") == GENERATOR_VERSION and man.get("seed") == seed \
        and man.get("profile") == prof.name and man.get("cohort") == cohort \
        and man.get("lab_config") == asdict(prof.lab)


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return io.read_json(folder / MANIFEST) if (folder / MANIFEST).exists() else None
    except DataError:
        return None


def _member_ok(folder: Path, entry: dict[str, Any] | None) -> bool:
    if not entry:
        return False
    sub = folder / entry["specimen_id"]
    try:
        return all((sub / n).exists() and sha256_file(sub / n) == h for n, h in entry["files"].items())
    except OSError:
        return False


def generate_cohort(cohort: str, profile: str | Profile, seed: int = 0, progress: bool = True) -> Path:
    """Generate (or complete) a cohort on disk; returns its folder. Resumable: finished members
    whose files match the manifest's sha256 are kept; a different seed or generator version
    starts the cohort afresh."""
    _check_cohort(cohort)
    prof = get_profile(profile)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"parameter 'seed' must be a non-negative integer, got {seed!r}")
    folder = cohort_dir(cohort, prof)
    man = _read_manifest(folder)
    if not _manifest_ok(man, int(seed), prof, cohort):
        if folder.exists() and man is not None:
            shutil.rmtree(folder)
        man = None
    members = cohort_members(cohort, prof)
    entries: dict[str, Any] = {e["specimen_id"]: e for e in (man or {}).get("members", [])}
    todo = [m for m in members if not _member_ok(folder, entries.get(m.specimen_id))]
    if cohort in TOOL_HOSTS and todo:  # hosts first: tool scenes reuse the host cohort's CTs
        generate_cohort(TOOL_HOSTS[cohort], prof, seed=seed, progress=progress)
    bar = None
    if progress and todo:
        bar = tqdm(total=len(todo), desc=f"lab {cohort} ({prof.name})", unit="specimen")
    for m in todo:
        s = _make(m, int(seed), prof)
        files = save_specimen(s, folder / m.specimen_id)
        entries[m.specimen_id] = {**asdict(m), "files": files}
        _write_manifest(folder, cohort, prof, int(seed), members, entries)
        del s
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not todo and not (folder / MANIFEST).exists():
        _write_manifest(folder, cohort, prof, int(seed), members, entries)
    return folder


def _write_manifest(folder: Path, cohort: str, prof: Profile, seed: int, members: list[Member],
                    entries: dict[str, Any]) -> None:
    io.write_json(folder / MANIFEST, {
        "generator_version": GENERATOR_VERSION, "synthex_version": __version__, "cohort": cohort,
        "profile": prof.name, "seed": seed, "ct_spacing_mm": prof.lab.ct_spacing_mm, "lab_config": asdict(prof.lab),
        "members": [entries[m.specimen_id] for m in members if m.specimen_id in entries]})


def load_specimen(cohort: str, profile: str | Profile, index: int, seed: int = 0) -> Specimen:
    """Member ``index`` (position in :func:`cohort_members`) of a cohort, generating what is missing."""
    members = cohort_members(cohort, profile)
    if isinstance(index, bool) or not isinstance(index, int | np.integer) or not 0 <= index < len(members):
        raise ConfigError(f"parameter 'index' must be in 0..{len(members) - 1} for cohort {cohort!r}, got {index!r}")
    prof = get_profile(profile)
    folder = cohort_dir(cohort, prof)
    man = _read_manifest(folder)
    m = members[index]
    entry = {e["specimen_id"]: e for e in (man or {}).get("members", [])}.get(m.specimen_id)
    if not _manifest_ok(man, int(seed), prof, cohort) or not _member_ok(folder, entry):
        generate_cohort(cohort, prof, seed=seed, progress=False)
    return read_specimen(folder / m.specimen_id)


def find_on_disk(cohort: str, profile: str | Profile, key_index: int, seed: int) -> Specimen | None:
    """A member already generated on disk (by rng key index), or None; never generates."""
    prof = get_profile(profile)
    folder = cohort_dir(cohort, prof)
    man = _read_manifest(folder)
    if not _manifest_ok(man, int(seed), prof, cohort):
        return None
    for e in man.get("members", []):  # type: ignore[union-attr]
        if e["key_index"] == key_index and _member_ok(folder, e):
            try:
                return read_specimen(folder / e["specimen_id"])
            except DataError:
                return None
    return None


def load_cohort(cohort: str, profile: str | Profile, seed: int = 0, progress: bool = False) -> list[Specimen]:
    """All members of a cohort (generated first where missing), each with its ``.anatomy``."""
    prof = get_profile(profile)
    generate_cohort(cohort, prof, seed=seed, progress=progress)
    folder = cohort_dir(cohort, prof)
    return [read_specimen(folder / m.specimen_id) for m in cohort_members(cohort, prof)]


# --- continuum-manipulator scenes: a tool inserted into a host hip (scale cohort: training; lab: tests) ----

@lru_cache(maxsize=2)
def _host(seed: int, index: int, profile_name: str, cohort: str = "scale"):
    """The host hip: member ``index`` of ``cohort`` from disk when generated, else made."""

    found = find_on_disk(cohort, profile_name, index, seed)
    if found is not None:
        return found
    return make_specimen("hip", seed, profile_name, cohort=cohort, index=index,
                         specimen_id=f"{cohort}-{index + 1:02d}" if cohort == "lab" else f"{cohort}-{index:02d}")


def make_tool_scene(seed: int, profile: str | Profile, *, index: int = 0, cohort: str = "tool"):
    """A CM scene (see the module docstring): a :class:`Specimen` of kind ``"tool"``. In the ``tool`` cohort the
    host is a random ``scale`` hip; in ``tool-lab`` scene ``index`` is hosted by lab specimen ``index``."""

    prof = get_profile(profile)
    if cohort not in TOOL_HOSTS:
        raise ConfigError(f"cohort {cohort!r} holds no tool scenes: choose one of {', '.join(TOOL_HOSTS)}")
    keys = _keys(seed, cohort, index)
    host_cohort = TOOL_HOSTS[cohort]
    params = sample_tool_params(prof.lab.scale_specimens, *keys)
    if host_cohort == "lab":
        params = replace(params, host_index=int(index))
    host = _host(int(seed), params.host_index, prof.name, host_cohort)
    scene = ToolSceneAnatomy(host.anatomy, params)
    scan = scan_params_for(host.anatomy, prof)
    grid = ct_grid(host.anatomy, prof.lab.ct_spacing_mm)
    lo, hi = scene.tool_box()
    ct, lab_box, sl = rescan_region(scene, grid, scan, host.ct_hu, lo, hi)
    labels = np.zeros(grid.shape, np.uint8)
    labels[sl] = lab_box
    meta = {"generator_version": GENERATOR_VERSION, "profile": prof.name, "seed": int(seed), "cohort": cohort,
            "index": int(index), "kind": "tool", "host": host.specimen_id, "host_cohort": host_cohort,
            "host_seed_keys": list(host.anatomy.seed_keys), "tool": params.to_dict(), "scan": scan.to_dict(),
            "center": scene.center.tolist()}
    return Specimen(kind="tool", ct_hu=ct, labels=labels, spacing=grid.spacing, origin=grid.origin,
                    landmarks=scene.landmarks(), specimen_id=f"{cohort}-{index:03d}", anatomy=scene, meta=meta)
