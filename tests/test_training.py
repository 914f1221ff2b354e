"""End-to-end training on a tiny synthetic dataset in the HDF5 layout: learning, resume, results store."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import SpecimenImages, write_group, write_landmark_names
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.experiments import results
from synthex_lib.learning.device import autocast_for
from synthex_lib.learning.evaluation import evaluate_hip, predict, summarize_hip
from synthex_lib.learning.inputs import pad_to_multiple, zscore
from synthex_lib.learning.models import MultiTaskUNet, build_model
from synthex_lib.learning.models.fused import instance_norm_prelu, prelu
from synthex_lib.learning.training import convergence, lr_scheduler, stopped_converged, train_multitask


def _disc_images(n: int, size: int, seed: int) -> SpecimenImages:
    """Bright discs (label 1..6) on a dark background, landmarks at disc centres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    projs = np.zeros((n, size, size), np.float32)
    segs = np.zeros((n, size, size), np.uint8)
    lands = np.zeros((n, 2, len(HIP_LANDMARKS)), np.float32)
    for i in range(n):
        for c in range(1, 7):
            cx, cy = rng.uniform(8, size - 8, 2)
            m = (xx - cx) ** 2 + (yy - cy) ** 2 < 25
            segs[i][m] = c
            projs[i][m] = 1.0 + 0.2 * c
        projs[i] += rng.normal(0, 0.05, (size, size)).astype(np.float32)
        for j in range(len(HIP_LANDMARKS)):
            lands[i, :, j] = rng.uniform(4, size - 4, 2)
    return SpecimenImages(projs, segs, lands, np.ones((n, len(HIP_LANDMARKS)), bool))


@pytest.fixture()
def h5file(tmp_path):
    path = tmp_path / "naive.h5"
    with h5py.File(path, "w") as f:
        write_landmark_names(f, HIP_LANDMARKS)
        f.attrs["pixel_mm"] = 0.5
        for k, g in enumerate(("01", "02")):
            write_group(f, g, _disc_images(6, 32, k))
    return path


def test_dataset_reads_layout_and_resizes(h5file):
    ds = ImageDataset(h5file, ["01", "02"])
    assert len(ds) == 12
    s = ds[3]
    assert s["image"].shape == (1, 32, 32) and s["labels"].dtype == torch.int64
    assert s["landmarks"].shape == (14, 2) and s["visible"].all() and int(s["index"]) == 3
    big = ImageDataset(h5file, ["01"], image_size=64)
    assert big.images.shape == (6, 64, 64) and big.scale == 0.5
    # a landmark at pixel centre x maps to (x + 0.5) * 2 - 0.5
    assert np.allclose(big.landmarks, (ds.landmarks[:6] + 0.5) * 2 - 0.5)
    assert set(np.unique(big.labels)) <= set(range(7))


def test_zscore_and_padding():
    x = torch.rand(2, 1, 30, 27) * 5 + 3
    z = zscore(x)
    assert torch.allclose(z.mean(dim=(1, 2, 3)), torch.zeros(2), atol=1e-5)
    p, (h, w) = pad_to_multiple(z, 8)
    assert p.shape[-2:] == (32, 32) and (h, w) == (30, 27)
    assert torch.equal(p[..., :30, :27], z)


def test_training_reduces_loss_and_resume_matches(tmp_path, h5file):
    prof = get_profile("smoke", epochs=4, max_iterations=0, batch_size=4, lr=0.05, unet_channels=(8, 16))
    ds = ImageDataset(h5file, ["01", "02"])
    model, state = train_multitask(ds, prof, seed=0, dr_preset="none", progress=False)
    losses = [h["loss"] for h in state.history]
    assert len(losses) == 4 and losses[-1] < losses[0]

    # interrupted after 2 epochs, then resumed from the checkpoint: same weights as uninterrupted
    ckpt = tmp_path / "run.pt"
    train_multitask(ds, get_profile(prof, epochs=2), seed=0, dr_preset="none", checkpoint=ckpt, progress=False)
    resumed, st2 = train_multitask(ds, prof, seed=0, dr_preset="none", checkpoint=ckpt, progress=False)
    assert st2.epoch == 4
    for a, b in zip(model.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)

    seg, heat = predict(model, ds.images[:3])
    assert seg.shape == (3, 32, 32) and heat.shape == (3, 14, 32, 32)
    ev = evaluate_hip(model, ds, prof.train.heatmap_sigma_px, pixel_mm=0.5, threshold=-1.01)  # NCC >= -1: all
    summ = summarize_hip(ev)
    assert 0 <= summ["dice_mean"] <= 1 and summ["images"] == 12
    assert summ["landmarks_activated"] == 12 * 14 and summ["detection_rate"] == 1.0


def _lrs(profile, epochs):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=profile.train.lr)
    sched, out = lr_scheduler(opt, profile.train), []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return np.array(out + [opt.param_groups[0]["lr"]])


def test_learning_rate_schedules():
    """step: lr x gamma every lr_step_epochs epochs; cosine: lr (1 + cos(pi e / E)) / 2, so lr/2 half-way and 0
    after E epochs."""
    step = _lrs(get_profile("smoke", lr=0.1, epochs=30, lr_step_epochs=10, lr_gamma=0.5), 30)
    assert np.allclose(step[[0, 9, 10, 19, 20, 29, 30]], [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125])
    cos = _lrs(get_profile("smoke", lr=0.1, epochs=40, lr_schedule="cosine"), 40)
    e = np.arange(41)
    assert np.allclose(cos, 0.05 * (1 + np.cos(np.pi * e / 40)), atol=1e-12)
    assert cos[20] == pytest.approx(0.05) and cos[40] == pytest.approx(0.0, abs=1e-12)
    assert get_profile("paper").train.lr_schedule_text() == "x0.5 every 10 epochs"
    cosine = get_profile("smoke", epochs=40, lr_schedule="cosine").train
    assert cosine.lr_schedule_text() == "cosine to 0 over 40 epochs"
    with pytest.raises(ConfigError, match="lr_schedule"):
        get_profile("smoke", lr_schedule="linear")


def test_training_with_regular_randomization_runs(h5file):
    prof = get_profile("smoke", epochs=1, max_iterations=2, unet_channels=(8, 16))
    ds = ImageDataset(h5file, ["01"])
    _, state = train_multitask(ds, prof, seed=1, dr_preset="regular", progress=False)
    assert state.step == 2 and np.isfinite(state.history[-1]["loss"])


def test_results_store_roundtrip(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    params = {"profile": "smoke", "seed": 0, "train_domain": "naive"}
    rid = results.run_id("hip-controlled", params)
    assert rid == results.run_id("hip-controlled", dict(reversed(list(params.items()))))
    assert rid != results.run_id("hip-controlled", {**params, "seed": 1})
    rec = results.make_record("hip-controlled", params, {"dice_mean": 0.5}, started=results.now_iso())
    path = results.save_record(rec, "smoke")
    assert path.exists() and not list(path.parent.glob("*.part"))
    back = results.find_record("smoke", "hip-controlled", params)
    assert back["metrics"]["dice_mean"] == 0.5 and back["provenance"]["synthex_version"]
    assert len(back["content_sha256"]) == 64
    df = results.records_frame("smoke")
    assert list(df["m.dice_mean"]) == [0.5]
    path.write_text("{not json")
    with pytest.raises(results.DataError, match="corrupted results file"):
        results.find_record("smoke", "hip-controlled", params)


@pytest.mark.parametrize("weight_shape", [(1,), (3,)])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_fused_layers_are_instance_norm_then_prelu(weight_shape, layout):
    """Values equal the unfused layers; gradients pass torch's finite-difference check (float64)."""
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(2, 3, 5, 6, generator=gen, dtype=torch.float64) * 3 + 1).contiguous(memory_format=layout)
    w = (torch.rand(weight_shape, generator=gen, dtype=torch.float64) * 0.5).requires_grad_()
    x.requires_grad_()
    ref = torch.nn.functional.prelu(torch.nn.functional.instance_norm(x, eps=1e-5), w)
    torch.testing.assert_close(instance_norm_prelu(x, w), ref)
    torch.testing.assert_close(prelu(x, w), torch.nn.functional.prelu(x, w))
    assert torch.autograd.gradcheck(lambda a, b: instance_norm_prelu(a, b, 1e-5), (x, w))
    assert torch.autograd.gradcheck(prelu, (x, w))


@pytest.mark.parametrize("memory_format", ["contiguous", "channels_last"])
def test_fused_unet_is_the_reference_network(memory_format):
    """The fused path (heads padded to 8 channels, the two 1x1 convolutions composed) computes MONAI's network:
    same outputs and same parameter gradients as the module-by-module reference, up to float32 rounding."""
    torch.manual_seed(0)
    model = build_model(7, 14, (8, 16, 32), memory_format=memory_format)
    assert isinstance(model, MultiTaskUNet) and model.fused
    x = torch.randn(2, 1, 32, 32)
    fused, ref = model(x), model.reference_forward(x)
    assert fused["seg_logits"].shape == (2, 7, 32, 32) and fused["heatmaps"].shape == (2, 14, 32, 32)
    for k in ref:
        torch.testing.assert_close(fused[k], ref[k], atol=1e-5, rtol=1e-4)
    target = {k: torch.randn(v.shape, generator=torch.Generator().manual_seed(1)) for k, v in ref.items()}

    def grads(out):
        model.zero_grad()
        sum((out[k] * target[k]).mean() for k in out).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    gf, gr = grads(model(x)), grads(model.reference_forward(x))
    scale = max(g.abs().max() for g in gr.values())
    for n in gr:  # the conv biases before instance norm have zero gradient in exact arithmetic: absolute tolerance
        torch.testing.assert_close(gf[n], gr[n], atol=1e-5 * scale, rtol=1e-3, msg=n)
    # the same parameter names as the reference (checkpoints load either way)
    assert set(model.state_dict()) == set(build_model(7, 14, (8, 16, 32), fused=False).state_dict())
    with pytest.raises(ConfigError, match="parameter 'memory_format'"):
        build_model(7, 14, (8, 16), memory_format="nhwc")


def test_same_seed_same_bytes(h5file):
    """CPU training is bit-reproducible: two runs with one seed give identical weights."""
    prof = get_profile("smoke", epochs=1, max_iterations=3, batch_size=4, unet_channels=(8, 16))
    ds = ImageDataset(h5file, ["01", "02"])
    a, _ = train_multitask(ds, prof, seed=3, dr_preset="none", progress=False)
    b, _ = train_multitask(ds, prof, seed=3, dr_preset="none", progress=False)
    c, _ = train_multitask(ds, prof, seed=4, dr_preset="none", progress=False)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_stopping_once_converged():
    """With ``min_epochs`` a run stops at the first epoch >= min_epochs at which the convergence criterion holds."""

    falling = [{"loss": 0.0, "val_loss": -0.01 * e} for e in range(50)]
    flat = [{"loss": 0.0, "val_loss": -min(e, 20) / 20} for e in range(50)]  # improves for 20 epochs, then flat
    assert not stopped_converged(falling, 30)
    assert stopped_converged(flat, 30) and convergence(flat)["converged"]
    assert not stopped_converged(flat[:29], 30)  # not before min_epochs
    assert not stopped_converged(flat, 0)  # 0: train every epoch
    assert not stopped_converged([{"loss": -min(e, 5)} for e in range(40)], 10)  # no validation: never


def test_training_stops_at_the_first_converged_epoch(h5file):

    prof = get_profile("smoke", epochs=14, min_epochs=5, max_iterations=0, batch_size=4, lr=0.05,
                       unet_channels=(4, 8))
    ds = ImageDataset(h5file, ["01"])
    val = ImageDataset(h5file, ["02"])
    _, state = train_multitask(ds, prof, seed=0, dr_preset="none", progress=False, val_ds=val)
    n = len(state.history)
    assert 5 <= n <= 14
    # the untrained network's validation loss is the criterion's baseline, recorded with the first epoch only
    assert "initial_val_loss" in state.history[0] and all("initial_val_loss" not in h for h in state.history[1:])
    assert state.history[0]["initial_val_loss"] > min(h["val_loss"] for h in state.history)
    first = next((k for k in range(5, 15) if convergence(state.history[:k])["converged"]), None)
    assert n == (first if first is not None else 14)
    with pytest.raises(ConfigError, match="min_epochs"):
        get_profile("smoke", min_epochs=-1)


def test_bfloat16_training_on_the_cpu_is_reproducible_and_learns(h5file):
    """``cpu_precision="bfloat16"``: the forward pass runs its convolutions in bfloat16 (autocast), weights stay
    float32; the same seed gives the same weights, they differ from a float32 run's, and the loss still falls."""
    prof = get_profile("smoke", epochs=4, max_iterations=0, batch_size=4, lr=0.05, unet_channels=(8, 16),
                       cpu_precision="bfloat16")
    ds = ImageDataset(h5file, ["01", "02"])
    a, sa = train_multitask(ds, prof, seed=0, dr_preset="none", progress=False)
    b, _ = train_multitask(ds, prof, seed=0, dr_preset="none", progress=False)
    f, _ = train_multitask(ds, get_profile(prof, cpu_precision="float32"), seed=0, dr_preset="none", progress=False)
    assert all(v.dtype == torch.float32 for v in a.state_dict().values() if v.is_floating_point())
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), f.state_dict().values(), strict=True))
    assert sa.history[-1]["loss"] < sa.history[0]["loss"]
    with autocast_for(torch.device("cpu"), "bfloat16"):
        assert torch.nn.functional.conv2d(torch.randn(1, 1, 8, 8), torch.randn(2, 1, 3, 3)).dtype == torch.bfloat16
    with autocast_for(torch.device("cpu")):
        assert torch.nn.functional.conv2d(torch.randn(1, 1, 8, 8), torch.randn(2, 1, 3, 3)).dtype == torch.float32
    with pytest.raises(ConfigError, match="cpu_precision"):
        get_profile("smoke", cpu_precision="float16")
