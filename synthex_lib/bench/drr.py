"""DRR benchmark: our naive and realistic projectors against DiffDRR's trilinear renderer and nanodrr (CPU).

Run ``python -m synthex_lib.bench drr [--json]`` (needs the ``bench`` extra: ``diffdrr==0.6.1``, of which only
``diffdrr.drr`` and ``diffdrr.pose`` are imported, and ``nanodrr==0.1.7``). One run on one hip CT of at least
256^3 voxels (a lab specimen when the anatomy generator is available, else a synthetic hip phantom; the output
says which), the same 256 x 256 detector and the same pose for every renderer:

* DiffDRR renders the water fraction ``max(1 + HU/1000, 0)`` (given to it directly as its density, so both
  integrate the same quantity) with ``renderer="trilinear"`` and its default 500 points per ray;
* our projection matrix is derived from DiffDRR's own source and detector points, so the rays coincide;
* ``rel_l1_vs_diffdrr`` = sum |ours - DiffDRR| / sum |DiffDRR| over the pixels inside the body (our water path
  above 5 mm), for our ``water-path-mm`` (naive physics, Joseph slice stepping);
* nanodrr (pure-torch ``grid_sample`` back end, the one that runs on a CPU; 500 samples per ray clipped to the
  volume) renders the same water fraction (a ``nanodrr.data.Subject`` with ``convert_to_mu=False``) through
  the same P: :func:`nanodrr_views` decomposes P into nanodrr's ``k_inv`` / camera-to-world ``rt_inv``, with
  the principal point moved by half a pixel because nanodrr casts the ray of pixel (u, v) through
  (u + 0.5, v + 0.5) while our P puts pixel centres on integers; ``rel_l1_vs_nanodrr`` is the same measure
  against it, ``speedup_vs_nanodrr_cpu`` = nanodrr time / our naive time (wall clock, same CPU threads);
* times are medians over repeats after one warm-up call (JIT compilation and the one-off preparation of the
  volume's channels are reported separately); ``speedup_vs_diffdrr`` = DiffDRR time / our naive time
  (wall clock), ``speedup_vs_diffdrr_cpu_time`` the same in CPU seconds of all threads, which is less
  sensitive to other processes on a shared machine (the load average is printed too).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from typing import Any

import numpy as np
import torch

from synthex_lib import geometry
from synthex_lib.anatomy import make_specimen
from synthex_lib.core.config import get_profile
from synthex_lib.geometry import as_cameras
from synthex_lib.simulate.physics.density import water_fraction
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.volume_io import Volume

MIN_VOXELS = 256**3
DETECTOR_PX = 256
DETECTOR_PIXEL_MM = 1.6  #: pitch of the 256 px benchmark detector (1024 x 0.4 mm / 256: a CIOS-sized field)
SDD_MM = 1020.0
SID_MM = 600.0


def synthetic_hip_ct(n: int = 256, spacing_mm: float = 1.25) -> tuple[np.ndarray, tuple, tuple]:
    """A deterministic hip-like phantom ``[n, n, n]`` in HU: a soft-tissue body with a fat layer, a pelvic ring
    (cortical shell around trabecular bone), a sacrum, two femoral heads and shafts, in air. Returns
    ``(hu, spacing, origin)`` with the phantom centred on the LPS origin."""
    c = (np.arange(n) - (n - 1) / 2) * spacing_mm
    z, y, x = np.meshgrid(c, c, c, indexing="ij", sparse=True)
    hu = np.full((n, n, n), -1000.0, np.float32)
    body = (x / 150) ** 2 + (y / 105) ** 2 < 1
    inner = (x / 138) ** 2 + (y / 94) ** 2 < 1
    hu[np.broadcast_to(body, hu.shape)] = -90.0  # fat
    hu[np.broadcast_to(inner, hu.shape)] = 45.0  # muscle / organs
    # pelvic ring: a torus-like shell, tilted
    r_ring = np.sqrt((x / 1.3) ** 2 + (y + 10) ** 2)
    tube = np.sqrt((r_ring - 85) ** 2 + ((z - 30) / 1.6) ** 2)
    hu[tube < 18] = 250.0
    hu[(tube >= 14) & (tube < 18)] = 1300.0
    # sacrum
    sac = (x / 40) ** 2 + ((y - 70) / 22) ** 2 + ((z - 40) / 60) ** 2 < 1
    hu[sac] = 350.0
    # femoral heads and shafts
    for side in (-1, 1):
        d = np.sqrt((x - side * 95) ** 2 + (y + 5) ** 2 + (z + 15) ** 2)
        hu[d < 24] = 300.0
        hu[(d >= 21) & (d < 24)] = 1250.0
        shaft = np.sqrt((x - side * (105 + 0.15 * (-z - 15))) ** 2 + (y + 5) ** 2)
        zmask = z < -30
        hu[(shaft < 15) & zmask] = 1400.0
        hu[(shaft < 9) & zmask] = 100.0
    # smooth texture so that interpolation matters
    tex = 20.0 * np.sin(x / 7.0) * np.sin(y / 9.0) * np.sin(z / 11.0)
    hu = np.where(hu > -1000, hu + tex, hu).astype(np.float32)
    origin = (float(c[0]),) * 3
    return hu, (spacing_mm,) * 3, origin


def benchmark_ct() -> tuple[Any, str]:
    """The benchmark CT: a lab hip specimen of at least 256^3 voxels if the anatomy generator is available,
    else :func:`synthetic_hip_ct`. Returns (volume, description)."""

    try:
        profile = get_profile("full")
        spec = make_specimen("hip", 0, profile)
        spacing = profile.lab.ct_spacing_mm
        while spec.ct_hu.size < MIN_VOXELS and spacing > 0.4:
            spacing *= (spec.ct_hu.size / MIN_VOXELS) ** (1 / 3) * 0.97
            spec = make_specimen("hip", 0, get_profile("full", ct_spacing_mm=round(spacing, 3)))
        if spec.ct_hu.size >= MIN_VOXELS:
            return spec, f"lab hip specimen 0 ({'x'.join(map(str, spec.ct_hu.shape))} voxels, {spec.spacing[0]:.3g} mm)"
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        reason = "lab specimen smaller than 256^3"
    hu, spacing, origin = synthetic_hip_ct()
    vol = Volume(hu, spacing, origin, source="synthetic hip phantom")
    return vol, f"synthetic hip phantom (256x256x256 voxels, 1.25 mm; lab specimen unavailable: {reason})"


def _diffdrr_setup(volume: Any, pose_c2w: np.ndarray):
    """DiffDRR module rendering ``volume``'s water fraction in our LPS frame, plus the P of its rays."""
    from diffdrr.drr import DRR  # only drr/data: diffdrr.metrics needs a torchvision that fails beside CPU torch
    from torchio import ScalarImage, Subject  # optional: installed with diffdrr

    hu = np.asarray(volume.ct_hu, np.float32)
    wf = water_fraction(hu)
    affine = np.eye(4)
    affine[:3, :3] = np.diag(volume.spacing)
    affine[:3, 3] = volume.origin
    # torchio images are [C, I, J, K] with I along x: our [z, y, x] transposed
    tensor = torch.from_numpy(np.ascontiguousarray(wf.transpose(2, 1, 0)))[None]
    image = ScalarImage(tensor=tensor, affine=affine)
    subject = Subject(volume=image, mask=None, orientation=None, reorient=torch.eye(4), density=image,
                      fiducials=None)
    drr = DRR(subject, sdd=SDD_MM, height=DETECTOR_PX, delx=DETECTOR_PIXEL_MM, renderer="trilinear")
    from diffdrr.pose import RigidTransform  # optional peer (bench extra)

    pose = RigidTransform(torch.as_tensor(pose_c2w, dtype=torch.float32)[None])
    with torch.no_grad():
        source, target = drr.detector(pose, None)
    P = p_from_source_and_targets(source[0].double().numpy(), target[0].double().numpy(), DETECTOR_PX, DETECTOR_PX)
    return drr, pose, P


def p_from_source_and_targets(source: np.ndarray, targets: np.ndarray, W: int, H: int) -> np.ndarray:
    """The 3x4 P of a pinhole whose pixel ``n`` (row ``n // W``, col ``n % W``) looks from ``source`` through
    ``targets[n]``: the detector points are fitted as ``t00 + col a + row b`` and ``P = M^-1 [I | -s]`` with
    ``M = [a, b, t00 - s]``."""
    n = np.arange(W * H)
    design = np.stack([np.ones(W * H), n % W, n // W], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(design, targets.reshape(-1, 3), rcond=None)
    t00, a, b = coef
    s = np.asarray(source, np.float64).reshape(3)
    M = np.stack([a, b, t00 - s], 1)
    Minv = np.linalg.inv(M)
    return Minv @ np.concatenate([np.eye(3), -s[:, None]], 1)


def ct_centre(volume: Any) -> np.ndarray:
    """LPS mm of the centre of ``volume`` (``ct_hu`` [z, y, x], ``spacing`` and ``origin`` (x, y, z))."""
    return np.asarray(volume.origin) + (np.array(volume.ct_hu.shape[::-1]) - 1) / 2 * np.asarray(volume.spacing)


#: nanodrr casts the ray of pixel (u, v) through (u + 0.5, v + 0.5); our P puts pixel centres on integers
NANODRR_PIXEL_CENTRE = 0.5


def nanodrr_subject(volume: Any, device: str | torch.device = "cpu"):
    """A ``nanodrr.data.Subject`` holding ``volume``'s water fraction ``max(1 + HU/1000, 0)`` as is
    (``convert_to_mu=False``; no label map), in our LPS world: nanodrr's ``[D, H, W]`` layout is our
    ``[z, y, x]`` and its voxel-to-world affine is ``origin + spacing * (i, j, k)`` with ``i`` along x."""
    from nanodrr.data import Subject  # optional: the bench extra (nanodrr==0.1.7)

    wf = torch.from_numpy(np.ascontiguousarray(water_fraction(np.asarray(volume.ct_hu, np.float32))))
    image = wf[None, None].to(device)
    v2w = np.eye(4)
    v2w[:3, :3] = np.diag(np.asarray(volume.spacing, np.float64))
    v2w[:3, 3] = np.asarray(volume.origin, np.float64)
    voxel_to_world = torch.as_tensor(v2w, dtype=torch.float32)
    world_to_voxel = torch.as_tensor(np.linalg.inv(v2w), dtype=torch.float32)
    iso = torch.as_tensor(ct_centre(volume), dtype=torch.float32)
    subject = Subject(image, torch.zeros_like(image), voxel_to_world, world_to_voxel,
                      Subject._make_voxel_to_grid(image.shape), iso, max_label=0, convert_to_mu=False)
    return subject.to(device)


def nanodrr_views(P: np.ndarray, size: tuple[int, int], sdd_mm: float, device: str | torch.device = "cpu"):
    """nanodrr's ``(k_inv [B, 3, 3], rt_inv [B, 4, 4], sdd [B])`` for our 3x4 / [B, 3, 4] ``P`` (LPS mm ->
    pixel (col, row), centres on integers) and ``size`` (W, H): ``P ~ K [R | t]`` (the RQ decomposition of
    :meth:`~synthex_lib.geometry.Camera.from_projection`), ``k_inv = (T(0.5, 0.5) K)^-1`` so that nanodrr's
    ray through (u + 0.5, v + 0.5) is ours through pixel (u, v), ``rt_inv`` = camera-to-world (nanodrr's
    camera is ours: source at the origin, +z towards the detector), and rays end at depth ``sdd_mm``."""
    cams = as_cameras(P, sdd_mm, size)
    shift = np.array([[1.0, 0.0, NANODRR_PIXEL_CENTRE], [0.0, 1.0, NANODRR_PIXEL_CENTRE], [0.0, 0.0, 1.0]])
    k_inv = np.stack([np.linalg.inv(shift @ c.intrinsic) for c in cams])
    rt_inv = np.stack([c.world_from_camera for c in cams])
    as_t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return as_t(k_inv), as_t(rt_inv), as_t(np.full(len(cams), float(sdd_mm)))


def nanodrr_render(subject: Any, views: tuple, size: tuple[int, int], backend: str = "torch",
                   n_samples: int = 500) -> torch.Tensor:
    """``[B, H, W]`` line integrals (mm of water for :func:`nanodrr_subject`) rendered by nanodrr."""
    from nanodrr.drr import render  # optional: the bench extra (nanodrr==0.1.7)

    k_inv, rt_inv, sdd = views
    W, H = size
    with torch.no_grad():
        return render(subject, k_inv, rt_inv, sdd, H, W, n_samples=n_samples, backend=backend)[:, 0]


def rel_l1(ours: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """sum |ours - ref| / sum |ref| over ``mask``."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    return float(np.abs(ours[mask] - ref[mask]).sum() / max(np.abs(ref[mask]).sum(), 1e-12))


def _median_time(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU (all threads) seconds of ``fn`` over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def run(repeats: int = 3, diffdrr_repeats: int = 2, nanodrr_repeats: int = 2) -> dict[str, Any]:
    """Run the benchmark; returns the figures (also printed by :func:`main`)."""

    volume, ct_desc = benchmark_ct()
    centre = ct_centre(volume)
    pose = geometry.carm_pose(centre, SID_MM, lao_deg=20.0, cran_deg=10.0)
    c2w = np.eye(4)
    c2w[:3, :3] = pose.R.T
    c2w[:3, 3] = pose.source_lps
    result: dict[str, Any] = {"benchmark": "drr", "ct": ct_desc, "ct_shape_zyx": list(volume.ct_hu.shape),
                              "detector_px": DETECTOR_PX, "threads": torch.get_num_threads(),
                              "load_average_at_start": round(os.getloadavg()[0], 2)}
    try:
        t0 = time.perf_counter()
        drr, dpose, P = _diffdrr_setup(volume, c2w)
        result["diffdrr_setup_s"] = round(time.perf_counter() - t0, 3)
        have_diffdrr = True
    except ImportError as exc:
        result["diffdrr_error"] = f"diffdrr unavailable ({exc}); install the 'bench' extra"
        have_diffdrr = False
        P = geometry.projection_matrix(geometry.Device("bench", DETECTOR_PX, DETECTOR_PX, DETECTOR_PIXEL_MM, SDD_MM),
                                       pose)
    size = (DETECTOR_PX, DETECTOR_PX)
    naive = get_projector("naive")
    realistic = get_projector("realistic")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    water = naive.render(volume, P, size, "water-path-mm")[0]
    result["naive_first_call_s"] = round(time.perf_counter() - t0, 3)  # JIT load + channel preparation
    t0 = time.perf_counter()
    realistic.render(volume, P, size, "neglog", rng=rng)
    result["realistic_first_call_s"] = round(time.perf_counter() - t0, 3)
    t_naive, c_naive = _median_time(lambda: naive.render(volume, P, size, "neglog"), repeats)
    t_real, c_real = _median_time(lambda: realistic.render(volume, P, size, "neglog", rng=rng), repeats)
    result["naive_s_per_image"] = round(t_naive, 4)
    result["realistic_s_per_image"] = round(t_real, 4)
    result["naive_cpu_s_per_image"] = round(c_naive, 4)
    result["realistic_cpu_s_per_image"] = round(c_real, 4)
    result["realistic_over_naive"] = round(t_real / t_naive, 2)
    # throughput at 360 px (the paper's image size), CIOS Fusion binned, batch of 8 poses
    dev360 = geometry.CIOS_FUSION.binned(360)
    rng_pose = np.random.default_rng(1)
    sampler = geometry.HipPoseSampler()
    P360 = np.stack([geometry.projection_matrix(dev360, sampler.sample(rng_pose, centre)) for _ in range(8)])  # noqa: N806
    naive.render(volume, P360[:1], (360, 360))
    t360n, _ = _median_time(lambda: naive.render(volume, P360, (360, 360)), max(1, repeats - 1))
    t360r, _ = _median_time(lambda: realistic.render(volume, P360, (360, 360), rng=rng), max(1, repeats - 1))
    result["naive_images_per_s_360px"] = round(len(P360) / t360n, 2)
    result["realistic_images_per_s_360px"] = round(len(P360) / t360r, 2)
    if have_diffdrr:
        with torch.no_grad():
            ref = drr(dpose)[0, 0].double().numpy()
            t_diff, c_diff = _median_time(lambda: drr(dpose), diffdrr_repeats)
        body = water > 5.0
        result["diffdrr_trilinear_s_per_image"] = round(t_diff, 4)
        result["diffdrr_trilinear_cpu_s_per_image"] = round(c_diff, 4)
        result["diffdrr_n_points"] = 500
        result["body_pixels"] = int(body.sum())
        result["speedup_vs_diffdrr"] = round(t_diff / t_naive, 2)
        result["speedup_vs_diffdrr_cpu_time"] = round(c_diff / c_naive, 2)
        result["realistic_speedup_vs_diffdrr"] = round(t_diff / t_real, 2)
        result["rel_l1_vs_diffdrr"] = round(rel_l1(water, ref, body), 5)
    else:
        ref = None
        result["speedup_vs_diffdrr"] = math.nan
        result["rel_l1_vs_diffdrr"] = math.nan
    try:
        t0 = time.perf_counter()
        subject = nanodrr_subject(volume)
        views = nanodrr_views(P, size, SDD_MM)
        nano = nanodrr_render(subject, views, size)[0].double().numpy()  # warm-up (and the image compared)
        result["nanodrr_first_call_s"] = round(time.perf_counter() - t0, 3)
    except ImportError as exc:
        result["nanodrr_error"] = f"nanodrr unavailable ({exc}); install the 'bench' extra"
        result["speedup_vs_nanodrr_cpu"] = math.nan
        result["rel_l1_vs_nanodrr"] = math.nan
    else:
        t_nano, c_nano = _median_time(lambda: nanodrr_render(subject, views, size), nanodrr_repeats)
        body = water > 5.0
        result["nanodrr_backend"] = "torch"
        result["nanodrr_n_samples"] = 500
        result["nanodrr_torch_s_per_image"] = round(t_nano, 4)
        result["nanodrr_torch_cpu_s_per_image"] = round(c_nano, 4)
        result["speedup_vs_nanodrr_cpu"] = round(t_nano / t_naive, 2)
        result["speedup_vs_nanodrr_cpu_time"] = round(c_nano / c_naive, 2)
        result["rel_l1_vs_nanodrr"] = round(rel_l1(water, nano, body), 5)
        if ref is not None:
            result["rel_l1_nanodrr_vs_diffdrr"] = round(rel_l1(nano, ref, body), 5)
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthex_lib.bench drr",
                                     description="Our projectors against DiffDRR and nanodrr.")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of our projectors (median)")
    args = parser.parse_args(argv)
    result = run(repeats=args.repeats)
    if not args.json:
        for key, value in result.items():
            print(f"{key:32s} {value}")
    print(json.dumps(result))
    return 0
