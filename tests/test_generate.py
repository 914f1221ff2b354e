"""Dataset generation: layout, matched replicas, caching, determinism, kill-and-resume, workers, sources."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.core.cluster import ClusterOptions, make_slurm_cluster, parse_slurm_options
from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import list_groups, read_file_attrs, read_group, read_landmark_names, read_poses
from synthex_lib.generate import cache, lab_source, render, tasks
from synthex_lib.generate import engine as gen
from synthex_lib.simulate.scanner import VoxelAnatomy

PROFILE = get_profile("smoke", detector_px=24, real_per_specimen=3, sim_per_specimen=3, lab_specimens=2,
                      tool_sim_per_config=3, tool_real_per_specimen=3, chest_sim_per_specimen=3,
                      chest_real_per_specimen=3)


def _phantom(group: str, kind: str = "hip", cross: bool = False, shift: float = 0.0) -> Specimen:
    """A small voxel hip (or chest) phantom: body, two hemipelves, sacrum, vertebra, two femurs."""
    sp = 6.0
    nz, ny, nx = 30, 30, 34
    origin = (-(nx - 1) / 2 * sp, -(ny - 1) / 2 * sp, -(nz - 1) / 2 * sp)
    z, y, x = np.meshgrid(*[o + np.arange(n) * sp for o, n in zip(origin[::-1], (nz, ny, nx), strict=True)],
                          indexing="ij")
    x = x - shift
    hu = np.full((nz, ny, nx), -1000.0, np.float32)
    body = (x / 95) ** 2 + (y / 80) ** 2 < 1
    hu[body] = 40.0
    lab = np.zeros(hu.shape, np.uint8)
    les = np.zeros(hu.shape, np.uint8)
    if kind == "hip":
        parts = {1: (x > 15) & (x < 70) & (np.abs(y) < 25) & (z > -10) & (z < 50),
                 2: (x < -15) & (x > -70) & (np.abs(y) < 25) & (z > -10) & (z < 50),
                 4: (np.abs(x) < 15) & (y > 0) & (y < 30) & (z > 0) & (z < 40),
                 3: (x**2 + (y - 10) ** 2 < 15**2) & (z >= 40),
                 5: (((x - 55) ** 2 + y**2 + (z + 20) ** 2 < 20**2)
                     | ((np.abs(x - 60) < 8) & (np.abs(y) < 8) & (z < -20))),
                 6: (((x + 55) ** 2 + y**2 + (z + 20) ** 2 < 20**2)
                     | ((np.abs(x + 60) < 8) & (np.abs(y) < 8) & (z < -20)))}
        for i, m in parts.items():
            lab[m & body] = i
            hu[m & body] = 600.0
        marks = {n: np.array([(40.0 if n.endswith("-l") else -40.0) + shift, 0.0, 20.0]) for n in HIP_LANDMARKS}
        marks["FH-l"] = np.array([55.0 + shift, 0.0, -20.0])
        marks["FH-r"] = np.array([-55.0 + shift, 0.0, -20.0])
    else:
        lungs = body & ((np.abs(x) > 12) & ((np.abs(x) - 45) ** 2 / 30**2 + y**2 / 50**2 < 1))
        hu[lungs] = -850.0
        les[lungs & (z < 0) & (x > 20)] = 1
        hu[les > 0] = -400.0
        marks = {}
    spec = Specimen(kind, hu, lab, (sp, sp, sp), origin, marks, specimen_id=f"phantom-{group}", lesion_mask=les,
                    meta={"group": group, "cross_scanner": cross})
    spec.anatomy = VoxelAnatomy.from_ct(spec)
    return spec


@pytest.fixture
def lab(monkeypatch, tmp_path):
    """Phantom cohorts instead of the virtual lab; data under a temporary root. Counts cohort loads."""
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    calls = []

    def load(cohort, profile, seed=0):
        calls.append(cohort)
        if cohort == "lab":
            return [_phantom("01"), _phantom("02", shift=8.0), _phantom("07", cross=True, shift=-5.0)]
        if cohort == "chest":
            return [_phantom("01", kind="chest")]
        return [_phantom("01"), _phantom("02", shift=6.0)]

    monkeypatch.setattr(lab_source, "load_lab_cohort", load)
    return calls


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.h5"))}


def test_controlled_dataset_layout_matched_replicas_and_cache(lab):
    out = gen.ensure_dataset("hip-controlled", PROFILE, workers=0, progress=False)
    names = sorted(p.name for p in out.glob("*.h5"))
    assert names == ["heuristic-loopx.h5", "heuristic.h5", "naive-loopx.h5", "naive.h5", "real-loopx.h5", "real.h5",
                     "realistic-loopx.h5", "realistic.h5"]
    assert list_groups(out / "real.h5") == ["01", "02"] and list_groups(out / "real-loopx.h5") == ["07"]
    assert read_landmark_names(out / "naive.h5") == list(HIP_LANDMARKS)
    real = read_group(out / "real.h5", "01")
    assert real.projs.shape == (3, 24, 24) and real.projs.dtype == np.float32
    assert real.lands.shape == (3, 2, 14) and real.visible.shape == (3, 14)
    assert set(np.unique(real.segs)) <= set(range(7)) and (real.segs > 0).any()
    for d in ("naive", "heuristic", "realistic"):  # precisely matched: same P and labels, other pixels
        rep = read_group(out / f"{d}.h5", "01")
        np.testing.assert_array_equal(rep.P, real.P)
        np.testing.assert_array_equal(rep.segs, real.segs)
        np.testing.assert_array_equal(rep.lands, real.lands)
        assert not np.allclose(rep.projs, real.projs)
    attrs = read_file_attrs(out / "real.h5")
    assert attrs["task"] == "hip-controlled" and attrs["projector"] == "emulated-cios-fusion"
    assert attrs["image_size"] == 24 and attrs["real_is_emulated"] is True
    assert attrs["pixel_mm"] == pytest.approx(0.194 * 1440 / 24)
    assert attrs["created"].startswith("1970-01-01")
    assert read_file_attrs(out / "real-loopx.h5")["device"] == "loopx"
    man = cache.read_manifest(out)
    assert man is not None and set(man["files"]) == set(names) and man["created"][:4] >= "2024"
    # a second call returns at once, without loading a specimen
    n = len(lab)
    t0 = time.perf_counter()
    assert gen.ensure_dataset("hip-controlled", PROFILE, workers=0, progress=False) == out
    assert time.perf_counter() - t0 < 1.0 and len(lab) == n
    # the landmarks of the stored P reproject (x, y) = P X
    from synthex_lib.geometry import project_points

    # (the femoral heads with their femur's own registered P), and the true pose of acquisition is stored
    poses = read_poses(out / "real.h5", "01")
    assert sorted(poses) == ["P", "P_left_femur", "P_right_femur", "P_true"]
    np.testing.assert_array_equal(poses["P"], real.P)
    assert not np.allclose(poses["P_true"], real.P)
    for name in ("naive", "realistic"):
        np.testing.assert_array_equal(read_poses(out / f"{name}.h5", "01")["P_true"], poses["P_true"])
    marks = _phantom("01").landmark_array(HIP_LANDMARKS)
    own = {"FH-l": "P_left_femur", "FH-r": "P_right_femur"}
    for li, name in enumerate(HIP_LANDMARKS):
        uv, _ = project_points(poses[own.get(name, "P")][0], marks[li:li + 1])
        np.testing.assert_allclose(real.landmarks_xy[0, li], uv[0], atol=1e-3)


def test_kill_and_resume_gives_identical_bytes(lab, monkeypatch, tmp_path):
    kw = dict(domains=("real", "naive"), workers=0, progress=False, chunk_size=2)
    monkeypatch.setenv(render.FAULT_ENV, "5")
    with pytest.raises(RuntimeError, match="injected fault"):
        gen.ensure_dataset("hip-controlled", PROFILE, **kw)
    out = cache.dataset_dir("hip-controlled", PROFILE)
    assert not list(out.glob("*.h5"))  # nothing assembled, nothing half-written
    done = sorted(p.name for p in out.glob(".work/*/*/*/*.npz"))
    assert len(done) == 6  # the fault fired as the third unit started: two units (labels, real, naive) done
    monkeypatch.delenv(render.FAULT_ENV)
    gen.ensure_dataset("hip-controlled", PROFILE, **kw)
    resumed = _digest(out)
    assert not (out / ".work").exists()
    # a fresh, uninterrupted run elsewhere, with other chunks, gives the same bytes
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "other"))
    fresh = gen.ensure_dataset("hip-controlled", PROFILE, domains=("real", "naive"), workers=0, progress=False,
                               chunk_size=3)
    assert _digest(fresh) == resumed and len(resumed) == 4


def test_worker_count_does_not_change_bytes(lab, monkeypatch, tmp_path):
    kw = dict(domains=("real", "realistic"), progress=False, chunk_size=2)
    a = _digest(gen.ensure_dataset("hip-controlled", PROFILE, workers=0, **kw))
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "dask"))
    b = _digest(gen.ensure_dataset("hip-controlled", PROFILE, workers=2, **kw))
    assert a == b and len(a) == 4


def test_more_domains_later_and_seed_folder(lab):
    out = gen.ensure_dataset("hip-controlled", PROFILE, domains=("naive",), workers=0, progress=False)
    first = _digest(out)
    gen.ensure_dataset("hip-controlled", PROFILE, domains=("naive", "heuristic"), workers=0, progress=False)
    both = _digest(out)
    assert {k: both[k] for k in first} == first and "heuristic.h5" in both
    other = gen.ensure_dataset("hip-controlled", PROFILE, domains=("naive",), seed=1, workers=0, progress=False)
    assert other != out and other.name.endswith("seed1-custom" + other.name.rsplit("custom", 1)[1])
    a = read_group(out / "naive.h5", "01").P
    b = read_group(other / "naive.h5", "01").P
    assert not np.allclose(a, b)  # another seed, other poses


def test_tool_and_chest_tasks(lab, monkeypatch):
    def tool_cohort(cohort, profile, seed=0):
        s = _phantom("01")
        lab_ = np.zeros_like(s.labels)
        lab_[s.labels == 5] = 1  # the "tool" is the left femur
        return [Specimen("tool", s.ct_hu, lab_, s.spacing, s.origin,
                         {"base": np.array([55.0, 0.0, -40.0]), "tip": np.array([55.0, 0.0, 0.0])},
                         specimen_id="tool-00", anatomy=s.anatomy)]

    monkeypatch.setattr(lab_source, "load_lab_cohort", tool_cohort)
    out = gen.ensure_dataset("tool", PROFILE, workers=0, progress=False)
    assert sorted(p.name for p in out.glob("*.h5")) == ["real.h5", "realistic.h5"]
    g = read_group(out / "realistic.h5", "01")
    assert g.projs.shape == (3, 24, 24) and set(np.unique(g.segs)) <= {0, 1} and g.lands.shape == (3, 2, 2)
    assert read_group(out / "real.h5", "01").projs.shape == (3, 24, 24)
    assert not np.allclose(read_group(out / "real.h5", "01").P, g.P)  # real images have their own poses
    monkeypatch.setattr(lab_source, "load_lab_cohort", lambda c, p, s=0: [_phantom("01", kind="chest")])
    out = gen.ensure_dataset("chest", PROFILE, domains=("naive",), workers=0, progress=False)
    c = read_group(out / "naive.h5", "01")
    assert c.lands.shape == (3, 2, 0) and read_landmark_names(out / "naive.h5") == []
    assert c.segs.any()  # the lesion is projected
    assert read_file_attrs(out / "naive.h5")["pixel_mm"] == pytest.approx(tasks.CHEST_PANEL.binned(24).pixel_mm)


def test_shear_volume():
    s = _phantom("01", kind="chest")
    same = render.shear_volume(s, 0.0)
    np.testing.assert_array_equal(same.ct_hu, s.ct_hu)
    sh = render.shear_volume(s, 30.0)
    # a voxel at z - z_c = dz moves by tan(30) dz along x: compare the lesion's centroid per slice
    k = np.nonzero(s.lesion_mask.any(axis=(1, 2)))[0]
    k0, k1 = k[0], k[-1]

    def cx(m, kk):
        return np.nonzero(m[kk])[1].mean()

    shift = (cx(sh.lesion_mask, k1) - cx(sh.lesion_mask, k0)) - (cx(s.lesion_mask, k1) - cx(s.lesion_mask, k0))
    assert shift == pytest.approx(np.tan(np.deg2rad(30.0)) * (k1 - k0), abs=1.0)


def test_deepfluoro_source_renders_replicas_of_real_images(monkeypatch, tmp_path):
    pytest.importorskip("synthex_lib.realdata.deepfluoro")
    from synthex_lib.generate.sources import get_source
    from synthex_lib.realdata.fixtures import write_deepfluoro_fixture

    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    src = tmp_path / "df.h5"
    write_deepfluoro_fixture(src)
    prof = get_profile("smoke", detector_px=16)
    cases = list(get_source("deepfluoro")(prof, 0, path=str(src)))
    out = gen.ensure_dataset("hip-controlled", prof, domains=("real", "naive"), dataset="deepfluoro", path=src,
                             workers=0, progress=False)
    assert "deepfluoro" in out.name
    for case in cases:
        real = read_group(out / "real.h5", case.group)
        np.testing.assert_array_equal(real.projs, case.real.projs)  # not emulated: the real images themselves
        np.testing.assert_array_equal(real.segs, case.real.segs)
        rep = read_group(out / "naive.h5", case.group)
        np.testing.assert_array_equal(rep.P, case.P)
        assert rep.projs.shape == real.projs.shape and np.isfinite(rep.projs).all()
    assert read_file_attrs(out / "real.h5")["projector"] == "real"


def test_bad_arguments_raise_config_errors(lab):
    with pytest.raises(ConfigError, match="unknown task"):
        gen.ensure_dataset("knee", PROFILE)
    with pytest.raises(ConfigError, match="image domain"):
        gen.ensure_dataset("hip-controlled", PROFILE, domains=("cyclegan",))
    with pytest.raises(ConfigError, match="chunk_size"):
        gen.ensure_dataset("hip-controlled", PROFILE, chunk_size=0)
    with pytest.raises(ConfigError, match="unknown profile"):
        gen.ensure_dataset("hip-controlled", "huge")
    with pytest.raises(ConfigError, match="dataset"):
        gen.ensure_dataset("hip-controlled", PROFILE, dataset="nmdid", workers=0, progress=False)
    with pytest.raises(ConfigError, match="workers"):
        ClusterOptions(workers=-1)
    with pytest.raises(ConfigError, match="not both"):
        ClusterOptions(scheduler="tcp://x:1", slurm={})


def test_slurm_cluster_is_built_from_options():
    opts = parse_slurm_options(["queue=short", "cores=2", "memory=8GB", "walltime=00:30:00", "jobs=3",
                                "job_extra_directives=--gres=gpu:1,--exclusive"])
    assert opts["cores"] == 2 and opts["jobs"] == 3 and opts["job_extra_directives"] == ["--gres=gpu:1", "--exclusive"]
    cluster = make_slurm_cluster(opts, scale=False)
    try:
        script = cluster.job_script()
        assert "#SBATCH -p short" in script and "--cpus-per-task=2" in script and "#SBATCH -t 00:30:00" in script
        assert "--gres=gpu:1" in script
    finally:
        cluster.close()
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_slurm_options(["queue"])


def test_hdf5_files_are_plain_h5py_readable(lab):
    out = gen.ensure_dataset("hip-controlled", PROFILE, domains=("naive",), workers=0, progress=False)
    with h5py.File(out / "naive.h5", "r") as f:
        assert f["01/projs"].dtype == np.float32 and f["01/segs"].dtype == np.uint8
        assert f["land-names/num-lands"][()] == 14


def test_cli_simulate(lab, capsys):
    import argparse

    from synthex_lib.cli import simulate as cli

    assert cli.TASK_NAMES == tuple(tasks.TASKS) and cli.DOMAIN_NAMES == tasks.ALL_DOMAINS
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    p = cli.add_parser(sub)
    assert "synthex simulate --task" in p.epilog and p.description
    args = parser.parse_args(["simulate", "--task", "hip-controlled", "--projector", "naive", "--workers", "0",
                              "--no-progress"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "naive.h5: 8 images in 2 group(s)" in out and "naive-loopx.h5: 4 images in 1 group(s)" in out
