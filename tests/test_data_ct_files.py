"""Bring-your-own CT: NIfTI / NRRD / DICOM + label map + Slicer landmarks -> Specimen (LPS, [z, y, x])."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from synthex_lib.anatomy.io import read_markups, write_markups
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.realdata.ct_files import load_ct_specimen

SHAPE = (6, 7, 8)  # z, y, x


def _volume(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1), dtype=np.int16, values=None):
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    arr = (-1000 + 100 * i + 10 * j + k).astype(dtype) if values is None else values
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 1.2, 2.5))
    img.SetOrigin((-10.0, 20.0, -300.0))
    img.SetDirection(direction)
    return img


def _labels_like(img):
    k, j, i = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    lab = sitk.GetImageFromArray(((i + j + k) % 7).astype(np.uint8))
    lab.CopyInformation(img)
    return lab


def _check_world_consistency(spec, src, nearest_src=None):
    """Every specimen voxel holds the source value at the same LPS point."""
    for k, j, i in np.ndindex(spec.ct_hu.shape):
        x = spec.index_to_world([i, j, k])
        idx = src.TransformPhysicalPointToIndex(x.tolist())
        assert spec.ct_hu[k, j, i] == pytest.approx(float(src[idx]), abs=1e-3)
        if nearest_src is not None:
            assert spec.labels[k, j, i] == nearest_src[nearest_src.TransformPhysicalPointToIndex(x.tolist())]


@pytest.mark.parametrize("suffix, direction", [
    (".nii.gz", (-1, 0, 0, 0, -1, 0, 0, 0, 1)),  # as a RAS-stored NIfTI
    (".nrrd", (0, 1, 0, 1, 0, 0, 0, 0, -1)),  # permuted and flipped axes
    (".mha", (1, 0, 0, 0, 1, 0, 0, 0, 1)),
])
def test_files_reoriented_to_lps_axes(tmp_path, suffix, direction):
    img = _volume(direction)
    lab = _labels_like(img)
    sitk.WriteImage(img, str(tmp_path / f"ct{suffix}"))
    sitk.WriteImage(lab, str(tmp_path / f"labels{suffix}"))
    spec = load_ct_specimen(tmp_path / f"ct{suffix}", tmp_path / f"labels{suffix}", kind="hip")
    assert spec.ct_hu.dtype == np.float32 and spec.labels.dtype == np.uint8
    assert sorted(spec.ct_hu.shape) == sorted(SHAPE) and spec.specimen_id == "ct"
    _check_world_consistency(spec, img, lab)


def test_labels_on_another_grid_are_resampled(tmp_path):
    img = _volume()
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    lab = _labels_like(img)
    flipped = sitk.DICOMOrient(lab, "RAI")  # same voxels, other axis order in the file
    assert flipped.GetDirection() != lab.GetDirection()
    sitk.WriteImage(flipped, str(tmp_path / "labels.nrrd"))
    spec = load_ct_specimen(tmp_path / "ct.nii.gz", tmp_path / "labels.nrrd")
    _check_world_consistency(spec, img, lab)


def test_oblique_volume_is_resampled_axis_aligned(tmp_path):
    c, s = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
    img = _volume((c, -s, 0, s, c, 0, 0, 0, 1), dtype=np.float32)
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    spec = load_ct_specimen(tmp_path / "ct.nii.gz", kind="chest", check_hu=False)
    centre = np.array(img.TransformContinuousIndexToPhysicalPoint([3.5, 3.0, 2.5]))
    ijk = np.rint(spec.world_to_index(centre)).astype(int)
    assert spec.ct_hu[ijk[2], ijk[1], ijk[0]] == pytest.approx(
        float(sitk.Resample(img, [1, 1, 1], sitk.Transform(), sitk.sitkLinear, spec.index_to_world(ijk).tolist(),
                            [1, 1, 1], [1, 0, 0, 0, 1, 0, 0, 0, 1]).GetPixel(0, 0, 0)), abs=1e-2)
    assert spec.ct_hu.min() == -1000.0  # outside the oblique box: air


def _write_dicom_series(folder, hu, spacing=(0.8, 0.8, 2.5), origin=(-5.0, -6.0, -100.0), uid="1.2.826.0.1.3.4",
                        prefix="slice"):
    folder.mkdir(parents=True, exist_ok=True)
    vol = sitk.GetImageFromArray(hu.astype(np.int16))
    vol.SetSpacing(spacing)
    vol.SetOrigin(origin)
    w = sitk.ImageFileWriter()
    w.KeepOriginalImageUIDOn()
    for k in range(hu.shape[0]):
        sl = vol[:, :, k]
        pos = "\\".join(str(v) for v in vol.TransformIndexToPhysicalPoint((0, 0, k)))
        for tag, val in [("0008|0060", "CT"), ("0020|000d", "1.2.826.0.1.3"), ("0020|000e", uid),
                         ("0020|0032", pos), ("0020|0037", "1\\0\\0\\0\\1\\0"), ("0020|0013", str(k + 1)),
                         ("0008|0018", f"{uid}.{k + 1}"), ("0028|1052", "-1024"), ("0028|1053", "1")]:
            sl.SetMetaData(tag, val)
        w.SetFileName(str(folder / f"{prefix}{hu.shape[0] - k:03d}.dcm"))  # file order reversed: sorted by position
        w.Execute(sl)


def test_dicom_series_in_hu(tmp_path):
    hu = np.random.default_rng(0).integers(-1000, 1500, (4, 9, 10))
    _write_dicom_series(tmp_path / "series", hu)
    lands = {"FH-l": [1.0, 2.0, -95.0], "FH-r": [-1.0, 2.0, -95.0]}
    write_markups(tmp_path / "l.mrk.json", lands)
    spec = load_ct_specimen(tmp_path / "series", landmarks=tmp_path / "l.mrk.json", specimen_id="case1")
    np.testing.assert_array_equal(spec.ct_hu, hu.astype(np.float32))  # RescaleIntercept applied, slices sorted
    assert spec.spacing == pytest.approx((0.8, 0.8, 2.5)) and spec.origin == pytest.approx((-5.0, -6.0, -100.0))
    np.testing.assert_allclose(spec.landmarks["FH-l"], lands["FH-l"])
    assert spec.specimen_id == "case1" and not spec.labels.any()
    _write_dicom_series(tmp_path / "series", hu, uid="1.2.826.0.1.3.5", prefix="b")  # a second series
    with pytest.raises(DataError, match="2 DICOM series in this folder: pass series_uid"):
        load_ct_specimen(tmp_path / "series")
    assert load_ct_specimen(tmp_path / "series", series_uid="1.2.826.0.1.3.5").ct_hu.shape == (4, 9, 10)


def test_label_maps_of_other_datasets(tmp_path):
    img = _volume()
    sitk.WriteImage(img, str(tmp_path / "case_data.nii.gz"))
    lab = sitk.GetImageFromArray(np.tile(np.arange(8, dtype=np.uint8) % 5, (6, 7, 1)))  # 0-4 along x
    lab.CopyInformation(img)
    sitk.WriteImage(lab, str(tmp_path / "case_mask_4label.nii.gz"))
    spec = load_ct_specimen(tmp_path / "case_data.nii.gz", tmp_path / "case_mask_4label.nii.gz", label_map="ctpelvic1k")
    np.testing.assert_array_equal(spec.labels[0, 0, :5], [0, 4, 2, 1, 3])  # sacrum, R hip, L hip, lumbar
    with pytest.raises(DataError, match="hip labels must be 0-6.*label_map"):
        lab7 = sitk.GetImageFromArray(np.full(SHAPE, 9, np.uint8))
        lab7.CopyInformation(img)
        sitk.WriteImage(lab7, str(tmp_path / "nine.nii.gz"))
        load_ct_specimen(tmp_path / "case_data.nii.gz", tmp_path / "nine.nii.gz")
    with pytest.raises(ConfigError, match="unknown label_map"):
        load_ct_specimen(tmp_path / "case_data.nii.gz", tmp_path / "case_mask_4label.nii.gz", label_map="nope")
    # a TotalSegmentator-style folder of masks
    seg = tmp_path / "s0001" / "segmentations"
    seg.mkdir(parents=True)
    for name, x in (("hip_left", 1), ("femur_right", 2), ("vertebrae_L5", 3), ("liver", 4)):
        m = np.zeros(SHAPE, np.uint8)
        m[:, :, x] = 1
        mi = sitk.GetImageFromArray(m)
        mi.CopyInformation(img)
        sitk.WriteImage(mi, str(seg / f"{name}.nii.gz"))
    spec = load_ct_specimen(tmp_path / "case_data.nii.gz", seg)
    np.testing.assert_array_equal(spec.labels[0, 0, :5], [0, 1, 6, 3, 0])


def test_chest_lesions(tmp_path):
    img = _volume()
    sitk.WriteImage(img, str(tmp_path / "ct.nii.gz"))
    les = sitk.GetImageFromArray((np.arange(np.prod(SHAPE)).reshape(SHAPE) % 3 == 0).astype(np.uint8))
    les.CopyInformation(img)
    sitk.WriteImage(les, str(tmp_path / "les.nii.gz"))
    spec = load_ct_specimen(tmp_path / "ct.nii.gz", kind="chest", lesions=tmp_path / "les.nii.gz")
    assert spec.kind == "chest" and spec.lesion_mask.dtype == np.uint8
    np.testing.assert_array_equal(spec.lesion_mask, sitk.GetArrayFromImage(les))


def test_landmark_files(tmp_path):
    lands = {"ASIS-l": [120.5, -30.25, 40.0], "IPS-r": [-3.0, 5.5, -60.125]}
    for cs in ("LPS", "RAS"):
        write_markups(tmp_path / f"{cs}.mrk.json", lands, coordinate_system=cs)
        write_markups(tmp_path / f"{cs}.fcsv", lands, coordinate_system=cs)
        for f in (f"{cs}.mrk.json", f"{cs}.fcsv"):
            got = read_markups(tmp_path / f)
            assert list(got) == list(lands)
            for k in lands:
                np.testing.assert_allclose(got[k], lands[k], atol=1e-6)
    doc = json.loads((tmp_path / "RAS.mrk.json").read_text())
    np.testing.assert_allclose(doc["markups"][0]["controlPoints"][0]["position"], [-120.5, 30.25, 40.0])
    # older .fcsv: "CoordinateSystem = 0" is RAS; no header is RAS; undefined markups points are skipped
    (tmp_path / "old.fcsv").write_text("# CoordinateSystem = 0\nnode_0,1,2,3,0,0,0,1,1,1,0,FH-l,,\n")
    np.testing.assert_allclose(read_markups(tmp_path / "old.fcsv")["FH-l"], [-1, -2, 3])
    (tmp_path / "bare.fcsv").write_text("n0,1,2,3,0,0,0,1,1,1,0,FH-l,,\n")
    np.testing.assert_allclose(read_markups(tmp_path / "bare.fcsv")["FH-l"], [-1, -2, 3])
    doc["markups"][0]["controlPoints"][1]["positionStatus"] = "undefined"
    (tmp_path / "u.mrk.json").write_text(json.dumps(doc))
    assert list(read_markups(tmp_path / "u.mrk.json")) == ["ASIS-l"]


@pytest.mark.parametrize("content, match", [
    ('{"markups": []}', "not a 3D Slicer markups file"),
    ('{"markups": [{"coordinateSystem": "XYZ", "controlPoints": []}]}', "unknown coordinateSystem"),
    ('{"markups": [{"controlPoints": [{"label": "A", "position": [1, 2]}]}]}', "must have 3 finite coordinates"),
    ('{"markups": [{"controlPoints": [{"label": "A", "position": [1, 2, 3]}, {"label": "A", "position": [1, 2, 3]}]}]}',
     "appears twice"),
    ("{not json", "not a readable JSON file"),
])
def test_bad_landmark_files(tmp_path, content, match):
    (tmp_path / "bad.mrk.json").write_text(content)
    with pytest.raises(DataError, match=match) as e:
        read_markups(tmp_path / "bad.mrk.json")
    assert "bad.mrk.json" in str(e.value)


def test_bad_ct_inputs(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_ct_specimen(tmp_path / "none.nii.gz")
    (tmp_path / "ct.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_ct_specimen(tmp_path / "ct.txt")
    sitk.WriteImage(_volume(), str(tmp_path / "ok.nii.gz"))
    (tmp_path / "cut.nii.gz").write_bytes((tmp_path / "ok.nii.gz").read_bytes()[:100])
    with pytest.raises(DataError, match=r"cut\.nii\.gz: cannot read the image"):
        load_ct_specimen(tmp_path / "cut.nii.gz")
    nan = _volume(dtype=np.float32)
    arr = sitk.GetArrayFromImage(nan)
    arr[1, 1, 1] = np.nan
    bad = sitk.GetImageFromArray(arr)
    bad.CopyInformation(nan)
    sitk.WriteImage(bad, str(tmp_path / "nan.mha"))  # (NIfTI I/O turns NaN into 0)
    with pytest.raises(DataError, match=r"nan\.mha: the CT contains NaN"):
        load_ct_specimen(tmp_path / "nan.mha")
    raw = _volume(values=np.full(SHAPE, 1024, np.int16))
    sitk.WriteImage(raw, str(tmp_path / "raw.nii.gz"))
    with pytest.raises(DataError, match="do not look like HU"):
        load_ct_specimen(tmp_path / "raw.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((5, 5), np.int16)), str(tmp_path / "flat.nrrd"))
    with pytest.raises(DataError, match="expected a 3D volume"):
        load_ct_specimen(tmp_path / "flat.nrrd")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no DICOM series"):
        load_ct_specimen(tmp_path / "empty")
    with pytest.raises(ConfigError, match="'kind' must be"):
        load_ct_specimen(tmp_path / "ok.nii.gz", kind="knee")
