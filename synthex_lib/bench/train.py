"""Benchmark: training throughput of the multi-task U-Net against the machine's own sgemm rate.

``python -m synthex_lib.bench train [--profile quick] [--sizes 128,96] [--json]`` trains the profile's
network at its batch on random inputs (the cost of a step does not depend on the pixel values) with
the profile's ``cpu_threads`` (the thread count the runs use), and measures in the same run:

* training images/s and the achieved GFLOP/s of every variant:

  - ``fused``: the network as training runs it (:class:`~synthex_lib.learning.models.MultiTaskUNet`
    with ``fused=True``: fused instance norm + PReLU, SIMD-padded and composed heads, contiguous layout);
  - ``reference``: the same parameters run module by module as MONAI computes them (the state
    before the fused path; ``fused=False``);
  - ``channels-last``: the fused path in the channels-last layout;
  - ``bf16`` (only when asked for with ``--variants``): the fused path under CPU bfloat16 autocast;

* the machine's float32 sgemm GFLOP/s at the same thread count: the best of 3 ``torch.mm`` products at the
  fastest of 1024^2, 2048^2 and 3072^2 (found first: one size can sit below the BLAS's best blocking; every
  size's rate is reported), measured between the rounds of steps so that load from other processes is seen by
  both;
* their ratio; ``train_flops_ratio`` (last JSON line) is that of ``fused`` at the profile's size.

**How FLOPs are counted.** ``torch.utils.flop_counter`` counts the convolutions and matrix products of
one forward + backward pass of the *reference* formulation (one multiply-add = 2 FLOPs; the backward
computes input and weight gradients, about twice the forward, no input gradient for the first layer);
element-wise layers, the loss and the optimizer are not counted. These are the network's (model)
FLOPs: every variant is credited with the same count, so the ratios compare speeds. The FLOPs the
fused path actually executes are reported too (``executed_gflop_per_image``).

**How time is measured.** The CPU time of this process (``time.process_time``) per step, because the
machine is shared and wall time includes the time the scheduler gives to others; the steps of all
variants and the sgemm are interleaved in rounds, each round's ratio uses the sgemm measured next to
it, and the median over rounds is reported with its min-max spread. Wall-clock images/s are reported
as well. The breakdown (forward, backward, optimizer step, as shares of a ``fused`` step) is timed on
separate steps.

Randomization and data loading are left out: they are timed by ``bench dr``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from synthex_lib.core.config import TrainConfig, get_profile
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.core.errors import ConfigError
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import build_model
from synthex_lib.learning.training import make_optimizer

#: variant -> network options (and whether it runs under bfloat16 autocast)
VARIANTS: dict[str, tuple[dict[str, Any], bool]] = {
    "fused": ({"fused": True, "memory_format": "contiguous"}, False),
    "reference": ({"fused": False}, False),
    "channels-last": ({"fused": True, "memory_format": "channels_last"}, False),
    "bf16": ({"fused": True, "memory_format": "contiguous"}, True),
}
DEFAULT_VARIANTS = ("fused", "reference", "channels-last")


#: the square sgemm sizes among which the fastest is the machine's reference
SGEMM_SIZES = (1024, 2048, 3072)


def sgemm_gflops(n: int = 1024, repeats: int = 3, clock: Callable[[], float] = time.process_time) -> float:
    """Best float32 matrix-multiply rate (GFLOP/s) of ``repeats`` n x n products at the current threads."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        t = clock()
        torch.mm(a, b)
        best = min(best, clock() - t)
    return 2 * n**3 / max(best, 1e-9) / 1e9


def fastest_sgemm_size(sizes: tuple[int, ...] = SGEMM_SIZES, repeats: int = 3) -> tuple[int, dict[int, float]]:
    """The size of ``sizes`` at which sgemm runs fastest here, with the rate (GFLOP/s) of each."""
    rates = {n: sgemm_gflops(n, repeats) for n in sizes}
    return max(rates, key=rates.__getitem__), rates


class _Step:
    """One training step of the quick network on fixed random inputs, with per-phase timing; the optimiser is
    the one training builds from ``train`` (default: the quick profile's)."""

    def __init__(self, channels: tuple[int, ...], size: int, batch: int, variant: str,
                 train: TrainConfig | None = None) -> None:
        options, self.bf16 = VARIANTS[variant]
        torch.manual_seed(0)
        self.model = build_model(HIP_NUM_CLASSES, len(HIP_LANDMARKS), channels, **options)
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(batch, 1, size, size, generator=gen)
        self.labels = torch.randint(0, HIP_NUM_CLASSES, (batch, size, size), generator=gen)
        self.heat = torch.rand(batch, len(HIP_LANDMARKS), size, size, generator=gen)
        self.visible = torch.ones(batch, len(HIP_LANDMARKS), dtype=torch.bool)
        self.opt = make_optimizer(self.model.parameters(), train or get_profile("quick").train)

    def __call__(self, phases: dict[str, float] | None = None) -> None:
        clock = time.process_time
        t0 = clock()
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.bf16 else contextlib.nullcontext()
        with ctx:
            out = self.model(self.x)
        loss, _ = multitask_loss({k: v.float() for k, v in out.items()}, self.labels, self.heat, self.visible)
        t1 = clock()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = clock()
        self.opt.step()
        if phases is not None:
            for k, v in (("forward", t1 - t0), ("backward", t2 - t1), ("optimizer", clock() - t2)):
                phases[k] = phases.get(k, 0.0) + v


def flops_per_image(channels: tuple[int, ...], size: int, batch: int = 2, variant: str = "reference") -> float:
    """Convolution and matrix-product FLOPs of one training step (forward + backward) per image."""
    step = _Step(channels, size, batch, variant)
    with FlopCounterMode(display=False) as fc:
        step()
    return fc.get_total_flops() / batch


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure_size(channels: tuple[int, ...], size: int, batch: int, variants: tuple[str, ...], rounds: int,
                 steps_per_round: int, train: TrainConfig | None = None,
                 sgemm_sizes: tuple[int, ...] = SGEMM_SIZES) -> dict[str, Any]:
    """Interleaved timing of ``variants`` at one image size (see the module docstring)."""
    flops = flops_per_image(channels, size)
    steps = {v: _Step(channels, size, batch, v, train) for v in variants}
    for step in steps.values():  # warm-up: allocations, oneDNN primitive caches
        step()
        step()
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    wall: dict[str, list[float]] = {v: [] for v in variants}
    ratios: dict[str, list[float]] = {v: [] for v in variants}
    sgemm: list[float] = []
    n_sgemm, sgemm_rates = fastest_sgemm_size(sgemm_sizes)
    for _ in range(rounds):
        peak = sgemm_gflops(n_sgemm)
        sgemm.append(peak)
        for v, step in steps.items():
            w, c = time.perf_counter(), time.process_time()
            for _ in range(steps_per_round):
                step()
            dc = (time.process_time() - c) / steps_per_round
            cpu[v].append(dc)
            wall[v].append((time.perf_counter() - w) / steps_per_round)
            ratios[v].append(batch / dc * flops / 1e9 / peak)
    phases: dict[str, float] = {}
    for _ in range(max(2, steps_per_round)):
        steps[variants[0]](phases)
    total = sum(phases.values())
    out: dict[str, Any] = {"image_px": size, "gflop_per_image": flops / 1e9,
                           "executed_gflop_per_image": flops_per_image(channels, size, variant=variants[0]) / 1e9,
                           "sgemm_gflops": _spread(sgemm), "sgemm_px": n_sgemm,
                           "sgemm_gflops_by_size": {str(k): v for k, v in sgemm_rates.items()},
                           "breakdown": {k: v / total for k, v in phases.items()}}
    for v in variants:
        dt = statistics.median(cpu[v])
        out[v] = {"images_per_s": batch / dt, "wall_images_per_s": batch / statistics.median(wall[v]),
                  "gflops": batch / dt * flops / 1e9, "flops_ratio": _spread(ratios[v]),
                  "images_per_s_spread": _spread([batch / t for t in cpu[v]])}
    return out


def run(profile: str = "quick", seconds: float = 6.0, variants: tuple[str, ...] = DEFAULT_VARIANTS,
        sizes: tuple[int, ...] | None = None, sgemm_sizes: tuple[int, ...] = SGEMM_SIZES) -> dict[str, Any]:
    """Measure ``variants`` (the first is the headline) at ``sizes`` (default: the profile's image size).

    ``seconds``: about how long each variant steps per size (split into rounds of 2 steps, at least 3);
    ``sgemm_sizes``: the square sgemm sizes whose fastest is the reference."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"parameter 'variants': unknown {unknown or 'none given'}; choose from {', '.join(VARIANTS)}")
    prof = get_profile(profile)
    cfg = prof.train
    sizes = tuple(sizes or (cfg.image_size,))
    multiple = 2 ** (len(cfg.unet_channels) - 1)
    if not sgemm_sizes or any(n < 1 for n in sgemm_sizes):
        raise ConfigError(f"parameter 'sgemm_sizes' must be positive integers, got {list(sgemm_sizes)}")
    bad = [s for s in sizes if s < multiple or s % multiple]
    if bad:
        raise ConfigError(f"parameter 'sizes': {bad} are not positive multiples of {multiple} (the U-Net's)")
    before = torch.get_num_threads()
    torch.set_num_threads(cfg.cpu_threads)
    try:
        res: dict[str, Any] = {"profile": prof.name, "batch": cfg.batch_size, "channels": list(cfg.unet_channels),
                               "threads": torch.get_num_threads(), "torch": torch.__version__,
                               "machine": platform.processor() or platform.machine(),
                               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                               "variants": list(variants), "sizes": {}}
        for size in sizes:
            probe = _Step(cfg.unet_channels, size, cfg.batch_size, variants[0], cfg)
            probe()
            t = time.process_time()
            probe()
            per_step = max(time.process_time() - t, 1e-3)
            rounds = max(3, int(seconds / (2 * per_step)))
            res["sizes"][str(size)] = measure_size(cfg.unet_channels, size, cfg.batch_size, variants, rounds, 2, cfg,
                                                   tuple(sgemm_sizes))
    finally:
        torch.set_num_threads(before)
    head = res["sizes"][str(sizes[0])]
    res["image_px"] = sizes[0]
    res["images_per_s"] = head[variants[0]]["images_per_s"]
    res["train_flops_ratio"] = head[variants[0]]["flops_ratio"]["median"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m synthex_lib.bench train",
                                 description="U-Net training throughput against the machine's sgemm rate.")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--seconds", type=float, default=6.0, help="stepping time per variant and size (default 6)")
    ap.add_argument("--sizes", default="", help="comma-separated image sizes in px (default: the profile's)")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                    help=f"comma-separated, the first is the headline; from {', '.join(VARIANTS)}")
    ap.add_argument("--sgemm-sizes", default=",".join(map(str, SGEMM_SIZES)),
                    help="comma-separated square sgemm sizes; the fastest is the reference (default %(default)s)")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    args = ap.parse_args(argv)
    try:
        sizes = tuple(int(s) for s in args.sizes.split(",") if s.strip()) or None
        sgemm_sizes = tuple(int(s) for s in args.sgemm_sizes.split(",") if s.strip())
    except ValueError:
        raise ConfigError(f"parameter 'sizes' or 'sgemm-sizes' must be comma-separated integers, got "
                          f"{args.sizes!r} / {args.sgemm_sizes!r}") from None
    variants = tuple(v.strip() for v in args.variants.split(",") if v.strip())
    res = run(args.profile, args.seconds, variants, sizes, sgemm_sizes)
    if not args.json:
        print(f"U-Net {res['channels']}, batch {res['batch']}, {res['threads']} thread(s), "
              f"{res['cpu_capability']}, torch {res['torch']}")
        for size, r in res["sizes"].items():
            sg = r["sgemm_gflops"]
            print(f"{size} px: {r['gflop_per_image']:.2f} GFLOP per image (forward + backward; fused path executes "
                  f"{r['executed_gflop_per_image']:.2f}); sgemm {sg['median']:.1f} GFLOP/s "
                  f"({sg['min']:.1f}-{sg['max']:.1f}) at {r['sgemm_px']}^2 (first pass: "
                  + ", ".join(f"{k}^2 {v:.1f}" for k, v in r["sgemm_gflops_by_size"].items()) + ")")
            for v in res["variants"]:
                x = r[v]
                fr = x["flops_ratio"]
                print(f"  {v:14s} {x['images_per_s']:6.1f} images/s (wall {x['wall_images_per_s']:5.1f})  "
                      f"{x['gflops']:5.1f} GFLOP/s  ratio {fr['median']:.2f} ({fr['min']:.2f}-{fr['max']:.2f})")
            print("  breakdown of a " + res["variants"][0] + " step: "
                  + ", ".join(f"{k} {v:.0%}" for k, v in r["breakdown"].items()))
    print(json.dumps(res))
    return 0
