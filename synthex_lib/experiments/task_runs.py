"""The paper's other two tasks: Sim2Real and five-fold Real2Real runs (NMI 'Surgical robotic tool detection' and
'COVID-19 lesion segmentation', Extended Data Tables 4-6; preprint Tables 2-3). Tables, claims and verdicts:
:mod:`synthex_lib.experiments.task_analysis` (outside every run key).

* ``tool``: segment the continuum manipulator (CM) and detect the two end points of its centreline.
  Sim2Real trains on the realistic images of the ``tool`` cohort (CM scenes in ``scale`` hips, the paper's
  NMDID CTs) and is tested on every emulated real image of the ``tool-lab`` cohort (the CM in each lab specimen,
  the lab's cadaveric tests, with a manual annotator's error on the labels); Real2Real trains on the real images
  of four folds of lab specimens and is tested on the fifth.
* ``chest``: binary COVID-19 lesion segmentation. Sim2Real trains on the realistic images of the ``chest``
  cohort (the CT sheared per image) and is tested on the emulated radiographs of other patients (``chest-real``),
  or on QaTa-COV19 (``dataset="qata-cov19"``, its folds); Real2Real by five folds of patients.

A fold is made of whole groups (a lab specimen, a patient, a QaTa fold), so training and test never share a
specimen. Every run is tested on real images only, each real image by one Sim2Real run and by the one Real2Real
fold that held it out: a paired design. Runs are stored in the results store and read back when there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Subset

from synthex_lib.core import paths
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest, sha256_cached, stable_hash
from synthex_lib.datasets.layout import list_groups, read_file_attrs, read_landmark_names
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.experiments import results
from synthex_lib.experiments.hip import canonical_preset, validation_split
from synthex_lib.generate.cache import dataset_key
from synthex_lib.generate.engine import ensure_dataset
from synthex_lib.learning.evaluation import LESION_METRICS, evaluate_lesion, evaluate_tool, summarize_lesion
from synthex_lib.learning.stats import summarize
from synthex_lib.learning.training import convergence, train_multitask
from synthex_lib.realdata.qata import QaTaCOV19, write_qata_layout

#: the tasks, by generation task -> the kind of their records in the results store
KINDS = {"tool": "tool-detection", "chest": "covid-lesion"}
TRAIN_DOMAINS = ("realistic", "real")
#: Real2Real cross-validation folds (the paper: five)
FOLDS = 5
#: where each task's real test images can come from
REAL_DATASETS = {"tool": ("lab",), "chest": ("lab", "qata-cov19")}
#: what a record keeps per test image (besides ``group`` and ``image``, the image's place in the real file)
PER_IMAGE_KEYS = {"tool": ("dice", "distance_mm", "error_mm", "confidence", "visible"),
                  "chest": (*LESION_METRICS, "dice")}
#: the modules whose code (with everything they import) decides a run's result
RUN_CODE_ROOTS = ("synthex_lib.learning.training", "synthex_lib.learning.evaluation",
                  "synthex_lib.experiments.task_runs")


def _check(task: str, dataset: str, train_domain: str) -> None:
    if task not in KINDS:
        raise ConfigError(f"parameter 'task' must be one of {', '.join(KINDS)}, got {task!r}")
    if dataset not in REAL_DATASETS[task]:
        raise ConfigError(f"parameter 'dataset' must be one of {', '.join(REAL_DATASETS[task])} for task {task!r}, "
                          f"got {dataset!r}")
    if train_domain not in TRAIN_DOMAINS:
        raise ConfigError(f"parameter 'train_domain' must be one of {', '.join(TRAIN_DOMAINS)}, got {train_domain!r}")


def real_dataset_for(task: str, dataset: str) -> str:
    """The real test images a task's chapter uses when the book runs with ``dataset``: that dataset where the task
    has it (``qata-cov19`` for the chest), else the lab's (the hip's DeepFluoro holds no tool or chest images)."""
    if task not in KINDS:
        raise ConfigError(f"parameter 'task' must be one of {', '.join(KINDS)}, got {task!r}")
    return dataset if dataset in REAL_DATASETS[task] else "lab"


def task_dir(profile: Profile, task: str, seed: int = 0, workers: int | None = 0) -> Path:
    """The folder of the task's lab dataset (``realistic.h5``, ``real.h5``), generated if missing."""
    return Path(ensure_dataset(task, profile, seed=seed, workers=workers))


def real_file(profile: Profile, task: str, seed: int = 0, dataset: str = "lab", data_path: str | None = None,
              workers: int | None = 0) -> Path:
    """The real test images: the lab's emulated ``real.h5``, or QaTa-COV19 (``data_path`` or its default folder)
    written once into the project's layout at the profile's ``detector_px`` (five groups: its folds)."""
    _check(task, dataset, "real")
    if dataset == "lab":
        return task_dir(profile, task, seed, workers) / "real.h5"
    qata = QaTaCOV19(data_path)
    index = [(str(p.image.relative_to(qata.root)), p.image.stat().st_size, p.mask.stat().st_size) for p in qata.pairs]
    size = profile.sim.detector_px
    out = paths.real_dir("qata-cov19") / "layout" / f"real-{size}px-s{seed}-{stable_hash([qata.layout, index], 12)}.h5"
    if not out.exists():
        write_qata_layout(qata, out, size, seed)
    return out


def fold_groups(groups: list[str], folds: int = FOLDS) -> list[list[str]]:
    """Whole groups dealt into ``min(folds, len(groups))`` contiguous folds of sorted groups (``np.array_split``):
    no group is in two folds. Raises :class:`ConfigError` with fewer than two groups."""
    groups = sorted(groups)
    if len(groups) < 2:
        raise ConfigError(f"Real2Real cross-validation needs at least 2 specimen groups, found {groups}")
    return [list(map(str, part)) for part in np.array_split(np.array(groups, dtype=object), min(folds, len(groups)))]


def run_parameters(profile: Profile, seed: int, task: str, dataset: str, train_domain: str, dr_preset: str | dict,
                   fold: int | None, test_groups: list[str], threshold: float, real_key: str) -> dict[str, Any]:
    """Everything a run's result depends on, hashed into its id: the task, the training domain, the fold and its
    test groups, every training field, the keys of the simulated dataset and of the real test file, and the
    digest of the training and evaluation code."""
    return {"profile": profile.name, "seed": int(seed), "task": task, "dataset": dataset,
            "train_domain": train_domain, "test_domain": "real", "dr_preset": dr_preset, "fold": fold,
            "test_groups": list(test_groups), "threshold": float(threshold), "train": profile.train.to_dict(),
            "dataset_key": dataset_key(task, profile, seed, "lab", {}), "real_key": real_key,
            "code": code_digest(*RUN_CODE_ROOTS)}


def run_task_experiment(profile: str | Profile = "smoke", *, task: str = "tool", seed: int = 0, dataset: str = "lab",
                        train_domain: str = "realistic", fold: int | None = None, dr_preset: str | dict = "strong",
                        threshold: float = 0.9, force: bool = False, progress: bool = True,
                        data_path: str | None = None, device: str = "auto", workers: int | None = 0
                        ) -> dict[str, Any]:
    """One run of a task (see the module docstring); returns its stored record.

    ``train_domain="realistic"`` (Sim2Real, ``fold=None``): train on every simulated image (validation split drawn
    from them), test on every real image. ``train_domain="real"`` (Real2Real, ``fold`` 1..k of
    :func:`fold_groups`): train on the real images of the other folds, test on this fold's. ``device``: ``auto``,
    ``cpu`` or ``cuda[:N]``, not part of the run key.
    """
    _check(task, dataset, train_domain)
    profile = get_profile(profile).for_run(task, train_domain)  # the task's training schedule (Profile.task_train)
    real = real_file(profile, task, seed, dataset, data_path, workers)
    groups = list_groups(real)
    folds = fold_groups(groups)
    if train_domain == "realistic":
        if fold is not None:
            raise ConfigError("parameter 'fold' is for Real2Real runs (train_domain='real'); Sim2Real is tested on "
                              "every real image")
        test_groups = groups
    else:
        if isinstance(fold, bool) or not isinstance(fold, int) or not 1 <= fold <= len(folds):
            raise ConfigError(f"parameter 'fold' must be 1..{len(folds)} for a Real2Real run, got {fold!r}")
        test_groups = folds[fold - 1]
    dr_preset = canonical_preset(dr_preset)
    params = run_parameters(profile, seed, task, dataset, train_domain, dr_preset, fold, test_groups, threshold,
                            sha256_cached(real))
    kind = KINDS[task]
    existing = None if force else results.find_record(profile.name, kind, params)
    if existing is not None:
        return existing
    ckpt = paths.results_dir(profile.name) / "checkpoints" / f"{results.run_id(kind, params)}.pt"
    if force and ckpt.exists():
        ckpt.unlink()
    started = results.now_iso()
    if train_domain == "realistic":
        train_path = task_dir(profile, task, seed, workers) / "realistic.h5"
        train_groups = list_groups(train_path)
    else:
        train_path, train_groups = real, [g for g in groups if g not in test_groups]
    landmarks = read_landmark_names(real)
    pool = ImageDataset(train_path, train_groups, image_size=profile.train.image_size)
    train_idx, val_idx = validation_split(pool.group_of, profile.train.val_fraction, seed)
    model, state = train_multitask(Subset(pool, train_idx), profile, seed=seed, dr_preset=dr_preset, num_classes=2,
                                   num_landmarks=len(landmarks), checkpoint=ckpt, progress=progress, device=device,
                                   val_ds=Subset(pool, val_idx) if val_idx else None)
    conv = convergence(state.history)
    test_ds = ImageDataset(real, test_groups, image_size=profile.train.image_size)
    if task == "tool":
        pixel_mm = float(read_file_attrs(real)["pixel_mm"]) * test_ds.scale
        ev = evaluate_tool(model, test_ds, profile.train.heatmap_sigma_px, pixel_mm, threshold, device=device)
        metrics = summarize_tool(ev) | {"pixel_mm": pixel_mm}
    else:
        ev = evaluate_lesion(model, test_ds, device=device)
        metrics = summarize_lesion(ev)
    metrics |= {"train_images": len(train_idx), "val_images": len(val_idx), "train_groups": train_groups,
                "final_loss": state.history[-1]["loss"] if state.history else float("nan"),
                "best_epoch": state.best_epoch, "best_val_loss": state.best_val_loss,
                "converged": conv["converged"], "tail_improvement": conv["tail_improvement"],
                "convergence_criterion": conv["criterion"], "landmarks": list(landmarks)}
    per_image = {k: np.asarray(ev[k]).tolist() for k in PER_IMAGE_KEYS[task]}
    per_image["group"] = test_ds.group_of.tolist()
    per_image["image"] = np.concatenate([np.arange(int((test_ds.group_of == g).sum())) for g in test_groups]).tolist()
    rec = results.make_record(kind, params, metrics, started=started, per_image=per_image,
                              extra={"history": state.history})
    results.save_record(rec, profile.name)
    return rec


def summarize_tool(ev: dict[str, Any]) -> dict[str, Any]:
    """Dice and landmark error (mean, std with ddof 0 as the official script, 95 % CI) of a tool evaluation, per
    landmark too, and the fraction of visible landmarks activated."""
    lm, dc = summarize(ev["error_mm"]), summarize(ev["dice"])
    vis = np.asarray(ev["visible"], bool)
    err = np.asarray(ev["error_mm"], float)
    return {"landmark_error_mm_mean": lm["mean"], "landmark_error_mm_std": lm["std"],
            "landmark_error_mm_ci95": lm["ci95"], "landmarks_activated": lm["n"],
            "landmarks_visible": int(vis.sum()), "detection_rate": lm["n"] / max(int(vis.sum()), 1),
            "landmark_error_mm_each": [float(np.nanmean(err[:, i])) if np.isfinite(err[:, i]).any() else float("nan")
                                       for i in range(err.shape[1])],
            "dice_mean": dc["mean"], "dice_std": dc["std"], "dice_ci95": dc["ci95"], "images": dc["n"]}


def task_specs_kwargs(profile: str | Profile, task: str, *, seed: int = 0, dataset: str = "lab",
                      data_path: str | None = None, dr_preset: str = "strong") -> list[dict[str, Any]]:
    """The arguments of every run of a task's study (Sim2Real, then each Real2Real fold), for
    :func:`run_task_experiment` or a sweep; generates the data first."""
    profile = get_profile(profile)
    real = real_file(profile, task, seed, dataset, data_path)
    task_dir(profile, task, seed)
    base = {"task": task, "seed": seed, "dataset": dataset, "dr_preset": dr_preset,
            **({"data_path": data_path} if data_path else {})}
    n = len(fold_groups(list_groups(real)))
    return [{**base, "train_domain": "realistic"}, *({**base, "train_domain": "real", "fold": k}
                                                     for k in range(1, n + 1))]


def task_records(profile: str | Profile, task: str, *, seed: int = 0, dataset: str = "lab",
                 data_path: str | None = None, dr_preset: str = "strong", progress: bool = False,
                 device: str = "auto") -> list[dict[str, Any]]:
    """Every run of a task's study, trained here where not yet in the results store."""
    return [run_task_experiment(profile, progress=progress, device=device, **kw)
            for kw in task_specs_kwargs(profile, task, seed=seed, dataset=dataset, data_path=data_path,
                                        dr_preset=dr_preset)]
