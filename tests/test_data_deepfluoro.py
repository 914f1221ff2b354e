"""DeepFluoro full-resolution loader, projection matrices and the "deepfluoro" controlled-study source."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.geometry import decompose_projection, project_points
from synthex_lib.realdata.deepfluoro import (
    DeepFluoro,
    area_weights,
    controlled_cases,
    crop_and_bin_matrix,
    rot180_matrix,
)
from synthex_lib.realdata.fixtures import write_deepfluoro_fixture


@pytest.fixture(scope="module")
def df_file(tmp_path_factory):
    return write_deepfluoro_fixture(tmp_path_factory.mktemp("df") / "ipcai_2020_full_res_data.h5", n_px=32,
                                    n_projections=4)


def _copy(df_file, tmp_path):
    dst = tmp_path / "copy.h5"
    dst.write_bytes(df_file.read_bytes())
    return dst


def test_layout_specimens_and_groups(df_file):
    df = DeepFluoro(df_file.parent)  # a folder works too
    assert df.specimen_ids == ["99-0001"]
    assert df.num_projections("99-0001") == 4 and df.group("99-0001") == "01"
    assert df.projection_keys("01") == ["000", "001", "002", "003"]  # groups are accepted as IDs
    with pytest.raises(ConfigError, match="unknown DeepFluoro specimen"):
        df.specimen("17-9999")


@pytest.mark.parametrize("upright", [False, True])
def test_projection_matrices_reproduce_stored_landmarks(df_file, upright):
    df = DeepFluoro(df_file)
    spec = df.specimen("99-0001")
    flagged = 0
    for pr in df.projections("99-0001", upright=upright):
        names = sorted(pr.landmarks)
        assert set(names) == set(HIP_LANDMARKS)
        uv, depth = project_points(pr.P, np.array([spec.landmarks[n] for n in names]))
        np.testing.assert_allclose(uv, np.array([pr.landmarks[n] for n in names]), atol=1e-3)
        assert (depth < 0).all()  # the true projective map: detector at negative camera z
        assert pr.upright == (upright and pr.rot180)
        flagged += pr.rot180
    assert flagged == 2


def test_upright_rotates_image_labels_landmarks_and_P_alike(df_file):
    df = DeepFluoro(df_file)
    raw = df.projection("99-0001", 1, upright=False)
    up = df.projection("99-0001", 1, upright=True)
    assert raw.rot180 and up.upright and not raw.upright
    np.testing.assert_array_equal(up.image, raw.image[::-1, ::-1])
    np.testing.assert_array_equal(up.seg, raw.seg[::-1, ::-1])
    for k, v in raw.landmarks.items():
        np.testing.assert_allclose(up.landmarks[k], [31 - v[0], 31 - v[1]], atol=1e-9)
    np.testing.assert_allclose(up.P, rot180_matrix(32, 32) @ raw.P)
    # an unflagged projection is unchanged by upright=True
    a, b = df.projection("99-0001", 0, upright=False), df.projection("99-0001", 0, upright=True)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.P, b.P)
    # upright, the patient's right (-r landmarks) is on the viewer's left and the head up (ASIS above FH)
    assert up.landmarks["FH-r"][0] < up.landmarks["FH-l"][0]
    assert up.landmarks["ASIS-l"][1] < up.landmarks["FH-l"][1]


def test_source_position_and_femur_poses(df_file):
    df = DeepFluoro(df_file)
    pr = df.projection("99-0001", 2)
    # the X-ray source is the origin of the projective frame: inv(extrinsic @ inv(cam-to-pelvis)) @ 0
    source = (pr.poses["pelvis"] @ np.linalg.inv(pr.extrinsic) @ [0, 0, 0, 1])[:3]
    np.testing.assert_allclose(decompose_projection(pr.P)[0], source, atol=1e-6)
    assert 600 <= np.linalg.norm(source - df.specimen("99-0001").center_lps) <= 720
    assert set(pr.poses) == {"pelvis", "left-femur", "right-femur"}
    np.testing.assert_allclose(pr.projection_matrix("pelvis"), pr.P)
    assert not np.allclose(pr.projection_matrix("left-femur"), pr.P)
    assert pr.femur_good_fov == {"left": True, "right": False}


def test_specimen_volume_labels_and_landmarks(df_file):
    df = DeepFluoro(df_file)
    spec = df.specimen("99-0001")
    assert spec.kind == "hip" and spec.ct_hu.dtype == np.float32 and spec.ct_hu.shape == (12, 14, 16)
    assert spec.spacing == (14.0, 12.0, 14.0) and spec.origin == (-105.0, -78.0, -1020.0)
    assert spec.ct_hu.min() < -900 and spec.ct_hu.max() > 500  # HU: air and bone
    assert set(np.unique(spec.labels)) == {0, 1, 2, 3, 4, 5, 6}  # lower sacrum (7) -> background
    assert 7 in np.unique(df.specimen("99-0001", keep_lower_sacrum=True).labels)
    assert spec.meta["label_names"][7] == "lower-sacrum" and spec.meta["label_names"][1] == "left-hemipelvis"
    with h5py.File(df_file) as f:
        np.testing.assert_array_equal(spec.landmarks["FH-l"], f["99-0001/vol-landmarks/FH-l"][()].ravel())
    assert spec.landmarks["FH-l"][0] > spec.landmarks["FH-r"][0]  # LPS +x is the patient's left


def test_raw_and_log_domain(df_file):
    df = DeepFluoro(df_file)
    raw = df.projection("99-0001", 0)
    log = df.projection("99-0001", 0, log=True)
    assert not raw.log_domain and log.log_domain and log.image.dtype == np.float32
    np.testing.assert_allclose(log.image, np.log(raw.image.max()) - np.log(raw.image), rtol=1e-5, atol=1e-5)
    bone, air = raw.seg > 0, raw.image >= raw.image.max() * 0.999
    assert raw.image[bone].mean() < raw.image[~bone].mean()  # raw: bone dark
    assert log.image[bone].mean() > log.image[~bone].mean() and np.allclose(log.image[air], 0, atol=1e-3)
    np.testing.assert_allclose(raw.log_image(i0=1e5), np.log(1e5) - np.log(raw.image), rtol=1e-5)


def test_optional_labels_def_and_xreg_attributes(tmp_path):
    p = write_deepfluoro_fixture(tmp_path / "plain.h5", n_projections=1, n_px=16, xreg_attrs=False)
    with h5py.File(p, "r+") as f:
        del f["99-0001/vol-seg/labels-def"]
        del f["99-0001/projections/000/gt-poses/cam-to-left-femur-vol"]
        assert "xreg-type" not in f["99-0001/vol"].attrs
    df = DeepFluoro(p)
    spec = df.specimen("99-0001")
    assert spec.meta["label_names"][5] == "left-femur"  # DeepFluoro's documented names
    pr = df.projection("99-0001", 0)
    assert set(pr.poses) == {"pelvis", "right-femur"}
    uv, _ = project_points(pr.P, spec.landmark_array(HIP_LANDMARKS))
    np.testing.assert_allclose(uv, pr.landmark_array(), atol=1e-3)


def test_known_specimen_ids_keep_paper_groups(tmp_path):
    p = write_deepfluoro_fixture(tmp_path / "k.h5", specimen_ids=("18-0725", "17-1882"), n_projections=1, n_px=16)
    df = DeepFluoro(p)
    assert df.specimen_ids == ["17-1882", "18-0725"]
    assert [df.group(s) for s in df.specimen_ids] == ["01", "03"]


# --- bad input: one clear DataError naming the file and the problem ----------------------------------

def _edit(path, fn):
    with h5py.File(path, "r+") as f:
        fn(f)
    return path


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.__delitem__("proj-params/intrinsic"), "missing key 'proj-params/intrinsic'"),
    (lambda f: f.__delitem__("proj-params"), "missing key 'proj-params'"),
    (lambda f: f.__delitem__("99-0001/vol-landmarks"), "missing key '99-0001/vol-landmarks'"),
    (lambda f: (f["proj-params"].__delitem__("extrinsic"), f["proj-params"].create_dataset("extrinsic", data=np.ones(
        (4, 4)))), "'proj-params/extrinsic' is not a rigid"),
    (lambda f: (f["proj-params"].__delitem__("intrinsic"), f["proj-params"].create_dataset("intrinsic", data=np.eye(
        4))), r"'proj-params/intrinsic' must have shape 3x3"),
])
def test_bad_layout_at_open(df_file, tmp_path, edit, match):
    p = _edit(_copy(df_file, tmp_path), edit)
    with pytest.raises(DataError, match=match) as e:
        DeepFluoro(p)
    assert str(p) in str(e.value)


def _replace(f, key, data):
    del f[key]
    f.create_dataset(key, data=data)


@pytest.mark.parametrize("edit, call, match", [
    (lambda f: _replace(f, "99-0001/vol-seg/image/pixels", np.zeros((12, 14, 16), np.float32)), "specimen",
     r"'99-0001/vol-seg/image/pixels' must be integer, found dtype float32"),
    (lambda f: _replace(f, "99-0001/vol/pixels", np.zeros((12, 14), np.float32)), "specimen",
     r"'99-0001/vol/pixels' must have shape NxNxN"),
    (lambda f: _replace(f, "99-0001/vol/pixels", np.array([b"x"] * 8).reshape(2, 2, 2)), "specimen",
     r"'99-0001/vol/pixels' must be numeric"),
    (lambda f: _replace(f, "99-0001/vol/dir-mat", -np.eye(3)), "specimen", "dir-mat' is not the identity"),
    (lambda f: _replace(f, "99-0001/vol-landmarks/FH-l", np.zeros((2, 1))), "specimen",
     r"'99-0001/vol-landmarks/FH-l' must have shape 3"),
    (lambda f: _replace(f, "99-0001/projections/000/gt-landmarks/FH-l", np.zeros((3, 1), np.float32)), "proj",
     r"'99-0001/projections/000/gt-landmarks/FH-l' must have shape 2, found \(3,\)"),
    (lambda f: _replace(f, "99-0001/projections/000/image/pixels", np.ones((16, 32), np.float32)), "proj",
     r"'99-0001/projections/000/image/pixels' must have shape 32x32"),
    (lambda f: f.__delitem__("99-0001/projections/000/rot-180-for-up"), "proj",
     "missing key '99-0001/projections/000/rot-180-for-up'"),
    (lambda f: _replace(f, "99-0001/projections/000/gt-poses/cam-to-pelvis-vol", np.diag([2.0, 1, 1, 1])), "proj",
     "cam-to-pelvis-vol' is not a rigid"),
])
def test_bad_content_on_read(df_file, tmp_path, edit, call, match):
    p = _edit(_copy(df_file, tmp_path), edit)
    df = DeepFluoro(p)
    with pytest.raises(DataError, match=match) as e:
        df.specimen("99-0001") if call == "specimen" else df.projection("99-0001", 0)
    assert str(p) in str(e.value)


def test_truncated_and_missing_file(df_file, tmp_path):
    p = tmp_path / "truncated.h5"
    p.write_bytes(df_file.read_bytes()[: df_file.stat().st_size // 2])
    with pytest.raises(DataError, match="truncated") as e:
        DeepFluoro(p)
    assert str(p) in str(e.value)
    with pytest.raises(DataError, match="file not found.*synthex data fetch deepfluoro"):
        DeepFluoro(tmp_path / "nothing.h5")
    q = tmp_path / "preproc.h5"  # the wrong layout: a preprocessed file
    with h5py.File(q, "w") as f:
        f.create_group("land-names").create_dataset("num-lands", data=14)
    with pytest.raises(DataError, match="missing key 'proj-params'"):
        DeepFluoro(q)


# --- the controlled study on real X-rays ----------------------------------------------------------------

@pytest.mark.parametrize("n_in, off, field, n_out", [(40, 3, 34, 8), (40, 4, 32, 8), (1536, 48, 1440, 64)])
def test_area_binning_matches_the_pixel_map(n_in, off, field, n_out):
    # a linear ramp is reproduced exactly at the binned pixel centres: image and P share one pixel map
    u = np.arange(n_in, dtype=float)
    img = 2.0 * u[None, :] - 0.5 * u[:, None] + 7.0
    binned = area_weights(n_in, n_out, off, field) @ img @ area_weights(n_in, n_out, off, field).T
    A = crop_and_bin_matrix(field, (off, off), n_out)
    centres = np.linalg.solve(A, np.stack([np.arange(n_out), np.arange(n_out), np.ones(n_out)]))[:2]
    expect = 2.0 * centres[0][None, :] - 0.5 * centres[1][:, None] + 7.0
    np.testing.assert_allclose(binned, expect, atol=1e-9)
    np.testing.assert_allclose(area_weights(n_in, n_out, off, field).sum(1), 1.0)


@pytest.mark.parametrize("downsample", [None, 2.0])
def test_controlled_cases_geometry(df_file, downsample):
    cases = list(controlled_cases("smoke", path=df_file, downsample=downsample, per_specimen=3))
    assert len(cases) == 1
    case = cases[0]
    n = 64 if downsample is None else 15  # smoke: detector_px = 64; else the 30 px field / 2
    assert case.group == "01" and case.device == "cios-fusion" and case.image_size == (n, n)
    r = case.real
    assert r.projs.shape == (3, n, n) and r.segs.shape == (3, n, n) and r.lands.shape == (3, 2, 14)
    assert r.projs.dtype == np.float32 and r.visible.shape == (3, 14) and case.P.shape == (3, 3, 4)
    X = case.specimen.landmark_array(HIP_LANDMARKS)
    for i in range(3):
        np.testing.assert_allclose(project_points(case.P[i], X)[0], r.lands[i].T, atol=1e-3)
        bone = r.segs[i] > 0
        assert r.projs[i][bone].mean() > r.projs[i][~bone].mean()  # log domain, bone bright
    assert r.attrs["projection_keys"] == ["000", "002", "003"]  # evenly spaced
    assert r.attrs["pixel_mm"] == pytest.approx(0.194 * 1440 / n, rel=1e-5)


def test_deepfluoro_source_is_in_the_table():
    from synthex_lib.generate.sources import SOURCES, get_source

    assert get_source("deepfluoro") is controlled_cases and set(SOURCES) == {"lab", "deepfluoro"}


def test_controlled_generation_runs_on_the_fixture(df_file, tmp_path, monkeypatch):
    """The controlled-study generation accepts dataset='deepfluoro' and renders matched replicas."""
    from synthex_lib.generate.engine import ensure_dataset

    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    out = ensure_dataset("hip-controlled", "smoke", dataset="deepfluoro", path=df_file, workers=0, progress=False)
    case = next(iter(controlled_cases("smoke", path=df_file)))
    with h5py.File(out / "real.h5") as f:
        assert f.attrs["dataset"] == "deepfluoro"
        np.testing.assert_array_equal(f["01/projs"][()], case.real.projs)
        np.testing.assert_array_equal(f["01/lands"][()], case.real.lands)
        np.testing.assert_allclose(f["01/P"][()], case.P)
        real = f["01/projs"][()]
    for domain in ("naive", "heuristic", "realistic"):
        with h5py.File(out / f"{domain}.h5") as f:
            sim = f["01/projs"][()]
            np.testing.assert_array_equal(f["01/segs"][()], case.real.segs)
        assert sim.shape == real.shape
        for i in range(len(sim)):  # the replica shows the same anatomy at the same place, upright or not
            corr = np.corrcoef(sim[i].ravel(), real[i].ravel())[0, 1]
            shifted = np.corrcoef(sim[i].ravel(), np.roll(real[i], 4, axis=0).ravel())[0, 1]
            assert corr > (0.98 if domain == "naive" else 0.85) and corr > shifted + 0.05, (domain, i, corr, shifted)
