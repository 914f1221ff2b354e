"""GPU benchmark (issue 16): the engine's CUDA throughput beside nanodrr, DiffDRR and DeepDRR, and training speed.

Run ``python -m synthex_lib.bench gpu [--json]`` on a machine with CUDA (the ``bench`` extra for nanodrr and
DiffDRR; DeepDRR from ``make deepdrr-env``). One prepared run, whose last stdout line is one JSON object:

* the CT: a lab hip specimen of at least 256^3 voxels (:func:`synthex_lib.bench.drr.benchmark_ct`);
* for each image size (200 and 360 px, the central 15/16 of the CIOS Fusion detector binned): ``poses`` hip
  poses (:class:`~synthex_lib.geometry.HipPoseSampler`) rendered as one batch by our ``naive`` and ``realistic``
  projectors (images/s, host copy included), nanodrr (pure torch, and its fused Triton kernel where it works)
  and DiffDRR's trilinear renderer (500 samples per ray), all through the same rays: each pose goes to
  DiffDRR as a camera-to-world matrix and the P that DiffDRR's detector then realises
  (:func:`~synthex_lib.bench.drr.p_from_source_and_targets`) is the P of every other renderer (nanodrr's
  half-pixel convention handled by :func:`~synthex_lib.bench.drr.nanodrr_views`); agreement is the relative
  L1 of the water path (mm) inside the body (our water path above 5 mm);
* our realistic projector against DeepDRR 1.2.2 through :mod:`synthex_lib.simulate.deepdrr_adapter` at the
  same poses (360 px, noise off in both, no scatter in ours as DeepDRR's is off): in this process when deepdrr
  imports, else through ``.venv-deepdrr/bin/python -m synthex_lib.bench.deepdrr_side``; agreement of the
  neglog images with the adapter's half-pixel shift and without it (to show what the convention is worth);
* training images/s of the multi-task U-Net (:mod:`synthex_lib.learning.models`, the ``paper`` profile's
  channels and batch size) at 360 px with mixed precision (``learning.training.autocast_for``: bfloat16 where
  supported), forward + backward + SGD step on rendered images.

Without CUDA it prints one line saying so and exits 0; ``--allow-cpu`` runs it on the CPU (for tests), where
``--size N`` makes it tiny: an N^3 synthetic phantom, N px images, training at N px.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import math
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthex_lib import geometry
from synthex_lib.bench.deepdrr_side import render_and_time, write_request
from synthex_lib.bench.drr import (
    SDD_MM,
    benchmark_ct,
    ct_centre,
    nanodrr_render,
    nanodrr_subject,
    nanodrr_views,
    p_from_source_and_targets,
    rel_l1,
    synthetic_hip_ct,
)
from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import build_model
from synthex_lib.learning.training import autocast_for
from synthex_lib.simulate.physics.density import water_fraction
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.volume_io import Volume

SIZES_PX = (200, 360)
DEEPDRR_VENV_PYTHON = Path(__file__).resolve().parents[2] / ".venv-deepdrr" / "bin" / "python"
#: the largest sample tensor ([B, n_samples, N, 3] float32) one nanodrr-torch / DiffDRR call may build
MAX_SAMPLE_BYTES = 4 * 2**30


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median wall-clock seconds of ``fn`` (synchronised) over ``repeats`` calls after one warm-up call."""
    fn()
    _sync(device)
    out = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def _chunks(batch: int, pixels: int, n_samples: int = 500) -> int:
    """Poses per call so that one call's samples stay under :data:`MAX_SAMPLE_BYTES`."""
    return max(1, min(batch, MAX_SAMPLE_BYTES // (n_samples * pixels * 3 * 4)))


def _ct(size: int | None) -> tuple[Any, str]:
    if size is None:
        return benchmark_ct()
    n = max(16, int(size))
    hu, spacing, origin = synthetic_hip_ct(n, 1.25 * 256 / n)
    return Volume(hu, spacing, origin, source="synthetic hip phantom"), f"synthetic hip phantom ({n}^3 voxels)"


def _c2w(pose: geometry.Pose) -> np.ndarray:
    c2w = np.eye(4)
    c2w[:3, :3] = pose.R.T
    c2w[:3, 3] = pose.source_lps
    return c2w


def _diffdrr(volume: Any, px: int, pixel_mm: float, c2w: np.ndarray, device: torch.device):
    """DiffDRR (trilinear, 500 samples) on ``volume``'s water fraction, its pose batch and the P of its rays."""
    from diffdrr.drr import DRR  # optional: the bench extra (diffdrr==0.6.1)
    from diffdrr.pose import RigidTransform  # optional: the bench extra (diffdrr==0.6.1)
    from torchio import ScalarImage, Subject  # optional: installed with diffdrr / nanodrr

    wf = water_fraction(np.asarray(volume.ct_hu, np.float32))
    affine = np.eye(4)
    affine[:3, :3] = np.diag(volume.spacing)
    affine[:3, 3] = volume.origin
    image = ScalarImage(tensor=torch.from_numpy(np.ascontiguousarray(wf.transpose(2, 1, 0)))[None], affine=affine)
    subject = Subject(volume=image, mask=None, orientation=None, reorient=torch.eye(4), density=image,
                      fiducials=None)
    drr = DRR(subject, sdd=SDD_MM, height=px, delx=pixel_mm, renderer="trilinear").to(device)
    pose = RigidTransform(torch.as_tensor(c2w, dtype=torch.float32, device=device))
    with torch.no_grad():
        source, target = drr.detector(pose, None)
    source, target = source.double().cpu().numpy(), target.double().cpu().numpy()
    P = np.stack([p_from_source_and_targets(source[b].reshape(-1, 3)[0], target[b], px, px)
                  for b in range(len(c2w))])
    return drr, pose, P


def _diffdrr_render(drr: Any, pose: Any, chunk: int) -> torch.Tensor:
    from diffdrr.pose import RigidTransform  # optional: the bench extra (diffdrr==0.6.1)

    m = pose.matrix
    with torch.no_grad():
        return torch.cat([drr(RigidTransform(m[i:i + chunk]))[:, 0] for i in range(0, len(m), chunk)])


def _renderer_figures(volume: Any, px: int, poses: list[geometry.Pose], repeats: int, device: torch.device,
                      out: dict[str, Any]) -> np.ndarray:
    """Images/s and agreement of every renderer at ``px``; returns the P used (for the DeepDRR comparison)."""
    dev_px = geometry.CIOS_FUSION.binned(px)
    size = (px, px)
    B = len(poses)
    c2w = np.stack([_c2w(p) for p in poses])
    tag = f"{px}px"
    ref = None
    try:
        drr, dpose, P = _diffdrr(volume, px, dev_px.pixel_mm, c2w, device)
    except ImportError as exc:
        out[f"diffdrr_error_{tag}"] = f"diffdrr unavailable ({exc}); install the 'bench' extra"
        P = np.stack([geometry.projection_matrix(dev_px, p) for p in poses])
    else:
        chunk = _chunks(B, px * px)
        t = _time(lambda: _diffdrr_render(drr, dpose, chunk), repeats, device)
        ref = _diffdrr_render(drr, dpose, chunk).double().cpu().numpy()
        out[f"diffdrr_trilinear_images_per_s_{tag}"] = round(B / t, 2)
        del drr
    naive, realistic = get_projector("naive"), get_projector("realistic")
    rng = np.random.default_rng(0)
    water = naive.render(volume, P, size, "water-path-mm", device=device)
    body = water > 5.0
    out[f"naive_images_per_s_{tag}"] = round(B / _time(lambda: naive.render(volume, P, size, device=device),
                                                       repeats, device), 2)
    out[f"realistic_images_per_s_{tag}"] = round(
        B / _time(lambda: realistic.render(volume, P, size, rng=rng, device=device), repeats, device), 2)
    if ref is not None:
        out[f"rel_l1_naive_vs_diffdrr_{tag}"] = round(rel_l1(water, ref, body), 5)
    try:
        subject = nanodrr_subject(volume, device)
    except ImportError as exc:
        out[f"nanodrr_error_{tag}"] = f"nanodrr unavailable ({exc}); install the 'bench' extra"
        return P
    views = nanodrr_views(P, size, SDD_MM, device)
    chunk = _chunks(B, px * px)

    def nano(backend: str) -> torch.Tensor:
        return torch.cat([nanodrr_render(subject, tuple(v[i:i + chunk] for v in views), size, backend)
                          for i in range(0, B, chunk)])

    t = _time(lambda: nano("torch"), repeats, device)
    img = nano("torch").double().cpu().numpy()
    out[f"nanodrr_torch_images_per_s_{tag}"] = round(B / t, 2)
    out[f"rel_l1_naive_vs_nanodrr_torch_{tag}"] = round(rel_l1(water, img, body), 5)
    if ref is not None:
        out[f"rel_l1_nanodrr_torch_vs_diffdrr_{tag}"] = round(rel_l1(img, ref, body), 5)
    if device.type != "cuda":
        out[f"nanodrr_triton_error_{tag}"] = "the fused Triton kernel needs CUDA"
        return P
    try:
        t = _time(lambda: nanodrr_render(subject, views, size, "triton"), repeats, device)
        tri = nanodrr_render(subject, views, size, "triton").double().cpu().numpy()
    except Exception as exc:  # Triton missing or failing to compile: reported, not fatal
        out[f"nanodrr_triton_error_{tag}"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    else:
        out[f"nanodrr_triton_images_per_s_{tag}"] = round(B / t, 2)
        out[f"rel_l1_naive_vs_nanodrr_triton_{tag}"] = round(rel_l1(water, tri, body), 5)
    return P


def _deepdrr_figures(volume: Any, P: np.ndarray, px: int, repeats: int, device: torch.device,
                     out: dict[str, Any]) -> None:
    """Our realistic projector (noise and scatter off) against DeepDRR through the adapter at the same P."""
    size = (px, px)
    shift_back = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    P_unshifted = np.einsum("ij,bjk->bik", shift_back, P)  # the adapter's +0.5 then cancels: DeepDRR's raw K
    ours = get_projector("realistic", noise=False, scatter=False)
    mine = ours.render(volume, P, size, device=device)
    t = _time(lambda: ours.render(volume, P, size, device=device), repeats, device)
    out[f"realistic_noiseless_images_per_s_{px}px"] = round(len(P) / t, 2)
    args = dict(photon_count=ours.photon_count, photon_pixel_mm=ours.photon_pixel_mm, noise=False, step_mm=0.1,
                repeats=repeats)
    if importlib.util.find_spec("deepdrr") is not None:
        how = "in process"
        try:
            res = render_and_time(volume, P, size, **args)
            res_raw = render_and_time(volume, P_unshifted, size, **{**args, "repeats": 0})
        except Exception as exc:  # an optional back end: its failure is a figure, not a crash
            out["deepdrr_error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return
    elif DEEPDRR_VENV_PYTHON.exists():
        how = str(DEEPDRR_VENV_PYTHON)
        try:
            res = _deepdrr_subprocess(volume, P, size, args)
            res_raw = _deepdrr_subprocess(volume, P_unshifted, size, {**args, "repeats": 0})
        except RuntimeError as exc:
            out["deepdrr_error"] = str(exc)
            return
    else:
        out["deepdrr_error"] = ("deepdrr is not importable here and .venv-deepdrr does not exist: run "
                                "'make deepdrr-env' on the CUDA machine")
        return
    body = mine > 0.05
    out["deepdrr_how"] = how
    out[f"deepdrr_images_per_s_{px}px"] = round(len(P) / res["s_per_batch"], 3)
    out["deepdrr_first_call_s"] = round(float(res["first_call_s"]), 3)
    out[f"rel_l1_realistic_vs_deepdrr_{px}px"] = round(rel_l1(mine, res["images"], body), 5)
    out[f"rel_l1_realistic_vs_deepdrr_without_half_pixel_{px}px"] = round(rel_l1(mine, res_raw["images"], body), 5)


def _deepdrr_subprocess(volume: Any, P: np.ndarray, size: tuple[int, int], args: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        req, res = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        write_request(req, volume, P, size, **args)
        proc = subprocess.run([str(DEEPDRR_VENV_PYTHON), "-m", "synthex_lib.bench.deepdrr_side", str(req), str(res)],
                              capture_output=True, text=True, timeout=900, cwd=Path(__file__).resolve().parents[2])
        if proc.returncode != 0:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"deepdrr in .venv-deepdrr failed (exit {proc.returncode}): {tail}")
        with np.load(res) as z:
            return {k: z[k] for k in z.files}


def _training_figures(volume: Any, px: int, steps: int, device: torch.device, out: dict[str, Any]) -> None:
    """Training images/s of the paper profile's U-Net and of TransUNet (random weights: speed does not depend
    on them) at ``px`` with mixed precision (forward, backward, SGD step)."""
    for network in ("unet", "transunet"):
        _train_speed(network, volume, px, steps, device, out)


def _train_speed(network: str, volume: Any, px: int, steps: int, device: torch.device, out: dict[str, Any]) -> None:
    train = get_profile("paper").train
    model = build_model(HIP_NUM_CLASSES, len(HIP_LANDMARKS), train.unet_channels, network=network,
                        pretrained=False).to(device)
    m = model.size_multiple
    px = max(m, int(math.ceil(px / m)) * m)
    bs = int(train.batch_size)
    rng = np.random.default_rng(2)
    sampler = geometry.HipPoseSampler()
    dev_px = geometry.CIOS_FUSION.binned(px)
    P = np.stack([geometry.projection_matrix(dev_px, sampler.sample(rng, ct_centre(volume))) for _ in range(bs)])
    img = torch.as_tensor(get_projector("naive").render(volume, P, (px, px), device=device), device=device)
    image = ((img - img.mean()) / img.std().clamp_min(1e-6))[:, None]
    gen = torch.Generator(device="cpu").manual_seed(0)
    labels = torch.randint(0, HIP_NUM_CLASSES, (bs, px, px), generator=gen).to(device)
    heat = torch.rand((bs, len(HIP_LANDMARKS), px, px), generator=gen).to(device)
    visible = torch.ones((bs, len(HIP_LANDMARKS)), dtype=torch.bool, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=float(train.lr), momentum=0.9)
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda" and not torch.cuda.is_bf16_supported())
    model.train()

    def step() -> None:
        with autocast_for(device):
            outputs = model(image)
            loss, _ = multitask_loss({k: v.float() for k, v in outputs.items()}, labels, heat, visible)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    t = _time(step, steps, device)
    amp = "off (CPU: float32)" if device.type != "cuda" else (
        "bfloat16" if torch.cuda.is_bf16_supported() else "float16 + GradScaler")
    out.update({f"train_{network}_px": px, "train_batch_size": bs, "train_unet_channels": list(train.unet_channels),
                "train_mixed_precision": amp, f"train_{network}_images_per_s": round(bs / t, 2)})


def run(size: int | None = None, poses: int = 16, repeats: int = 3, train_steps: int = 10,
        device: str = "cuda") -> dict[str, Any]:
    dev = torch.device(device)
    volume, ct_desc = _ct(size)
    sizes = SIZES_PX if size is None else (int(size),)
    rng = np.random.default_rng(1)
    sampler = geometry.HipPoseSampler()
    pose_list = [sampler.sample(rng, ct_centre(volume)) for _ in range(poses)]
    out: dict[str, Any] = {"benchmark": "gpu", "date": dt.date.today().isoformat(), "device": str(dev),
                           "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
                           "torch": torch.__version__, "ct": ct_desc, "ct_shape_zyx": list(volume.ct_hu.shape),
                           "poses": poses, "sizes_px": list(sizes)}
    P_last = None
    for px in sizes:
        P_last = _renderer_figures(volume, px, pose_list, repeats, dev, out)
    n_dd = min(poses, 4)
    _deepdrr_figures(volume, P_last[:n_dd], sizes[-1], max(1, repeats - 1), dev, out)
    _training_figures(volume, 360 if size is None else int(size), train_steps, dev, out)
    if dev.type == "cuda":
        out["max_memory_allocated_gib"] = round(torch.cuda.max_memory_allocated(dev) / 2**30, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthex_lib.bench gpu",
                                     description="CUDA throughput of the engine, nanodrr, DiffDRR, DeepDRR; training.")
    parser.add_argument("--json", action="store_true", help="print only the JSON line")
    parser.add_argument("--allow-cpu", action="store_true", help="run on the CPU when there is no CUDA (tests)")
    parser.add_argument("--size", type=int, default=None,
                        help="tiny run: an N^3 synthetic phantom and N px images (default: lab CT, 200 and 360 px)")
    parser.add_argument("--poses", type=int, default=16, help="poses per batch (default 16)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median) after one warm-up")
    parser.add_argument("--train-steps", type=int, default=10, help="timed training steps (median)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() and not args.allow_cpu:
        print(f"bench gpu needs CUDA (torch {torch.__version__} sees no CUDA device); run it on a GPU machine, "
              "or add --allow-cpu --size 32 --poses 2 to test it on the CPU")
        return 0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    result = run(size=args.size, poses=args.poses, repeats=args.repeats, train_steps=args.train_steps,
                 device=device)
    if not args.json:
        for key, value in result.items():
            print(f"{key:44s} {value}")
    print(json.dumps(result))
    return 0
