"""The hip-imaging experiments of the paper: leave-one-specimen-out Sim2Real and Real2Real training
on the precisely matched (controlled) dataset (tables, claims and verdicts: :mod:`hip_analysis`; the
adaptation rows: :mod:`hip_adaptation`; many runs at once: :mod:`sweep`).

Each run trains on every specimen but one (images of ``train_domain``: real, realistic,
heuristic or naive), then tests on the held-out specimen's *real* images (in the virtual lab:
images of the emulated CIOS-like scanner). Runs are stored in the results store and skipped
when already there, so a sweep resumes after an interruption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Subset

from synthex_lib.core import paths
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.datasets.layout import list_groups, read_file_attrs
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.experiments import results
from synthex_lib.generate.cache import dataset_key
from synthex_lib.generate.engine import ensure_dataset
from synthex_lib.learning.evaluation import evaluate_hip, summarize_hip
from synthex_lib.learning.training import convergence, load_trained_model, train_multitask
from synthex_lib.randomization import DomainRandomization, preset_names

KIND = "hip-controlled"
DOMAINS = ("real", "realistic", "heuristic", "naive")
#: the adaptation rows' training domains (run by :mod:`synthex_lib.experiments.hip_adaptation`): (synthetic
#: domain, method)
ADAPTED: dict[str, tuple[str, str]] = {
    "realistic-cyclegan": ("realistic", "cyclegan"), "naive-cyclegan": ("naive", "cyclegan"),
    "realistic-adda": ("realistic", "adda"), "naive-adda": ("naive", "adda")}
#: every row's training domain, in the order of the tables
ALL_DOMAINS = (*DOMAINS, *ADAPTED)
PRESETS = ("none", "regular", "strong", "official-regular", "official-strong")
#: the real images of the lab's cross-scanner specimen (Loop-X-like C-arm; never in any training set)
CROSS_SCANNER_FILE = "real-loopx.h5"
#: what a record keeps per test image (per image; per image and landmark; per image and structure)
PER_IMAGE_KEYS = ("dice", "dice_per_class", "distance_mm", "error_mm", "confidence", "visible")


#: the modules whose code (with everything they import) decides a run's result
RUN_CODE_ROOTS = ("synthex_lib.learning.training", "synthex_lib.learning.evaluation", "synthex_lib.experiments.hip")


def run_parameters(profile: Profile, seed: int, dataset: str, train_domain: str, dr_preset: str | dict,
                   test_group: str, threshold: float, data_path: str | None = None) -> dict[str, Any]:
    """Everything a run's result depends on, hashed into its id by :func:`results.run_id`: the study
    design, every training field, the key of its dataset and the digest of the training and evaluation code."""
    source_options = {"path": str(data_path)} if data_path else {}
    return {
        "profile": profile.name, "seed": int(seed), "dataset": dataset, "task": "hip-controlled",
        "train_domain": train_domain, "test_domain": "real", "dr_preset": dr_preset, "test_group": test_group,
        "threshold": float(threshold), "train": profile.train.to_dict(),
        "dataset_key": dataset_key("hip-controlled", profile, seed, dataset, source_options),
        "code": code_digest(*RUN_CODE_ROOTS),
    }


def canonical_preset(spec: str | dict) -> str | dict:
    """A preset name as it is; anything else (a config dict, YAML text, a ``.yaml``/``.json`` file) as the
    plain config dict it defines, so that the run key covers the randomization's content, not a file name."""
    if isinstance(spec, str) and spec in preset_names():
        return spec
    return DomainRandomization.from_spec(spec).to_config()


def controlled_dir(profile: Profile, seed: int, dataset: str, data_path: str | None = None) -> Path:
    """The folder with real.h5, realistic.h5, heuristic.h5 and naive.h5 (generated if missing)."""

    kwargs = {"path": data_path} if data_path else {}
    return Path(ensure_dataset("hip-controlled", profile, seed=seed, dataset=dataset, **kwargs))


def reality_of(profile: Profile, seed: int, dataset: str, data_path: str | None = None) -> str:
    """Which real images a study was tested on: the lab's ``reality_version`` (what its emulated C-arm and
    session model, and the digest of that code) for the virtual lab, else the real dataset's name."""
    real = controlled_dir(profile, seed, dataset, data_path) / "real.h5"
    attrs = read_file_attrs(real)
    if attrs.get("real_is_emulated"):
        return f"emulated by the virtual lab ({attrs.get('reality_version', 'reality-1: before registration error')})"
    return f"real images of {dataset}"


def run_hip_experiment(profile: str | Profile = "smoke", *, seed: int = 0, dataset: str = "lab",
                       train_domain: str = "realistic", dr_preset: str | dict = "strong", test_group: str = "01",
                       threshold: float = 0.9, force: bool = False, progress: bool = True,
                       data_path: str | None = None, return_model: bool = False, device: str = "auto"
                       ) -> dict[str, Any]:
    """Train on all specimens but ``test_group`` and test on its real images; returns the stored record.

    A validation split (``profile.train.val_fraction`` of each training specimen's images, drawn per
    seed) selects the best epoch, and the run records whether it converged
    (:func:`~synthex_lib.learning.training.convergence`). With ``return_model=True`` the record also
    carries the trained ``model`` and the test ``evaluation`` (predictions), which are not stored in the
    JSON. ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; not part of the run key.
    """
    profile = get_profile(profile)
    if train_domain not in DOMAINS:
        hint = " (adaptation rows: experiments.hip_adaptation)" if train_domain in ADAPTED else ""
        raise ConfigError(f"unknown train_domain {train_domain!r}: choose one of {', '.join(DOMAINS)}{hint}")
    dr_preset = canonical_preset(dr_preset)
    params = run_parameters(profile, seed, dataset, train_domain, dr_preset, test_group, threshold, data_path)
    ckpt = paths.results_dir(profile.name) / "checkpoints" / f"{results.run_id(KIND, params)}.pt"
    existing = None if force else results.find_record(profile.name, KIND, params)
    if existing is not None and not (return_model and not ckpt.exists()):
        if return_model:
            return _attach_model(existing, profile, ckpt, seed, dataset, test_group, threshold, data_path)
        return existing
    if force and ckpt.exists():
        ckpt.unlink()

    folder = controlled_dir(profile, seed, dataset, data_path)
    return train_and_store(profile, params, folder, folder / f"{train_domain}.h5", test_group, seed, dr_preset,
                           threshold, results.now_iso(), ckpt, progress=progress, device=device,
                           return_model=return_model)


def train_and_store(profile: Profile, params: dict[str, Any], folder: Path, train_file: Path, test_group: str,
                    seed: int, dr_preset: str | dict, threshold: float, started: str, ckpt: Path, *,
                    progress: bool = True, device: str = "auto", return_model: bool = False,
                    extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Train on the training specimens' images of ``train_file`` (validation split, best epoch, checkpoint
    ``ckpt`` resumed), record convergence, test on ``test_group``'s real images and store the run under the key
    of ``params``."""
    pool, train_idx, val_idx = training_pool(profile, folder, train_file, test_group, seed)
    model, state = train_multitask(Subset(pool, train_idx), profile, seed=seed, dr_preset=dr_preset, checkpoint=ckpt,
                                   progress=progress, device=device,
                                   val_ds=Subset(pool, val_idx) if len(val_idx) else None)
    conv = convergence(state.history)
    metrics = {"train_images": len(train_idx), "val_images": len(val_idx),
               "final_loss": state.history[-1]["loss"] if state.history else float("nan"),
               "best_epoch": state.best_epoch, "best_val_loss": state.best_val_loss,
               "converged": conv["converged"], "tail_improvement": conv["tail_improvement"],
               "convergence_criterion": conv["criterion"], **(extra or {})}
    return evaluate_and_store(model, profile, params, folder, test_group, threshold, started, state.history, metrics,
                              device=device, return_model=return_model)


def training_pool(profile: Profile, folder: Path, train_file: Path, test_group: str, seed: int
                  ) -> tuple[ImageDataset, list[int], list[int]]:
    """The training specimens' images of ``train_file`` (every group of the controlled dataset in ``folder``
    but ``test_group``) with the (training, validation) split of :func:`validation_split`."""
    groups = list_groups(folder / "real.h5")
    if test_group not in groups:
        raise ConfigError(f"test_group {test_group!r} is not in {folder / 'real.h5'}: choose one of {groups}")
    pool = ImageDataset(train_file, [g for g in groups if g != test_group], image_size=profile.train.image_size)
    train_idx, val_idx = validation_split(pool.group_of, profile.train.val_fraction, seed)
    return pool, train_idx, val_idx


def evaluate_and_store(model: Any, profile: Profile, params: dict[str, Any], folder: Path, test_group: str,
                       threshold: float, started: str, history: list[dict[str, Any]], extra: dict[str, Any], *,
                       device: str = "auto", return_model: bool = False) -> dict[str, Any]:
    """Test ``model`` on the real images of ``test_group``, store the run's record (metrics, per-image values,
    ``history``) under the key of ``params`` and return it (with the model and predictions when asked)."""
    ev, test_ds, pixel_mm = evaluate_file(model, profile, folder / "real.h5", [test_group], threshold, device)
    metrics = summarize_hip(ev) | {"pixel_mm": pixel_mm, **extra}
    more: dict[str, Any] = {"history": history}
    if (folder / CROSS_SCANNER_FILE).exists():  # the lab's Loop-X-like specimen: never trained on
        groups = list_groups(folder / CROSS_SCANNER_FILE)
        ev_x, _, px_x = evaluate_file(model, profile, folder / CROSS_SCANNER_FILE, groups, threshold, device)
        more["cross_scanner"] = {"file": CROSS_SCANNER_FILE, "groups": groups,
                                 "metrics": summarize_hip(ev_x) | {"pixel_mm": px_x},
                                 "per_image": per_image_values(ev_x)}
    rec = results.make_record(KIND, params, metrics, started=started, per_image=per_image_values(ev), extra=more)
    results.save_record(rec, profile.name)
    if return_model:
        rec = dict(rec, model=model, evaluation=ev, test_dataset=test_ds)
    return rec


def evaluate_file(model: Any, profile: Profile, path: Path, groups: list[str], threshold: float,
                  device: str = "auto") -> tuple[dict[str, Any], ImageDataset, float]:
    """Test ``model`` on the images of ``groups`` of the real-image file ``path``, at the profile's network size:
    (the evaluation of :func:`~synthex_lib.learning.evaluation.evaluate_hip`, the test dataset, its pixel size
    in mm at that size)."""
    test_ds = ImageDataset(path, groups, image_size=profile.train.image_size)
    pixel_mm = float(read_file_attrs(path)["pixel_mm"]) * test_ds.scale
    return evaluate_hip(model, test_ds, profile.train.heatmap_sigma_px, pixel_mm, threshold, device=device), \
        test_ds, pixel_mm


def per_image_values(ev: dict[str, Any]) -> dict[str, list[Any]]:
    """The per-image values of an evaluation that a record stores (lists, JSON-ready)."""
    return {k: np.asarray(ev[k]).tolist() for k in PER_IMAGE_KEYS}


def _attach_model(rec: dict[str, Any], profile: Profile, ckpt: Path, seed: int, dataset: str, test_group: str,
                  threshold: float, data_path: str | None) -> dict[str, Any]:
    model = load_trained_model(ckpt, profile)
    folder = controlled_dir(profile, seed, dataset, data_path)
    ev, test_ds, _ = evaluate_file(model, profile, folder / "real.h5", [test_group], threshold)
    return dict(rec, model=model, evaluation=ev, test_dataset=test_ds)


def validation_split(groups: np.ndarray, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) indices: ``round(fraction * n)`` images of each specimen group (at least one
    when the group has two or more), drawn by ``seeded_rng(seed, "validation", group)``, to validation."""
    groups = np.asarray(groups)
    train, val = [], []
    for g in sorted(set(groups.tolist())):
        idx = np.flatnonzero(groups == g)
        k = int(round(fraction * idx.size))
        if fraction > 0 and idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        pick = set(seeded_rng(seed, "validation", str(g)).permutation(idx)[:k].tolist())
        val += [int(i) for i in idx if i in pick]
        train += [int(i) for i in idx if i not in pick]
    return sorted(train), sorted(val)


def held_out_groups(profile: Profile, seed: int = 0, dataset: str = "lab", data_path: str | None = None) -> list[str]:
    """The first ``profile.folds`` specimen groups of the controlled dataset (the held-out specimens)."""
    groups = list_groups(controlled_dir(profile, seed, dataset, data_path) / "real.h5")
    return groups[: profile.folds]
