"""Sweeps: many training runs of a study, each a task on a Dask cluster, resumable and fault-tolerant.

A sweep is a list of :class:`RunSpec` (picklable: the profile and the run's arguments). Each runs
as one unit of :func:`synthex_lib.core.cluster.run_units`: a local cluster by default (one worker
process per core), an existing scheduler (``scheduler="tcp://host:8786"``) or Slurm through
dask-jobqueue (``slurm={...}``; declare GPUs with ``job_extra_directives=["--gres=gpu:1"]``).
``workers=0`` runs them in this process.

* Resumption: a run already in the results store is read back, not retrained; an interrupted
  run resumes from its last checkpoint.
* Faults: a failing run is recorded in ``results/<profile>/failed/<run id>.json`` with its error,
  and the other runs go on; :func:`run_sweep` reports it.
* Reproducibility: every run uses ``profile.train.cpu_threads`` torch threads on the CPU (the bytes
  of a CPU run depend on the thread count, not on how many runs share the machine), so a sweep gives
  the same bytes whatever the number of workers.
"""

from __future__ import annotations

import json
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from synthex_lib.core import paths
from synthex_lib.core.cluster import ClusterOptions, describe, run_units
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import stable_hash
from synthex_lib.experiments import hip, hip_adaptation, hip_resolution, hip_scaled, results, task_runs

#: the studies a sweep can run, by name -> the function running one run of it
STUDIES = {"hip-controlled": hip_adaptation.run_controlled,
           "cyclegan": hip_adaptation.cyclegan_checkpoint,
           "hip-scaled": hip_scaled.run_scaled_experiment,
           "task": task_runs.run_task_experiment}


@dataclass(frozen=True)
class RunSpec:
    """One run of a study: ``STUDIES[study](profile, **kwargs)``."""

    study: str
    profile: Profile
    kwargs: dict[str, Any] = field(default_factory=dict)

    def label(self) -> str:
        size = [] if self.profile.is_registered else [f"image_size={self.profile.train.image_size}"]
        return ", ".join([*(f"{k}={v}" for k, v in sorted(self.kwargs.items()) if k not in ("progress",)), *size])


def failed_dir(profile: str) -> Path:
    """Where failed runs are recorded."""
    return paths.results_dir(profile) / "failed"


def execute(spec: RunSpec) -> dict[str, Any]:
    """Run one spec (in a worker); never raises: returns ``{"status": "done", "run_id": ...}`` or
    ``{"status": "failed", "error": ..., "record": path}``."""
    torch.set_num_threads(spec.profile.train.cpu_threads)
    try:
        rec = STUDIES[spec.study](spec.profile, progress=False, **spec.kwargs)
        run_id = rec["run_id"] if isinstance(rec, dict) else str(rec)  # a record, or a model's checkpoint path
        return {"status": "done", "run_id": run_id, "label": spec.label()}
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        key = stable_hash([spec.study, spec.kwargs, spec.profile.to_dict()], 12)
        path = failed_dir(spec.profile.name) / f"{spec.study}-{key}.json"
        paths.atomic_write_text(path, json.dumps({"study": spec.study, "profile": spec.profile.name,
                                                  "arguments": spec.kwargs, "error": error,
                                                  "traceback": traceback.format_exc(), "failed": results.now_iso()},
                                                 indent=1, sort_keys=True, default=str))
        return {"status": "failed", "error": error, "record": str(path), "label": spec.label()}


def run_sweep(specs: list[RunSpec], *, workers: int | None = None, scheduler: str | None = None,
              slurm: dict[str, Any] | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Run every spec as a Dask task (see the module docstring); returns one outcome per spec, in order."""
    options = ClusterOptions(workers=workers, scheduler=scheduler, slurm=slurm)
    if progress and specs:
        print(f"sweep: {len(specs)} run(s) {describe(options)}")
    return run_units(execute, specs, options, desc="sweep", progress=progress)


def hip_specs(profile: Profile, *, seed: int = 0, dataset: str = "lab", domains: tuple[str, ...] = hip.DOMAINS,
              presets: tuple[str, ...] = ("regular", "strong"), data_path: str | None = None,
              device: str = "auto") -> list[RunSpec]:
    """Every (training domain, preset, held-out specimen) run of the controlled hip study (adaptation rows on the
    first ``profile.adapt_folds`` held-out specimens only). ``device`` (where
    each run trains: ``auto``, ``cpu``, ``cuda[:N]``) is not part of a run's key."""
    folds = hip.held_out_groups(profile, seed, dataset, data_path)
    base = {"seed": seed, "dataset": dataset, "data_path": data_path}
    if device != "auto":
        base["device"] = device
    return [RunSpec("hip-controlled", profile, {**base, "train_domain": d, "dr_preset": p, "test_group": g})
            for d in domains for p in presets
            for g in (folds[: profile.adapt_folds] if d in hip.ADAPTED else folds)]


def hip_sweep(profile: str | Profile = "smoke", *, seed: int = 0, dataset: str = "lab",
              domains: tuple[str, ...] = hip.DOMAINS, presets: tuple[str, ...] = ("regular", "strong"),
              progress: bool = True, data_path: str | None = None, workers: int | None = 0,
              scheduler: str | None = None, slurm: dict[str, Any] | None = None, device: str = "auto",
              scaled: list[dict[str, Any]] | None = None, tasks: list[dict[str, Any]] | None = None
              ) -> list[dict[str, Any]]:
    """Run (or read back) every (domain, preset, held-out specimen) of the controlled study and return the
    stored records. ``domains`` may include the adaptation rows (``realistic-cyclegan``, ``naive-adda`` ...,
    :data:`~synthex_lib.experiments.hip_adaptation.ADAPTED`). ``scaled``: the arguments of scaled-up runs
    (:func:`hip_scaled.scaled_specs_kwargs`), which join the first wave (read their records back with
    :func:`hip_scaled.run_scaled_experiment`). ``tasks``: the arguments of tool and COVID-19 runs
    (:func:`task_runs.task_specs_kwargs`, which generates their data), which join the first wave too (read them
    back with :func:`task_runs.run_task_experiment`). The data are generated first, in this process;
    the runs then go to the cluster (``workers=0``: in this process) in three waves, so that no two tasks train
    the same model: the plain rows (which ADDA starts from), the CycleGAN models (one per synthetic domain and
    held-out specimen), then the adaptation rows. Failed runs are recorded and left out, with one line each."""
    profile = get_profile(profile)
    unknown = [d for d in domains if d not in hip_adaptation.ALL_DOMAINS]
    if unknown:
        raise ConfigError(f"parameter 'domains': unknown training domain(s) {unknown}; choose among "
                          f"{', '.join(hip_adaptation.ALL_DOMAINS)}")
    hip.controlled_dir(profile, seed, dataset, data_path)  # generate the data once, before the workers start
    specs = hip_specs(profile, seed=seed, dataset=dataset, domains=domains, presets=presets, data_path=data_path,
                      device=device)
    extra = {"device": device} if device != "auto" else {}
    if scaled:
        hip_scaled.scaled_dir(profile, seed)
    plain = [RunSpec("hip-scaled", profile, {**kw, **extra}) for kw in scaled or []]
    plain += [RunSpec("task", profile, {**kw, **extra}) for kw in tasks or []]
    plain += [s for s in specs if s.kwargs["train_domain"] in hip.DOMAINS]
    adapted = [s for s in specs if s.kwargs["train_domain"] in hip_adaptation.ADAPTED]
    cyclegans = sorted({(hip_adaptation.ADAPTED[s.kwargs["train_domain"]][0], s.kwargs["test_group"])
                        for s in adapted if hip_adaptation.ADAPTED[s.kwargs["train_domain"]][1] == "cyclegan"})
    base = {"seed": seed, "dataset": dataset, "data_path": data_path}
    models = [RunSpec("cyclegan", profile, {**base, "domain": d, "test_group": g}) for d, g in cyclegans]
    outcomes: dict[int, dict[str, Any]] = {}
    for wave in (plain, models, adapted):
        if wave:
            for spec, out in zip(wave, run_sweep(wave, workers=workers, scheduler=scheduler, slurm=slurm,
                                                 progress=progress), strict=True):
                outcomes[id(spec)] = out
                if out["status"] != "done":
                    print(f"sweep: run failed ({out['label']}): {out['error']}; recorded in {out['record']}")
    return [hip_adaptation.run_controlled(spec.profile, progress=False, **spec.kwargs) for spec in specs
            if outcomes[id(spec)]["status"] == "done"]


def task_sweep(profile: str | Profile = "smoke", task: str = "tool", *, seed: int = 0, dataset: str = "lab",
               data_path: str | None = None, dr_preset: str = "strong", progress: bool = True,
               workers: int | None = 0, scheduler: str | None = None, slurm: dict[str, Any] | None = None,
               device: str = "auto") -> list[dict[str, Any]]:
    """Every run of a tool or COVID-19 study (Sim2Real and the Real2Real folds of
    :mod:`~synthex_lib.experiments.task_runs`) as Dask tasks; returns the stored records of the runs that did not
    fail (a failed run is recorded and reported with one line)."""
    profile = get_profile(profile)
    kws = task_runs.task_specs_kwargs(profile, task, seed=seed, dataset=dataset, data_path=data_path,
                                      dr_preset=dr_preset)
    extra = {"device": device} if device != "auto" else {}
    specs = [RunSpec("task", profile, {**kw, **extra}) for kw in kws]
    done = []
    for spec, out in zip(specs, run_sweep(specs, workers=workers, scheduler=scheduler, slurm=slurm,
                                          progress=progress), strict=True):
        if out["status"] == "done":
            done.append(task_runs.run_task_experiment(profile, progress=False, **spec.kwargs))
        else:
            print(f"sweep: run failed ({out['label']}): {out['error']}; recorded in {out['record']}")
    return done


def resolution_specs(profile: str | Profile, *, seed: int = 0, dataset: str = "lab",
                     domains: tuple[str, ...] = hip_resolution.DEFAULT_DOMAINS,
                     presets: tuple[str, ...] = hip_resolution.DEFAULT_PRESETS, data_path: str | None = None,
                     device: str = "auto") -> list[RunSpec]:
    """Every run of the image-resolution study (:mod:`~synthex_lib.experiments.hip_resolution`): the controlled
    study's (domain, preset, held-out specimen) runs at each of the study's sizes; at the profile's own size these
    are the controlled study's runs themselves."""
    profile = get_profile(profile)
    unknown = [d for d in domains if d not in hip.DOMAINS]
    if unknown:
        raise ConfigError(f"parameter 'domains': the resolution study trains {', '.join(hip.DOMAINS)}, "
                          f"got {unknown}")
    return [spec for size in hip_resolution.resolution_sizes(profile)
            for spec in hip_specs(hip_resolution.resolution_profile(profile, size), seed=seed, dataset=dataset,
                                  domains=domains, presets=presets, data_path=data_path, device=device)]


def resolution_sweep(profile: str | Profile = "smoke", *, seed: int = 0, dataset: str = "lab",
                     domains: tuple[str, ...] = hip_resolution.DEFAULT_DOMAINS,
                     presets: tuple[str, ...] = hip_resolution.DEFAULT_PRESETS, progress: bool = True,
                     data_path: str | None = None, workers: int | None = 0, scheduler: str | None = None,
                     slurm: dict[str, Any] | None = None, device: str = "auto") -> dict[int, list[dict[str, Any]]]:
    """Run (or read back) the image-resolution study; returns the stored records by image size (px), in the
    order of :func:`~synthex_lib.experiments.hip_resolution.resolution_sizes`. Failed runs are recorded and left
    out, with one line each."""
    profile = get_profile(profile)
    hip.controlled_dir(profile, seed, dataset, data_path)  # generate the data once, before the workers start
    specs = resolution_specs(profile, seed=seed, dataset=dataset, domains=domains, presets=presets,
                             data_path=data_path, device=device)
    out: dict[int, list[dict[str, Any]]] = {s: [] for s in hip_resolution.resolution_sizes(profile)}
    for spec, res in zip(specs, run_sweep(specs, workers=workers, scheduler=scheduler, slurm=slurm,
                                          progress=progress), strict=True):
        if res["status"] == "done":
            out[spec.profile.train.image_size].append(hip.run_hip_experiment(spec.profile, progress=False,
                                                                             **spec.kwargs))
        else:
            print(f"sweep: run failed ({res['label']}): {res['error']}; recorded in {res['record']}")
    return out
