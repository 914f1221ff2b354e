"""Tables, claims and verdicts of the tool detection and COVID-19 lesion studies (runs:
:mod:`synthex_lib.experiments.task_runs`). Outside every run key: rewording a claim never retrains.

The design is paired: every real image is predicted by the Sim2Real model and by the Real2Real fold that held it
out, so each claim compares per-image values (Dice, a confusion metric) or per (image, landmark) errors where
both models activated the landmark. "Beats" is a one-tailed Wilcoxon signed-rank test, "on par" a paired TOST
within a stated margin, "less spread" a one-tailed Pitman-Morgan test of paired variances; P values are
Holm-corrected across a task's table, and a claim whose runs did not all converge is "not testable".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from synthex_lib.experiments.hip_analysis import verdict_summary
from synthex_lib.learning.evaluation import LESION_METRICS
from synthex_lib.learning.stats import (
    format_p,
    holm,
    mean_difference,
    paired_test,
    paired_tost,
    paired_values,
    pitman_morgan,
)

#: the paper's results of the two tasks, each row naming its source
PAPER_TOOL = pd.DataFrame([
    {"source": "NMI text (Extended Data Tables 4-5)", "method": "Sim2Real", "landmark mm": "1.10 ± 0.88",
     "Dice": "0.92 ± 0.07"},
    {"source": "NMI text (Extended Data Tables 4-5)", "method": "Real2Real", "landmark mm": "1.19 ± 2.49",
     "Dice": "0.41 ± 0.23"},
    {"source": "preprint Table 2", "method": "Sim2Real", "landmark mm": "2.13 ± 2.27", "Dice": "0.860 ± 0.115"},
    {"source": "preprint Table 2", "method": "Real2Real", "landmark mm": "1.90 ± 5.49", "Dice": "0.406 ± 0.194"},
    {"source": "official code's expected output (calculate_5fold_metric_error.py)", "method": "Sim2Real",
     "landmark mm": "1.09 (base), 1.12 (tip)", "Dice": "0.92 ± 0.07"},
])
PAPER_COVID = pd.DataFrame([
    {"source": "preprint Table 3 (NMI Extended Data Table 6)", "method": "Sim2Real", "sensitivity": "76.49 ± 17.25",
     "specificity": "88.11 ± 6.03", "precision": "48.46 ± 27.49", "f1": "53.26 ± 22.67", "f2": "61.43 ± 25.53",
     "accuracy": "85.03 ± 5.65"},
    {"source": "preprint Table 3 (NMI Extended Data Table 6)", "method": "Real2Real", "sensitivity": "81.37 ± 17.75",
     "specificity": "96.44 ± 4.07", "precision": "73.67 ± 25.84", "f1": "73.48 ± 20.97", "f2": "76.90 ± 25.95",
     "accuracy": "93.95 ± 4.77"},
    {"source": "official code's expected output (covid test.py)", "method": "Sim2Real", "sensitivity": "80.28",
     "specificity": "87.41", "precision": "48.67", "f1": "54.69", "f2": "63.81", "accuracy": "85.22"},
])

#: equivalence margins of the "on par" claims: landmark millimetres, and confusion metrics as fractions (5 points)
MARGINS = {"error_mm": 1.0, "sensitivity": 0.05, "specificity": 0.05}
METRIC_NAMES = {"dice": "Dice", "error_mm": "landmark mm", **{k: k for k in LESION_METRICS}}


def claims_of(task: str) -> list[dict[str, Any]]:
    """The paper's claims on a task: (claim, paper, kind, metric, method A, method B); A and B are ``sim``
    (Sim2Real) or ``real`` (Real2Real). Kinds: ``better`` (A beats B), ``equivalent``, ``less spread``."""
    if task == "tool":
        return [
            {"claim": "Sim2Real beats Real2Real on Dice", "metric": "dice", "kind": "better", "a": "sim",
             "b": "real", "paper": "held: 0.92 vs 0.41 (NMI text); 0.860 vs 0.406 (preprint Table 2)"},
            {"claim": "Sim2Real landmark error comparable to Real2Real", "metric": "error_mm", "kind": "equivalent",
             "a": "sim", "b": "real", "paper": "held: 1.10 vs 1.19 mm (NMI text); 2.13 vs 1.90 mm (preprint Table 2)"},
            {"claim": "Sim2Real landmark error less spread than Real2Real", "metric": "error_mm",
             "kind": "less spread", "a": "sim", "b": "real",
             "paper": "held: SD 0.88 vs 2.49 mm (NMI text); 2.27 vs 5.49 mm (preprint Table 2)"},
        ]
    if task == "chest":
        rows = [{"claim": f"Sim2Real on par with Real2Real on {m}", "metric": m, "kind": "equivalent", "a": "sim",
                 "b": "real", "paper": f"held: 'similar ... in sensitivity and specificity' (NMI text; preprint "
                                       f"Table 3: {'76.49 vs 81.37' if m == 'sensitivity' else '88.11 vs 96.44'} %)"}
                for m in ("sensitivity", "specificity")]
        rows += [{"claim": f"Real2Real beats Sim2Real on {m}", "metric": m, "kind": "better", "a": "real", "b": "sim",
                  "paper": "held: Sim2Real 'falls short in the other metrics' (NMI text; preprint Table 3)"}
                 for m in ("precision", "f1", "f2", "accuracy")]
        return rows
    raise ValueError(f"unknown task {task!r}: 'tool' or 'chest'")


def split_records(records: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(the Sim2Real record or None, the Real2Real fold records sorted by fold)."""
    sim = [r for r in records if r["parameters"]["train_domain"] == "realistic"]
    real = sorted((r for r in records if r["parameters"]["train_domain"] == "real"),
                  key=lambda r: r["parameters"]["fold"])
    return (sim[0] if sim else None), real


def _keyed(recs: list[dict[str, Any]], key: str) -> dict[tuple[str, int], np.ndarray]:
    out = {}
    for r in recs:
        pi = r["per_image"]
        for g, i, v in zip(pi["group"], pi["image"], pi[key], strict=True):
            out[(str(g), int(i))] = np.atleast_1d(np.asarray(v, float))
    return out


def paired_arrays(records: list[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray, bool]:
    """Per-image values of ``key`` (flattened per image and landmark for the errors) of Sim2Real and of the
    Real2Real folds, on the real images both were tested on, in the same order; and whether every run
    involved converged."""
    sim, real = split_records(records)
    if sim is None or not real:
        return np.array([]), np.array([]), False
    a, b = _keyed([sim], key), _keyed(real, key)
    common = sorted(set(a) & set(b))
    converged = all(bool(r["metrics"].get("converged")) for r in (sim, *real))
    if not common:
        return np.array([]), np.array([]), False
    return np.concatenate([a[k] for k in common]), np.concatenate([b[k] for k in common]), converged


def _fmt(v: np.ndarray, scale: float = 1.0, digits: int = 3) -> str:
    v = np.asarray(v, float)
    v = v[np.isfinite(v)] * scale
    return f"{v.mean():.{digits}f} ± {v.std():.{digits}f}" if v.size else "n/a"


def results_table(records: list[dict[str, Any]], task: str) -> pd.DataFrame:
    """Our Sim2Real and Real2Real rows (mean ± std with ddof 0 as the official scripts, over the real images each
    was tested on; Real2Real pooled over its folds), with the images, the runs that converged and, for the
    tool, the landmarks activated."""
    sim, real = split_records(records)
    rows = []
    for name, recs in (("Sim2Real", [sim] if sim else []), ("Real2Real", real)):
        if not recs:
            continue
        pi = {k: np.concatenate([np.asarray(r["per_image"][k], float) for r in recs])
              for k in recs[0]["per_image"] if k not in ("group", "image")}
        row: dict[str, Any] = {"method": name, "runs": len(recs),
                               "converged": f"{sum(bool(r['metrics'].get('converged')) for r in recs)} of {len(recs)}",
                               "real images": int(len(pi["dice"]))}
        if task == "tool":
            vis = pi["visible"].astype(bool)
            row |= {"landmark mm": _fmt(pi["error_mm"], digits=2),
                    "activated": f"{np.isfinite(pi['error_mm']).sum() / max(int(vis.sum()), 1):.0%}",
                    "Dice": _fmt(pi["dice"])}
        else:
            row |= {m: _fmt(pi[m], 100.0, 2) for m in LESION_METRICS} | {"Dice": _fmt(pi["dice"])}
        rows.append(row)
    return pd.DataFrame(rows).set_index("method") if rows else pd.DataFrame()


def _difference(kind: str, x: np.ndarray, y: np.ndarray, eff: dict[str, float], digits: int) -> str:
    """The effect of a claim: the mean paired difference with its 95 % CI, or for a spread claim the difference of
    the standard deviations (the Pitman-Morgan test gives its P, not an interval)."""
    if kind == "less spread":
        return f"SD {np.std(x) - np.std(y):+.{digits}f}" if x.size else "n/a"
    if not np.isfinite(eff["diff"]):
        return "n/a"
    return f"{eff['diff']:+.{digits}f} [{eff['low']:+.{digits}f}, {eff['high']:+.{digits}f}]"


def check_task_claims(records: list[dict[str, Any]], task: str, alpha: float = 0.05) -> pd.DataFrame:
    """The paper's claims on ``task`` tested on our runs (see the module docstring): one row per claim with the
    paper's finding and source, our means, the mean paired difference A - B with its 95 % CI, the test, P, the
    Holm-adjusted P and the verdict (held / not held / not testable)."""
    rows = []
    for c in claims_of(task):
        sim, real, converged = paired_arrays(records, c["metric"])
        va, vb = (sim, real) if c["a"] == "sim" else (real, sim)
        x, y = paired_values(va, vb) if va.size else (np.array([]), np.array([]))
        higher = c["metric"] != "error_mm"
        if c["kind"] == "better":
            p, test = paired_test(x, y, "greater" if higher else "less"), "Wilcoxon signed-rank, one-tailed"
        elif c["kind"] == "equivalent":
            p, test = paired_tost(x, y, MARGINS[c["metric"]]), f"TOST, margin {MARGINS[c['metric']]:g}"
        else:
            p, test = pitman_morgan(x, y, "less"), "Pitman-Morgan (paired variances), one-tailed"
        eff = mean_difference(x, y)
        digits = 2 if c["metric"] == "error_mm" else 3
        reason = "" if converged else "runs not converged"
        if not np.isfinite(p):
            reason = reason or "too few pairs"
        ours = "n/a"
        if x.size:
            ours = (f"SD {np.std(x):.{digits}f} vs {np.std(y):.{digits}f}" if c["kind"] == "less spread"
                    else f"{np.mean(x):.{digits}f} vs {np.mean(y):.{digits}f}")
        rows.append({"claim": c["claim"], "metric": METRIC_NAMES[c["metric"]], "paper": c["paper"],
                     "ours (A vs B)": ours,
                     "A - B (95% CI)": _difference(c["kind"], x, y, eff, digits),
                     "pairs": int(x.size), "test": test, "_p": p, "_ok": not reason, "_why": reason})
    df = pd.DataFrame(rows)
    adjusted = holm(np.where(df["_ok"].to_numpy(), df["_p"].to_numpy(float), np.nan))
    df["P"] = [format_p(v) for v in df["_p"]]
    df["P (Holm)"] = [format_p(v) for v in adjusted]
    df["verdict"] = [("held" if a < alpha else "not held") if ok else f"not testable ({why})"
                     for a, ok, why in zip(adjusted, df["_ok"], df["_why"], strict=True)]
    return df.drop(columns=["_p", "_ok", "_why"])


def task_verdict(records: list[dict[str, Any]], task: str) -> str:
    """A short markdown verdict of a task's study computed from its runs: which runs exist and converged, how
    Sim2Real and Real2Real did, and which of the paper's claims held, did not hold or could not be tested."""
    sim, real = split_records(records)
    if sim is None or not real:
        return ("**Not run:** the study needs its Sim2Real run and its Real2Real folds; "
                f"found {'a' if sim else 'no'} Sim2Real run and {len(real)} fold(s).")
    runs = [sim, *real]
    conv = sum(bool(r["metrics"].get("converged")) for r in runs)
    claims = check_task_claims(records, task)
    s = verdict_summary(claims)
    held = [c for c, v in zip(claims["claim"], claims["verdict"], strict=True) if v == "held"]
    not_held = [c for c, v in zip(claims["claim"], claims["verdict"], strict=True) if v == "not held"]
    lines = [f"**Convergence:** {conv} of {len(runs)} runs (Sim2Real and {len(real)} Real2Real folds) met the "
             "criterion (validation loss improved by less than 2 % of all its improvement since the untrained "
             "network over the last fifth of the epochs)"
             + ("." if conv == len(runs) else "; every claim is therefore *not testable*.")]
    table = results_table(records, task)
    col = "Dice" if task == "tool" else "accuracy"
    lines.append(f"**Results on {table['real images'].iloc[0]} real images:** {col} "
                 f"{table.loc['Sim2Real', col]} (Sim2Real) vs {table.loc['Real2Real', col]} (Real2Real)"
                 + (" (%)." if task == "chest" else "."))
    lines.append(f"**Claims** (paired tests, Holm-corrected): {s['held']} held, {s['not held']} not held, "
                 f"{s['not testable']} not testable."
                 + (f" Held: {'; '.join(held)}." if held else "")
                 + (f" Not held: {'; '.join(not_held)}." if not_held else ""))
    return "\n\n".join(lines)
