"""Benchmark: domain randomization speed, ours (batched torch) versus albumentations 2.0.8.

``python -m synthex_lib.bench dr [--json]`` times the ``regular`` and ``strong`` presets per 360 px
sample on one CPU thread at batch 32, beside albumentations 2.0.8 doing the same effects (the
``bench`` extra; ``NO_ALBUMENTATIONS_UPDATE=1`` is set here to stop its network check). The last
line printed is JSON with ``strong_ratio_vs_albumentations`` (ours / albumentations, median wall
time over interleaved repeats; the issue's target is at most 1.3), plus the same from process CPU
time, which is steadier when other processes share the machine.

The albumentations pipelines mirror ``presets.regular``/``presets.strong``: a 324 px random crop,
then (strong) ``SomeOf(n=2)`` of the 11 strong effects each with p = 0.5, then Gaussian noise
(std 0.005-0.1 of the [0, 1] range) and gamma 0.7-1.3, with mask and keypoints carried. Where
albumentations lacks an effect it gets the nearest equivalent: log/sigmoid contrast as numpy
``Lambda``; box corruption as ``CoarseDropout(fill="random")``; pooling as ``Downscale`` (average)
and numpy max/min/median block pooling; piecewise affine as ``GridDistortion`` (its own
``PiecewiseAffine`` takes ~1 s per image and would make the comparison meaningless). Both sides
get the same min-max normalised float32 input, prepared outside the timed region.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np
import torch

from synthex_lib.figures.phantom import disc_phantom, stack_samples
from synthex_lib.randomization import DomainRandomization

SIZE = 360
BATCH = 32


def _albumentations_pipelines(crop: int) -> dict[str, Any]:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    import albumentations as A  # optional peer (bench extra)
    import cv2  # optional: installed with albumentations

    cv2.setNumThreads(1)

    def pool(kind: str):
        def f(img: np.ndarray, **_: Any) -> np.ndarray:
            k = int(np.random.default_rng().integers(2, 5))
            h, w = img.shape[:2]
            hh, ww = -(-h // k) * k, -(-w // k) * k
            p = np.pad(img, ((0, hh - h), (0, ww - w)), mode="edge").reshape(hh // k, k, ww // k, k)
            red = {"max": p.max(axis=(1, 3)), "min": p.min(axis=(1, 3))}.get(kind)
            if red is None:
                red = np.median(p.transpose(0, 2, 1, 3).reshape(hh // k, ww // k, k * k), axis=-1)
            return np.repeat(np.repeat(red, k, 0), k, 1)[:h, :w].astype(img.dtype)
        return f

    def log_contrast(img: np.ndarray, **_: Any) -> np.ndarray:
        return (np.random.default_rng().uniform(0.6, 1.4) * np.log2(1 + img)).astype(np.float32)

    def sigmoid_contrast(img: np.ndarray, **_: Any) -> np.ndarray:
        r = np.random.default_rng()
        g, c = r.uniform(3, 10), r.uniform(0.4, 0.6)
        return (1 / (1 + np.exp(g * (c - img)))).astype(np.float32)

    refl = cv2.BORDER_REFLECT_101
    strong_effects = [
        A.InvertImg(p=0.5),
        A.OneOf([A.SaltAndPepper(amount=(0.1, 0.1), salt_vs_pepper=(0.5, 0.5), p=1),
                 A.SaltAndPepper(amount=(0.1, 0.1), salt_vs_pepper=(0.0, 0.0), p=1),
                 A.SaltAndPepper(amount=(0.1, 0.1), salt_vs_pepper=(1.0, 1.0), p=1)], p=0.5),
        A.Affine(rotate=(-5, 5), translate_px=(-14, 14), shear=(-2, 2), scale=(0.9, 1.1), border_mode=refl, p=0.5),
        A.OneOf([A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=(-0.5, 1.0), p=1),
                 A.Lambda(image=log_contrast, p=1), A.Lambda(image=sigmoid_contrast, p=1)], p=0.5),
        A.OneOf([A.GaussianBlur(blur_limit=0, sigma_limit=(0.01, 3.0), p=1), A.Blur(blur_limit=(3, 7), p=1)], p=0.5),
        A.CoarseDropout(num_holes_range=(1, 5), hole_height_range=(0.05, 0.3), hole_width_range=(0.05, 0.3),
                        fill="random", p=0.5),
        A.OneOf([A.PixelDropout(dropout_prob=0.05, p=1),
                 A.CoarseDropout(num_holes_range=(2, 10), hole_height_range=(0.02, 0.05),
                                 hole_width_range=(0.02, 0.05), p=1)], p=0.5),
        A.OneOf([A.Sharpen(alpha=(0.0, 1.0), lightness=(0.75, 1.5), p=1),
                 A.Emboss(alpha=(0.0, 1.0), strength=(0.0, 2.0), p=1)], p=0.5),
        A.OneOf([A.Downscale(scale_range=(0.25, 0.5), p=1), A.Lambda(image=pool("max"), p=1),
                 A.Lambda(image=pool("min"), p=1), A.Lambda(image=pool("median"), p=1)], p=0.5),
        A.OneOf([A.MultiplicativeNoise(multiplier=(0.5, 1.5), elementwise=False, p=1),
                 A.MultiplicativeNoise(multiplier=(0.5, 1.5), elementwise=True, p=1)], p=0.5),
        A.GridDistortion(num_steps=4, distort_limit=0.1, p=0.5),
    ]

    def regular_tail() -> list[Any]:
        return [A.GaussNoise(std_range=(0.005, 0.1), p=1), A.RandomGamma(gamma_limit=(70, 130), p=1)]

    kp = A.KeypointParams(format="xy", remove_invisible=False)
    regular = A.Compose([A.RandomCrop(crop, crop, p=1), *regular_tail()], keypoint_params=kp, seed=0)
    strong = A.Compose([A.RandomCrop(crop, crop, p=1), A.SomeOf(strong_effects, n=2, replace=False, p=1),
                        *regular_tail()], keypoint_params=kp, seed=0)
    return {"regular": regular, "strong": strong, "version": A.__version__}


def _time_ours(dr: Any, batch: dict[str, Any], n_batches: int, start: int) -> tuple[float, float]:
    """(wall, CPU) ms per sample."""

    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n_batches):
        dr({**batch, "index": torch.arange(BATCH) + (start + i) * BATCH, "epoch": start + i})
    n = n_batches * BATCH
    return (time.perf_counter() - t0) / n * 1e3, (time.process_time() - c0) / n * 1e3


def _time_albu(pipe: Any, image: np.ndarray, mask: np.ndarray, kps: np.ndarray, n_batches: int
               ) -> tuple[float, float]:
    """(wall, CPU) ms per sample."""
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n_batches * BATCH):
        pipe(image=image, mask=mask, keypoints=kps)
    n = n_batches * BATCH
    return (time.perf_counter() - t0) / n * 1e3, (time.process_time() - c0) / n * 1e3


def time_presets(presets: tuple[str, ...] = ("regular", "strong"), size: int = SIZE, batch: int = BATCH,
                 batches: int = 2, seed: int = 0) -> dict[str, float]:
    """Our pipeline only: ms per sample (process CPU time, one torch thread) of each preset on
    ``batches`` batches of the disc phantom (no albumentations needed)."""


    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        b = stack_samples(disc_phantom(size, radius=size / 30), batch)
        out: dict[str, float] = {}
        for name in presets:
            dr = DomainRandomization.from_preset(name, seed=seed)
            dr({**b, "epoch": 10_000})  # warm-up
            t0 = time.process_time()
            for e in range(batches):
                dr({**b, "index": b["index"] + e * batch, "epoch": e})
            out[name] = (time.process_time() - t0) / (batches * batch) * 1e3
        return out
    finally:
        torch.set_num_threads(threads)


def run(repeats: int = 5, n_batches: int = 4) -> dict[str, Any]:
    """Interleaved timing of ours and albumentations; returns the figures (ms per sample)."""


    torch.set_num_threads(1)
    sample = disc_phantom(SIZE)
    img = sample["image"]
    img = (img - img.min()) / (img.max() - img.min())
    batch = stack_samples({**sample, "image": img}, BATCH)
    ours = {p: DomainRandomization.from_preset(p, seed=0) for p in ("regular", "strong")}
    crop = ours["regular"].output_size((SIZE, SIZE))[0]
    albu = _albumentations_pipelines(crop)
    a_img = img[0].numpy().astype(np.float32)
    a_mask = sample["labels"].numpy().astype(np.uint8)
    a_kps = sample["landmarks"].numpy().astype(np.float32)
    for p in ours:  # warm-up
        _time_ours(ours[p], batch, 1, 10_000)
        _time_albu(albu[p], a_img, a_mask, a_kps, 1)
    keys = ("ours_regular", "albu_regular", "ours_strong", "albu_strong")
    wall: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(repeats):
        for p in ("regular", "strong"):
            for k, (tw, tc) in ((f"ours_{p}", _time_ours(ours[p], batch, n_batches, r * n_batches)),
                                (f"albu_{p}", _time_albu(albu[p], a_img, a_mask, a_kps, n_batches))):
                wall[k].append(tw)
                cpu[k].append(tc)
    med = {k: statistics.median(v) for k, v in wall.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    return {
        "benchmark": "dr",
        "image_px": SIZE,
        "crop_px": crop,
        "batch": BATCH,
        "threads": torch.get_num_threads(),
        "samples_per_repeat": n_batches * BATCH,
        "repeats": repeats,
        "ms_per_sample": {k: round(v, 3) for k, v in med.items()},
        "ms_per_sample_cpu_time": {k: round(v, 3) for k, v in med_cpu.items()},
        "regular_ratio_vs_albumentations": round(med["ours_regular"] / med["albu_regular"], 3),
        "strong_ratio_vs_albumentations": round(med["ours_strong"] / med["albu_strong"], 3),
        "strong_ratio_cpu_time": round(med_cpu["ours_strong"] / med_cpu["albu_strong"], 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "albumentations": albu["version"],
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m synthex_lib.bench dr``; prints a table, then one JSON line."""
    ap = argparse.ArgumentParser(prog="python -m synthex_lib.bench dr",
                                 description="Time the regular and strong domain randomization presets (ms per "
                                             "360 px sample, batch 32, one CPU thread) beside albumentations 2.0.8.",
                                 epilog="example: python -m synthex_lib.bench dr --json --repeats 5")
    ap.add_argument("--json", action="store_true", help="print only the JSON line")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing repeats (median reported)")
    ap.add_argument("--batches", type=int, default=4, help="batches of 32 per repeat")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import albumentations  # optional peer (bench extra): is it installed?  # noqa: F401
    except ImportError:
        print("albumentations is missing: install the bench extra "
              "(.venv/bin/pip install -c constraints.txt albumentations==2.0.8)", file=sys.stderr)
        return 2
    res = run(repeats=args.repeats, n_batches=args.batches)
    if not args.json:
        ms = res["ms_per_sample"]
        print(f"domain randomization, {SIZE} px -> {res['crop_px']} px crop, batch {BATCH}, 1 thread "
              f"(median wall time of {res['repeats']} interleaved repeats x {res['samples_per_repeat']} samples; "
              f"load average {res['load_average_1min']})")
        print(f"{'preset':10s} {'ours ms':>9s} {'albumentations ms':>18s} {'ratio':>7s}")
        for p in ("regular", "strong"):
            print(f"{p:10s} {ms['ours_' + p]:9.3f} {ms['albu_' + p]:18.3f} {res[p + '_ratio_vs_albumentations']:7.2f}")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
