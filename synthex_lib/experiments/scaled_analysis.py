"""The analysis of the scaled-up hip study, the training-set size study and the cross-scanner test: tables
beside the paper's, per-landmark and per-structure tables, the size curve, the paper's claims tested, and the
verdict the chapter opens with.

A scaled-up run is tested on every held-out group of the controlled dataset, so it splits into one
*fold record* per group (:func:`fold_records`) shaped like a controlled-study record; paired comparisons
with the controlled study's runs then use :func:`hip_analysis.paired_pool` on the groups both were tested on.
Nothing here enters a run's key.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.experiments import hip_analysis
from synthex_lib.experiments.hip_scaled import TRAIN_DOMAIN
from synthex_lib.experiments.paper_numbers import paper_hip_table
from synthex_lib.learning.stats import format_mean_std, format_p, holm, summarize, welch_tost

#: the structures of the hip labels 1..6, in label order (DeepFluoro / the official code)
STRUCTURES = ("left hemipelvis", "right hemipelvis", "vertebrae", "upper sacrum", "left femur", "right femur")
assert len(STRUCTURES) == HIP_NUM_CLASSES - 1


def method_name(rec: dict[str, Any]) -> str:
    """The training domain of a scaled-up run as the tables name it: ``realistic-scaled`` on the whole set,
    ``realistic-scaled-<n>`` on a training subset of n images."""
    n = int(rec["parameters"].get("train_size", 0))
    return TRAIN_DOMAIN if n == 0 else f"{TRAIN_DOMAIN}-{n}"


def fold_records(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One controlled-study-shaped record per test group of a scaled-up run (``parameters``: ``train_domain``
    = :func:`method_name`, ``dr_preset``, ``test_group``; ``metrics``: ``converged`` of the one training;
    ``per_image``: that group's values)."""
    p = rec["parameters"]
    return [{"parameters": {"train_domain": method_name(rec), "dr_preset": p["dr_preset"], "test_group": g},
             "metrics": {"converged": bool(rec["metrics"].get("converged", False))}, "per_image": values}
            for g, values in sorted(rec["per_image"].items())]


def folds_of(records: list[dict[str, Any]], domain: str, preset: str) -> list[str]:
    return sorted(r["parameters"]["test_group"] for r in records
                  if r["parameters"]["train_domain"] == domain and str(r["parameters"]["dr_preset"]) == preset)


def scaled_table(scaled: list[dict[str, Any]], controlled: list[dict[str, Any]], preset: str = "strong"
                 ) -> pd.DataFrame:
    """The scaled-up runs on the whole set beside Real2Real and the controlled realistic runs (``preset``), pooled
    as the official script; the scaled-up rows twice: on every real image, and on the held-out specimens that
    Real2Real has (the paired comparison). Paper columns: NMI Table 1 and preprint Table 1 (360 px)."""
    full = [r for r in scaled if int(r["parameters"].get("train_size", 0)) == 0]
    rows = []
    real_groups = folds_of(controlled, "real", preset)
    for r in full:
        pre = str(r["parameters"]["dr_preset"])
        folds = fold_records(r)
        rows.append(_row(TRAIN_DOMAIN, pre, folds, "every lab specimen"))
        rows.append(_row(TRAIN_DOMAIN, pre, [f for f in folds if f["parameters"]["test_group"] in real_groups],
                         "Real2Real's"))
    for dom in ("real", "realistic"):
        recs = [r for r in controlled if r["parameters"]["train_domain"] == dom
                and str(r["parameters"]["dr_preset"]) == preset]
        if recs:
            rows.append(_row(dom, preset, recs, "held out"))
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    nmi, pre = paper_hip_table("nmi"), paper_hip_table("preprint")

    def paper(dom: str, dr: str, what: str) -> str:
        out = []
        for src in (nmi, pre):
            m = src[(src["train_domain"] == dom) & (src["dr_preset"] == dr)]
            ok = not m.empty and not pd.isna(m.iloc[0][f"{what}_mean"])
            out.append(format_mean_std(float(m.iloc[0][f"{what}_mean"]), float(m.iloc[0][f"{what}_std"]),
                                       3 if what == "dice" else 2) if ok else "n/a")
        return " · ".join(out)

    df["mm (paper: NMI · preprint Table 1)"] = [paper(d, p, "landmark_mm") for d, p in
                                               zip(df["model"], df["DR"], strict=True)]
    df["Dice (paper: NMI · preprint Table 1)"] = [paper(d, p, "dice") for d, p in
                                                 zip(df["model"], df["DR"], strict=True)]
    return df


def _row(domain: str, preset: str, recs: list[dict[str, Any]], tested_on: str) -> dict[str, Any]:
    err = np.concatenate([np.asarray(r["per_image"]["error_mm"], float).ravel() for r in recs]) if recs else []
    vis = np.concatenate([np.asarray(r["per_image"]["visible"], bool).ravel() for r in recs]) if recs else []
    dice = np.concatenate([np.asarray(r["per_image"]["dice"], float) for r in recs]) if recs else []
    lm, dc = summarize(np.asarray(err)), summarize(np.asarray(dice))
    groups = sorted(r["parameters"]["test_group"] for r in recs)
    return {"model": domain, "DR": preset, "tested on": f"{tested_on} ({', '.join(groups)})", "images": dc["n"],
            "mm (ours)": format_mean_std(lm["mean"], lm["std"]),
            "detected (ours)": f"{lm['n'] / max(int(np.sum(vis)), 1):.0%}",
            "Dice (ours)": format_mean_std(dc["mean"], dc["std"], 3),
            "converged": "yes" if all(r["metrics"].get("converged") for r in recs) else "no"}


def scaled_claims(scaled: list[dict[str, Any]], controlled: list[dict[str, Any]], preset: str = "strong",
                  alpha: float = 0.05) -> pd.DataFrame:
    """The paper's claims on the scaled-up and size studies, tested as paired designs on the held-out specimens
    that each comparison shares (one-tailed Wilcoxon signed-rank, Holm-corrected across this table; claims whose
    runs did not all converge are *not testable*): the scaled-up set beats Real2Real and the controlled realistic
    set (``preset`` DR), and the largest training set of the size study beats the smallest."""
    folds = [f for r in scaled for f in fold_records(r)]
    sizes = sorted({int(r["parameters"].get("train_size", 0)) for r in scaled if
                    str(r["parameters"]["dr_preset"]) == preset and int(r["parameters"].get("train_size", 0))})
    claims = [
        {"claim": f"scaled-up SyntheX beats Real2Real ({preset} DR)",
         "paper": "held: 5.95 vs 6.46 mm, Dice 0.86 vs 0.79 (NMI Table 1); p = 0.032 on mm (preprint text)",
         "kind": "better", "a": (TRAIN_DOMAIN, preset), "b": ("real", preset)},
        {"claim": f"scaled-up beats the controlled realistic set ({preset} DR)",
         "paper": "held: 5.95 vs 6.44 mm, Dice 0.86 vs 0.80 (NMI Table 1)", "kind": "better",
         "a": (TRAIN_DOMAIN, preset), "b": ("realistic", preset)},
    ]
    if sizes:
        claims.append({"claim": f"more synthetic training images help (all vs {sizes[0]} images, {preset} DR)",
                       "paper": "held: 'consistently improve as the number of training data increases' "
                                "(NMI Extended Data Fig. 3, Table 3)", "kind": "better",
                       "a": (TRAIN_DOMAIN, preset), "b": (f"{TRAIN_DOMAIN}-{sizes[0]}", preset)})
    return hip_analysis.check_claims([*controlled, *folds], preset, alpha, claims=claims)


def _beside_real2real(scaled_rec: dict[str, Any], controlled: list[dict[str, Any]]
                      ) -> tuple[tuple[str, list[dict[str, Any]]], tuple[str, list[dict[str, Any]]]]:
    """(("scaled-up", its fold records on Real2Real's held-out specimens), ("Real2Real", its runs)), same preset."""
    preset = str(scaled_rec["parameters"]["dr_preset"])
    groups = folds_of(controlled, "real", preset)
    real = [r for r in controlled if r["parameters"]["train_domain"] == "real"
            and str(r["parameters"]["dr_preset"]) == preset]
    return (("scaled-up", [f for f in fold_records(scaled_rec) if f["parameters"]["test_group"] in groups]),
            ("Real2Real", real))


def per_landmark_table(scaled_rec: dict[str, Any], controlled: list[dict[str, Any]]) -> pd.DataFrame:
    """Per landmark (NMI Extended Data Table 1): the error (mm, activated landmarks) and the fraction activated of
    the scaled-up run and of Real2Real with the same preset, on the held-out specimens Real2Real has."""
    n = len(HIP_LANDMARKS)
    rows = []
    for name, recs in _beside_real2real(scaled_rec, controlled):
        if not recs:
            continue
        err = np.concatenate([np.asarray(r["per_image"]["error_mm"], float).reshape(-1, n) for r in recs])
        vis = np.concatenate([np.asarray(r["per_image"]["visible"], bool).reshape(-1, n) for r in recs])
        for j, lm in enumerate(HIP_LANDMARKS):
            s = summarize(err[:, j])
            rows.append({"landmark": lm, "model": name, "mm": format_mean_std(s["mean"], s["std"]),
                         "activated": f"{s['n'] / max(int(vis[:, j].sum()), 1):.0%}"})
    df = pd.DataFrame(rows)
    return df if df.empty else df.pivot(index="landmark", columns="model", values=["mm", "activated"]).reindex(
        list(HIP_LANDMARKS))


def per_structure_table(scaled_rec: dict[str, Any], controlled: list[dict[str, Any]]) -> pd.DataFrame:
    """Per structure (NMI Extended Data Table 2): Dice mean ± std of the scaled-up run and of Real2Real with the
    same preset, on the held-out specimens Real2Real has (a structure absent from both label and prediction
    scores 1, as in the official evaluation)."""
    out: dict[str, list[str]] = {}
    for name, recs in _beside_real2real(scaled_rec, controlled):
        if recs and all("dice_per_class" in r["per_image"] for r in recs):
            d = np.concatenate([np.asarray(r["per_image"]["dice_per_class"], float).reshape(-1, len(STRUCTURES))
                                for r in recs])
            out[f"Dice ({name})"] = [format_mean_std(float(np.mean(d[:, j])), float(np.std(d[:, j])), 3)
                                     for j in range(len(STRUCTURES))]
    return pd.DataFrame(out, index=pd.Index(STRUCTURES, name="structure"))


def size_curve(scaled: list[dict[str, Any]], preset: str = "strong") -> pd.DataFrame:
    """The size study (NMI Extended Data Fig. 3 and Table 3): per training-set size, the pooled landmark error,
    fraction activated and Dice on every real image, and whether the run converged; sorted by size."""
    rows = []
    for r in scaled:
        if str(r["parameters"]["dr_preset"]) != preset:
            continue
        m = r["metrics"]
        rows.append({"training images": int(m["train_images"]), "landmark_mm_mean": m["landmark_error_mm_mean"],
                     "landmark_mm_std": m["landmark_error_mm_std"], "detection_rate": m["detection_rate"],
                     "dice_mean": m["dice_mean"], "dice_std": m["dice_std"], "converged": bool(m["converged"])})
    return pd.DataFrame(rows).sort_values("training images").reset_index(drop=True) if rows else pd.DataFrame()


def cross_scanner_table(scaled: list[dict[str, Any]], controlled: list[dict[str, Any]],
                        alpha: float = 0.05) -> pd.DataFrame:
    """The cross-scanner test: every model (scaled-up on the whole set; every controlled-study run, pooled per
    training domain and preset) on the Loop-X-like images of the lab's separate specimen beside its results on
    the CIOS-like real images it was tested on. The paper's "similar performance" is tested as equivalence of
    the two means (Welch TOST, unpaired: different images; margins of :data:`hip_analysis.EQUIVALENCE_MARGIN`;
    Holm across the table); a row whose runs did not all converge is *not testable*. The paper's figures (NMI
    text: 6.16 ± 5.15 mm and Dice 0.84 ± 0.12) are those of its scaled-up model."""
    methods: dict[tuple[str, str], list[tuple[dict[str, Any], dict[str, Any], bool]]] = {}
    for r in scaled:
        if int(r["parameters"].get("train_size", 0)) == 0 and "cross_scanner" in r:
            cios = {k: np.concatenate([np.asarray(v[k], float).ravel() for v in r["per_image"].values()])
                    for k in ("dice", "error_mm")}
            methods.setdefault((TRAIN_DOMAIN, str(r["parameters"]["dr_preset"])), []).append(
                (cios, r["cross_scanner"]["per_image"], bool(r["metrics"].get("converged"))))
    for r in controlled:
        if "cross_scanner" in r:
            p = r["parameters"]
            methods.setdefault((p["train_domain"], str(p["dr_preset"])), []).append(
                (r["per_image"], r["cross_scanner"]["per_image"], bool(r["metrics"].get("converged"))))
    rows = []
    for (dom, pre), runs in methods.items():
        converged = all(c for _, _, c in runs)
        for key, name in (("dice", "Dice"), ("error_mm", "landmark mm")):
            cios = np.concatenate([np.asarray(c[key], float).ravel() for c, _, _ in runs])
            loopx = np.concatenate([np.asarray(x[key], float).ravel() for _, x, _ in runs])
            sc, sx = summarize(cios), summarize(loopx)
            digits = 3 if key == "dice" else 2
            p = welch_tost(loopx, cios, hip_analysis.EQUIVALENCE_MARGIN[key])
            rows.append({"train domain": dom, "DR": pre, "models": len(runs), "metric": name,
                         "CIOS-like (held out)": format_mean_std(sc["mean"], sc["std"], digits),
                         "Loop-X-like": format_mean_std(sx["mean"], sx["std"], digits),
                         "converged": "yes" if converged else "no", "_p": p if converged else np.nan})
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    adjusted = holm(df["_p"].to_numpy(float))
    df["similar: TOST P (Holm)"] = [format_p(v) for v in adjusted]
    df["verdict"] = [("similar" if a < alpha else "not shown similar") if np.isfinite(a) else
                     ("not testable (runs not converged)" if c == "no" else "not testable (too few values)")
                     for a, c in zip(adjusted, df["converged"], strict=True)]
    return df.drop(columns=["_p"])


def scaled_verdict(scaled: list[dict[str, Any]], controlled: list[dict[str, Any]], preset: str = "strong") -> str:
    """A short markdown verdict of the chapter, computed from the runs: the scaled-up runs' convergence, whether
    the Real2Real baseline learns (:func:`hip_analysis.learning_check`), how many claim rows held, did not hold
    or could not be tested, and the cross-scanner rows."""
    if not scaled:
        return "**No scaled-up run** was found: nothing on the scaled-up study can be said here."
    conv = sum(bool(r["metrics"].get("converged")) for r in scaled)
    full = [r for r in scaled if int(r["parameters"].get("train_size", 0)) == 0]
    lines = [f"**Convergence:** {conv} of {len(scaled)} scaled-up runs met the criterion (validation loss improved "
             "by less than 2 % of all its improvement since the untrained network over the last fifth of the "
             "epochs)."]
    for r in full:
        m = r["metrics"]
        lines.append(f"**Scaled-up ({r['parameters']['dr_preset']} DR)**: {m['train_images']} training images from "
                     f"{m['train_specimens']} CTs; on {m['images']} real images Dice {m['dice_mean']:.3f}, "
                     f"{m['detection_rate']:.0%} of the visible landmarks activated.")
    lc = hip_analysis.learning_check(controlled, preset)
    if lc["folds"]:
        word = "clears" if lc["met"] else "**does not clear**"
        plural = "s" if lc["folds"] > 1 else ""
        lines.append(f"**The Real2Real baseline** ({preset} DR, {lc['folds']} held-out specimen{plural}) {word} the "
                     f"learning floors (Dice {hip_analysis.LEARNING_FLOORS['dice']:.2f}, "
                     f"{hip_analysis.LEARNING_FLOORS['activated']:.0%} activated): Dice {lc['dice']:.3f}, "
                     f"{lc['activated']:.0%} activated.")
    s = hip_analysis.verdict_summary(scaled_claims(scaled, controlled, preset))
    lines.append(f"**Claims** (paired tests, Holm-corrected): {s['held']} held, {s['not held']} not held, "
                 f"{s['not testable']} not testable.")
    xs = cross_scanner_table(scaled, controlled)
    if not xs.empty:
        v = xs["verdict"]
        lines.append(f"**Cross-scanner** (Loop-X-like images, equivalence to the CIOS-like results): "
                     f"{int((v == 'similar').sum())} of {len(v)} rows similar, "
                     f"{int((v == 'not shown similar').sum())} not shown similar, "
                     f"{int(v.str.startswith('not testable').sum())} not testable.")
    return "\n\n".join(lines)


def size_table(curve: pd.DataFrame) -> pd.DataFrame:
    """:func:`size_curve` for reading: one row per training-set size, formatted mean ± std."""
    if curve.empty:
        return curve
    return pd.DataFrame({
        "training images": curve["training images"],
        "landmark mm": [format_mean_std(m, s) for m, s in zip(curve["landmark_mm_mean"], curve["landmark_mm_std"],
                                                              strict=True)],
        "detected": [f"{v:.0%}" for v in curve["detection_rate"]],
        "Dice": [format_mean_std(m, s, 3) for m, s in zip(curve["dice_mean"], curve["dice_std"], strict=True)],
        "converged": ["yes" if c else "no" for c in curve["converged"]]}).set_index("training images")
