"""Issue 17, the regression suite of bad input and faults: no silent wrong result, one line and exit code 2 for
every error a user can cause, nothing left half-written."""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk
from test_generate import PROFILE, _phantom

from synthex_lib.cli import main
from synthex_lib.core import memory
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.hashing import SHA_CACHE, sha256_cached, sha256_file
from synthex_lib.datasets.layout import (
    SpecimenImages,
    read_group,
    read_landmark_names,
    write_group,
    write_landmark_names,
)
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.generate import cache, lab_source
from synthex_lib.generate import engine as gen
from synthex_lib.realdata.archives import check_zip
from synthex_lib.realdata.ct_files import load_ct_specimen
from synthex_lib.simulate.volume_io import volume_from_file

P = "1000,0,15.5,15500,0,-1000,15.5,15500,0,0,1,600"


def _cli(argv, capsys):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _one_line(err: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _ct(path: Path, arr: np.ndarray) -> Path:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(img, str(path))
    return path


def _good_hu(shape=(20, 20, 20)) -> np.ndarray:
    rng = np.random.default_rng(0)
    return (rng.normal(0, 300, shape).clip(-1000, 2000)).astype(np.int16)


# --- 1, 2: volumes ----------------------------------------------------------------------------------

def _render(ct: Path, tmp_path: Path, capsys, size=("32", "32")):
    return _cli(["render", str(ct), "--P", P, "--size", *size, "--out", str(tmp_path / "o.npy")], capsys)


def test_truncated_nifti_gz_is_refused(tmp_path, capsys):
    full = _ct(tmp_path / "full.nii.gz", _good_hu((40, 40, 40)))
    (tmp_path / "trunc.nii.gz").write_bytes(full.read_bytes()[:3000])
    rc, _, err = _render(tmp_path / "trunc.nii.gz", tmp_path, capsys)
    assert rc == 2 and "trunc.nii.gz" in _one_line(err) and "truncated" in err
    assert not (tmp_path / "o.npy").exists()
    with pytest.raises(DataError, match="truncated"):
        load_ct_specimen(tmp_path / "trunc.nii.gz")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nan_nifti_is_refused(tmp_path, capsys, suffix):
    arr = _good_hu().astype(np.float32)
    arr[3, 4, 5] = np.nan
    ct = _ct(tmp_path / f"nan{suffix}", arr)
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(ct)))).all()  # SimpleITK hides the NaN
    rc, _, err = _render(ct, tmp_path, capsys)
    assert rc == 2 and "NaN" in _one_line(err)
    with pytest.raises(DataError, match="NaN"):
        load_ct_specimen(ct)
    all_nan = _ct(tmp_path / f"allnan{suffix}", np.full((8, 8, 8), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN"):
        volume_from_file(all_nan)


@pytest.mark.parametrize("what", ["uint8", "complex", "huge", "one-voxel", "inf-mha"])
def test_implausible_volumes_are_refused(tmp_path, capsys, what):
    arr = {"uint8": np.full((8, 8, 8), 100, np.uint8),
           "complex": np.zeros((8, 8, 8), np.complex64),
           "huge": np.full((8, 8, 8), 1e30, np.float32),
           "one-voxel": np.zeros((1, 1, 1), np.int16),
           "inf-mha": np.where(np.arange(512).reshape(8, 8, 8) == 7, np.inf, 0).astype(np.float32)}[what]
    ct = _ct(tmp_path / ("ct.mha" if what == "inf-mha" else "ct.nii.gz"), arr)
    rc, _, err = _render(ct, tmp_path, capsys)
    line = _one_line(err)
    assert rc == 2 and str(ct) in line, line
    with pytest.raises(DataError):
        volume_from_file(ct)


def test_good_volume_still_renders(tmp_path, capsys):
    ct = _ct(tmp_path / "ok.nii.gz", _good_hu())
    rc, out, err = _render(ct, tmp_path, capsys)
    assert rc == 0, err
    assert np.load(tmp_path / "o.npy").shape == (32, 32)


# --- 4: the dataset readers ---------------------------------------------------------------------------

def _layout_file(path: Path, n=3, size=16, L=14, **override) -> Path:
    rng = np.random.default_rng(1)
    images = SpecimenImages(projs=rng.random((n, size, size)).astype(np.float32),
                            segs=rng.integers(0, 7, (n, size, size)).astype(np.uint8),
                            lands=rng.uniform(0, size - 1, (n, 2, L)).astype(np.float32),
                            visible=np.ones((n, L), bool), P=np.tile(np.eye(3, 4), (n, 1, 1)))
    with h5py.File(path, "w") as f:
        f.attrs["task"] = "hip-controlled"
        write_landmark_names(f, HIP_LANDMARKS)
        write_group(f, "01", images)
        g = f["01"]
        for key, value in override.items():
            del g[key]
            g.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize("key,value,match", [
    ("projs", np.full((3, 16, 16), np.nan, np.float32), "NaN or inf"),
    ("projs", np.full((3, 16, 16), np.inf, np.float32), "NaN or inf"),
    ("projs", np.array(1.0, np.float32), "N x H x W"),
    ("projs", np.array([b"abc"] * 3), "numeric"),
    ("segs", np.full((3, 16, 16), 200.0, np.float32), "integer"),
    ("segs", np.full((3, 16, 16), 255, np.uint8), "labels outside 0-6"),
    ("visible", np.ones((3, 5), bool), "'01/visible' has shape"),
    ("lands", np.zeros((3, 2, 5), np.float32), "'01/lands' has shape"),
    ("P", np.zeros((2, 3, 4)), "'01/P' has shape"),
])
def test_readers_refuse_bad_groups(tmp_path, key, value, match):
    path = _layout_file(tmp_path / "bad.h5", **{key: value})
    with pytest.raises(DataError, match=match):
        read_group(path, "01")
    with pytest.raises(DataError, match=match):
        ImageDataset(path, ["01"])


def test_oversized_num_lands_is_refused(tmp_path):
    path = _layout_file(tmp_path / "bad.h5")
    with h5py.File(path, "a") as f:
        del f["land-names/num-lands"]
        f["land-names"].create_dataset("num-lands", data=99)
    with pytest.raises(DataError, match="missing key 'land-names/land-14'"):
        read_landmark_names(path)
    with pytest.raises(DataError, match="land-14"):
        ImageDataset(path, ["01"])


def test_good_layout_file_reads(tmp_path):
    path = _layout_file(tmp_path / "ok.h5")
    assert read_group(path, "01").projs.shape == (3, 16, 16)
    assert len(ImageDataset(path, ["01"])) == 3


# --- 3: completeness by content --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A real generated dataset (hip-scaled, naive, of the phantom cohort of test_generate)."""
    root = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEX_DATA", str(root))
        mp.setattr(lab_source, "load_lab_cohort", lambda cohort, profile, seed=0: [_phantom("01"),
                                                                                   _phantom("02", shift=6.0)])
        out = gen.ensure_dataset("hip-scaled", PROFILE, domains=("naive",), workers=0, progress=False)
    return root, out


def _copy(dataset, tmp_path: Path) -> tuple[Path, Path]:
    root, out = dataset
    dst = tmp_path / "data"
    shutil.copytree(root, dst)
    return dst, dst / out.relative_to(root)


def _flip(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_same_size_corruption_is_not_complete_and_is_regenerated(dataset, tmp_path, monkeypatch, capsys):
    root, out = _copy(dataset, tmp_path)
    monkeypatch.setenv("SYNTHEX_DATA", str(root))
    monkeypatch.setattr(lab_source, "load_lab_cohort",
                        lambda cohort, profile, seed=0: [_phantom("01"), _phantom("02", shift=6.0)])
    man = cache.read_manifest(out)
    key = man["params_hash"]
    assert cache.is_complete(out, key, ("naive",))
    h5 = out / "naive.h5"
    good = h5.read_bytes()
    _flip(h5)
    assert h5.stat().st_size == len(good)
    assert cache.file_state(out, "naive.h5", man["files"]["naive.h5"]) == "corrupted"
    assert not cache.is_complete(out, key, ("naive.h5",)) and not cache.is_complete(out, key, ("naive",))
    # data verify names it, exit code 2
    rc, _, err = _cli(["data", "verify", str(out)], capsys)
    assert rc == 2 and "naive.h5 (corrupted)" in _one_line(err)
    rc, _, err = _cli(["data", "verify", "sim"], capsys)
    assert rc == 2 and "naive.h5" in _one_line(err)
    # the next run regenerates the file, identical to the original bytes
    gen.ensure_dataset("hip-scaled", PROFILE, domains=("naive",), workers=0, progress=False)
    assert h5.read_bytes() == good
    rc, out_text, _ = _cli(["data", "verify", "sim"], capsys)
    assert rc == 0 and "1 file(s)" in out_text


def test_sha256_cache_by_size_and_mtime(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"a" * 1000)
    first = sha256_cached(f)
    assert first == sha256_file(f) and (tmp_path / SHA_CACHE).exists()
    assert sha256_cached(f) == first  # cache hit
    time.sleep(0.01)
    f.write_bytes(b"b" * 1000)  # same size, new mtime
    assert sha256_cached(f) == sha256_file(f) != first


# --- 5: one line, exit code 2 -------------------------------------------------------------------------------

def test_synthex_data_pointing_to_a_file(tmp_path, monkeypatch, capsys):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "f"))
    rc, _, err = _cli(["simulate", "--task", "hip-scaled", "--workers", "0", "--no-progress"], capsys)
    assert rc == 2 and "SYNTHEX_DATA" in _one_line(err)


def test_read_only_data_root_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "ro"))

    def refuse(self, *a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    rc, _, err = _cli(["simulate", "--task", "hip-scaled", "--workers", "0", "--no-progress"], capsys)
    line = _one_line(err)
    assert rc == 2 and "read-only" in line and "SYNTHEX_DATA" in line


def test_render_out_folder_checks(tmp_path, capsys):
    ct = _ct(tmp_path / "ok.nii.gz", _good_hu())
    missing = tmp_path / "nonexist" / "dir" / "o.npy"
    rc, _, err = _cli(["render", str(ct), "--P", P, "--size", "8", "8", "--out", str(missing)], capsys)
    assert rc == 2 and "does not exist" in _one_line(err)
    assert not (tmp_path / "nonexist").exists()
    if os.path.isdir("/proc"):
        rc, _, err = _cli(["render", str(ct), "--P", P, "--size", "8", "8", "--out", "/proc/o.npy"], capsys)
        assert rc == 2 and "/proc/o.npy" in _one_line(err)


def test_render_refuses_what_cannot_fit(tmp_path, capsys):
    ct = _ct(tmp_path / "ok.nii.gz", _good_hu())
    rc, _, err = _cli(["render", str(ct), "--P", P, "--size", "100000", "100000", "--out", str(tmp_path / "o.npy")],
                      capsys)
    line = _one_line(err)
    assert rc == 2 and "GiB" in line and "--size" in line


def test_memory_estimate(monkeypatch):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 30)
    memory.require_memory(memory.estimate_render_bytes("naive", 256, 256), "x", "y")
    with pytest.raises(ConfigError, match=r"needs about 596\.0 GiB"):
        memory.require_memory(memory.estimate_render_bytes("naive", 100000, 100000), "rendering", "smaller")


def test_unreachable_scheduler_and_missing_sbatch(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    t0 = time.perf_counter()
    rc, _, err = _cli(["simulate", "--task", "hip-scaled", "--scheduler", "tcp://127.0.0.1:1", "--no-progress"],
                      capsys)
    assert rc == 2 and "cannot reach the Dask scheduler" in _one_line(err)
    assert time.perf_counter() - t0 < 10
    monkeypatch.setattr(shutil, "which", lambda name: None)
    rc, _, err = _cli(["simulate", "--task", "hip-scaled", "--slurm", "queue=x", "--no-progress"], capsys)
    assert rc == 2 and "sbatch" in _one_line(err)
    assert not (tmp_path / "data" / "sim").exists()


# --- 6: smaller cases -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,match", [
    (["simulate", "--task", "hip-scaled", "--chunk-size", "0"], "chunk_size"),
    (["simulate", "--task", "hip-scaled", "--workers", "-3"], "workers"),
    (["simulate", "--task", "hip-controlled", "--dataset", "nope"], "unknown dataset"),
    (["book", "--jobs", "0"], "--jobs"),
    (["book", "--jobs", "-1"], "--jobs"),
])
def test_argument_checks_are_one_line_and_leave_no_folder(argv, match, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    rc, _, err = _cli([*argv, "--no-progress"] if argv[0] == "simulate" else argv, capsys)
    assert rc == 2 and match in _one_line(err)
    assert not (tmp_path / "data").exists()


def test_workers_checked_even_when_complete(dataset, tmp_path, monkeypatch):
    root, _ = _copy(dataset, tmp_path)
    monkeypatch.setenv("SYNTHEX_DATA", str(root))
    with pytest.raises(ConfigError, match="workers"):
        gen.ensure_dataset("hip-scaled", PROFILE, domains=("naive",), workers=-3, progress=False)


def test_stale_part_files_are_cleaned(dataset, tmp_path, monkeypatch):
    root, out = _copy(dataset, tmp_path)
    monkeypatch.setenv("SYNTHEX_DATA", str(root))
    monkeypatch.setattr(lab_source, "load_lab_cohort",
                        lambda cohort, profile, seed=0: [_phantom("01"), _phantom("02", shift=6.0)])
    stale = out / ".naive.h5.abc123.part"
    stale.write_bytes(b"half")
    gen.ensure_dataset("hip-scaled", PROFILE, domains=("naive", "heuristic"), workers=0, progress=False)
    assert not stale.exists()


def _zip(path: Path, members: dict[str, tuple[int, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, (mode, data) in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    return path


def test_zip_member_type_and_total_size(tmp_path):
    fifo = _zip(tmp_path / "fifo.zip", {"a.txt": (stat.S_IFREG | 0o644, b"x"), "p": (stat.S_IFIFO | 0o644, b"")})
    with pytest.raises(DataError, match="'p' is not a regular file"):
        check_zip(fifo)
    bomb = _zip(tmp_path / "bomb.zip", {"zeros.bin": (stat.S_IFREG | 0o644, bytes(50 << 20))})
    with pytest.raises(DataError, match="zip bomb"):
        check_zip(bomb)
    ok = _zip(tmp_path / "ok.zip", {"a.bin": (stat.S_IFREG | 0o644, np.random.default_rng(0).bytes(1 << 16))})
    assert len(check_zip(ok)) == 1


# --- property test: random corruptions of a real generated file ---------------------------------------------

def _snapshot(path: Path):
    imgs = read_group(path, "01")
    ds = ImageDataset(path, ["01"])
    return imgs, ds


def _same(a, b) -> bool:
    ia, da = a
    ib, db = b
    arrays = [(ia.projs, ib.projs), (ia.segs, ib.segs), (ia.lands, ib.lands), (da.images, db.images),
              (da.labels, db.labels), (da.landmarks, db.landmarks), (da.visible, db.visible)]
    return all(x.shape == y.shape and np.array_equal(x, y, equal_nan=True) for x, y in arrays)


def _corrupt(src: Path, dst: Path, rng: np.random.Generator) -> str:
    kind = ["truncate", "flip", "dtype", "remove"][int(rng.integers(4))]
    data = bytearray(src.read_bytes())
    if kind == "truncate":
        dst.write_bytes(bytes(data[: int(rng.integers(0, len(data)))]))
    elif kind == "flip":
        for i in rng.integers(0, len(data), int(rng.integers(1, 8))):
            data[int(i)] ^= int(rng.integers(1, 256))
        dst.write_bytes(bytes(data))
    else:
        shutil.copyfile(src, dst)
        keys = ["projs", "segs", "lands", "visible", "P"] if kind == "dtype" else ["projs", "segs", "lands"]
        with h5py.File(dst, "a") as f:
            g = f["01"]
            keys = [k for k in keys if k in g]
            key = keys[int(rng.integers(len(keys)))]
            value = g[key][()]
            del g[key]
            if kind == "dtype":
                with np.errstate(over="ignore"):
                    new = [value.astype(np.float64), value.astype(np.float64) * 1e300 * 1e10,
                           value.astype("S8")][int(rng.integers(3))]
                g.create_dataset(key, data=new)
    return kind


def test_random_corruptions_give_dataerror_or_identical_data(dataset, tmp_path):
    _, out = dataset
    src = out / "naive.h5"
    ref = _snapshot(src)
    rng = np.random.default_rng(17)
    kinds: dict[str, int] = {}
    for trial in range(40):
        dst = tmp_path / f"c{trial}.h5"
        kind = _corrupt(src, dst, rng)
        kinds[kind] = kinds.get(kind, 0) + 1
        try:
            got = _snapshot(dst)
        except DataError as exc:
            assert "\n" not in str(exc) and str(dst) in str(exc), (kind, exc)
            continue
        except OSError:  # pragma: no cover - the point of the test
            raise
        assert _same(ref, got), (trial, kind)
    assert len(kinds) == 4, kinds


def test_manifest_is_strict_json(dataset):
    _, out = dataset
    json.loads((out / "dataset.json").read_text(), parse_constant=lambda c: pytest.fail(f"bare {c}"))


def test_generation_refuses_what_cannot_fit(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(lab_source, "load_lab_cohort", lambda cohort, profile, seed=0: [_phantom("01")])
    monkeypatch.setattr(memory, "available_bytes", lambda: 1 << 16)
    with pytest.raises(ConfigError, match=r"simulating .* needs about .* GiB .* --chunk-size"):
        gen.ensure_dataset("hip-scaled", PROFILE, domains=("naive",), workers=0, progress=False)


# --- results store, checkpoints and randomization files (issue 17, items 5 and 6) -----------------------

def test_results_are_strict_json_and_foreign_files_are_skipped(tmp_path, monkeypatch):
    import json as _json
    import warnings

    from synthex_lib.experiments import results

    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    rec = {"run_id": "hip-x", "kind": "hip", "parameters": {"a": 1}, "metrics": {"err": float("nan"), "d": 0.5},
           "per_image": {"e": [1.0, float("nan"), float("inf")]}}
    path = results.save_record(rec, "smoke")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    _json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))  # strict parser
    (path.parent / "foreign.json").write_text('{"hello": "world"}')
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        recs = list(results.iter_records("smoke"))
    assert [r["run_id"] for r in recs] == ["hip-x"] and np.isnan(recs[0]["metrics"]["err"])
    assert any("foreign.json" in str(w.message) and "skipped" in str(w.message) for w in caught)


def test_truncated_checkpoint_is_one_clear_line(tmp_path):
    from synthex_lib.learning.training import load_checkpoint

    bad = tmp_path / "run.pt"
    bad.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"run\.pt: truncated or corrupted checkpoint .*delete it"):
        load_checkpoint(bad)


def test_a_randomization_file_trains_and_its_content_keys_the_run(tmp_path):
    import yaml

    from synthex_lib.experiments.hip import canonical_preset
    from synthex_lib.learning.training import make_randomizer
    from synthex_lib.randomization import preset_config

    f = tmp_path / "my.yaml"
    f.write_text(yaml.safe_dump(preset_config("regular")))
    assert make_randomizer(str(f), 0).to_config() == make_randomizer("regular", 0).to_config()
    assert canonical_preset("strong") == "strong"
    assert canonical_preset(str(f)) == make_randomizer("regular", 0).to_config()


def test_the_book_build_folder_follows_synthex_build(tmp_path, monkeypatch):
    from synthex_lib.core import paths

    monkeypatch.delenv("SYNTHEX_BUILD", raising=False)
    assert paths.build_dir() == paths.project_root() / "_build"
    monkeypatch.setenv("SYNTHEX_BUILD", str(tmp_path))
    assert paths.build_dir() == tmp_path / "_build"
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("SYNTHEX_BUILD", str(tmp_path / "f"))
    with pytest.raises(ConfigError, match="SYNTHEX_BUILD=.* is a file"):
        paths.build_dir()


def _df_snapshot(path: Path):
    from synthex_lib.realdata.deepfluoro_preprocessed import DeepFluoroPreprocessed

    return DeepFluoroPreprocessed(path).images("01")


def test_random_structural_corruptions_of_deepfluoro_files_give_dataerror_or_identical_data(tmp_path):
    """DeepFluoro's released files carry no checksums, so a flipped byte in pixel data cannot be seen in the
    file (``synthex data verify`` finds it by sha256); truncation, dtype changes and removed keys must give a
    clean one-line DataError or the identical data."""
    from synthex_lib.realdata.fixtures import write_deepfluoro_preprocessed_fixture

    src = tmp_path / "ipcai_2020_ds_8x.h5"
    write_deepfluoro_preprocessed_fixture(src, groups=("01",), n_images=3, size=16)
    ref = _df_snapshot(src)
    rng = np.random.default_rng(5)
    kinds: dict[str, int] = {}
    for trial in range(30):
        dst = tmp_path / f"t{trial}" / "ipcai_2020_ds_8x.h5"
        dst.parent.mkdir()
        while True:
            kind = _corrupt(src, dst, rng)
            if kind != "flip":
                break
        kinds[kind] = kinds.get(kind, 0) + 1
        try:
            got = _df_snapshot(dst)
        except DataError as exc:
            assert "\n" not in str(exc) and str(dst) in str(exc), (kind, exc)
            continue
        for a, b in ((ref.projs, got.projs), (ref.segs, got.segs), (ref.lands, got.lands)):
            assert a.shape == b.shape and np.array_equal(a, b, equal_nan=True), (trial, kind)
    assert set(kinds) == {"truncate", "dtype", "remove"}, kinds
