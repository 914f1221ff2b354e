"""The training benchmark: FLOP counting, the JSON line, parameter errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from synthex_lib.bench import train as bench_train
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.core.errors import ConfigError
from synthex_lib.learning.models import build_model


def test_flops_scale_with_pixels_and_a_step_is_three_forwards():
    """Every counted operation is a convolution, so the FLOPs per image scale exactly with the pixel count; a
    step is the forward plus the input and the weight gradients (each as many FLOPs as the forward), less the
    input gradient of the two first-layer convolutions (unit and residual), which the image does not need."""
    ch = (8, 16, 32)
    f32, f64 = bench_train.flops_per_image(ch, 32), bench_train.flops_per_image(ch, 64)
    assert f64 == 4 * f32
    model = build_model(HIP_NUM_CLASSES, len(HIP_LANDMARKS), ch, fused=False)
    with FlopCounterMode(display=False) as fc:
        model(torch.randn(2, 1, 32, 32))
    forward = fc.get_total_flops() / 2
    first = 2 * (2 * 8 * 1 * 9 * 16 * 16)  # two 3x3 stride-2 convolutions 1 -> 8, 16 x 16 outputs, 2 FLOPs/MAC
    assert f32 == 3 * forward - first


def test_bench_prints_figures_and_ends_with_the_ratio(capsys):
    code = bench_train.main(["--profile", "smoke", "--seconds", "0.05", "--sizes", "32,16",
                             "--variants", "fused,reference", "--sgemm-sizes", "64,128"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any("fused" in line and "images/s" in line for line in lines)
    res = json.loads(lines[-1])
    assert set(res["sizes"]) == {"32", "16"} and res["threads"] == 1 and res["image_px"] == 32
    r = res["sizes"]["32"]
    assert 0 < res["train_flops_ratio"] == r["fused"]["flops_ratio"]["median"]
    assert r["fused"]["flops_ratio"]["min"] <= res["train_flops_ratio"] <= r["fused"]["flops_ratio"]["max"]
    assert sum(r["breakdown"].values()) == pytest.approx(1.0)
    rates = r["sgemm_gflops_by_size"]  # the reference is the fastest sgemm size of the first pass
    assert set(rates) == {"64", "128"} and rates[str(r["sgemm_px"])] == max(rates.values())
    assert r["reference"]["gflops"] == pytest.approx(r["reference"]["images_per_s"] * r["gflop_per_image"])


def test_bad_variant_and_size_are_named():
    with pytest.raises(ConfigError, match="parameter 'variants'"):
        bench_train.run("smoke", 0.01, ("fp64",))
    with pytest.raises(ConfigError, match="parameter 'sizes'"):
        bench_train.run("smoke", 0.01, ("fused",), (30,))
    with pytest.raises(ConfigError, match="parameter 'sgemm_sizes'"):
        bench_train.run("smoke", 0.01, ("fused",), (32,), ())
