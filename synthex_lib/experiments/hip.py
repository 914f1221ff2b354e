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
from torch.utils.data import Subset

from synthex_lib.core import paths
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.datasets.layout import list_groups, read_file_attrs
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.experiments import results
from synthex_lib.experiments.paper_numbers import paper_hip_table
from synthex_lib.generate.cache import dataset_key
from synthex_lib.generate.engine import ensure_dataset
from synthex_lib.learning.evaluation import evaluate_hip, summarize_hip
from synthex_lib.learning.stats import (
    format_mean_std,
    format_p,
    holm,
    mean_difference,
    paired_test,
    paired_tost,
    paired_values,
    summarize,
)
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
    test_ds = ImageDataset(folder / "real.h5", [test_group], image_size=profile.train.image_size)
    pixel_mm = float(read_file_attrs(folder / "real.h5")["pixel_mm"]) * test_ds.scale
    ev = evaluate_hip(model, test_ds, profile.train.heatmap_sigma_px, pixel_mm, threshold, device=device)
    metrics = summarize_hip(ev) | {"pixel_mm": pixel_mm, **extra}
    per_image = {k: np.asarray(ev[k]).tolist() for k in ("dice", "distance_mm", "error_mm", "confidence", "visible")}
    rec = results.make_record(KIND, params, metrics, started=started, per_image=per_image,
                              extra={"history": history})
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
        order = {d: i for i, d in enumerate(ALL_DOMAINS)}
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
        "landmark mm (paper: preprint Tables 4-5)": [format_mean_std(m, s) for m, s in
                                zip(merged["landmark_mm_mean_paper"], merged["landmark_mm_std_paper"], strict=True)],
        f"Dice (ours, {dataset}, {profile})": [format_mean_std(m, s, 3) for m, s in
                                               zip(merged["dice_mean"], merged["dice_std"], strict=True)],
        "Dice (paper: preprint Tables 4-5)": [format_mean_std(m, s, 3) for m, s in
                         zip(merged["dice_mean_paper"], merged["dice_std_paper"], strict=True)],
    })


def pooled(records: list[dict[str, Any]], train_domain: str, dr_preset: str, key: str) -> np.ndarray:
    """Per-image (or per-landmark) values of ``key`` pooled over the held-out specimens of one method."""
    vals = [np.asarray(r["per_image"][key], float).ravel() for r in records
            if r["parameters"]["train_domain"] == train_domain and str(r["parameters"]["dr_preset"]) == dr_preset]
    return np.concatenate(vals) if vals else np.array([])


def activation_curves(records: list[dict[str, Any]], domains: list[str] | tuple[str, ...],
                      presets: list[str] | tuple[str, ...], groups: list[str] | None = None
                      ) -> dict[str, dict[str, np.ndarray]]:
    """Per method ``"<domain> <preset> DR"``: the pooled per-(image, landmark) ``distance_mm``, ``confidence``
    [N, landmarks] and ``visible`` (bool) of its runs, on the held-out specimens ``groups`` (default: all), for
    :func:`~synthex_lib.figures.plots.plot_activation_panels`. Methods without runs are left out."""
    recs = [r for r in records if groups is None or r["parameters"]["test_group"] in groups]
    out: dict[str, dict[str, np.ndarray]] = {}
    for dom in domains:
        for pre in presets:
            vis = pooled(recs, dom, pre, "visible")
            if not vis.size:
                continue
            n = len(HIP_LANDMARKS)
            out[f"{dom} {pre} DR"] = {k: pooled(recs, dom, pre, k).reshape(-1, n) for k in ("distance_mm",
                                                                                            "confidence")}
            out[f"{dom} {pre} DR"]["visible"] = vis.reshape(-1, n).astype(bool)
    return out


#: equivalence margins of the "on par" claims (TOST): Dice points and landmark millimetres. The paper calls
#: 6.44 vs 6.46 mm and Dice 0.80 vs 0.79 "on par"; we accept a mean paired difference inside these bounds.
EQUIVALENCE_MARGIN = {"dice": 0.05, "error_mm": 1.0}
#: direction in which each metric is better
HIGHER_IS_BETTER = {"dice": True, "error_mm": False}
METRIC_NAMES = {"dice": "Dice", "error_mm": "landmark mm"}


def paired_pool(records: list[dict[str, Any]], a: tuple[str, str], b: tuple[str, str], key: str
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-image (or per image and landmark) values of ``key`` of methods ``a`` and ``b`` = (train domain,
    preset), on the held-out specimens both were tested on, in the same order: a paired design. The third
    value says whether every run involved met the convergence criterion."""
    def runs(m: tuple[str, str]) -> dict[str, dict[str, Any]]:
        return {r["parameters"]["test_group"]: r for r in records
                if r["parameters"]["train_domain"] == m[0] and str(r["parameters"]["dr_preset"]) == m[1]}

    ra, rb = runs(a), runs(b)
    common = sorted(set(ra) & set(rb))
    va = [np.asarray(ra[g]["per_image"][key], float).ravel() for g in common]
    vb = [np.asarray(rb[g]["per_image"][key], float).ravel() for g in common]
    converged = bool(common) and all(bool(r["metrics"].get("converged", False))
                                     for g in common for r in (ra[g], rb[g]))
    if not common:
        return np.array([]), np.array([]), False
    return np.concatenate(va), np.concatenate(vb), converged


def claims_table(preset: str = "strong", adaptation: bool = False) -> list[dict[str, Any]]:
    """The paper's controlled-study claims: (claim, source, kind, method A, method B). ``better``: A beats B;
    ``equivalent``: A on par with B. ``adaptation`` adds the claims on CycleGAN and ADDA."""
    rows = [
        {"claim": f"realistic beats heuristic ({preset} DR)", "paper": "held (NMI Table 1; preprint Tables 4-5)",
         "kind": "better", "a": ("realistic", preset), "b": ("heuristic", preset)},
        {"claim": f"realistic beats naive ({preset} DR)", "paper": "held (NMI Table 1; preprint Tables 4-5)",
         "kind": "better", "a": ("realistic", preset), "b": ("naive", preset)},
        {"claim": f"realistic on par with real data ({preset} DR)",
         "paper": "held: 6.44 vs 6.46 mm, Dice 0.80 vs 0.79 (NMI Table 1)", "kind": "equivalent",
         "a": ("realistic", preset), "b": ("real", preset)},
    ]
    for dom in ("real", "realistic", "heuristic"):
        rows.append({"claim": f"strong DR beats regular DR ({dom})", "paper": "held (NMI text; preprint Table 5)",
                     "kind": "better", "a": (dom, "strong"), "b": (dom, "regular")})
    rows.append({"claim": "regular DR beats strong DR (naive: the paper's exception)",
                 "paper": "held: strong DR much worse on naive (NMI text)", "kind": "better",
                 "a": ("naive", "regular"), "b": ("naive", "strong")})
    if adaptation:
        rows += [
            {"claim": f"CycleGAN on realistic on par with real data ({preset} DR)",
             "paper": "held: 6.62 vs 6.46 mm, Dice 0.80 vs 0.79 (NMI text, Fig. 4d)", "kind": "equivalent",
             "a": ("realistic-cyclegan", preset), "b": ("real", preset)},
            {"claim": f"CycleGAN on naive on par with real data ({preset} DR)",
             "paper": "held: 'comparable performance to Real2Real' (NMI text, Fig. 4f; preprint Tables 4-5)",
             "kind": "equivalent", "a": ("naive-cyclegan", preset), "b": ("real", preset)},
            {"claim": "CycleGAN beats ADDA (realistic, regular DR)",
             "paper": "held: ADDA 'does not perform at the level of CycleGAN' (NMI text; preprint Tables 4-5)",
             "kind": "better", "a": ("realistic-cyclegan", "regular"), "b": ("realistic-adda", "regular")},
            {"claim": "ADDA beats no adaptation (realistic, regular DR)",
             "paper": "held: 'ADDA training also improves the performance' (NMI text)", "kind": "better",
             "a": ("realistic-adda", "regular"), "b": ("realistic", "regular")},
            {"claim": "ADDA: regular DR beats strong DR (realistic)",
             "paper": "held on mm: 11.01 vs 12.92 (preprint Tables 4-5; NMI Fig. 4e,i)", "kind": "better",
             "a": ("realistic-adda", "regular"), "b": ("realistic-adda", "strong")},
        ]
    return rows


def check_claims(records: list[dict[str, Any]], preset: str = "strong", alpha: float = 0.05) -> pd.DataFrame:
    """The paper's controlled-study claims tested on our runs, as a paired design.

    Every method is tested on the same real images, so each claim compares paired values: per-image Dice,
    and per (image, landmark) millimetre errors where both methods detected the landmark. "Beats" is a
    one-tailed Wilcoxon signed-rank test; "on par" is an equivalence test (paired TOST) within
    :data:`EQUIVALENCE_MARGIN`, never a non-significant difference. P values are Holm-corrected across
    the table. A claim whose runs did not all converge, or that has fewer than 2 pairs, is "not testable".

    Returns one row per (claim, metric): the paper's finding and its source, our means, the mean paired
    difference with its 95 % CI, the test, P, Holm-adjusted P and the verdict (held / not held / not testable).
    """
    rows = []
    adaptation = any(r["parameters"]["train_domain"] in ADAPTED for r in records)
    for c in claims_table(preset, adaptation):
        for key in ("dice", "error_mm"):
            va, vb, converged = paired_pool(records, c["a"], c["b"], key)
            x, y = paired_values(va, vb) if va.size and va.size == vb.size else (np.array([]), np.array([]))
            eff = mean_difference(x, y)
            better = "greater" if HIGHER_IS_BETTER[key] else "less"
            if c["kind"] == "better":
                p, test = paired_test(x, y, better), "Wilcoxon signed-rank, one-tailed"
            else:
                p, test = paired_tost(x, y, EQUIVALENCE_MARGIN[key]), f"TOST, margin {EQUIVALENCE_MARGIN[key]:g}"
            reason = "" if converged else "runs not converged"
            if not np.isfinite(p):
                reason = reason or "fewer than 2 pairs"
            digits = 3 if key == "dice" else 2
            rows.append({
                "claim": c["claim"], "metric": METRIC_NAMES[key], "paper": c["paper"],
                "ours (A vs B)": (f"{np.mean(x):.{digits}f} vs {np.mean(y):.{digits}f}" if x.size else "n/a"),
                "A - B (95% CI)": (f"{eff['diff']:+.{digits}f} [{eff['low']:+.{digits}f}, {eff['high']:+.{digits}f}]"
                                   if np.isfinite(eff["diff"]) else "n/a"),
                "pairs": int(x.size), "test": test, "_p": p, "_testable": not reason, "_reason": reason})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    testable = df["_testable"].to_numpy()
    adjusted = holm(np.where(testable, df["_p"].to_numpy(float), np.nan))
    df["P"] = [format_p(v) for v in df["_p"]]
    df["P (Holm)"] = [format_p(v) for v in adjusted]
    df["verdict"] = [("held" if a < alpha else "not held") if ok else f"not testable ({why})"
                     for a, ok, why in zip(adjusted, testable, df["_reason"], strict=True)]
    return df.drop(columns=["_p", "_testable", "_reason"])


def verdict_summary(claims: pd.DataFrame) -> dict[str, int]:
    """How many claim rows held, did not hold, and could not be tested."""
    v = claims["verdict"] if not claims.empty else pd.Series([], dtype=str)
    return {"held": int((v == "held").sum()), "not held": int((v == "not held").sum()),
            "not testable": int(v.str.startswith("not testable").sum())}


#: floors that show the network learns at all (Real2Real on held-out specimens, pooled): not targets for the
#: paper's claims. Below them a study's comparisons say more about the training budget than about the domains.
LEARNING_FLOORS = {"dice": 0.75, "activated": 0.50}


def learning_check(records: list[dict[str, Any]], preset: str = "regular") -> dict[str, Any]:
    """Real2Real (``preset`` DR) pooled over its held-out specimens against :data:`LEARNING_FLOORS`: the pooled
    mean Dice, the fraction of visible landmarks activated, the folds, and whether both floors are met."""
    recs = [r for r in records
            if r["parameters"]["train_domain"] == "real" and str(r["parameters"]["dr_preset"]) == preset]
    if not recs:
        return {"folds": 0, "dice": float("nan"), "activated": float("nan"), "met": False, "preset": preset}
    dice = float(np.nanmean(pooled(recs, "real", preset, "dice")))
    err = pooled(recs, "real", preset, "error_mm")
    vis = pooled(recs, "real", preset, "visible").astype(bool)
    activated = float(np.isfinite(err).sum() / max(int(vis.sum()), 1))
    met = dice >= LEARNING_FLOORS["dice"] and activated >= LEARNING_FLOORS["activated"]
    return {"folds": len(recs), "dice": dice, "activated": activated, "met": bool(met), "preset": preset}


def run_verdict(rec: dict[str, Any]) -> str:
    """A short markdown verdict of one run, computed from its record: convergence (with the criterion's figure
    and the selected epoch) and the held-out results."""
    m, p = rec["metrics"], rec["parameters"]
    epochs = len(rec.get("history", []))
    tail = float(m.get("tail_improvement", float("nan")))
    if np.isfinite(tail):
        conv = (f"{'met' if m.get('converged') else '**not met**'}: over the last fifth of the epochs the validation "
                f"loss improved by {tail:.1%} of its total improvement (criterion: less than 2 %)")
    else:
        conv = f"**not met**: {epochs} epoch(s) are too few to judge (the criterion needs at least 5)"
    err = (f"landmark error {m['landmark_error_mm_mean']:.2f} ± {m['landmark_error_mm_std']:.2f} mm where activated"
           if np.isfinite(m["landmark_error_mm_mean"]) else "no landmark error (none activated)")
    return "\n\n".join([
        f"**Convergence:** {conv}; best validation epoch {m.get('best_epoch')} of {epochs}.",
        f"**Held-out specimen {p['test_group']}** ({m.get('images')} real images): Dice {m['dice_mean']:.3f}, "
        f"{m['detection_rate']:.0%} of the visible landmarks activated, {err}."])


def study_verdict(records: list[dict[str, Any]], preset: str = "strong") -> str:
    """A short markdown verdict of the controlled study, computed from the runs: how many runs met the
    convergence criterion, whether Real2Real clears the learning floors, and how many claim rows held, did not
    hold, or could not be tested."""
    n = len(records)
    conv = sum(bool(r["metrics"].get("converged", False)) for r in records)
    s = verdict_summary(check_claims(records, preset))
    lines = [f"**Convergence:** {conv} of {n} runs met the criterion (validation loss improved by less than "
             "2 % of its total improvement over the last fifth of the epochs)."]
    if n and conv < n:
        lines.append(f"**{n - conv} run(s) did not converge**: every claim that rests on them is marked "
                     "*not testable*, whatever its P value.")
    lc = learning_check(records, "regular")
    if lc["folds"]:
        word = "clears" if lc["met"] else "**does not clear**"
        lines.append(f"**Does the network learn?** Real2Real (regular DR, {lc['folds']} held-out "
                     f"specimen{'s' if lc['folds'] > 1 else ''} pooled) "
                     f"{word} the floors of Dice {LEARNING_FLOORS['dice']:.2f} and {LEARNING_FLOORS['activated']:.0%} "
                     f"activated landmarks: Dice {lc['dice']:.3f}, {lc['activated']:.0%} activated.")
    lines.append(f"**Claims** (paired tests, Holm-corrected, {preset} DR): {s['held']} held, {s['not held']} not "
                 f"held, {s['not testable']} not testable.")
    return "\n\n".join(lines)


def is_adaptation_claim(claim: str) -> bool:
    """Whether a row of :func:`claims_table` is one of the claims on CycleGAN and ADDA."""
    return "CycleGAN" in claim or "ADDA" in claim


def adaptation_verdict(records: list[dict[str, Any]], preset: str = "strong") -> str:
    """A short markdown verdict of the adaptation rows, computed from the runs: on which held-out specimens
    they ran, how many converged, and how many of the paper's claims on adaptation held, did not hold, or could
    not be tested (the claims are tested on the held-out specimens the adaptation rows ran on)."""
    adapted = [r for r in records if r["parameters"]["train_domain"] in ADAPTED]
    if not adapted:
        return "**No adaptation rows** were run: nothing on CycleGAN or ADDA can be said here."
    groups = sorted({r["parameters"]["test_group"] for r in adapted})
    on_groups = [r for r in records if r["parameters"]["test_group"] in groups]
    conv = sum(bool(r["metrics"].get("converged")) for r in adapted)
    claims = check_claims(on_groups, preset)
    s = verdict_summary(claims[claims["claim"].map(is_adaptation_claim)] if not claims.empty else claims)
    return "\n\n".join([
        f"**Runs:** {len(adapted)} adaptation runs on held-out specimen(s) {', '.join(groups)}; {conv} of them "
        "converged (a CycleGAN row by its own validation loss, an ADDA row by its source network's).",
        f"**Claims on adaptation** (paired tests on those specimens, Holm-corrected): {s['held']} held, "
        f"{s['not held']} not held, {s['not testable']} not testable."])
