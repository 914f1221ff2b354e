"""The cache of simulated datasets: keys, folders, the ``dataset.json`` manifest and HDF5 assembly.

A dataset is keyed by exactly what decides its bytes: the task, the lab and simulation
configurations (never the training fields), the seed, the source and its options, and the digest
of the code that generates it (:func:`synthex_lib.core.hashing.code_digest` of
:mod:`synthex_lib.generate.engine` and everything it imports). The HDF5 attribute ``created`` is
derived deterministically (from ``SOURCE_DATE_EPOCH``, the reproducible-builds convention,
default 0 = 1970-01-01), so regenerating gives identical bytes; the wall-clock creation time and
the sha256 of every file are stored outside the compared bytes, in the sidecar ``dataset.json``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from synthex_lib import __version__
from synthex_lib.anatomy import GENERATOR_VERSION as LAB_VERSION
from synthex_lib.core import paths
from synthex_lib.core.config import PROFILES, Profile, get_profile
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.hashing import code_digest, sha256_cached, sha256_file, stable_hash
from synthex_lib.datasets.layout import H5_LIBVER, write_landmark_names
from synthex_lib.generate.annotation import MANUAL_ANNOTATION
from synthex_lib.generate.lab_source import REALITY_VERSION
from synthex_lib.generate.render import load_npz
from synthex_lib.generate.tasks import GENERATOR_VERSION, LABEL_RULE, LABEL_THRESHOLD_MM, REAL, TaskSpec, get_task

#: the module whose code (with everything it imports) makes the datasets
GENERATION_ROOT = "synthex_lib.generate.engine"


def code_hash() -> str:
    """Digest of the code that generates datasets (16 hex; see :func:`~synthex_lib.core.hashing.code_digest`)."""
    return code_digest(GENERATION_ROOT)


def dataset_config(profile: Profile) -> dict[str, Any]:
    """The part of a profile a dataset depends on: its ``lab`` and ``sim`` sections (no training field)."""
    d = profile.to_dict()
    return {"lab": d["lab"], "sim": d["sim"]}


def dataset_params(task: TaskSpec, profile: Profile, seed: int, dataset: str, source_options: dict[str, Any]
                   ) -> dict[str, Any]:
    """Everything a dataset's bytes depend on; its hash (:func:`dataset_key`) names the cached files."""
    opts = {k: str(v) for k, v in sorted(source_options.items())}
    return {"task": task.name, "profile": profile.name, "config": dataset_config(profile), "seed": int(seed),
            "dataset": dataset, "source_options": opts, "generator_version": GENERATOR_VERSION,
            "lab_version": LAB_VERSION, "code_hash": code_hash(), "label_rule": LABEL_RULE,
            "label_threshold_mm": LABEL_THRESHOLD_MM}


def params_hash(params: dict[str, Any]) -> str:
    return stable_hash(params)


def dataset_key(task: str | TaskSpec, profile: str | Profile, seed: int = 0, dataset: str = "lab",
                source_options: dict[str, Any] | None = None) -> str:
    """The 16-hex key of a dataset (what a training run's key includes)."""
    spec = get_task(task) if isinstance(task, str) else task
    return params_hash(dataset_params(spec, get_profile(profile), seed, dataset, source_options or {}))


def dataset_dir(task: str, profile: str | Profile, seed: int = 0, dataset: str = "lab") -> Path:
    """Where a dataset lives: ``paths.sim_dir(profile, task)`` for the default (lab, seed 0, a registered
    profile), else ``sim_dir(profile, "<task>-<dataset>-seed<seed>")``, plus a hash of the lab and simulation
    configuration when they differ from the registered profile's (training fields never change the folder)."""
    prof = get_profile(profile)
    name = task
    if dataset != "lab" or int(seed) != 0:
        name = f"{task}-{dataset}-seed{int(seed)}"
    registered = PROFILES.get(prof.name)
    if registered is None or dataset_config(registered) != dataset_config(prof):
        name += "-custom" + stable_hash(dataset_config(prof), 8)
    return paths.sim_dir(prof.name, name)


def created_attr() -> str:
    """The deterministic ``created`` attribute: ``SOURCE_DATE_EPOCH`` (seconds, default 0) as ISO 8601 UTC."""
    try:
        epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))
    except ValueError:
        raise ConfigError("environment variable SOURCE_DATE_EPOCH must be an integer number of seconds") from None
    return _dt.datetime.fromtimestamp(epoch, tz=_dt.UTC).isoformat()


def manifest_path(out: Path) -> Path:
    return out / "dataset.json"


def read_manifest(out: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The sidecar ``dataset.json`` of a dataset folder (None if absent or unreadable)."""
    p = manifest_path(Path(out))
    if not p.exists():
        return None
    try:
        return json.loads(p.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def file_state(out: Path, name: str, info: dict[str, Any]) -> str:
    """``ok``, ``missing`` or ``corrupted``: a dataset file against its ``dataset.json`` record (size, then the
    sha256, cached by size and mtime: :func:`~synthex_lib.core.hashing.sha256_cached`)."""
    p = out / name
    if not p.is_file():
        return "missing"
    if p.stat().st_size != info.get("bytes"):
        return "corrupted"
    want = info.get("sha256")
    if want is not None and sha256_cached(p) != want:
        return "corrupted"
    return "ok"


def is_complete(out: Path, key: str, domains: Sequence[str]) -> bool:
    """True when the folder holds a dataset of parameters ``key`` with ``domains`` and every file matches the
    sha256 recorded in ``dataset.json`` (by content, not only by size)."""
    man = read_manifest(out)
    if not man or man.get("params_hash") != key:
        return False
    if not set(domains) <= set(man.get("domains", [])):
        return False
    files = man.get("files", {})
    if not isinstance(files, dict):
        return False
    return all(isinstance(info, dict) and file_state(out, name, info) == "ok" for name, info in files.items())


def verify_dataset(out: str | os.PathLike[str]) -> list[tuple[Path, str]]:
    """``(file, state)`` of every file of a generated dataset folder (``ok``, ``missing``, ``corrupted``),
    re-hashed against ``dataset.json`` (never from the cache). Raises :class:`DataError` without a readable
    manifest."""
    out = Path(out)
    man = read_manifest(out)
    if man is None or not isinstance(man.get("files"), dict):
        raise DataError(f"{manifest_path(out)}: missing or unreadable; regenerate the dataset with 'synthex simulate'")
    result = []
    for name, info in sorted(man["files"].items()):
        p = out / name
        if not p.is_file():
            result.append((p, "missing"))
        elif p.stat().st_size != info.get("bytes") or (info.get("sha256") and sha256_file(p) != info["sha256"]):
            result.append((p, "corrupted"))
        else:
            result.append((p, "ok"))
    return result


def simulated_datasets(profile: str | None = None) -> list[Path]:
    """Every generated dataset folder (holding a ``dataset.json``) under ``<data root>/sim/``."""
    root = paths.data_root() / "sim"
    pattern = f"{profile}/*/dataset.json" if profile else "*/*/dataset.json"
    return sorted(p.parent for p in root.glob(pattern)) if root.is_dir() else []


def file_attrs(task: TaskSpec, profile: Profile, seed: int, dataset: str, domain: str, device: str,
                image_size: tuple[int, int], pixel_mm: float, key: str) -> dict[str, Any]:
    if domain == REAL:
        projector = "real" if dataset != "lab" else f"emulated-{device}"
    else:
        projector = domain
    w, h = image_size
    return {
        "task": task.name, "projector": projector, "domain": domain, "profile": profile.name, "seed": int(seed),
        "dataset": dataset, "device": device, "image_size": int(w) if w == h else [int(w), int(h)],
        "pixel_mm": float(pixel_mm), "synthex_version": __version__, "generator_version": GENERATOR_VERSION,
        "created": created_attr(), "params_hash": key, "label_rule": LABEL_RULE,
        "label_threshold_mm": LABEL_THRESHOLD_MM, "profile_json": json.dumps(dataset_config(profile), sort_keys=True),
        "real_is_emulated": bool(domain == REAL and dataset == "lab"),
        **({"reality_version": REALITY_VERSION} if domain == REAL and dataset == "lab" else {}),
        **({"source_cohort": (task.real_cohort or task.cohort) if domain == REAL else task.cohort}
           if not task.controlled else {}),
        **({"annotation": MANUAL_ANNOTATION.describe()} if domain == REAL and task.kind == "tool" else {}),
    }


def assemble(path: Path, groups: list[tuple[str, list[Path], list[Path]]], names: tuple[str, ...],
              attrs: dict[str, Any], size: tuple[int, int]) -> None:
    """Write one HDF5 file atomically from chunk outputs: groups in order, images chunk by chunk."""
    w, h = size
    with paths.atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=H5_LIBVER) as f:
            for k in sorted(attrs):
                f.attrs[k] = attrs[k]
            write_landmark_names(f, list(names))
            for group, label_files, image_files in groups:
                labs = [load_npz(p) for p in label_files]
                n = sum(len(lb["segs"]) for lb in labs)
                g = f.create_group(group)
                projs = g.create_dataset("projs", (n, h, w), np.float32, chunks=(1, h, w), compression="gzip",
                                         compression_opts=1, fletcher32=True)
                segs = g.create_dataset("segs", (n, h, w), np.uint8, chunks=(1, h, w), compression="gzip",
                                        compression_opts=1, fletcher32=True)
                g.create_dataset("lands", data=np.concatenate([lb["lands"] for lb in labs]).astype(np.float32),
                                 fletcher32=True)
                g.create_dataset("visible", data=np.concatenate([lb["visible"] for lb in labs]).astype(bool),
                                 fletcher32=True)
                for key in sorted(k for k in labs[0] if k == "P" or k.startswith("P_")):
                    g.create_dataset(key, data=np.concatenate([lb[key] for lb in labs]).astype(np.float64),
                                     fletcher32=True)
                i = 0
                for lb, ip in zip(labs, image_files, strict=True):
                    im = load_npz(ip)["projs"]
                    if im.shape[0] != len(lb["segs"]):
                        raise DataError(f"{ip}: {im.shape[0]} images for {len(lb['segs'])} labels; delete the work "
                                        f"folder {ip.parent.parent.parent} and rerun")
                    projs[i:i + len(im)] = im.astype(np.float32)
                    segs[i:i + len(im)] = lb["segs"]
                    i += len(im)




def dataset_files(folder: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """The files of a generated dataset folder, from its ``dataset.json``."""
    man = read_manifest(folder)
    if man is None:
        raise DataError(f"{folder}: no dataset.json; generate it with 'synthex simulate' or ensure_dataset()")
    return man["files"]
