"""The controlled study's design: validation split, convergence criterion, device choice, paired claims."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthex_lib.core.errors import ConfigError
from synthex_lib.experiments.hip import validation_split
from synthex_lib.experiments.hip_analysis import (
    LEARNING_FLOORS,
    check_claims,
    learning_check,
    paired_pool,
    run_verdict,
    study_verdict,
    verdict_summary,
)
from synthex_lib.learning.device import resolve_device
from synthex_lib.learning.training import convergence


def test_validation_split_takes_a_fraction_of_each_specimen_deterministically():
    groups = np.array(["02"] * 20 + ["03"] * 10 + ["04"] * 1)
    tr, va = validation_split(groups, 0.1, seed=0)
    assert sorted(tr + va) == list(range(31)) and not set(tr) & set(va)
    per = {g: int(np.isin(np.flatnonzero(groups == g), va).sum()) for g in ("02", "03", "04")}
    assert per == {"02": 2, "03": 1, "04": 0}  # a one-image specimen stays for training
    assert validation_split(groups, 0.1, seed=0) == (tr, va)
    assert validation_split(groups, 0.1, seed=1)[1] != va
    assert validation_split(groups, 0.0, seed=0) == (list(range(31)), [])


def _hist(values, key="val_loss"):
    return [{"epoch": i + 1, "loss": v, key: v} for i, v in enumerate(values)]


def test_convergence_criterion():
    flat_tail = np.r_[np.linspace(0, -1, 16), np.full(4, -1.0) - np.linspace(0, 0.01, 4)]
    c = convergence(_hist(flat_tail))
    assert c["converged"] and c["key"] == "val_loss" and c["tail_improvement"] == pytest.approx(0.01 / 1.01, rel=1e-3)
    still_falling = np.linspace(0, -1, 20)  # the last fifth still gives 4/19 of the total
    c = convergence(_hist(still_falling))
    assert not c["converged"] and c["tail_improvement"] == pytest.approx(0.2 / 1.0, rel=0.1)
    assert not convergence(_hist([0.0, 0.1, 0.2, 0.3, 0.4]))["converged"]  # never improved
    assert not convergence(_hist([1.0, 0.5]))["converged"]  # too short
    assert convergence([{"epoch": i, "loss": v} for i, v in enumerate(flat_tail)])["key"] == "loss"


def test_convergence_is_judged_against_the_improvement_from_the_untrained_network():
    # a task that learns most of what it can in its first epoch: 0 -> -0.8, then a slow drift to -1.0 with
    # 0.015 of it in the last fifth; against the improvement after epoch 1 (0.2) that is 7.5 %, against the
    # whole improvement from the untrained network (1.0) 1.5 %
    v = np.r_[np.linspace(-0.8, -0.985, 16), np.linspace(-0.99, -1.0, 4)]
    hist = _hist(v)
    c = convergence(hist)
    assert not c["converged"] and c["baseline"] == "the first epoch"
    assert c["tail_improvement"] == pytest.approx(0.015 / 0.2, rel=1e-6)
    hist[0]["initial_val_loss"] = 0.0
    c = convergence(hist)
    assert c["converged"] and c["baseline"] == "the untrained network" and "untrained" in c["criterion"]
    assert c["tail_improvement"] == pytest.approx(0.015 / 1.0, rel=1e-6)


def test_device_choice():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="parameter 'device'.*no CUDA"):
            resolve_device("cuda")
    with pytest.raises(ConfigError, match="parameter 'device'"):
        resolve_device("tpu")


def _rec(domain, preset, group, dice, err, converged=True):
    return {"parameters": {"train_domain": domain, "dr_preset": preset, "test_group": group},
            "metrics": {"converged": converged},
            "per_image": {"dice": list(dice), "error_mm": [list(r) for r in err],
                          "visible": [[1] * len(r) for r in err]}}


def _records(converged=True, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.4, 0.9, 30)
    err = rng.uniform(2, 20, (30, 4))
    out = []
    for g in ("01", "02"):
        sl = slice(0, 15) if g == "01" else slice(15, 30)
        for dom, pre, dd, de in [("realistic", "strong", 0.10, -3.0), ("heuristic", "strong", 0.0, 0.0),
                                 ("naive", "strong", -0.05, 2.0), ("real", "strong", 0.10, -3.0),
                                 ("real", "regular", 0.0, 0.0), ("realistic", "regular", 0.02, 0.0),
                                 ("heuristic", "regular", 0.0, 0.0), ("naive", "regular", 0.0, 0.0)]:
            noise = rng.normal(0, 0.005, 15)
            out.append(_rec(dom, pre, g, base[sl] + dd + noise, err[sl] + de + rng.normal(0, 0.05, (15, 4)),
                            converged))
    return out


def test_paired_pool_matches_images_across_folds():
    recs = _records()
    a, b, conv = paired_pool(recs, ("realistic", "strong"), ("heuristic", "strong"), "dice")
    assert a.shape == b.shape == (30,) and conv
    assert np.allclose(a - b, 0.10, atol=0.03)
    partial = [r for r in recs if not (r["parameters"]["train_domain"] == "heuristic" and
                                       r["parameters"]["test_group"] == "02")]
    a, b, _ = paired_pool(partial, ("realistic", "strong"), ("heuristic", "strong"), "dice")
    assert a.shape == (15,)  # only the shared held-out specimen


def test_claims_on_a_known_design():
    df = check_claims(_records())
    v = dict(zip(zip(df["claim"], df["metric"], strict=True), df["verdict"], strict=True))
    assert v[("realistic beats heuristic (strong DR)", "Dice")] == "held"
    assert v[("realistic beats heuristic (strong DR)", "landmark mm")] == "held"
    assert v[("realistic beats naive (strong DR)", "Dice")] == "held"
    assert v[("realistic on par with real data (strong DR)", "Dice")] == "held"  # equal within 0.05 by TOST
    assert v[("strong DR beats regular DR (heuristic)", "Dice")] == "not held"  # no difference built in
    assert v[("regular DR beats strong DR (naive: the paper's exception)", "Dice")] == "held"
    assert set(df["verdict"]) <= {"held", "not held"}
    assert {"P", "P (Holm)", "A - B (95% CI)", "paper"} <= set(df.columns)
    s = verdict_summary(df)
    assert s["held"] + s["not held"] == len(df) and s["not testable"] == 0


def test_claims_of_unconverged_runs_are_not_testable():
    df = check_claims(_records(converged=False))
    assert (df["verdict"] == "not testable (runs not converged)").all()
    assert verdict_summary(df)["not testable"] == len(df)


def test_learning_check_pools_real2real_folds_against_the_floors():
    nan = float("nan")
    recs = [  # Real2Real regular: 2 folds, 3 images x 2 landmarks each
        {"parameters": {"train_domain": "real", "dr_preset": "regular", "test_group": "01"},
         "per_image": {"dice": [0.8, 0.7, 0.9], "error_mm": [[1, nan], [2, 3], [nan, nan]],
                       "visible": [[1, 1], [1, 1], [1, 0]]}},
        {"parameters": {"train_domain": "real", "dr_preset": "regular", "test_group": "02"},
         "per_image": {"dice": [0.6, 0.8, 0.7], "error_mm": [[1, 1], [nan, 2], [4, nan]],
                       "visible": [[1, 1], [1, 1], [1, 1]]}},
        {"parameters": {"train_domain": "naive", "dr_preset": "regular", "test_group": "01"},
         "per_image": {"dice": [0.1] * 3, "error_mm": [[nan, nan]] * 3, "visible": [[1, 1]] * 3}},
    ]
    lc = learning_check(recs)
    assert lc["folds"] == 2
    assert lc["dice"] == pytest.approx(4.5 / 6)  # mean of the six Real2Real images
    assert lc["activated"] == pytest.approx(7 / 11)  # 7 activated of 11 visible
    assert lc["met"] is (4.5 / 6 >= LEARNING_FLOORS["dice"] and 7 / 11 >= LEARNING_FLOORS["activated"])
    recs[0]["per_image"]["dice"] = [0.95, 0.95, 0.95]
    assert learning_check(recs)["met"]
    assert learning_check(recs, "strong")["folds"] == 0 and not learning_check(recs, "strong")["met"]


def test_verdicts_say_what_the_runs_show():
    rec = {"parameters": {"test_group": "03"}, "history": [{}] * 40,
           "metrics": {"converged": False, "tail_improvement": 0.081, "best_epoch": 38, "images": 48,
                       "dice_mean": 0.8123, "detection_rate": 0.55, "landmark_error_mm_mean": 4.2,
                       "landmark_error_mm_std": 1.5}}
    text = run_verdict(rec)
    assert "**not met**" in text and "8.1%" in text and "epoch 38 of 40" in text
    assert "specimen 03" in text and "Dice 0.812" in text and "55%" in text
    assert "4.20 ± 1.50 mm" in text
    text = study_verdict(_records(converged=False))
    assert "0 of 16 runs met" in text and "did not converge" in text
    assert "Real2Real (regular DR, 2 held-out specimens pooled) **does not clear**" in text  # Dice about 0.65
    rec["metrics"] |= {"tail_improvement": float("nan"), "landmark_error_mm_mean": float("nan")}
    rec["history"] = [{}] * 2
    text = run_verdict(rec)
    assert "2 epoch(s) are too few to judge" in text and "none activated" in text and "nan" not in text


def test_a_claim_is_tested_on_the_folds_where_both_runs_converged():
    """Three held-out specimens; realistic strong fails to converge on one: its claims are tested on the other
    two (paired on their images only, saying which was left out); on two of three, not testable."""
    recs = _records()
    third = [dict(r, parameters=dict(r["parameters"], test_group="03")) for r in recs
             if r["parameters"]["test_group"] == "01"]
    recs = recs + third
    for r in recs:
        p = r["parameters"]
        if p["train_domain"] == "realistic" and p["dr_preset"] == "strong" and p["test_group"] == "03":
            r["metrics"] = {"converged": False}
    df = check_claims(recs)
    row = df[(df["claim"] == "realistic beats heuristic (strong DR)") & (df["metric"] == "Dice")].iloc[0]
    assert row["verdict"] == "held" and row["folds"] == "2 of 3 (03 left out: not converged)"
    assert row["pairs"] == 30  # 15 images on each of 01 and 02
    other = df[(df["claim"] == "strong DR beats regular DR (heuristic)") & (df["metric"] == "Dice")].iloc[0]
    assert other["folds"] == "3 of 3" and other["pairs"] == 45
    for r in recs:
        p = r["parameters"]
        if p["train_domain"] == "realistic" and p["dr_preset"] == "strong" and p["test_group"] == "02":
            r["metrics"] = {"converged": False}
    row = check_claims(recs).set_index(["claim", "metric"]).loc[("realistic beats heuristic (strong DR)", "Dice")]
    assert row["verdict"] == "not testable (runs not converged)" and row["folds"] == "1 of 3 converged"
