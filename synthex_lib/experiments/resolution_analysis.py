"""The analysis of the image-resolution study (:mod:`~synthex_lib.experiments.hip_resolution`): our results per
image size beside the preprint's Tables 4-5, the controlled study's claims tested again at every size, and the
verdict the chapter opens with. Nothing here enters a run's key.

The runs of one size form a controlled study of their own (every method tested on the same real images), so each
size's claims are paired tests exactly as :func:`~synthex_lib.experiments.hip_analysis.check_claims` makes them;
the whole table (every size) is Holm-corrected at once.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from synthex_lib.experiments import hip_analysis
from synthex_lib.experiments.hip_resolution import PAPER_SIZES
from synthex_lib.experiments.paper_numbers import paper_resolution_table
from synthex_lib.learning.stats import format_mean_std


def _paper_px(by_size: dict[int, list[dict[str, Any]]]) -> dict[int, int]:
    """Our size -> the paper's, in the study's order (smallest first)."""
    sizes = sorted(by_size)
    if len(sizes) != len(PAPER_SIZES):
        return {s: s for s in sizes}
    return dict(zip(sizes, PAPER_SIZES, strict=True))


def _converged(recs: list[dict[str, Any]]) -> str:
    return f"{sum(bool(r['metrics'].get('converged')) for r in recs)} of {len(recs)}"


def resolution_table(by_size: dict[int, list[dict[str, Any]]], profile: str, dataset: str) -> pd.DataFrame:
    """One row per (size, training domain, preset): ours pooled over the held-out specimens (Dice, landmark mm
    where activated, share of visible landmarks activated, runs that converged) beside the preprint's Tables 4-5
    at the paper's size it stands for."""
    paper = paper_resolution_table().set_index(["px", "train_domain", "dr_preset"])
    rows = []
    for size, ppx in _paper_px(by_size).items():
        ours = hip_analysis.table1(by_size[size])
        for _, o in ours.iterrows():
            key = (ppx, o["train_domain"], o["dr_preset"])
            ref = paper.loc[key] if key in paper.index else None
            recs = [r for r in by_size[size] if r["parameters"]["train_domain"] == o["train_domain"]
                    and str(r["parameters"]["dr_preset"]) == o["dr_preset"]]
            rows.append({
                "px (ours)": size, "px (paper)": ppx, "train domain": o["train_domain"], "DR": o["dr_preset"],
                "runs converged": _converged(recs),
                f"Dice (ours, {dataset}, {profile})": format_mean_std(o["dice_mean"], o["dice_std"], 3),
                "Dice (paper: preprint Table 4)": (format_mean_std(ref["dice_mean"], ref["dice_std"], 3)
                                                   if ref is not None else "n/a"),
                f"landmark mm (ours, {dataset}, {profile})": format_mean_std(o["landmark_mm_mean"],
                                                                             o["landmark_mm_std"]),
                "activated (ours)": f"{o['detection_rate']:.0%}",
                "landmark mm (paper: preprint Table 5)": (format_mean_std(ref["landmark_mm_mean"],
                                                                          ref["landmark_mm_std"])
                                                          if ref is not None else "n/a"),
            })
    return pd.DataFrame(rows)


def _paper_pair(ppx: int, a: tuple[str, str], b: tuple[str, str]) -> str:
    paper = paper_resolution_table().set_index(["px", "train_domain", "dr_preset"])
    if (ppx, *a) not in paper.index or (ppx, *b) not in paper.index:
        return "n/a"
    pa, pb = paper.loc[(ppx, *a)], paper.loc[(ppx, *b)]
    return (f"Dice {pa['dice_mean']:.3f} vs {pb['dice_mean']:.3f}, {pa['landmark_mm_mean']:.2f} vs "
            f"{pb['landmark_mm_mean']:.2f} mm (preprint Tables 4-5, {ppx} px)")


def resolution_claims(by_size: dict[int, list[dict[str, Any]]], alpha: float = 0.05) -> pd.DataFrame:
    """The controlled study's claims (:func:`~synthex_lib.experiments.hip_analysis.claims_table`, both presets)
    whose two methods were run, tested again at every size: paired tests on the images of the held-out specimens
    both methods were tested on at that size, Holm-corrected across every size. The ``paper`` column gives the
    preprint's two numbers at the paper's size (the paper states its findings across resolutions in the NMI
    text, not per size)."""
    relabelled, claims = [], []
    for size, ppx in _paper_px(by_size).items():
        recs = by_size[size]
        methods = {(r["parameters"]["train_domain"], str(r["parameters"]["dr_preset"])) for r in recs}
        for r in recs:
            p = r["parameters"]
            relabelled.append({**r, "parameters": {**p, "train_domain": f"{p['train_domain']}@{size}"}})
        seen = set()
        for preset in ("regular", "strong"):
            for c in hip_analysis.claims_table(preset):
                if c["a"] in methods and c["b"] in methods and c["claim"] not in seen:
                    seen.add(c["claim"])
                    claims.append({**c, "claim": f"{c['claim']} at {size} px",
                                   "paper": _paper_pair(ppx, c["a"], c["b"]),
                                   "a": (f"{c['a'][0]}@{size}", c["a"][1]), "b": (f"{c['b'][0]}@{size}", c["b"][1])})
    if not claims:
        return pd.DataFrame()
    return hip_analysis.check_claims(relabelled, alpha=alpha, claims=claims)


def resolution_verdict(by_size: dict[int, list[dict[str, Any]]]) -> str:
    """A short markdown verdict computed from the runs: the sizes, how many runs met the convergence criterion,
    and how many claim rows held, did not hold, or could not be tested."""
    recs = [r for rs in by_size.values() for r in rs]
    if not recs:
        return "**Not run:** the resolution study has no runs in the results store."
    conv = sum(bool(r["metrics"].get("converged")) for r in recs)
    paper = _paper_px(by_size)
    sizes = ", ".join(f"{s} px (the paper's {paper[s]})" for s in sorted(by_size))
    s = hip_analysis.verdict_summary(resolution_claims(by_size))
    lines = [f"**Sizes:** {sizes}.",
             f"**Convergence:** {conv} of {len(recs)} runs met the criterion."
             + ("" if conv == len(recs) else " Every claim that rests on a run that did not is *not testable*.")]
    for size in sorted(by_size):
        lc = hip_analysis.learning_check(by_size[size], "strong")
        if lc["folds"]:
            lines.append(f"**Real2Real at {size} px** (strong DR, {lc['folds']} held-out "
                         f"specimen{'s' if lc['folds'] > 1 else ''} pooled): Dice "
                         f"{lc['dice']:.3f}, {lc['activated']:.0%} of the visible landmarks activated.")
    lines.append(f"**Claims** (paired tests at each size, Holm-corrected over all sizes): {s['held']} held, "
                 f"{s['not held']} not held, {s['not testable']} not testable.")
    return "\n\n".join(lines)


def size_curves(by_size: dict[int, list[dict[str, Any]]]) -> pd.DataFrame:
    """Long table for plotting: per (size, domain, preset) ours and the paper's Dice and landmark mm (columns:
    px, paper_px, method, source, dice, landmark_mm)."""
    paper = paper_resolution_table()
    rows = []
    for size, ppx in _paper_px(by_size).items():
        for _, o in hip_analysis.table1(by_size[size]).iterrows():
            method = f"{o['train_domain']} {o['dr_preset']} DR"
            rows.append({"px": size, "paper_px": ppx, "method": method, "source": "ours", "dice": o["dice_mean"],
                         "landmark_mm": o["landmark_mm_mean"]})
            ref = paper[(paper["px"] == ppx) & (paper["train_domain"] == o["train_domain"])
                        & (paper["dr_preset"] == o["dr_preset"])]
            if len(ref):
                rows.append({"px": size, "paper_px": ppx, "method": method, "source": "paper (preprint Tables 4-5)",
                             "dice": float(ref["dice_mean"].iloc[0]),
                             "landmark_mm": float(ref["landmark_mm_mean"].iloc[0])})
    return pd.DataFrame(rows, columns=["px", "paper_px", "method", "source", "dice", "landmark_mm"])
