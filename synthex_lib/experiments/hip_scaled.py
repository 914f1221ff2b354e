"""The scaled-up hip study and the training-set size study (paper: NMI Table 1 "scaled-up", Extended Data
Fig. 3 and Table 3; preprint Table 1 and Fig. 5g-h), with the cross-scanner test of every model.

A scaled-up run trains on the realistic images of the ``scale`` cohort (task ``hip-scaled``: its CTs, each
imaged ``profile.sim.sim_per_specimen`` times by the Methods' pose sampler, none of them a lab specimen), with a
validation split per CT that selects the best epoch, and tests on every real image of the controlled cohort
(all lab specimens) and on the real images of the lab's cross-scanner specimen (Loop-X-like C-arm).
``train_size`` trains on the first that many images of one seeded permutation of the training images, so the
smaller training sets of the size study are nested in the larger ones. The tables, claims and verdicts are in
:mod:`synthex_lib.experiments.scaled_analysis`, outside every run key.
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
from synthex_lib.datasets.layout import list_groups
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.experiments import hip, results
from synthex_lib.generate.cache import dataset_key
from synthex_lib.generate.engine import ensure_dataset
from synthex_lib.learning.evaluation import summarize_hip
from synthex_lib.learning.training import convergence, train_multitask

KIND = "hip-scaled"
#: the training domain of a scaled-up run, as the tables name it
TRAIN_DOMAIN = "realistic-scaled"
#: the modules whose code (with everything they import) decides a scaled-up run's result
RUN_CODE_ROOTS = (*hip.RUN_CODE_ROOTS, "synthex_lib.experiments.hip_scaled")
#: the paper's training-set sizes (NMI Extended Data Table 3)
PAPER_SIZES = (1_000, 2_000, 5_000, 10_000)
#: the smallest training set the size study trains on
MIN_SIZE = 4


def scaled_dir(profile: Profile, seed: int = 0) -> Path:
    """The folder with the scaled-up set's ``realistic.h5`` (generated if missing)."""
    return Path(ensure_dataset("hip-scaled", profile, seed=seed))


def size_ladder(n_train: int) -> list[int]:
    """The training-set sizes of the size study for a scaled-up set of ``n_train`` training images: the paper's
    four sizes (1k, 2k, 5k, 10k) when the set has 10k or more, else those sizes scaled so that the largest is
    ``n_train``; sizes below :data:`MIN_SIZE` are dropped."""
    scale = min(1.0, n_train / PAPER_SIZES[-1])
    sizes = sorted({int(round(s * scale)) for s in PAPER_SIZES})
    return [s for s in sizes if s >= MIN_SIZE]


def run_parameters(profile: Profile, seed: int, dr_preset: str | dict, train_size: int, threshold: float,
                   dataset: str = "lab", data_path: str | None = None) -> dict[str, Any]:
    """Everything a scaled-up run's result depends on (hashed into its id): the training set (its dataset key
    and ``train_size``, 0 = all), the test set (the controlled dataset's key), every training field and the
    digest of the training and evaluation code."""
    source_options = {"path": str(data_path)} if data_path else {}
    return {
        "profile": profile.name, "seed": int(seed), "dataset": dataset, "task": KIND, "train_domain": TRAIN_DOMAIN,
        "test_domain": "real", "dr_preset": dr_preset, "train_size": int(train_size), "threshold": float(threshold),
        "train": profile.train.to_dict(), "dataset_key": dataset_key(KIND, profile, seed),
        "test_dataset_key": dataset_key("hip-controlled", profile, seed, dataset, source_options),
        "code": code_digest(*RUN_CODE_ROOTS),
    }


def training_split(profile: Profile, train_file: Path, seed: int, train_size: int
                   ) -> tuple[ImageDataset, list[int], list[int]]:
    """The scaled-up pool (every CT of ``train_file``), its per-CT validation split and, with ``train_size``
    > 0, the first ``train_size`` training indices of the permutation ``seeded_rng(seed, "train-size")``."""
    pool = ImageDataset(train_file, list_groups(train_file), image_size=profile.train.image_size)
    train_idx, val_idx = hip.validation_split(pool.group_of, profile.train.val_fraction, seed)
    if train_size:
        if train_size > len(train_idx):
            raise ConfigError(f"parameter 'train_size' is {train_size} but the scaled-up set of profile "
                              f"{profile.name!r} has {len(train_idx)} training images; use at most that, or 0 for all")
        order = seeded_rng(seed, "train-size").permutation(np.asarray(train_idx))
        train_idx = sorted(int(i) for i in order[:train_size])
    return pool, train_idx, val_idx


def run_scaled_experiment(profile: str | Profile = "smoke", *, seed: int = 0, dr_preset: str | dict = "strong",
                          train_size: int = 0, threshold: float = 0.9, dataset: str = "lab",
                          data_path: str | None = None, force: bool = False, progress: bool = True,
                          device: str = "auto") -> dict[str, Any]:
    """Train on the scaled-up set (``train_size`` images, 0 = all) and test on every real image of the
    controlled dataset (``dataset``: the lab, or DeepFluoro from ``data_path``) and on the cross-scanner
    images when the dataset has them; returns the stored record (read back when already run).

    The record's ``per_image`` holds, per held-out group of the controlled dataset, the values of
    :data:`hip.PER_IMAGE_KEYS` (``per_image[group][key]``), so that each group pairs with the controlled study's
    run that held it out; ``metrics`` pool every group; ``cross_scanner`` is as in the controlled study's records.
    """
    profile = get_profile(profile)
    if isinstance(train_size, bool) or not isinstance(train_size, int) or train_size < 0:
        raise ConfigError(f"parameter 'train_size' must be an integer >= 0 (0 = all images), got {train_size!r}")
    dr_preset = hip.canonical_preset(dr_preset)
    params = run_parameters(profile, seed, dr_preset, train_size, threshold, dataset, data_path)
    rid = results.run_id(KIND, params)
    ckpt = paths.results_dir(profile.name) / "checkpoints" / f"{rid}.pt"
    existing = None if force else results.find_record(profile.name, KIND, params)
    if existing is not None:
        return existing
    if force and ckpt.exists():
        ckpt.unlink()
    started = results.now_iso()
    test_folder = hip.controlled_dir(profile, seed, dataset, data_path)
    pool, train_idx, val_idx = training_split(profile, scaled_dir(profile, seed) / "realistic.h5", seed, train_size)
    model, state = train_multitask(Subset(pool, train_idx), profile, seed=seed, dr_preset=dr_preset, checkpoint=ckpt,
                                   progress=progress, device=device,
                                   val_ds=Subset(pool, val_idx) if len(val_idx) else None)
    conv = convergence(state.history)
    groups = list_groups(test_folder / "real.h5")
    per_group, evs = {}, []
    for g in groups:
        ev, _, pixel_mm = hip.evaluate_file(model, profile, test_folder / "real.h5", [g], threshold, device)
        per_group[g] = hip.per_image_values(ev)
        evs.append(ev)
    pooled = {k: np.concatenate([np.asarray(ev[k]) for ev in evs]) for k in ("dice", "error_mm", "visible")}
    metrics = summarize_hip(pooled) | {
        "pixel_mm": pixel_mm, "test_groups": groups, "train_images": len(train_idx), "val_images": len(val_idx),
        "train_specimens": len(set(pool.group_of.tolist())), "final_loss": state.history[-1]["loss"],
        "best_epoch": state.best_epoch, "best_val_loss": state.best_val_loss, "converged": conv["converged"],
        "tail_improvement": conv["tail_improvement"], "convergence_criterion": conv["criterion"]}
    more: dict[str, Any] = {"history": state.history}
    if (test_folder / hip.CROSS_SCANNER_FILE).exists():
        xgroups = list_groups(test_folder / hip.CROSS_SCANNER_FILE)
        ev_x, _, px_x = hip.evaluate_file(model, profile, test_folder / hip.CROSS_SCANNER_FILE, xgroups, threshold,
                                          device)
        more["cross_scanner"] = {"file": hip.CROSS_SCANNER_FILE, "groups": xgroups,
                                 "metrics": summarize_hip(ev_x) | {"pixel_mm": px_x},
                                 "per_image": hip.per_image_values(ev_x)}
    rec = results.make_record(KIND, params, metrics, started=started, per_image=per_group, extra=more)
    results.save_record(rec, profile.name)
    return rec


def scaled_specs_kwargs(profile: Profile, *, seed: int = 0, presets: tuple[str, ...] = ("strong",),
                        sizes: bool = True, dataset: str = "lab", data_path: str | None = None
                        ) -> list[dict[str, Any]]:
    """The arguments of every scaled-up run a study needs: each preset on the whole set, and (``sizes``) the
    smaller training sets of :func:`size_ladder` with the first preset."""
    n_train = len(training_split(profile, scaled_dir(profile, seed) / "realistic.h5", seed, 0)[1])
    base = {"seed": seed, "dataset": dataset, "data_path": data_path}
    out = [{**base, "dr_preset": p, "train_size": 0} for p in presets]
    if sizes:
        out += [{**base, "dr_preset": presets[0], "train_size": n} for n in size_ladder(n_train) if n < n_train]
    return out
