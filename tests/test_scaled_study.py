"""The scaled-up study, the training-set size study and the cross-scanner test: runs on the scale cohort are
tested on every lab specimen and on the Loop-X-like specimen, read back, paired with the controlled study by
held-out specimen, and their claims tested; the size ladder, nested subsets and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sps

from synthex_lib.anatomy.cohorts import cohort_members
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import list_groups
from synthex_lib.experiments import hip, hip_scaled, scaled_analysis, sweep
from synthex_lib.figures.scaled import plot_size_curve, plot_view_histograms, view_angles_of
from synthex_lib.generate.engine import ensure_dataset
from synthex_lib.learning.stats import welch_tost

TINY = get_profile("smoke", epochs=1, max_iterations=2, unet_channels=(4, 8), batch_size=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scaled-study")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEX_DATA", str(root))
        ensure_dataset("hip-controlled", TINY, workers=0, progress=False)
        ensure_dataset("hip-scaled", TINY, workers=0, progress=False)
        yield root


@pytest.fixture(scope="module")
def runs(data):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEX_DATA", str(data))
        specs = hip_scaled.scaled_specs_kwargs(TINY)
        controlled = sweep.hip_sweep(TINY, domains=("real", "realistic"), presets=("strong",), workers=0,
                                     progress=False, scaled=specs)
        scaled = [hip_scaled.run_scaled_experiment(TINY, progress=False, **kw) for kw in specs]
        yield controlled, scaled, specs


def test_scaled_runs_test_every_lab_specimen_and_the_cross_scanner_one(data, runs):
    controlled, scaled, specs = runs
    full = scaled[0]
    folder = hip.controlled_dir(TINY, 0, "lab")
    assert sorted(full["per_image"]) == list_groups(folder / "real.h5")  # every lab specimen, each its own key
    n_real = sum(len(v["dice"]) for v in full["per_image"].values())
    assert full["metrics"]["images"] == n_real
    assert full["cross_scanner"]["groups"] == list_groups(folder / hip.CROSS_SCANNER_FILE)
    assert len(full["cross_scanner"]["per_image"]["dice"]) > 0
    # per structure values are stored and average to the per-image Dice
    for v in full["per_image"].values():
        np.testing.assert_allclose(np.mean(v["dice_per_class"], axis=1), v["dice"])
    # trained on the scale cohort only: none of its CTs is a lab specimen
    scale_ids = {m.specimen_id for m in cohort_members("scale", TINY)}
    lab_ids = {m.specimen_id for m in cohort_members("lab", TINY)}
    assert not scale_ids & lab_ids
    assert full["metrics"]["train_specimens"] == TINY.lab.scale_specimens
    # the controlled study's runs carry the cross-scanner test too
    assert all(r["cross_scanner"]["file"] == hip.CROSS_SCANNER_FILE for r in controlled)
    # the sweep trained them; a second call reads them back
    again = [hip_scaled.run_scaled_experiment(TINY, progress=False, **kw) for kw in specs]
    assert [r["run_id"] for r in again] == [r["run_id"] for r in scaled]


def test_size_study_trains_on_nested_subsets(data, runs):
    _, scaled, specs = runs
    sizes = [kw["train_size"] for kw in specs]
    assert sizes[0] == 0 and sizes[1:] == sorted(sizes[1:]) and len(sizes) >= 2
    pool, train_all, val = hip_scaled.training_split(TINY, hip_scaled.scaled_dir(TINY) / "realistic.h5", 0, 0)
    subsets = [set(hip_scaled.training_split(TINY, hip_scaled.scaled_dir(TINY) / "realistic.h5", 0, n)[1])
               for n in sizes[1:]]
    for small, big in zip(subsets, subsets[1:], strict=False):
        assert small < big
    assert all(s <= set(train_all) and not s & set(val) for s in subsets)
    assert [r["metrics"]["train_images"] for r in scaled[1:]] == sizes[1:]
    with pytest.raises(ConfigError, match="train_size"):
        hip_scaled.run_scaled_experiment(TINY, train_size=len(train_all) + 1, progress=False)
    with pytest.raises(ConfigError, match="train_size"):
        hip_scaled.run_scaled_experiment(TINY, train_size=-3, progress=False)


def test_size_ladder_follows_the_papers_sizes():
    assert hip_scaled.size_ladder(18_000) == [1_000, 2_000, 5_000, 10_000]
    assert hip_scaled.size_ladder(860) == [86, 172, 430, 860]
    assert hip_scaled.size_ladder(14) == [7, 14]  # 1 and 3 are below MIN_SIZE


def test_analysis_pairs_scaled_folds_with_the_controlled_study(data, runs):
    controlled, scaled, _ = runs
    folds = scaled_analysis.fold_records(scaled[0])
    assert [f["parameters"]["test_group"] for f in folds] == sorted(scaled[0]["per_image"])
    table = scaled_analysis.scaled_table(scaled, controlled, "strong")
    assert set(table["model"]) == {"realistic-scaled", "real", "realistic"}
    assert table.iloc[0]["Dice (paper: NMI · preprint Table 1)"] == "0.860 ± 0.210 · 0.818 ± 0.221"
    claims = scaled_analysis.scaled_claims(scaled, controlled, "strong")
    assert any(c.startswith("scaled-up SyntheX beats Real2Real") for c in claims["claim"])
    assert any(c.startswith("more synthetic training images help") for c in claims["claim"])
    # one optimizer step never converges: every claim is marked, whatever its P value
    assert claims["verdict"].str.startswith("not testable").all()
    real_groups = scaled_analysis.folds_of(controlled, "real", "strong")
    pairs = claims[claims["claim"].str.startswith("scaled-up SyntheX") & (claims["metric"] == "Dice")]
    assert int(pairs.iloc[0]["pairs"]) == sum(len(scaled[0]["per_image"][g]["dice"]) for g in real_groups)
    lm = scaled_analysis.per_landmark_table(scaled[0], controlled)
    assert len(lm) == 14
    st = scaled_analysis.per_structure_table(scaled[0], controlled)
    assert list(st.columns) == ["Dice (scaled-up)", "Dice (Real2Real)"] and len(st) == 6
    curve = scaled_analysis.size_curve(scaled, "strong")
    assert list(curve["training images"]) == sorted(curve["training images"])
    assert list(scaled_analysis.size_table(curve).index) == list(curve["training images"])
    xs = scaled_analysis.cross_scanner_table(scaled, controlled)
    assert {"realistic-scaled", "real", "realistic"} == set(xs["train domain"])
    assert xs["verdict"].str.startswith("not testable").all()  # not converged
    plot_size_curve(curve)
    sets = {"real (controlled)": view_angles_of(hip.controlled_dir(TINY, 0, "lab") / "real.h5"),
            "scaled-up": view_angles_of(hip_scaled.scaled_dir(TINY) / "realistic.h5")}
    assert all(np.abs(a["lao"]).max() <= 45 + 1e-6 for a in sets.values())  # the Methods' sampler: +-45 deg
    plot_view_histograms(sets)


def test_welch_tost_against_hand_computed_values():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.5, 2.5, 3.5, 4.5, 5.5, np.nan])
    # means 2.5 and 3.5; variances 5/3 and 2.5; se^2 = 5/12 + 0.5; Welch df = (11/12)^2 / ((5/12)^2/3 + 0.5^2/4)
    se = np.sqrt(5 / 12 + 0.5)
    df = (11 / 12) ** 2 / ((5 / 12) ** 2 / 3 + 0.25 / 4)
    expected = max(sps.t.sf((-1.0 + 2.0) / se, df), sps.t.cdf((-1.0 - 2.0) / se, df))
    assert welch_tost(a, b, 2.0) == pytest.approx(expected)
    assert welch_tost(a, a + 0.01, 0.5) < 0.7  # nearly equal means, wide spread: TOST stays cautious
    spread = np.tile([-1.0, 1.0], 50)  # sd 1.005, n 100: se of the difference 0.142; (0.5 - 0.1) / se = 2.8
    assert welch_tost(spread, spread + 0.1, 0.5) == pytest.approx(0.003, abs=0.001)
    assert welch_tost(a, b + 10, 1.0) > 0.99
    assert np.isnan(welch_tost(a[:1], b, 1.0))
    with pytest.raises(ValueError, match="margin"):
        welch_tost(a, b, 0.0)


def test_sweep_command_runs_the_scaled_study_too(data, capsys, monkeypatch):
    from synthex_lib.cli import main

    monkeypatch.setenv("SYNTHEX_DATA", str(data))
    argv = ["sweep", "--profile", "smoke", "--domain", "real", "--preset", "strong", "--workers", "0",
            "--no-progress", "--scaled"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "training images" in out and "Dice" in out
    stored = sorted((data / "results" / "smoke").glob("hip-scaled-*.json"))
    sizes = hip_scaled.size_ladder(len(hip_scaled.training_split(get_profile("smoke"), hip_scaled.scaled_dir(
        get_profile("smoke")) / "realistic.h5", 0, 0)[1]))
    assert len(stored) >= len(sizes)  # the whole set and each smaller size (TINY's runs are stored too)
