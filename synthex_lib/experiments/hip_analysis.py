"""The analysis of the controlled hip study: tables pooled over held-out specimens, the paper's numbers beside
ours, activation curves, the paper's claims tested as a paired design, and the verdicts the chapters open with.

Nothing here changes a run's result, so none of it enters a run's key (:data:`~synthex_lib.experiments.hip.
RUN_CODE_ROOTS`): rewording a verdict or adding a claim never retrains a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.hashing import code_digest
from synthex_lib.experiments.hip import ADAPTED, ALL_DOMAINS, RUN_CODE_ROOTS
from synthex_lib.experiments.paper_numbers import paper_hip_table
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


def controlled_records(records: list[dict[str, Any]], profile: str | Profile) -> list[dict[str, Any]]:
    """The records of ``profile``'s controlled study by the current code: a run at another image size (the
    resolution study), with other training fields or by older code is another experiment, never pooled with it."""
    train, code = get_profile(profile).train.to_dict(), code_digest(*RUN_CODE_ROOTS)
    return [r for r in records if r["parameters"]["train"] == train and r["parameters"]["code"] == code]


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


def _runs_of(records: list[dict[str, Any]], method: tuple[str, str]) -> dict[str, dict[str, Any]]:
    """The runs of ``method`` = (train domain, preset) by held-out specimen."""
    return {r["parameters"]["test_group"]: r for r in records
            if r["parameters"]["train_domain"] == method[0] and str(r["parameters"]["dr_preset"]) == method[1]}


def paired_pool(records: list[dict[str, Any]], a: tuple[str, str], b: tuple[str, str], key: str,
                groups: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-image (or per image and landmark) values of ``key`` of methods ``a`` and ``b`` = (train domain,
    preset), on the held-out specimens both were tested on (and among ``groups`` when given), in the same order:
    a paired design. The third value says whether every run involved met the convergence criterion."""
    ra, rb = _runs_of(records, a), _runs_of(records, b)
    common = sorted((set(ra) & set(rb)) & (set(groups) if groups is not None else set(ra)))
    if not common:
        return np.array([]), np.array([]), False
    va = [np.asarray(ra[g]["per_image"][key], float).ravel() for g in common]
    vb = [np.asarray(rb[g]["per_image"][key], float).ravel() for g in common]
    converged = all(bool(r["metrics"].get("converged", False)) for g in common for r in (ra[g], rb[g]))
    return np.concatenate(va), np.concatenate(vb), converged


#: a claim is tested on the held-out specimens on which both of its methods' runs converged, when there are at
#: least this many of them (or when every run converged); with fewer it is "not testable"
MIN_CONVERGED_FOLDS = 2


def converged_folds(records: list[dict[str, Any]], a: tuple[str, str], b: tuple[str, str]
                    ) -> tuple[list[str], list[str]]:
    """(the held-out specimens both methods were tested on, those of them on which both runs converged)."""
    ra, rb = _runs_of(records, a), _runs_of(records, b)
    common = sorted(set(ra) & set(rb))
    return common, [g for g in common if all(bool(r["metrics"].get("converged", False)) for r in (ra[g], rb[g]))]


def _folds_text(common: list[str], used: list[str], converged: list[str]) -> str:
    """The ``folds`` cell of a claim: the held-out specimens tested on, or how few converged."""
    if not used:
        return f"{len(converged)} of {len(common)} converged"
    left = [g for g in common if g not in used]
    return f"{len(used)} of {len(common)}" + (f" ({', '.join(left)} left out: not converged)" if left else "")


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


def check_claims(records: list[dict[str, Any]], preset: str = "strong", alpha: float = 0.05,
                 claims: list[dict[str, Any]] | None = None) -> pd.DataFrame:
    """The paper's controlled-study claims tested on our runs, as a paired design.

    Every method is tested on the same real images, so each claim compares paired values: per-image Dice,
    and per (image, landmark) millimetre errors where both methods detected the landmark. "Beats" is a
    one-tailed Wilcoxon signed-rank test; "on par" is an equivalence test (paired TOST) within
    :data:`EQUIVALENCE_MARGIN`, never a non-significant difference. P values are Holm-corrected across
    the table. A claim is tested on the held-out specimens on which both methods' runs met the convergence
    criterion (column ``folds``): all of them, or at least :data:`MIN_CONVERGED_FOLDS` of them (the criterion
    judges the training, not the test images, so leaving a specimen out selects on no test result); with
    fewer, or fewer than 2 pairs, the claim is "not testable".
    ``claims``: rows shaped as :func:`claims_table`'s to test instead of the controlled study's.

    Returns one row per (claim, metric): the paper's finding and its source, our means, the mean paired
    difference with its 95 % CI, the test, P, Holm-adjusted P and the verdict (held / not held / not testable).
    """
    rows = []
    adaptation = any(r["parameters"]["train_domain"] in ADAPTED for r in records)
    for c in claims if claims is not None else claims_table(preset, adaptation):
        common, ok_folds = converged_folds(records, c["a"], c["b"])
        use = common if len(ok_folds) == len(common) or len(ok_folds) < MIN_CONVERGED_FOLDS else ok_folds
        for key in ("dice", "error_mm"):
            va, vb, converged = paired_pool(records, c["a"], c["b"], key, use)
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
                "pairs": int(x.size), "folds": _folds_text(common, use if converged else [], ok_folds), "test": test,
                "_p": p, "_testable": not reason, "_reason": reason})
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
                f"loss improved by {tail:.1%} of all its improvement since the untrained network (criterion: less "
                "than 2 %)")
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
             "2 % of all its improvement since the untrained network over the last fifth of the epochs)."]
    if n and conv < n:
        lines.append(f"**{n - conv} run(s) did not converge**: a claim is tested only on the held-out specimens "
                     f"on which both of its methods' runs converged (column *folds*), and is marked *not testable* "
                     f"where fewer than {MIN_CONVERGED_FOLDS} such specimens remain, whatever its P value.")
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
