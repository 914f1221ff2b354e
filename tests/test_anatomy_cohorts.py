"""Cohorts on disk: NIfTI/markups I/O, manifest, determinism, resume, loading, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from synthex_lib.anatomy import io
from synthex_lib.anatomy.cohorts import (
    CROSS_SCANNER_GROUP,
    cohort_dir,
    cohort_members,
    generate_cohort,
    lab_groups,
    load_cohort,
    load_specimen,
)
from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.hashing import sha256_file

TINY = get_profile("smoke", lab_specimens=1, folds=1)


def test_members_and_groups() -> None:
    q = get_profile("quick")
    lab = cohort_members("lab", q)
    assert [m.group for m in lab] == ["01", "02", "03", "04", "05", "06", CROSS_SCANNER_GROUP]
    assert [m.cross_scanner for m in lab] == [False] * 6 + [True]
    assert lab_groups(q)["cross_scanner"] == ["07"]
    assert len(cohort_members("scale", q)) == q.lab.scale_specimens
    assert len(cohort_members("chest", q)) == q.lab.chest_specimens
    assert len(cohort_members("tool", q)) == q.lab.tool_configs
    with pytest.raises(ConfigError, match="cohort"):
        cohort_members("knees", q)


def test_volume_and_markups_round_trip(tmp_path) -> None:
    import SimpleITK as sitk

    a = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    io.write_volume(tmp_path / "v.nii.gz", a, (1.5, 2.0, 2.5), (-10.0, 20.0, 30.0))
    img = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    assert img.GetSize() == (6, 5, 4)  # x, y, z
    assert img.GetSpacing() == (1.5, 2.0, 2.5) and img.GetOrigin() == (-10.0, 20.0, 30.0)
    # voxel [k, j, i] at origin + (i, j, k) * spacing in LPS
    assert img.TransformIndexToPhysicalPoint((2, 3, 1)) == (-7.0, 26.0, 32.5)
    back, sp, org = io.read_volume(tmp_path / "v.nii.gz")
    assert np.array_equal(back, a)
    lm = {"FH-l": np.array([1.0, 2.0, 3.0]), "tip": np.array([-4.5, 0.25, 9.0])}
    io.write_markups(tmp_path / "l.mrk.json", lm)
    doc = json.loads((tmp_path / "l.mrk.json").read_text())
    assert doc["markups"][0]["coordinateSystem"] == "LPS"
    got = io.read_markups(tmp_path / "l.mrk.json")
    assert all(np.allclose(got[k], lm[k]) for k in lm)
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError, match="bad.nii.gz"):
        io.read_volume(tmp_path / "bad.nii.gz")
    with pytest.raises(DataError, match="missing"):
        io.read_markups(tmp_path / "none.mrk.json")


def test_generate_is_byte_identical_resumable_and_loads(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "a"))
    folder = generate_cohort("lab", TINY, seed=3, progress=False)
    man = json.loads((folder / "manifest.json").read_text())
    assert man["seed"] == 3 and man["generator_version"] and len(man["members"]) == 2
    files = {e["specimen_id"]: e["files"] for e in man["members"]}
    assert set(files) == {"lab-01", "lab-07"}
    for sid, fs in files.items():
        for name, sha in fs.items():
            assert sha256_file(folder / sid / name) == sha
    # the same seed elsewhere gives the same bytes
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "b"))
    folder_b = generate_cohort("lab", TINY, seed=3, progress=False)
    for sid, fs in files.items():
        for name in fs:
            assert (folder / sid / name).read_bytes() == (folder_b / sid / name).read_bytes()
    # resume: a deleted file is regenerated, untouched ones are kept
    keep = (folder_b / "lab-01" / "ct.nii.gz").stat().st_mtime_ns
    (folder_b / "lab-07" / "labels.nii.gz").unlink()
    generate_cohort("lab", TINY, seed=3, progress=False)
    assert (folder_b / "lab-07" / "labels.nii.gz").read_bytes() == (folder / "lab-07" / "labels.nii.gz").read_bytes()
    assert (folder_b / "lab-01" / "ct.nii.gz").stat().st_mtime_ns == keep
    assert not list(folder_b.rglob("*.part")) and not list(folder_b.rglob(".*.nii.gz"))
    # loading
    specs = load_cohort("lab", TINY, seed=3)
    assert [s.specimen_id for s in specs] == ["lab-01", "lab-07"]
    assert specs[1].meta["cross_scanner"] is True and specs[1].meta["group"] == "07"
    s0 = specs[0]
    assert s0.anatomy is not None and s0.ct_hu.dtype == np.float32
    fresh = load_specimen("lab", TINY, 0, seed=3)
    assert np.array_equal(fresh.ct_hu, s0.ct_hu)
    # the rebuilt anatomy is the generating one: same landmarks
    lm = s0.anatomy.landmarks()
    assert all(np.allclose(lm[k], s0.landmarks[k], atol=1e-5) for k in lm)
    # a customised lab configuration has its own folder; the registered one keeps paths.lab_dir
    assert cohort_dir("lab", TINY) == folder_b != paths.lab_dir("smoke", "lab")
    assert cohort_dir("lab", "smoke") == paths.lab_dir("smoke", "lab")


def test_cli_help_and_list(capsys, tmp_path, monkeypatch) -> None:
    from synthex_lib.cli import build_parser, main

    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["lab"]
    assert "example" in sub.epilog
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    assert main(["lab", "list", "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "lab-07" in out and "cross-scanner" in out
    assert main(["lab", "generate", "--profile", "nope"]) == 2
