"""``python -m synthex_lib.bench gpu``: without CUDA it says so in one line; with ``--allow-cpu`` at a tiny size
it runs every part on the CPU and its last line is one JSON object with the figures (optional back ends that
cannot run here are reported as ``*_error`` keys, never a crash)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from synthex_lib import geometry
from synthex_lib.bench.drr import NANODRR_PIXEL_CENTRE, nanodrr_views

ROOT = Path(__file__).resolve().parents[1]
PX = 32


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "synthex_lib.bench", "gpu", *args], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_without_cuda_it_says_so_in_one_line():
    proc = _bench("--json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "needs CUDA" in lines[0] and "--allow-cpu" in lines[0]


def test_allow_cpu_tiny_run_prints_the_figures_as_json():
    proc = _bench("--allow-cpu", "--size", str(PX), "--poses", "2", "--repeats", "1", "--train-steps", "1", "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["benchmark"] == "gpu" and out["poses"] == 2 and out["sizes_px"] == [PX]
    assert out["ct_shape_zyx"] == [PX, PX, PX]
    for key in (f"naive_images_per_s_{PX}px", f"realistic_images_per_s_{PX}px", "train_unet_images_per_s",
                "train_transunet_images_per_s", f"realistic_noiseless_images_per_s_{PX}px"):
        assert out[key] > 0, key
    assert out["train_unet_px"] >= PX and out["train_transunet_px"] >= PX and out["train_mixed_precision"]
    assert out["train_batch_size"] >= 1
    if importlib.util.find_spec("nanodrr") is not None:
        assert out[f"nanodrr_torch_images_per_s_{PX}px"] > 0
        # same rays after the half-pixel alignment: the two ray marchers agree to a fraction of a percent
        assert out[f"rel_l1_naive_vs_nanodrr_torch_{PX}px"] < 0.01
    else:
        assert "nanodrr unavailable" in out[f"nanodrr_error_{PX}px"]
    if importlib.util.find_spec("diffdrr") is not None and importlib.util.find_spec("fastcore") is not None:
        assert out[f"diffdrr_trilinear_images_per_s_{PX}px"] > 0
        assert out[f"rel_l1_naive_vs_diffdrr_{PX}px"] < 0.01
    else:
        assert f"diffdrr_error_{PX}px" in out
    if not torch.cuda.is_available() and importlib.util.find_spec("nanodrr") is not None:
        assert "needs CUDA" in out[f"nanodrr_triton_error_{PX}px"]
    if not torch.cuda.is_available():
        assert "deepdrr_error" in out


def test_nanodrr_views_align_pixel_centres():
    """nanodrr's ray of pixel (u, v) passes through (u + 0.5, v + 0.5) of its K: :func:`nanodrr_views` shifts the
    principal point so that it is our ray through pixel (u, v) (centres on integers)."""
    dev = geometry.Device("t", 8, 10, 2.0, 1000.0)
    P = geometry.projection_matrix(dev, geometry.carm_pose(np.zeros(3), 600.0, lao_deg=15.0, cran_deg=-5.0))
    k_inv, rt_inv, sdd = nanodrr_views(P, (10, 8), 1000.0)
    assert NANODRR_PIXEL_CENTRE == 0.5 and float(sdd[0]) == 1000.0
    u, v = 3.0, 6.0
    cam = (k_inv[0].double().numpy() @ np.array([u + 0.5, v + 0.5, 1.0])) * 1000.0  # nanodrr's detector point
    world = rt_inv[0].double().numpy() @ np.append(cam, 1.0)
    uv, depth = geometry.project_points(P, world[None, :3])
    assert np.allclose(uv[0], [u, v], atol=1e-3) and depth[0] > 0
