"""Benchmark: training throughput of the multi-task U-Net against the machine's own sgemm rate.

``python -m synthex_lib.bench train [--profile quick] [--json]`` trains the profile's network at its
image size and batch on random inputs (the cost of a step does not depend on the pixel values)
with the profile's ``cpu_threads`` (the thread count the runs use), and measures in the same run:

* training images/s and the achieved GFLOP/s, with the FLOPs of one forward + backward pass
  counted by ``torch.utils.flop_counter`` (one multiply-add = 2 FLOPs);
* the machine's float32 sgemm GFLOP/s at the same thread count (a 2048^2 ``torch.mm``);
* their ratio ``train_flops_ratio`` (last JSON line), for float32 in the default memory layout,
  and for channels-last and bfloat16 autocast variants.

Randomization and data loading are left out: they are timed by ``bench dr``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import build_model


def sgemm_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 matrix-multiply rate (GFLOP/s) of ``repeats`` n x n products at the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def _step_fn(channels: tuple[int, ...], size: int, batch: int, channels_last: bool, bf16: bool):
    torch.manual_seed(0)
    model = build_model(HIP_NUM_CLASSES, len(HIP_LANDMARKS), channels)
    x = torch.randn(batch, 1, size, size)
    labels = torch.randint(0, HIP_NUM_CLASSES, (batch, size, size))
    heat = torch.rand(batch, len(HIP_LANDMARKS), size, size)
    visible = torch.ones(batch, len(HIP_LANDMARKS), dtype=torch.bool)
    mask = torch.ones(batch, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step() -> None:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx:
            out = model(x)
        loss, _ = multitask_loss({k: v.float() for k, v in out.items()}, labels, heat, visible, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def flops_per_image(channels: tuple[int, ...], size: int, batch: int = 2) -> float:
    """FLOPs of one training step (forward + backward) per image."""
    step = _step_fn(channels, size, batch, False, False)
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops() / batch


def time_steps(step, seconds: float = 6.0, warmup: int = 2) -> float:
    """Median seconds per step over at least 3 steps and about ``seconds`` of stepping."""
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def run(profile: str = "quick", seconds: float = 6.0, variants: tuple[str, ...] = ("fp32", "channels-last", "bf16")
        ) -> dict[str, Any]:
    prof = get_profile(profile)
    cfg = prof.train
    torch.set_num_threads(cfg.cpu_threads)
    flops = flops_per_image(cfg.unet_channels, cfg.image_size)
    peak = sgemm_gflops()
    res: dict[str, Any] = {"profile": prof.name, "image_px": cfg.image_size, "batch": cfg.batch_size,
                           "channels": list(cfg.unet_channels), "threads": cfg.cpu_threads,
                           "gflop_per_image": flops / 1e9, "sgemm_gflops": peak, "torch": torch.__version__,
                           "machine": platform.processor() or platform.machine()}
    for v in variants:
        step = _step_fn(cfg.unet_channels, cfg.image_size, cfg.batch_size, v == "channels-last", v == "bf16")
        dt = time_steps(step, seconds)
        ips = cfg.batch_size / dt
        res[f"{v}_images_per_s"] = ips
        res[f"{v}_gflops"] = ips * flops / 1e9
        res[f"{v}_flops_ratio"] = ips * flops / 1e9 / peak
    res["sgemm_after_gflops"] = sgemm_gflops()  # the machine's rate again: other load shows up here
    res["train_flops_ratio"] = res[f"{variants[0]}_flops_ratio"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synthex_lib.bench train",
                                 description="U-Net training throughput against the machine's sgemm rate.")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seconds", type=float, default=6.0, help="stepping time per variant (default 6)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    res = run(args.profile, args.seconds)
    if not args.json:
        print(f"U-Net {res['channels']} at {res['image_px']} px, batch {res['batch']}, {res['threads']} thread(s): "
              f"{res['gflop_per_image']:.2f} GFLOP per image (forward + backward); sgemm {res['sgemm_gflops']:.1f} "
              f"GFLOP/s (after: {res['sgemm_after_gflops']:.1f})")
        for v in ("fp32", "channels-last", "bf16"):
            if f"{v}_images_per_s" in res:
                print(f"  {v:14s} {res[f'{v}_images_per_s']:7.1f} images/s  {res[f'{v}_gflops']:6.1f} GFLOP/s  "
                      f"ratio {res[f'{v}_flops_ratio']:.2f}")
    print(json.dumps(res))
    return 0
