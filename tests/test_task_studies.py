"""The tool detection and COVID-19 lesion studies: the lab's real images (other specimens than the training
scenes, manual annotation error), landmark reprojection of the kinematic centreline end points, the confusion
metrics on hand-computed cases (empty masks too), folds that never share a specimen, the runs, their paired
claims and bad input; QaTa-COV19 in its real layouts runs the same code."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from synthex_lib.anatomy.cohorts import cohort_members, make_tool_scene
from synthex_lib.anatomy.tool import cm_kinematics
from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import list_groups, read_file_attrs, read_group
from synthex_lib.experiments import sweep, task_analysis, task_runs
from synthex_lib.generate.annotation import AnnotationErrorModel, annotate, offset_mask
from synthex_lib.learning import metrics as M
from synthex_lib.learning.stats import pitman_morgan
from synthex_lib.realdata.fixtures import write_qata_fixture
from synthex_lib.realdata.qata import QaTaCOV19, fold_of_pairs

SMOKE = get_profile("smoke")
# the COVID-19 Real2Real folds get a schedule of their own (Profile.task_train), as the paper's 50 epochs
TINY = dataclasses.replace(get_profile("smoke", epochs=1, max_iterations=2, unet_channels=(4, 8), batch_size=2),
                           task_train={"chest:real": {"max_iterations": 3}})


# --- metrics and statistics on hand-computed cases ----------------------------------------------------------

def test_confusion_metrics_with_empty_masks():
    empty, full = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    full[1:3, 1:3] = True  # 4 lesion pixels of 16
    both_empty = M.binary_confusion_metrics(empty, empty)
    assert all(v == pytest.approx(1.0) for v in both_empty.values())  # nothing to find, nothing found
    missed = M.binary_confusion_metrics(empty, full)  # tp 0, fn 4, fp 0, tn 12
    assert missed["sensitivity"] == pytest.approx(0.0, abs=1e-4)
    assert missed["specificity"] == pytest.approx(1.0)
    assert missed["precision"] == pytest.approx(1.0)  # no positive predicted: smoothed to 1 as the official script
    assert missed["accuracy"] == pytest.approx(12 / 16, abs=1e-4)
    assert missed["f1"] == pytest.approx(0.0, abs=1e-4) and missed["f2"] == pytest.approx(0.0, abs=1e-4)  # not 2, 5
    false_alarm = M.binary_confusion_metrics(full, empty)  # tp 0, fn 0, fp 4, tn 12
    assert false_alarm["precision"] == pytest.approx(0.0, abs=1e-4)
    assert false_alarm["specificity"] == pytest.approx(12 / 16, abs=1e-4)
    assert false_alarm["f1"] == pytest.approx(0.0, abs=1e-4)
    with pytest.raises(ValueError, match="shape"):
        M.binary_confusion_metrics(empty, np.zeros((3, 3), bool))


def test_pitman_morgan_on_a_hand_computed_case():
    a = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    b = np.array([0.0, 4.0, 2.0, 8.0, 6.0])
    s, d = a + b, a - b
    r = np.corrcoef(s, d)[0, 1]  # var(a) - var(b) = cov(s, d) < 0: a is less spread
    assert r < 0
    t = r * np.sqrt(3) / np.sqrt(1 - r * r)
    from scipy import stats as sps
    assert pitman_morgan(a, b, "less") == pytest.approx(sps.t.cdf(t, 3))
    assert pitman_morgan(a, b, "greater") == pytest.approx(1 - sps.t.cdf(t, 3))
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, 400)
    assert pitman_morgan(x + rng.normal(0, 0.2, 400), 3 * x, "less") < 1e-6  # far less spread: detected
    assert np.isnan(pitman_morgan(a[:2], b[:2]))


# --- the lab's manual annotation ------------------------------------------------------------------------------

def test_offset_mask_moves_the_outline_by_the_distance_in_mm():
    yy, xx = np.mgrid[:41, :41]
    disc = (xx - 20) ** 2 + (yy - 20) ** 2 <= 8**2
    grown = offset_mask(disc, 3.0, 1.5)  # 2 px outwards at 1.5 mm per pixel
    rho = np.hypot(xx - 20, yy - 20)
    # the pixels within 2 px of the disc: every one within radius 10, and all of radius 9.3 (pixelized disc)
    assert (grown <= (rho <= 10)).all() and (rho <= 9.3)[~grown].sum() == 0 and (disc <= grown).all()
    shrunk = offset_mask(disc, -3.0, 1.5)
    assert shrunk.sum() < disc.sum() and (shrunk <= disc).all()
    assert np.abs(np.sqrt(shrunk.sum() / np.pi) - 6.5).item() < 1.0
    np.testing.assert_array_equal(offset_mask(disc, 0.4, 1.5), disc)  # less than a pixel's reach: unchanged


def test_annotation_error_has_the_stated_spread_and_keeps_the_labels():
    n, L, pixel_mm = 400, 2, 0.8
    segs = np.zeros((n, 32, 32), np.uint8)
    segs[:, 10:20, 12:14] = 1
    lands = np.full((n, 2, L), 16.0, np.float32)
    vis = np.ones((n, L), bool)
    model = AnnotationErrorModel(landmark_sd_mm=0.5, outline_sd_mm=0.5)
    rngs = [np.random.default_rng(i) for i in range(n)]
    s2, l2, v2 = annotate(segs, lands, vis, pixel_mm, rngs, model)
    shift_mm = (l2 - lands) * pixel_mm
    assert shift_mm.std() == pytest.approx(0.5, rel=0.08) and abs(shift_mm.mean()) < 0.05
    assert set(np.unique(s2)) == {0, 1} and v2.all()
    assert (s2 != segs).any()  # some outlines moved by a pixel or more
    again = annotate(segs, lands, vis, pixel_mm, [np.random.default_rng(i) for i in range(n)], model)
    np.testing.assert_array_equal(again[1], l2)  # one generator per image: the same draws give the same labels
    np.testing.assert_array_equal(segs[:, 10:20, 12:14], 1)  # the input is not modified


# --- folds -----------------------------------------------------------------------------------------------------

def test_folds_never_share_a_specimen():
    groups = [f"{i:02d}" for i in range(1, 7)]
    folds = task_runs.fold_groups(groups)
    assert len(folds) == 5 and sorted(g for f in folds for g in f) == groups
    for i, f in enumerate(folds):
        train = {g for j, o in enumerate(folds) if j != i for g in o}
        assert f and not set(f) & train
    assert task_runs.fold_groups(["01", "02", "03"]) == [["01"], ["02"], ["03"]]
    with pytest.raises(ConfigError, match="at least 2"):
        task_runs.fold_groups(["01"])


# --- the lab's tool scenes and their images ------------------------------------------------------------------

def test_tool_landmarks_are_the_kinematic_centreline_end_points():
    scene = make_tool_scene(0, "smoke", index=1, cohort="tool-lab")
    assert scene.meta["host_cohort"] == "lab" and scene.meta["host"] == "lab-02"  # scene i in lab specimen i
    base, frame = scene.anatomy.placement()
    _, _, line = cm_kinematics(scene.meta["tool"]["joint_deg"], base, frame)
    np.testing.assert_allclose(scene.landmarks["base"], line[0])
    np.testing.assert_allclose(scene.landmarks["tip"], line[-1])
    assert np.linalg.norm(np.diff(line, axis=0), axis=1).sum() == pytest.approx(35.0)  # the CM's length
    train_hosts = {make_tool_scene(0, "smoke", index=i).meta["host"] for i in range(SMOKE.lab.tool_configs)}
    assert all(h.startswith("scale-") for h in train_hosts)  # training scenes never in a lab specimen
    with pytest.raises(ConfigError, match="tool scenes"):
        make_tool_scene(0, "smoke", index=0, cohort="lab")


@pytest.fixture(scope="module")
def smoke_data(tmp_path_factory):
    """The smoke tool and chest datasets (made once in the default data folder, as ``make data`` and the
    notebooks use them), copied into a folder of this module's own for its runs."""
    root = tmp_path_factory.mktemp("task-studies")
    for task in task_runs.KINDS:
        src = task_runs.task_dir(SMOKE, task)
        shutil.copytree(src, root / src.relative_to(paths.data_root()))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEX_DATA", str(root))
        yield root


def _project(P: np.ndarray, X: np.ndarray) -> np.ndarray:
    h = np.einsum("nij,lj->nli", P, np.c_[X, np.ones(len(X))])
    return h[..., :2] / h[..., 2:]


def test_tool_images_reproject_the_end_points_and_real_ones_are_other_specimens(smoke_data):
    folder = task_runs.task_dir(SMOKE, "tool")
    sims = [m.specimen_id for m in cohort_members("tool", SMOKE)]
    reals = [m.specimen_id for m in cohort_members("tool-lab", SMOKE)]
    assert len(list_groups(folder / "realistic.h5")) == len(sims) and list_groups(folder / "real.h5") == \
        [f"{i:02d}" for i in range(1, SMOKE.lab.lab_specimens + 1)]
    attrs = read_file_attrs(folder / "real.h5")
    assert attrs["source_cohort"] == "tool-lab" and "manual" in attrs["annotation"]
    assert read_file_attrs(folder / "realistic.h5")["source_cohort"] == "tool"
    err = []
    for cohort, name, exact in (("tool", "realistic.h5", True), ("tool-lab", "real.h5", False)):
        for i, g in enumerate(list_groups(folder / name)):
            scene = make_tool_scene(0, "smoke", index=i, cohort=cohort)
            imgs = read_group(folder / name, g)
            X = np.stack([scene.landmarks["base"], scene.landmarks["tip"]])
            xy = _project(imgs.P, X)  # (col, row) of the stored image
            d = np.linalg.norm(imgs.landmarks_xy - xy, axis=-1) * attrs["pixel_mm"]
            if exact:
                assert d.max() < 1e-3
            else:
                err.append(d)
    err = np.concatenate(err).ravel()
    assert 0 < np.median(err) < 2.0  # the annotator's error: N(0, 0.5 mm) per axis, median radius ~0.59 mm
    assert not set(sims) & set(reals)


def test_chest_real_images_are_other_patients(smoke_data):
    folder = task_runs.task_dir(SMOKE, "chest")
    assert read_file_attrs(folder / "real.h5")["source_cohort"] == "chest-real"
    assert len(list_groups(folder / "real.h5")) == SMOKE.lab.chest_real_specimens
    train = {m.specimen_id for m in cohort_members("chest", SMOKE)}
    test = {m.specimen_id for m in cohort_members("chest-real", SMOKE)}
    assert train and test and not train & test
    assert read_group(folder / "real.h5", "01").segs.any()  # lesions are projected into the radiographs


# --- runs, claims and verdicts ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runs(smoke_data):
    return {task: sweep.task_sweep(TINY, task, workers=0, progress=False) for task in task_runs.KINDS}


def test_runs_pair_every_real_image_once(runs):
    for task, recs in runs.items():
        sim, real = task_analysis.split_records(recs)
        assert sim is not None and len(real) == len(task_runs.fold_groups(sim["parameters"]["test_groups"]))
        seen = [(g, i) for r in real for g, i in zip(r["per_image"]["group"], r["per_image"]["image"], strict=True)]
        assert sorted(seen) == sorted(zip(sim["per_image"]["group"], sim["per_image"]["image"], strict=True))
        for r in real:  # a fold trains on the other folds' specimens only
            assert not set(r["metrics"]["train_groups"]) & set(r["parameters"]["test_groups"])
        for r in (sim, *real):  # each run trained, and is keyed, by its task's schedule
            steps = 3 if (task, r["parameters"]["train_domain"]) == ("chest", "real") else 2
            assert r["parameters"]["train"]["max_iterations"] == steps and r["history"][-1]["step"] == steps
        # read back, not retrained
        again = task_runs.run_task_experiment(TINY, progress=False, **task_runs.task_specs_kwargs(TINY, task)[0])
        assert again["run_id"] == sim["run_id"]
    lesion = runs["chest"][0]["per_image"]
    assert set(lesion) >= {"sensitivity", "specificity", "precision", "f1", "f2", "accuracy", "dice"}
    assert all(0 <= v <= 1 for v in lesion["f1"])


def test_claims_tables_and_verdicts(runs):
    for task, recs in runs.items():
        claims = task_analysis.check_task_claims(recs, task)
        assert len(claims) == len(task_analysis.claims_of(task))
        # the tiny runs did not converge: nothing is claimed on them
        assert claims["verdict"].str.startswith("not testable").all()
        table = task_analysis.results_table(recs, task)
        assert list(table.index) == ["Sim2Real", "Real2Real"]
        assert "not testable" in task_analysis.task_verdict(recs, task)
    converged = [dict(r, metrics=dict(r["metrics"], converged=True)) for r in runs["chest"]]
    claims = task_analysis.check_task_claims(converged, "chest")
    assert not claims["verdict"].str.startswith("not testable").any()
    spread = task_analysis.check_task_claims(runs["tool"], "tool").set_index("claim").iloc[2]
    assert spread["test"].startswith("Pitman-Morgan") and not spread["A - B (95% CI)"].startswith("+0.00 [")
    assert task_analysis.task_verdict(runs["tool"][:1], "tool").startswith("**Not run")


def test_chapters_fall_back_to_the_lab_for_a_hip_only_dataset():
    assert task_runs.real_dataset_for("chest", "qata-cov19") == "qata-cov19"
    assert task_runs.real_dataset_for("chest", "deepfluoro") == "lab"  # the book run with --dataset deepfluoro
    assert task_runs.real_dataset_for("tool", "qata-cov19") == "lab"
    with pytest.raises(ConfigError, match="'task'"):
        task_runs.real_dataset_for("hip", "lab")


def test_bad_task_arguments(smoke_data):
    with pytest.raises(ConfigError, match="'task'"):
        task_runs.run_task_experiment(TINY, task="hip")
    with pytest.raises(ConfigError, match="'dataset'"):
        task_runs.run_task_experiment(TINY, task="tool", dataset="qata-cov19")
    with pytest.raises(ConfigError, match="'fold'"):
        task_runs.run_task_experiment(TINY, task="tool", train_domain="real", fold=9)
    with pytest.raises(ConfigError, match="'fold'"):
        task_runs.run_task_experiment(TINY, task="tool", fold=1)


# --- QaTa-COV19 in its real layouts -----------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["v1", "folds"])
def test_qata_folds_and_the_real_data_path(smoke_data, tmp_path, layout):
    base = write_qata_fixture(tmp_path, layout, n_images=6, n_masks=5, size=(40, 40))
    qata = QaTaCOV19(base)
    folds = fold_of_pairs(qata)
    names = [p.image for f in folds for p in f]
    assert len(folds) == 5 and len(names) == len(set(names))  # every image in one fold only
    if layout == "folds":
        assert [p.split for p in folds[2]] == ["Fold3/test"] * 6
    real = task_runs.real_file(TINY, "chest", dataset="qata-cov19", data_path=str(base))
    assert list_groups(real) == ["01", "02", "03", "04", "05"]
    assert read_group(real, "01").projs.shape[1:] == (TINY.sim.detector_px,) * 2
    rec = task_runs.run_task_experiment(TINY, task="chest", dataset="qata-cov19", data_path=str(base),
                                        train_domain="real", fold=2, progress=False)
    assert rec["parameters"]["test_groups"] == ["02"] and rec["metrics"]["images"] == len(folds[1])
    sim = task_runs.run_task_experiment(TINY, task="chest", dataset="qata-cov19", data_path=str(base), progress=False)
    assert sim["metrics"]["images"] == len(names)


def test_cli_sweep_runs_a_task_and_refuses_an_unknown_one(smoke_data, capsys):
    from synthex_lib.cli import main

    args = ["sweep", "--profile", "smoke", "--task", "tool", "--workers", "0", "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Sim2Real" in out and "Real2Real" in out
    assert main(["sweep", "--profile", "smoke", "--task", "hip", "--workers", "0"]) == 2
    assert "--task 'hip'" in capsys.readouterr().err
