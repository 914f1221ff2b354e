"""DeepFluoro's preprocessed (2x-16x) files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.realdata.deepfluoro_preprocessed import DeepFluoroPreprocessed
from synthex_lib.realdata.fixtures import FIXTURE_FILE_ORDER, write_deepfluoro_preprocessed_fixture


@pytest.fixture
def ds_file(tmp_path):
    p = tmp_path / "ipcai_2020_ds_8x.h5"
    return p, write_deepfluoro_preprocessed_fixture(p, groups=("01", "02"), n_images=3, size=24)


def test_reads_groups_and_reorders_landmarks(ds_file):
    p, truth = ds_file
    ds = DeepFluoroPreprocessed(p)
    assert ds.downsample == 8 and ds.groups == ["01", "02"] and ds.sizes == {"01": 3, "02": 3}
    assert ds.landmark_names == list(FIXTURE_FILE_ORDER) and ds.landmark_names[1] == "FH-r"
    assert ds.specimen_id("01") == "17-1882" and ds.specimen_id("06") == "17-1905"
    im = ds.images("02")
    assert im.projs.dtype == np.float32 and im.segs.dtype == np.uint8 and im.projs.shape == (3, 24, 24)
    np.testing.assert_array_equal(im.lands, truth["02"])  # official order
    xy = np.transpose(truth["02"], (0, 2, 1))
    inside = (xy >= 0).all(-1) & (xy <= 23).all(-1)
    np.testing.assert_array_equal(im.visible, inside)
    assert 0 < inside.sum() < inside.size  # some landmarks out of bounds, flagged not dropped
    sub = ds.images("01", landmark_order=("FH-l", "XX"))
    assert np.isnan(sub.lands[:, :, 1]).all() and not sub.visible[:, 1].any()
    assert set(ds.all_images()) == {"01", "02"}
    assert DeepFluoroPreprocessed(p.parent).path == p  # a folder with one file works
    with pytest.raises(ConfigError, match="no group '07'"):
        ds.images("07")
    assert tuple(HIP_LANDMARKS) != FIXTURE_FILE_ORDER


def _edit(p, fn):
    with h5py.File(p, "r+") as f:
        fn(f)


def _replace(f, key, data):
    del f[key]
    f.create_dataset(key, data=data)


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.__delitem__("land-names"), "missing key 'land-names'"),
    (lambda f: _replace(f, "01/lands", np.zeros((3, 2, 13), np.float32)), r"'01/lands' has shape \(3, 2, 13\)"),
    (lambda f: _replace(f, "01/segs", np.zeros((3, 24, 24), np.float32)), "'01/segs' has dtype float32"),
    (lambda f: _replace(f, "01/segs", np.zeros((3, 24, 20), np.uint8)), r"'01/segs' has shape \(3, 24, 20\)"),
    (lambda f: _replace(f, "01/projs", np.zeros((3, 24), np.float32)), "'01/projs' must be N x R x C"),
    (lambda f: f.__delitem__("02/projs"), "missing key '02/projs'"),
    (lambda f: _replace(f, "land-names/land-03", np.bytes_("Nose")), "unknown landmark names"),
])
def test_bad_files(ds_file, edit, match):
    p, _ = ds_file
    _edit(p, edit)
    with pytest.raises(DataError, match=match) as e:
        DeepFluoroPreprocessed(p)
    assert str(p) in str(e.value)


def test_bad_label_values_and_truncation(ds_file, tmp_path):
    p, _ = ds_file
    _edit(p, lambda f: f["01/segs"].__setitem__((0, 0, 0), 9))
    with pytest.raises(DataError, match="'01/segs' holds labels outside 0-6"):
        DeepFluoroPreprocessed(p).images("01")
    t = tmp_path / "t.h5"
    t.write_bytes(p.read_bytes()[:2000])
    with pytest.raises(DataError, match="truncated"):
        DeepFluoroPreprocessed(t)
    with pytest.raises(DataError, match="synthex data fetch deepfluoro-4x"):
        DeepFluoroPreprocessed(tmp_path / "missing", downsample=4)
    with pytest.raises(ConfigError, match="'downsample' must be one of"):
        DeepFluoroPreprocessed(p, downsample=3)


def test_write_layout_file_for_the_readers_of_simulated_data(ds_file, tmp_path):
    from synthex_lib.datasets.layout import list_groups, read_group, read_landmark_names

    p, truth = ds_file
    out = DeepFluoroPreprocessed(p).write_layout_file(tmp_path / "real.h5")
    assert read_landmark_names(out) == list(HIP_LANDMARKS) and list_groups(out) == ["01", "02"]
    g = read_group(out, "01")
    np.testing.assert_array_equal(g.lands, truth["01"])
    assert g.visible is not None and g.projs.shape == (3, 24, 24)
    with h5py.File(out) as f:
        assert f.attrs["dataset"] == "deepfluoro-8x" and f.attrs["image_size"] == 24

