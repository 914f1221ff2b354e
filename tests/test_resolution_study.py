"""The image-resolution study: sizes in the paper's ratio, what scales with the size (network input, heatmap sigma,
pixel size in mm) and what does not (data, poses, folds, everything else of the run), the base size being the
controlled study's own runs, the paired claims at every size, the table beside the preprint's, and bad input."""

from __future__ import annotations

import shutil

import matplotlib.pyplot as plt
import numpy as np
import pytest

from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import read_file_attrs
from synthex_lib.experiments import hip, hip_analysis, hip_resolution, resolution_analysis, sweep
from synthex_lib.figures.resolution import plot_resolution

SMOKE = get_profile("smoke")
TINY = get_profile("smoke", epochs=1, max_iterations=2, unet_channels=(4, 8), batch_size=2)


def test_sizes_keep_the_papers_ratio():
    assert hip_resolution.resolution_sizes("paper") == (180, 360, 480)
    assert hip_resolution.resolution_sizes("full") == (180, 360, 480)
    assert hip_resolution.resolution_sizes("quick") == (32, 64, 85)  # 64 x 480 / 360 = 85.3
    assert hip_resolution.paper_size("quick", 85) == 480
    with pytest.raises(ConfigError, match="parameter 'size': 90 px is not one of the study's sizes"):
        hip_resolution.paper_size("quick", 90)


def test_resolution_profile_scales_the_network_and_the_heatmaps_only():
    q = get_profile("quick")
    assert hip_resolution.resolution_profile(q, 64) is q  # the controlled study's runs themselves
    p = hip_resolution.resolution_profile(q, 32)
    assert p.train.image_size == 32 and p.train.heatmap_sigma_px == pytest.approx(q.train.heatmap_sigma_px / 2)
    assert p.name == q.name and p.lab == q.lab and p.sim == q.sim and p.folds == q.folds
    changed = {k for k, v in p.train.to_dict().items() if q.train.to_dict()[k] != v}
    assert changed == {"image_size", "heatmap_sigma_px"}
    for bad in (8, 32.0, True):
        with pytest.raises(ConfigError, match="parameter 'size'"):
            hip_resolution.resolution_profile(q, bad)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The smoke controlled dataset (made by ``make data``), copied into a folder of this module's own."""
    root = tmp_path_factory.mktemp("resolution-study")
    src = hip.controlled_dir(SMOKE, 0, "lab")
    shutil.copytree(src, root / src.relative_to(paths.data_root()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEX_DATA", str(root))
        yield root


@pytest.fixture(scope="module")
def by_size(data):
    return sweep.resolution_sweep(TINY, workers=0, progress=False)


def test_every_size_tests_the_same_real_images(by_size):
    sizes = hip_resolution.resolution_sizes(TINY)
    assert list(by_size) == list(sizes)
    folds = hip.held_out_groups(TINY)
    stored_px = float(read_file_attrs(hip.controlled_dir(TINY, 0, "lab") / "real.h5")["pixel_mm"])
    detector = TINY.sim.detector_px
    for size, recs in by_size.items():
        assert len(recs) == len(hip_resolution.DEFAULT_DOMAINS) * len(folds)
        for r in recs:
            assert r["parameters"]["train"]["image_size"] == size
            # millimetres are millimetres at every size: the pixel size follows the resize
            assert r["metrics"]["pixel_mm"] == pytest.approx(stored_px * detector / size)
    # the same held-out specimens and images at every size: a paired design within a size, the same test set across
    counts = {size: sorted((r["parameters"]["train_domain"], r["parameters"]["test_group"], len(r["per_image"]["dice"]))
                           for r in recs) for size, recs in by_size.items()}
    assert len({tuple(c) for c in counts.values()}) == 1
    # the base size is the controlled study's run itself, read back, not trained again
    base = by_size[TINY.train.image_size][0]
    again = hip.run_hip_experiment(TINY, progress=False, train_domain=base["parameters"]["train_domain"],
                                   dr_preset="strong", test_group=base["parameters"]["test_group"])
    assert again["run_id"] == base["run_id"]
    ids = {r["run_id"] for recs in by_size.values() for r in recs}
    assert len(ids) == sum(len(v) for v in by_size.values())  # every size its own key


def test_claims_table_and_figure(by_size):
    claims = resolution_analysis.resolution_claims(by_size)
    sizes = hip_resolution.resolution_sizes(TINY)
    assert [c.split(" at ")[-1] for c in claims["claim"].unique()] == [f"{s} px" for s in sizes]
    assert claims["claim"].str.startswith("realistic on par with real data (strong DR)").all()
    assert claims["verdict"].str.startswith("not testable").all()  # two optimizer steps never converge
    assert claims["paper"].iloc[0] == "Dice 0.787 vs 0.784, 8.41 vs 7.78 mm (preprint Tables 4-5, 180 px)"
    converged = {s: [dict(r, metrics=dict(r["metrics"], converged=True)) for r in recs] for s, recs in by_size.items()}
    tested = resolution_analysis.resolution_claims(converged)
    dice = tested[tested["metric"] == "Dice"]  # (the tiny runs activate too few landmarks for millimetre pairs)
    assert len(dice) == len(sizes) and not dice["verdict"].str.startswith("not testable").any()
    assert "Holm" in resolution_analysis.resolution_verdict(by_size)
    table = resolution_analysis.resolution_table(by_size, "smoke", "lab")
    assert list(table["px (paper)"].unique()) == [180, 360, 480]
    assert (table["Dice (paper: preprint Table 4)"] != "n/a").all()
    curves = resolution_analysis.size_curves(by_size)
    assert set(curves["source"]) == {"ours", "paper (preprint Tables 4-5)"}
    ours = curves[curves["source"] == "ours"]
    np.testing.assert_array_equal(sorted(ours["px"].unique()), sizes)
    fig = plot_resolution(curves)
    assert len(fig.axes) >= 2
    plt.close(fig)
    assert resolution_analysis.resolution_verdict({s: [] for s in sizes}).startswith("**Not run")


def test_bad_domains_are_refused():
    with pytest.raises(ConfigError, match="parameter 'domains'"):
        sweep.resolution_specs("smoke", domains=("realistic-cyclegan",))


def test_results_table_pools_the_controlled_study_only(by_size, capsys):
    from synthex_lib.cli import main

    assert main(["results", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    # the TINY runs are not the registered smoke profile's: every stored run is of other training fields
    assert "left out" in out and "no hip runs stored" in out
    stored = [r for recs in by_size.values() for r in recs]
    kept = hip_analysis.controlled_records(stored, TINY)  # the base size only, never the other sizes
    assert sorted(r["run_id"] for r in kept) == sorted(r["run_id"] for r in by_size[TINY.train.image_size])
