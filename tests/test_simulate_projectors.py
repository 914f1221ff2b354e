"""Projectors, file input, the ``synthex render`` command and the optional DeepDRR adapter."""

from __future__ import annotations

import argparse
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthex_lib import geometry as g
from synthex_lib.core.errors import ConfigError, DataError, SynthexError
from synthex_lib.simulate.physics import density as dens
from synthex_lib.simulate.physics.materials import mass_attenuation
from synthex_lib.simulate.raymarch import line_integrals
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.volume_io import volume_from_file

N = 48
SPACING = (1.5, 1.5, 1.5)
ORIGIN = (-(N - 1) * 0.75,) * 3


@pytest.fixture(scope="module")
def phantom() -> SimpleNamespace:
    """A water cylinder (axis z) with a bone rod, in air: a minimal Specimen-like volume."""
    c = (np.arange(N) - (N - 1) / 2) * 1.5
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    hu = np.full((N, N, N), -1000.0, np.float32)
    hu[x**2 + y**2 < 28**2] = 0.0
    hu[(x - 8) ** 2 + y**2 < 6**2] = 1200.0
    return SimpleNamespace(ct_hu=hu, spacing=SPACING, origin=ORIGIN, specimen_id="phantom")


def _P(batch: int = 2, px: int = 40) -> np.ndarray:
    dev = g.Device("t", px, px, 4.0, 1000.0)  # 80 mm field at the isocentre: air beside the phantom
    return np.stack([g.projection_matrix(dev, g.carm_pose(np.zeros(3), 500.0, lao_deg=30.0 * i)) for i in range(batch)])


def test_naive_projector_quantities(phantom):
    pr = get_projector("naive")
    P = _P()
    water = pr.render(phantom, P, (40, 40), "water-path-mm")
    assert water.shape == (2, 40, 40) and water.dtype == np.float32
    ref = line_integrals(dens.water_fraction(phantom.ct_hu), SPACING, ORIGIN, P, (40, 40), None)[:, 0].numpy()
    np.testing.assert_allclose(water, ref, rtol=1e-6)
    neglog = pr.render(phantom, P, (40, 40), "neglog")
    mu_w = float(mass_attenuation("water", 40.0)) / 10
    np.testing.assert_allclose(neglog, mu_w * water, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pr.render(phantom, P, (40, 40), "intensity"), np.exp(-neglog), rtol=1e-5)
    assert neglog.max() > 1.0 and neglog[:, 0, 0].max() == 0.0  # bone bright, air at 0


def test_heuristic_projector_formula_step_and_noise(phantom):
    P = _P(1)
    clean = get_projector("heuristic", noise=False)
    line = line_integrals(dens.heuristic_mu(phantom.ct_hu), SPACING, ORIGIN, P, (40, 40), 1.0)[:, 0].numpy()
    np.testing.assert_allclose(clean.render(phantom, P, (40, 40), "neglog"), line, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(clean.render(phantom, P, (40, 40), "intensity"), 2000 * np.exp(-line), rtol=1e-5)
    noisy = get_projector("heuristic")
    counts = noisy.render(phantom, P, (40, 40), "intensity", rng=np.random.default_rng(0))
    assert np.all(counts == np.round(counts))  # photon counts
    air = counts[0, :, :3]  # the leftmost columns see only air
    assert air.mean() == pytest.approx(2000, rel=0.02) and air.var() == pytest.approx(2000, rel=0.5)


def test_realistic_projector_matches_monoenergetic_beer_lambert():
    # a soft-tissue slab (HU 0, density 1.03 g/cm^3) 24 mm thick along z, viewed along z, mono-energetic
    hu = np.full((40, 40, 40), -1000.0, np.float32)
    hu[8:32] = 0.0
    vol = SimpleNamespace(ct_hu=hu, spacing=(1.0, 1.0, 1.0), origin=(-19.5, -19.5, -19.5))
    pr = get_projector("realistic", energy_kev=60.0, noise=False, scatter=False, saturation_rel=None)
    dev = g.Device("t", 9, 9, 0.5, 1000.0)
    P = g.projection_matrix(dev, g.carm_pose(np.zeros(3), 500.0, cran_deg=90.0))
    area = pr.area_density(vol, P, (9, 9))
    centre_air, centre_soft = area[0, 0, 4, 4].item(), area[0, 1, 4, 4].item()
    assert centre_soft == pytest.approx(1.03 * 2.4, rel=2e-3)  # g/cm^2
    neglog = pr.render(vol, P, (9, 9), "neglog")[0, 4, 4]
    expected = mass_attenuation("soft tissue", 60.0) * centre_soft + mass_attenuation("air", 60.0) * centre_air
    assert neglog == pytest.approx(float(expected), rel=1e-4)
    intensity = pr.render(vol, P, (9, 9), "intensity")[0, 4, 4]
    assert intensity == pytest.approx(60.0 * np.exp(-float(expected)), rel=1e-4)  # keV per emitted photon


def test_realistic_projector_is_deterministic_per_seed_and_physical(phantom):
    pr = get_projector("realistic")
    P = _P()
    a = pr.render(phantom, P, (40, 40), "neglog", rng=np.random.default_rng(7))
    b = pr.render(phantom, P, (40, 40), "neglog", rng=np.random.default_rng(7))
    c = pr.render(phantom, P, (40, 40), "neglog", rng=np.random.default_rng(8))
    assert a.tobytes() == b.tobytes() and not np.array_equal(a, c)
    assert np.isfinite(a).all() and a.min() >= 0.0  # saturation at the flat field: neglog >= 0
    clean = get_projector("realistic", noise=False, scatter=False).render(phantom, P, (40, 40), "neglog")
    with_scatter = get_projector("realistic", noise=False).render(phantom, P, (40, 40), "neglog")
    body = clean > 0.5
    assert np.all(with_scatter[body] < clean[body])  # scatter adds signal: lower line integrals
    assert np.abs(a - clean)[body].mean() < 0.1  # noise is a perturbation
    water = pr.render(phantom, P, (40, 40), "water-path-mm")
    np.testing.assert_allclose(water, get_projector("naive").render(phantom, P, (40, 40), "water-path-mm"))


def test_heuristic_is_deterministic_per_seed(phantom):
    pr = get_projector("heuristic")
    a = pr.render(phantom, _P(1), (40, 40), rng=np.random.default_rng(3))
    b = pr.render(phantom, _P(1), (40, 40), rng=np.random.default_rng(3))
    assert a.tobytes() == b.tobytes()


def test_projector_errors(phantom):
    with pytest.raises(ConfigError, match="unknown projector"):
        get_projector("fancy")
    with pytest.raises(ConfigError, match="invalid parameters"):
        get_projector("naive", photons=3)
    with pytest.raises(ConfigError, match="quantity"):
        get_projector("naive").render(phantom, _P(1), (8, 8), "counts")
    with pytest.raises(DataError):
        get_projector("naive").render(SimpleNamespace(ct_hu=np.zeros((4, 4))), _P(1), (8, 8))


def test_deepdrr_adapter_fails_with_one_line_naming_what_is_missing():
    from synthex_lib.simulate.deepdrr_adapter import BackendUnavailableError, decompose_p, missing_requirements

    why = missing_requirements()
    if why is None:  # pragma: no cover - only on a CUDA machine with the gpu extra
        pytest.skip("deepdrr and CUDA are available here")
    with pytest.raises(BackendUnavailableError) as err:
        get_projector("deepdrr")
    msg = str(err.value)
    assert isinstance(err.value, SynthexError) and "\n" not in msg
    assert "deepdrr" in msg and ("CUDA" in msg or "GPU" in msg)
    # the parameter mapping: P ~ K [R | t] with a proper rotation, also for -P (DeepFluoro-like sign)
    P = _P(1)[0]
    for Q in (P, -2.0 * P):  # noqa: N806
        K, R, t = decompose_p(Q)
        assert np.linalg.det(R) == pytest.approx(1.0) and K[2, 2] == 1.0
        Q2 = K @ np.concatenate([R, t[:, None]], 1)  # noqa: N806
        np.testing.assert_allclose(Q2 / Q2[2, 3], Q / Q[2, 3], rtol=1e-9, atol=1e-9)


# --- files and the command line ---------------------------------------------------------------

def _write(path, hu, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0), direction=None):
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(hu)
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    if direction is not None:
        img.SetDirection(np.asarray(direction, float).reshape(-1).tolist())
    sitk.WriteImage(img, str(path))
    return path


def _blob_volume() -> np.ndarray:
    hu = np.full((20, 24, 28), -1000.0, np.float32)
    hu[5:12, 6:18, 4:10] = 500.0
    return hu


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_volume_from_file_identity(tmp_path, suffix):
    hu = _blob_volume()
    vol = volume_from_file(_write(tmp_path / f"ct{suffix}", hu, (0.5, 0.75, 1.0), (-5.0, 2.0, 3.0)))
    np.testing.assert_array_equal(vol.ct_hu, hu)
    assert vol.spacing == (0.5, 0.75, 1.0) and vol.origin == (-5.0, 2.0, 3.0)


def test_volume_from_file_reorients_flipped_axes(tmp_path):
    # the same physical volume stored with x and y flipped (RAS-like direction) reads back LPS-aligned
    hu = _blob_volume()
    ref = volume_from_file(_write(tmp_path / "lps.nii.gz", hu, (1.0, 1.0, 1.0), (-5.0, 2.0, 3.0)))
    flipped = hu[:, ::-1, ::-1].copy()
    origin = (-5.0 + 27, 2.0 + 23, 3.0)  # voxel [0,0,0] of the flipped array is the old [0, 23, 27]
    vol = volume_from_file(_write(tmp_path / "ras.nii.gz", flipped, (1.0, 1.0, 1.0), origin,
                                  direction=np.diag([-1.0, -1.0, 1.0])))
    assert vol.meta["orientation"] == "reoriented"
    np.testing.assert_array_equal(vol.ct_hu, ref.ct_hu)
    np.testing.assert_allclose(vol.origin, ref.origin, atol=1e-5)


def test_volume_from_file_resamples_oblique_directions(tmp_path):
    hu = np.full((16, 16, 16), 0.0, np.float32)
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    vol = volume_from_file(_write(tmp_path / "oblique.mha", hu, direction=rot))
    assert vol.meta["orientation"] == "resampled"
    assert vol.ct_hu.shape[0] == 16 and vol.ct_hu.shape[2] > 16  # the rotated box is wider in x
    assert (vol.ct_hu == 0.0).any() and (vol.ct_hu == -1024.0).any()  # inside kept, corners are air


def test_volume_from_file_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.nii"):
        volume_from_file(tmp_path / "missing.nii")
    bad = tmp_path / "garbage.nii.gz"
    bad.write_bytes(b"not a nifti file at all")
    with pytest.raises(DataError, match="garbage.nii.gz"):
        volume_from_file(bad)
    hu = _blob_volume()
    hu[3, 3, 3] = np.nan
    with pytest.raises(DataError, match="nan.mha.*NaN"):
        volume_from_file(_write(tmp_path / "nan.mha", hu))


def _render_cli(argv: list[str]) -> int:
    from synthex_lib.cli import render as cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["render", *argv])
    return args.func(args)


def test_render_cli_round_trip(tmp_path):
    hu = _blob_volume()
    ct = _write(tmp_path / "ct.nii.gz", hu, (1.0, 1.0, 1.0), (-14.0, -12.0, -10.0))
    pose = g.carm_pose(np.zeros(3), 300.0, lao_deg=20.0)
    P = g.projection_matrix(g.Device("t", 32, 24, 1.0, 600.0), pose)
    p_arg = ",".join(repr(float(v)) for v in P.reshape(-1))
    for projector in ("naive", "heuristic", "realistic"):
        for quantity in ("water-path-mm", "intensity", "neglog"):
            out = tmp_path / f"{projector}-{quantity}.npy"
            assert _render_cli([str(ct), "--projector", projector, "--P", p_arg, "--size", "32", "24",
                                "--quantity", quantity, "--out", str(out)]) == 0
            img = np.load(out)
            assert img.shape == (24, 32) and img.dtype == np.float32
            expected = get_projector(projector).render(volume_from_file(ct), P, (32, 24), quantity,
                                                       rng=np.random.default_rng(0))[0]
            np.testing.assert_array_equal(img, expected)
    water = np.load(tmp_path / "naive-water-path-mm.npy")
    assert water.max() > 5.0  # the blob is in view
    assert list(tmp_path.glob("*.part")) == []


def test_render_cli_rejects_bad_arguments(tmp_path):
    ct = _write(tmp_path / "ct.mha", _blob_volume())
    with pytest.raises(ConfigError, match="--P"):
        _render_cli([str(ct), "--P", "1,2,3", "--size", "4", "4", "--out", str(tmp_path / "x.npy")])
    with pytest.raises(ConfigError, match="--size"):
        _render_cli([str(ct), "--P", ",".join(["1"] * 12), "--size", "0", "4", "--out", str(tmp_path / "x.npy")])
    assert not (tmp_path / "x.npy").exists()


def test_render_uses_cuda_when_available(phantom):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    P = _P()
    cpu = get_projector("naive").render(phantom, P, (40, 40))
    gpu = get_projector("naive", device="cuda").render(phantom, P, (40, 40))
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-4)


def test_deepdrr_mapping_half_pixel_and_photon_count_per_area():
    from synthex_lib.simulate.deepdrr_adapter import deepdrr_intrinsic, deepdrr_photon_count
    from synthex_lib.simulate.projectors import RealisticProjector

    dev = g.CIOS_FUSION.binned(90)
    pose = g.carm_pose(np.array([3.0, -2.0, 10.0]), 600.0, lao_deg=20.0, cran_deg=-5.0)
    cam = g.Camera.from_projection(g.projection_matrix(dev, pose), dev.sdd_mm, (dev.cols, dev.rows))
    Kd = deepdrr_intrinsic(cam)  # noqa: N806
    dd = g.Camera(Kd, cam.pose, cam.sdd_mm, cam.size)
    uv = np.array([[0.0, 0.0], [17.0, 42.0], [89.0, 89.0]])
    # DeepDRR's ray of pixel (u, v) goes through (u + 0.5, v + 0.5) of its camera: our ray of pixel (u, v)
    np.testing.assert_allclose(dd.ray_direction(uv + 0.5), cam.ray_direction(uv), atol=1e-12)
    X = cam.source_lps + 700.0 * cam.ray_direction(uv)  # world points on our rays
    np.testing.assert_allclose(dd.project(X)[0], uv + 0.5, atol=1e-9)
    assert dd.pixel_mm == pytest.approx(cam.pixel_mm)
    # photons per mm^2 of detector: DeepDRR's per-output-pixel count matches RealisticProjector's
    real = RealisticProjector(photon_count=10000.0, photon_pixel_mm=0.194, sdd_mm=dev.sdd_mm)
    n_dd = deepdrr_photon_count(SimpleNamespace(photon_count=10000.0, photon_pixel_mm=0.194), cam)
    assert n_dd / cam.pixel_mm**2 == pytest.approx(10000.0 / 0.194**2)
    assert n_dd == pytest.approx(real.photons_per_pixel(cam.P, 1)[0], rel=1e-12)
    assert real.photons_per_pixel(cam, 1)[0] == pytest.approx(n_dd, rel=1e-12)
    assert deepdrr_photon_count(real, cam) == pytest.approx(n_dd)
    assert deepdrr_photon_count(SimpleNamespace(photon_count=500.0, photon_pixel_mm=None), cam) == 500.0


def test_projectors_and_labels_accept_cameras(phantom):
    from synthex_lib.simulate.labels import project_landmarks, structure_path_lengths

    P = _P(2)
    cams = g.as_cameras(P, 1000.0, (40, 40))
    pr = get_projector("naive")
    np.testing.assert_allclose(pr.render(phantom, cams, (40, 40)), pr.render(phantom, P, (40, 40)), atol=1e-5)
    vol = (np.asarray(phantom.ct_hu) > 300).astype(np.uint8)
    a = structure_path_lengths(vol, phantom.spacing, phantom.origin, cams, (40, 40), (1,), None)
    b = structure_path_lengths(vol, phantom.spacing, phantom.origin, P, (40, 40), (1,), None)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4)
    pts = np.array([[0.0, 0.0, 0.0], [5.0, 3.0, -2.0]])
    np.testing.assert_allclose(project_landmarks(cams, pts, (40, 40))[0], project_landmarks(P, pts, (40, 40))[0],
                               atol=1e-8)
