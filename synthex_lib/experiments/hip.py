"""The hip-imaging experiments of the paper: leave-one-specimen-out Sim2Real and Real2Real training
on the precisely matched (controlled) dataset, and the Table 1 sweep.

Each run trains on every specimen but one (images of ``train_domain``: real, realistic,
heuristic or naive), then tests on the held-out specimen's *real* images (in the virtual lab:
images of the emulated CIOS-like scanner). Runs are stored in the results store and skipped
when already there, so a sweep resumes after an interruption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from synthex_lib.core import paths
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest
from synthex_lib.datasets.layout import list_groups, read_file_attrs
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.experiments import results
from synthex_lib.experiments.paper_numbers import paper_hip_table
from synthex_lib.generate.cache import dataset_key
from synthex_lib.generate.engine import ensure_dataset
from synthex_lib.learning.evaluation import evaluate_hip, summarize_hip
from synthex_lib.learning.stats import format_mean_std, one_tailed_ttest, summarize
from synthex_lib.learning.training import load_trained_model, train_multitask

KIND = "hip-controlled"
DOMAINS = ("real", "realistic", "heuristic", "naive")
PRESETS = ("none", "regular", "strong", "official-regular", "official-strong")


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


def controlled_dir(profile: Profile, seed: int, dataset: str, data_path: str | None = None) -> Path:
    """The folder with real.h5, realistic.h5, heuristic.h5 and naive.h5 (generated if missing)."""

    kwargs = {"path": data_path} if data_path else {}
    return Path(ensure_dataset("hip-controlled", profile, seed=seed, dataset=dataset, **kwargs))


def run_hip_experiment(profile: str | Profile = "smoke", *, seed: int = 0, dataset: str = "lab",
                       train_domain: str = "realistic", dr_preset: str | dict = "strong", test_group: str = "01",
                       threshold: float = 0.9, force: bool = False, progress: bool = True,
                       data_path: str | None = None, return_model: bool = False) -> dict[str, Any]:
    """Train on all specimens but ``test_group`` and test on its real images; returns the stored record.

    With ``return_model=True`` the record also carries the trained ``model`` and the test
    ``evaluation`` (predictions), which are not stored in the JSON.
    """
    profile = get_profile(profile)
    if train_domain not in DOMAINS:
        raise ConfigError(f"unknown train_domain {train_domain!r}: choose one of {', '.join(DOMAINS)}")
    params = run_parameters(profile, seed, dataset, train_domain, dr_preset, test_group, threshold, data_path)
    ckpt = paths.results_dir(profile.name) / "checkpoints" / f"{results.run_id(KIND, params)}.pt"
    existing = None if force else results.find_record(profile.name, KIND, params)
    if existing is not None and not (return_model and not ckpt.exists()):
        if return_model:
            return _attach_model(existing, profile, ckpt, seed, dataset, test_group, threshold, data_path)
        return existing
    if force and ckpt.exists():
        ckpt.unlink()

    started = results.now_iso()
    folder = controlled_dir(profile, seed, dataset, data_path)
    groups = [g for g in list_groups(folder / "real.h5")]
    if test_group not in groups:
        raise ConfigError(f"test_group {test_group!r} is not in {folder / 'real.h5'}: choose one of {groups}")
    train_groups = [g for g in groups if g != test_group]
    train_ds = ImageDataset(folder / f"{train_domain}.h5", train_groups, image_size=profile.train.image_size)
    test_ds = ImageDataset(folder / "real.h5", [test_group], image_size=profile.train.image_size)
    pixel_mm = float(read_file_attrs(folder / "real.h5")["pixel_mm"]) * test_ds.scale
    model, state = train_multitask(train_ds, profile, seed=seed, dr_preset=dr_preset, checkpoint=ckpt,
                                   progress=progress)
    ev = evaluate_hip(model, test_ds, profile.train.heatmap_sigma_px, pixel_mm, threshold)
    metrics = summarize_hip(ev) | {"pixel_mm": pixel_mm, "train_images": len(train_ds),
                                   "final_loss": state.history[-1]["loss"] if state.history else float("nan")}
    per_image = {k: np.asarray(ev[k]).tolist() for k in ("dice", "distance_mm", "error_mm", "confidence", "visible")}
    rec = results.make_record(KIND, params, metrics, started=started, per_image=per_image,
                              extra={"history": state.history})
    results.save_record(rec, profile.name)
    if return_model:
        rec = dict(rec, model=model, evaluation=ev, test_dataset=test_ds)
    return rec


def _attach_model(rec: dict[str, Any], profile: Profile, ckpt: Path, seed: int, dataset: str, test_group: str,
                  threshold: float, data_path: str | None) -> dict[str, Any]:

    model = load_trained_model(ckpt, profile)
    folder = controlled_dir(profile, seed, dataset, data_path)
    test_ds = ImageDataset(folder / "real.h5", [test_group], image_size=profile.train.image_size)
    ev = evaluate_hip(model, test_ds, profile.train.heatmap_sigma_px, rec["metrics"]["pixel_mm"], threshold)
    return dict(rec, model=model, evaluation=ev, test_dataset=test_ds)


def held_out_groups(profile: Profile, seed: int = 0, dataset: str = "lab", data_path: str | None = None) -> list[str]:
    """The first ``profile.folds`` specimen groups of the controlled dataset (the held-out specimens)."""
    groups = list_groups(controlled_dir(profile, seed, dataset, data_path) / "real.h5")
    return groups[: profile.folds]


def hip_sweep(profile: str | Profile = "smoke", *, seed: int = 0, dataset: str = "lab",
              domains: tuple[str, ...] = DOMAINS, presets: tuple[str, ...] = ("regular", "strong"),
              progress: bool = True, data_path: str | None = None) -> list[dict[str, Any]]:
    """Run (or read back) every (domain, preset, held-out specimen) of the controlled study."""
    profile = get_profile(profile)
    folds = held_out_groups(profile, seed, dataset, data_path)
    jobs = [(d, p, g) for d in domains for p in presets for g in folds]
    out = []
    for d, p, g in tqdm(jobs, desc="hip sweep", disable=not progress):
        out.append(run_hip_experiment(profile, seed=seed, dataset=dataset, train_domain=d, dr_preset=p, test_group=g,
                                      progress=False, data_path=data_path))
    return out


def table1(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Pool per-image values over held-out specimens (as the official script) per (domain, preset)."""
    rows = []
    keyed: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        p = r["parameters"]
        keyed.setdefault((p["train_domain"], str(p["dr_preset"])), []).append(r)
    for (dom, preset), recs in keyed.items():
        err = np.concatenate([np.asarray(r["per_image"]["error_mm"], float).ravel() for r in recs])
        vis = np.concatenate([np.asarray(r["per_image"]["visible"], bool).ravel() for r in recs])
        dice = np.concatenate([np.asarray(r["per_image"]["dice"], float) for r in recs])
        lm, dc = summarize(err), summarize(dice)
        rows.append({"train_domain": dom, "dr_preset": preset, "folds": len(recs),
                     "landmark_mm_mean": lm["mean"], "landmark_mm_std": lm["std"],
                     "detection_rate": lm["n"] / max(int(vis.sum()), 1),
                     "dice_mean": dc["mean"], "dice_std": dc["std"], "test_images": dc["n"]})
    df = pd.DataFrame(rows)
    if not df.empty:
        order = {d: i for i, d in enumerate(DOMAINS)}
        df = df.sort_values(["dr_preset", "train_domain"], key=lambda s: s.map(order) if s.name == "train_domain"
                            else s).reset_index(drop=True)
    return df


def compare_with_paper(ours: pd.DataFrame, profile: str, dataset: str) -> pd.DataFrame:
    """Ours beside the paper's preprint Tables 4/5 (360 px), one row per (domain, preset)."""

    paper = paper_hip_table("preprint")
    merged = ours.merge(paper, on=["train_domain", "dr_preset"], how="left", suffixes=("", "_paper"))
    return pd.DataFrame({
        "train domain": merged["train_domain"], "DR": merged["dr_preset"],
        f"landmark mm (ours, {dataset}, {profile})": [format_mean_std(m, s) for m, s in
                                                      zip(merged["landmark_mm_mean"], merged["landmark_mm_std"],
                                                          strict=True)],
        "detected (ours)": [f"{x:.0%}" for x in merged["detection_rate"]],
        "landmark mm (paper)": [format_mean_std(m, s) for m, s in
                                zip(merged["landmark_mm_mean_paper"], merged["landmark_mm_std_paper"], strict=True)],
        f"Dice (ours, {dataset}, {profile})": [format_mean_std(m, s, 3) for m, s in
                                               zip(merged["dice_mean"], merged["dice_std"], strict=True)],
        "Dice (paper)": [format_mean_std(m, s, 3) for m, s in
                         zip(merged["dice_mean_paper"], merged["dice_std_paper"], strict=True)],
    })


def pooled(records: list[dict[str, Any]], train_domain: str, dr_preset: str, key: str) -> np.ndarray:
    """Per-image (or per-landmark) values of ``key`` pooled over the held-out specimens of one method."""
    vals = [np.asarray(r["per_image"][key], float).ravel() for r in records
            if r["parameters"]["train_domain"] == train_domain and str(r["parameters"]["dr_preset"]) == dr_preset]
    return np.concatenate(vals) if vals else np.array([])


def check_claims(records: list[dict[str, Any]], preset: str = "strong") -> pd.DataFrame:
    """The paper's controlled-study claims, tested on our runs with one-tailed Welch t-tests.

    Returns one row per claim: what the paper found, what we measured, the P value, and whether
    the claim held here (at P < 0.05 for "better", or no significant difference for "on par").
    """

    rows = []

    def comp(a: tuple[str, str], b: tuple[str, str]) -> tuple[float, float, float, float]:
        ea, eb = pooled(records, *a, "error_mm"), pooled(records, *b, "error_mm")
        da, db = pooled(records, *a, "dice"), pooled(records, *b, "dice")
        p_dice = one_tailed_ttest(da, db, "greater")
        p_err = one_tailed_ttest(ea, eb, "less")
        return float(np.nanmean(da)) if da.size else np.nan, float(np.nanmean(db)) if db.size else np.nan, p_dice, p_err

    for other in ("heuristic", "naive"):
        da, db, p, pe = comp(("realistic", preset), (other, preset))
        if np.isnan(da) or np.isnan(db):
            continue
        rows.append({"claim": f"realistic beats {other} ({preset} DR)", "paper": "held (Table 1)",
                     "ours": f"Dice {da:.3f} vs {db:.3f}; landmark P={pe:.3g}", "P (Dice)": p,
                     "held here": bool(p < 0.05)})
    da, db, p, _ = comp(("realistic", preset), ("real", preset))
    if not (np.isnan(da) or np.isnan(db)):
        p_two = 2 * min(p, 1 - p) if np.isfinite(p) else np.nan
        rows.append({"claim": f"realistic + {preset} DR on par with real data", "paper": "held (6.44 vs 6.46 mm)",
                     "ours": f"Dice {da:.3f} vs {db:.3f}", "P (Dice)": p_two,
                     "held here": bool(p_two >= 0.05 or da >= db)})
    for dom in DOMAINS:
        ds_, dr_, p, _ = comp((dom, "strong"), (dom, "regular"))
        if np.isnan(ds_) or np.isnan(dr_):
            continue
        expected = "not for naive" if dom == "naive" else "held"
        rows.append({"claim": f"strong DR beats regular DR ({dom})", "paper": expected,
                     "ours": f"Dice {ds_:.3f} vs {dr_:.3f}", "P (Dice)": p, "held here": bool(p < 0.05)})
    return pd.DataFrame(rows)
