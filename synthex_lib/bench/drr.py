"""DRR benchmark: our naive and realistic projectors against DiffDRR's trilinear renderer (default settings).

Run ``python -m synthex_lib.bench drr [--json]`` (needs the ``bench`` extra: ``diffdrr==0.6.1``; only
``diffdrr.drr`` and ``diffdrr.data`` are imported). One run on one hip CT of at least 256^3 voxels (a lab
specimen when the anatomy generator is available, else a synthetic hip phantom; the output says which), the
same 256 x 256 detector and the same pose for both renderers:

* DiffDRR renders the water fraction ``max(1 + HU/1000, 0)`` (given to it directly as its density, so both
  integrate the same quantity) with ``renderer="trilinear"`` and its default 500 points per ray;
* our projection matrix is derived from DiffDRR's own source and detector points, so the rays coincide;
* ``rel_l1_vs_diffdrr`` = sum |ours - DiffDRR| / sum |DiffDRR| over the pixels inside the body (our water path
  above 5 mm), for our ``water-path-mm`` (naive physics, Joseph slice stepping);
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


def _median_time(fn, repeats: int) -> tuple[float, float]:
    """Median wall-clock and CPU (all threads) seconds of ``fn`` over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def run(repeats: int = 3, diffdrr_repeats: int = 2) -> dict[str, Any]:
    """Run the benchmark; returns the figures (also printed by :func:`main`)."""

    volume, ct_desc = benchmark_ct()
    centre = np.asarray(volume.origin) + (np.array(volume.ct_hu.shape[::-1]) - 1) / 2 * np.asarray(volume.spacing)
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
        rel_l1 = float(np.abs(water[body] - ref[body]).sum() / max(np.abs(ref[body]).sum(), 1e-12))
        result["diffdrr_trilinear_s_per_image"] = round(t_diff, 4)
        result["diffdrr_trilinear_cpu_s_per_image"] = round(c_diff, 4)
        result["diffdrr_n_points"] = 500
        result["body_pixels"] = int(body.sum())
        result["speedup_vs_diffdrr"] = round(t_diff / t_naive, 2)
        result["speedup_vs_diffdrr_cpu_time"] = round(c_diff / c_naive, 2)
        result["realistic_speedup_vs_diffdrr"] = round(t_diff / t_real, 2)
        result["rel_l1_vs_diffdrr"] = round(rel_l1, 5)
    else:
        result["speedup_vs_diffdrr"] = math.nan
        result["rel_l1_vs_diffdrr"] = math.nan
    result["load_average_at_end"] = round(os.getloadavg()[0], 2)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthex_lib.bench drr",
                                     description="Benchmark the naive/realistic projectors against DiffDRR.")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of our projectors (median)")
    args = parser.parse_args(argv)
    result = run(repeats=args.repeats)
    if not args.json:
        for key, value in result.items():
            print(f"{key:32s} {value}")
    print(json.dumps(result))
    return 0
