"""The dataset manifests of data_manifests/: schema, required datasets, and what each declares."""

from __future__ import annotations

import importlib
import json

import numpy as np
import pytest
import yaml

from synthex_lib.core.errors import ConfigError
from synthex_lib.realdata.manifest import all_manifests, load_manifest, load_manifest_file, manifest_dir, manifest_names

REQUIRED = {
    "deepfluoro", "deepfluoro-2x", "deepfluoro-4x", "deepfluoro-8x", "deepfluoro-16x", "nmdid", "qata-cov19",
    "imageng-covid-ct", "uestc-covid19", "ctpelvic1k", "totalsegmentator", "lab", "scale", "chest", "tool",
}


def test_every_required_dataset_has_a_valid_manifest():
    assert REQUIRED <= set(manifest_names())
    ms = all_manifests()  # each validated against schema.json on loading
    assert {m.name for m in ms} >= REQUIRED
    for m in ms:
        assert m.license and m.citation["text"] and m.access["terms"] and m.size and m.layout and m.used_for
        if m.kind == "real":
            assert m.source["url"].startswith("http"), m.name
        if m.access_type != "open":
            assert m.access["how_to_obtain"], m.name
        if m.loader:
            module, _, attr = m.loader.partition(":")
            assert hasattr(importlib.import_module(module), attr), m.loader


def test_facts_of_the_paper_datasets():
    df = load_manifest("deepfluoro")
    assert df.downloadable and df.source["doi"] == "10.7281/T1/IFSXNV/EAN9GH"
    assert df.files[0].unpack == "zip" and df.files[0].members == ("ipcai_2020_full_res_data.h5",)
    assert df.citation["doi"] == "10.1007/s11548-020-02162-7" and "CC BY-NC 4.0" in df.license
    suffix = {"2x": "DYGPDX", "4x": "SBORQA", "8x": "RM0YBV", "16x": "HNV0ZM"}
    for ds, doi in suffix.items():
        m = load_manifest(f"deepfluoro-{ds}")
        assert m.source["doi"].endswith(doi) and m.files[0].name == f"ipcai_2020_ds_{ds}.h5"
    assert load_manifest("nmdid").access_type == "restricted" and not load_manifest("nmdid").downloadable
    assert load_manifest("qata-cov19").source["doi"] == "10.1007/s13755-021-00146-8"
    assert load_manifest("uestc-covid19").access_type == "request"
    for cohort in ("lab", "scale", "chest", "tool"):
        m = load_manifest(cohort)
        assert m.kind == "generated" and m.generated["cohort"] == cohort and not m.downloadable


def test_schema_rejects_a_broken_manifest(tmp_path):
    data = yaml.safe_load((manifest_dir() / "deepfluoro.yaml").read_text())
    del data["license"]
    (tmp_path / "deepfluoro.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"deepfluoro\.yaml: invalid manifest.*'license' is a required property"):
        load_manifest_file(tmp_path / "deepfluoro.yaml")
    data = yaml.safe_load((manifest_dir() / "deepfluoro.yaml").read_text())
    data["files"][0]["sha256"] = "not-a-hash"
    (tmp_path / "deepfluoro.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="files/0/sha256"):
        load_manifest_file(tmp_path / "deepfluoro.yaml")
    data = yaml.safe_load((manifest_dir() / "nmdid.yaml").read_text())
    del data["access"]["how_to_obtain"]  # restricted data must say how to obtain access
    (tmp_path / "nmdid.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="how_to_obtain"):
        load_manifest_file(tmp_path / "nmdid.yaml")
    (tmp_path / "other.yaml").write_text((manifest_dir() / "lab.yaml").read_text())
    with pytest.raises(ConfigError, match="must equal the file name"):
        load_manifest_file(tmp_path / "other.yaml")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ConfigError, match="unknown dataset 'deepfluro'.*deepfluoro-16x"):
        load_manifest("deepfluro")


def test_schema_is_json_schema():
    import jsonschema

    schema = json.loads((manifest_dir() / "schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_lab_cohort_status_and_verify(tmp_path, monkeypatch):
    """A generated cohort is verified against the sha256 its generator recorded (cohorts.save_specimen)."""
    from synthex_lib.anatomy.cohorts import save_specimen
    from synthex_lib.anatomy.specimen import Specimen
    from synthex_lib.core import paths
    from synthex_lib.core.errors import DataError
    from synthex_lib.realdata.fetch import status, verify
    from synthex_lib.realdata.fixtures import phantom_volume

    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    assert status("lab").state == "not generated"
    with pytest.raises(DataError, match="synthex lab generate"):
        verify("lab")
    ct, labels, lands = phantom_volume()
    spec = Specimen("hip", ct, labels, (14, 12, 14), (0, 0, 0), lands, specimen_id="lab-01")
    folder = paths.lab_dir("smoke", "lab")
    files = save_specimen(spec, folder / "lab-01")
    (folder / "manifest.json").write_text(json.dumps({"cohort": "lab", "profile": "smoke", "seed": 0, "members": [
        {"specimen_id": "lab-01", "group": "01", "files": files}]}))
    st = status("lab")
    assert st.state == "generated" and "smoke" in st.detail
    # the lab's files are "your own CT" too: the bring-your-own loader reads them back exactly
    from synthex_lib.realdata.ct_files import load_ct_specimen

    sub = folder / "lab-01"
    back = load_ct_specimen(sub / "ct.nii.gz", sub / "labels.nii.gz", sub / "landmarks.mrk.json",
                            label_map="deepfluoro")  # the phantom carries the lower sacrum (7): -> background
    np.testing.assert_array_equal(back.ct_hu, np.rint(spec.ct_hu))
    np.testing.assert_array_equal(back.labels, np.where(spec.labels == 7, 0, spec.labels))
    assert back.spacing == spec.spacing and back.origin == spec.origin
    for k, v in spec.landmarks.items():
        np.testing.assert_allclose(back.landmarks[k], v, atol=1e-6)
    checks = verify("lab")
    assert len(checks) == len(files) and {c.status for c in checks} == {"ok"}
    ct_file = folder / "lab-01" / "ct.nii.gz"
    data = bytearray(ct_file.read_bytes())
    data[-5] ^= 0xFF
    ct_file.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"1 corrupted file.*lab-01/ct\.nii\.gz"):
        verify("lab", profile="smoke")
