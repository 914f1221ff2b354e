"""Generation of the simulated datasets: task x image domain x profile -> HDF5 files.

:func:`ensure_dataset` makes (once) the folder of a task's dataset: it lists the image sets of the
task's source (:mod:`synthex_lib.generate.sources`), splits them into work units of ``chunk_size``
images (:mod:`synthex_lib.generate.render`), runs the missing units on a Dask cluster
(:mod:`synthex_lib.core.cluster`: local processes by default, an existing scheduler, or Slurm;
``workers=0`` runs them in this process), then assembles one HDF5 file per domain atomically
and writes the manifest (:mod:`synthex_lib.generate.cache`). Outputs already in the work folder
``<out>/.work/<params-hash>/`` are kept, so an interrupted generation resumes; the work folder is
removed at the end. Poses come from the task's sampler (:mod:`synthex_lib.generate.poses`),
labels from :mod:`synthex_lib.simulate.labels`; images are stored in the log domain (bone bright).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from synthex_lib import __version__, geometry
from synthex_lib.core import paths
from synthex_lib.core.cluster import ClusterOptions, describe, run_units
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError, DataError, SynthexError
from synthex_lib.core.hashing import sha256_file
from synthex_lib.core.memory import estimate_render_bytes, require_memory
from synthex_lib.datasets.cases import ControlledCase
from synthex_lib.generate import lab_source
from synthex_lib.generate.cache import (
    assemble,
    dataset_dir,
    dataset_params,
    file_attrs,
    file_state,
    is_complete,
    manifest_path,
    params_hash,
    read_manifest,
)
from synthex_lib.generate.poses import sample_projections
from synthex_lib.generate.render import ImageSet, Unit, chunk_file, run_unit
from synthex_lib.generate.sources import get_source
from synthex_lib.generate.tasks import (
    ALL_DOMAINS,
    REAL,
    TASK_DEVICES,
    TaskSpec,
    get_task,
    images_per_specimen,
    task_device,
)

DEFAULT_CHUNK = 8


def _device_suffix(device: str) -> str:
    return "" if device == geometry.CIOS_FUSION.name else "-loopx" if device == geometry.LOOPX.name else f"-{device}"


def _image_sets(task: TaskSpec, profile: Profile, seed: int, dataset: str, domains: tuple[str, ...],
                source_options: dict[str, Any]) -> Iterator[ImageSet]:
    if task.controlled:
        factory = get_source(dataset)
        for case in factory(profile, seed, **source_options):
            yield ImageSet("ctl", case, domains, _device_suffix(case.device))
        return
    if dataset != "lab":
        raise ConfigError(f"task {task.name!r} is simulated from the virtual lab only (dataset='lab'), got {dataset!r}")
    dev_name = TASK_DEVICES[task.kind]
    dev = task_device(task.kind, dev_name, profile.sim.detector_px)
    sims = tuple(d for d in domains if d != REAL)
    n_sim, n_real = images_per_specimen(task, profile.sim)
    if sims:
        for i, spec in enumerate(lab_source.load_lab_cohort(task.cohort, profile, seed)):
            group = f"{i + 1:02d}"
            P = sample_projections(task.kind, spec, dev, n_sim, seed, task.name, "sim", group)
            case = ControlledCase(group, spec, P, (dev.cols, dev.rows), None, dev_name)
            yield ImageSet("sim", case, sims, "", shear=task.kind == "chest")
    if REAL in domains:
        for i, spec in enumerate(lab_source.load_lab_cohort(task.real_cohort or task.cohort, profile, seed)):
            group = f"{i + 1:02d}"
            P = sample_projections(task.kind, spec, dev, n_real, seed, task.name, "real", group)
            yield ImageSet("real", ControlledCase(group, spec, P, (dev.cols, dev.rows), None, dev_name), (REAL,))


def ensure_dataset(task: str, profile: str | Profile, domains: Sequence[str] | None = None, seed: int = 0,
                   dataset: str = "lab", progress: bool = True, *, path: str | os.PathLike[str] | None = None,
                   workers: int | None = None, scheduler: str | None = None, slurm: dict[str, Any] | None = None,
                   chunk_size: int = DEFAULT_CHUNK, force: bool = False) -> Path:
    """Generate (once) and return the folder of a simulated dataset, one HDF5 file per image domain.

    Args:
        task: ``hip-controlled``, ``hip-scaled``, ``tool`` or ``chest``.
        profile: profile name or object (sizes: ``detector_px``, ``real_per_specimen``, ``sim_per_specimen``).
        domains: image domains among ``real``, ``naive``, ``heuristic``, ``realistic`` (default: the task's).
        seed: experiment seed (poses, noise, foreign objects, shear).
        dataset: controlled-study source (``lab`` or ``deepfluoro``; hip-controlled only).
        progress: show tqdm progress.
        path: the source's data file or folder (``deepfluoro``), passed to the source as ``path``.
        workers, scheduler, slurm: where units run (see :class:`~synthex_lib.core.cluster.ClusterOptions`);
            ``workers=0`` runs in this process.
        chunk_size: images per work unit (a unit is the resumption granule; bytes do not depend on it).
        force: regenerate even if the dataset is complete.

    Returns:
        The folder (:func:`dataset_dir`). A second call with the same arguments returns at once.
    """
    spec = get_task(task)
    prof = get_profile(profile)
    doms = tuple(spec.default_domains if domains is None else domains)
    unknown = sorted(set(doms) - set(ALL_DOMAINS))
    if unknown or not doms:
        raise ConfigError(f"unknown image domain(s) {unknown or doms}: choose from {', '.join(ALL_DOMAINS)}")
    doms = tuple(d for d in ALL_DOMAINS if d in doms)  # canonical order
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ConfigError(f"parameter 'chunk_size' must be a positive integer, got {chunk_size!r}")
    cluster = ClusterOptions(workers=workers, scheduler=scheduler, slurm=slurm)  # checks 'workers' before any work
    if spec.controlled:
        get_source(dataset)  # an unknown source fails here, before a folder is made
    elif dataset != "lab":
        raise ConfigError(f"task {spec.name!r} is simulated from the virtual lab only (dataset='lab'), got {dataset!r}")
    source_options: dict[str, Any] = {} if path is None else {"path": str(path)}
    params = dataset_params(spec, prof, seed, dataset, source_options)
    phash = params_hash(params)
    out = dataset_dir(task, prof, seed, dataset)
    if not force and is_complete(out, phash, doms):
        return out
    cluster.check_reachable()  # an unreachable scheduler or a missing sbatch fails now, not after 30 s of work
    made = [p for p in (out, *out.parents) if not p.exists()]
    try:
        out.mkdir(parents=True, exist_ok=True)
        with FileLock(str(out / ".lock")):
            if not force and is_complete(out, phash, doms):  # another process finished it meanwhile
                return out
            _clean_stale_parts(out)
            _generate(spec, prof, doms, int(seed), dataset, source_options, params, phash, out, chunk_size,
                      progress, cluster, force)
    except SynthexError:
        _remove_if_empty(made)  # a failed check leaves no empty '<task>/.lock' folder behind
        raise
    return out


def _check_memory(units: list[Unit], case_of: dict[tuple[str, str], ControlledCase], cluster: ClusterOptions,
                  chunk_size: int) -> None:
    """Refuse, before any work, a generation whose local work units cannot fit in memory together."""
    if cluster.scheduler is not None or cluster.slurm is not None:
        return  # the memory of remote workers is theirs to manage
    def need(u: Unit) -> int:
        case = case_of[(u.set_key, u.group)]
        w, h = (int(v) for v in case.image_size)
        ct = getattr(case.specimen, "ct_hu", None)
        voxels = int(ct.size) if ct is not None else 0
        return max(estimate_render_bytes(d, w, h, u.stop - u.start, voxels) for d in (*u.domains, "naive"))
    parallel = 1 if cluster.in_process else max(1, min(cluster.workers or (os.cpu_count() or 1), len(units)))
    peak = max(need(u) for u in units) * parallel
    require_memory(peak, f"simulating {len(units)} unit(s) of up to {chunk_size} image(s) on {parallel} worker(s)",
                   "use a smaller --chunk-size, fewer --workers or a smaller profile")


def _clean_stale_parts(out: Path) -> None:
    """Delete the temporary ``.part`` files a killed run left (we hold the folder's lock: nobody writes them)."""
    for p in [*out.glob(".*.part"), *(out / ".work").rglob("*.part")]:
        p.unlink(missing_ok=True)


def _remove_if_empty(made: list[Path]) -> None:
    """Remove the folders this call created (deepest first) when they hold nothing but the lock file."""
    for folder in made:
        try:
            left = [p for p in folder.iterdir() if p.name != ".lock"]
            if left:
                return
            (folder / ".lock").unlink(missing_ok=True)
            folder.rmdir()
        except OSError:
            return


def generate_controlled(source_name: str, profile: str | Profile, seed: int = 0, domains: Sequence[str] | None = None,
                        progress: bool = True, **options: Any) -> Path:
    """The precisely matched dataset of a controlled-study source (``lab``, ``deepfluoro`` ...): real images
    (emulated for the lab) and their replicas; ``options`` go to :func:`ensure_dataset` (``path``, ``workers``...)."""
    return ensure_dataset("hip-controlled", profile, domains=domains, seed=seed, dataset=source_name,
                          progress=progress, **options)


def _generate(spec: TaskSpec, prof: Profile, doms: tuple[str, ...], seed: int, dataset: str,
              source_options: dict[str, Any], params: dict[str, Any], phash: str, out: Path, chunk_size: int,
              progress: bool, cluster: ClusterOptions, force: bool) -> None:
    man = read_manifest(out)
    same = bool(man and man.get("params_hash") == phash)  # the folder holds files of these parameters
    kept_domains = set(man.get("domains", [])) if same else set()  # type: ignore[union-attr]
    for name, info in (man.get("files", {}) if same else {}).items():  # type: ignore[union-attr]
        state = file_state(out, name, info)
        if state != "ok":  # deleted or damaged since (size or sha256): redo its domain
            kept_domains.discard(info.get("domain"))
            if state == "corrupted":
                print(f"simulate {spec.name}: {out / name} does not match its recorded sha256; regenerating it")
    todo = tuple(d for d in doms if force or d not in kept_domains)
    work = out / ".work" / f"{phash}-c{chunk_size}"  # chunk boundaries depend on chunk_size
    if force:
        shutil.rmtree(work, ignore_errors=True)
    sets = list(_image_sets(spec, prof, seed, dataset, todo, source_options))
    if not sets:
        raise DataError(f"dataset {dataset!r} gave no specimens for task {spec.name!r}; check the cohort/source")
    units: list[Unit] = []
    case_of: dict[tuple[str, str], ControlledCase] = {}
    for s in sets:
        case_of[(s.key, s.case.group)] = s.case
        dev = task_device(spec.kind, s.case.device, int(s.case.image_size[0]))
        for c, start in enumerate(range(0, s.n, chunk_size)):
            stop = min(s.n, start + chunk_size)
            cdir = work / s.key / s.case.group
            need_labels = not chunk_file(cdir, c, "labels").exists()
            need = tuple(d for d in s.domains if not chunk_file(cdir, c, d).exists())
            if need_labels or need:
                units.append(Unit(str(work), spec.name, seed, prof, s.key, s.case.group, c, start, stop, need_labels,
                                  need, s.shear, s.case.device, dev.pixel_mm))
    if units:
        _check_memory(units, case_of, cluster, chunk_size)
        if progress:
            print(f"simulate {spec.name} ({prof.name}, {', '.join(todo)}): {len(units)} unit(s) {describe(cluster)}")
        run_units(run_unit, units, cluster, shared=lambda u: case_of[(u.set_key, u.group)],
                  desc=f"simulate {spec.name}", progress=progress)
    # assemble one file per (domain, suffix)
    files: dict[str, dict[str, Any]] = dict(man.get("files", {})) if same else {}  # type: ignore[union-attr]
    by_file: dict[str, list[ImageSet]] = {}
    for s in sets:
        for d in s.domains:
            by_file.setdefault(f"{d}{s.suffix}.h5", []).append(s)
    for name, members in sorted(by_file.items()):
        members = sorted(members, key=lambda s: s.case.group)
        d = name[: -len(".h5")].removesuffix(members[0].suffix)
        first = members[0].case
        size = (int(first.image_size[0]), int(first.image_size[1]))
        dev = task_device(spec.kind, first.device, size[0])
        groups = []
        for s in members:
            cdir = work / s.key / s.case.group
            nchunks = (s.n + chunk_size - 1) // chunk_size
            groups.append((s.case.group, [chunk_file(cdir, c, "labels") for c in range(nchunks)],
                           [chunk_file(cdir, c, d) for c in range(nchunks)]))
        attrs = file_attrs(spec, prof, seed, dataset, d, first.device, size, dev.pixel_mm, phash)
        assemble(out / name, groups, spec.landmarks, attrs, size)
        files[name] = {"bytes": (out / name).stat().st_size, "sha256": sha256_file(out / name),
                       "groups": {s.case.group: s.n for s in members}, "domain": d, "device": first.device}
    # stale files of other parameters
    if man and not same:
        for name in man.get("files", {}):
            if name not in files:
                (out / name).unlink(missing_ok=True)
    manifest = {"params_hash": phash, "params": params, "domains": sorted(kept_domains | set(doms)),
                "files": files, "created": _dt.datetime.now(tz=_dt.UTC).isoformat(timespec="seconds"),
                "synthex_version": __version__,
                "note": "HDF5 attribute 'created' is SOURCE_DATE_EPOCH (deterministic); this file holds the "
                        "wall-clock time and sha256 of each file"}
    paths.atomic_write_text(manifest_path(out), json.dumps(manifest, indent=2, sort_keys=True, default=str))
    shutil.rmtree(out / ".work", ignore_errors=True)
