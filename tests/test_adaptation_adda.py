"""ADDA as the official code: relativistic losses, decoder features, feature alignment of a toy domain shift,
a checkpoint the evaluation code reads, determinism, kill-and-resume, and the held-out specimen kept out."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from synthex_lib.adaptation.adda import (
    CHECKPOINT,
    RECORD,
    PixelDiscriminator,
    adversarial_loss,
    decoder_features,
    discriminator_loss,
    train_adda,
)
from synthex_lib.adaptation.config import FAULT_ENV, adda_config
from synthex_lib.adaptation.data import DomainImages, HeldOutLeak
from synthex_lib.adaptation.runs import read_record
from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import SpecimenImages, write_group, write_landmark_names
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.learning.evaluation import evaluate_hip, summarize_hip
from synthex_lib.learning.models import build_model
from synthex_lib.learning.training import load_trained_model, train_multitask

PROFILE = get_profile("smoke", epochs=4, max_iterations=0, batch_size=4, unet_channels=(8, 16), lr=5e-3)
#: the toy game is played faster than the official one (adv_weight 0.01) so that it shows within 30 epochs of
#: one iteration each: the official discriminator and its learning rate, a ten times stronger adversarial weight
TOY = adda_config("smoke", epochs=30, k_disc=4, k_clf=2, disc_channels=(16, 8, 4), adv_weight=0.1)
TINY = adda_config("smoke", epochs=2, k_disc=2, k_clf=1)


def _discs(n: int, size: int, seed: int) -> SpecimenImages:
    """Bright discs (labels 1..6) on a dark background, landmarks at random points."""
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
        lands[i] = rng.uniform(4, size - 4, (2, len(HIP_LANDMARKS)))
    return SpecimenImages(projs, segs, lands, np.ones((n, len(HIP_LANDMARKS)), bool))


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A simulated dataset of three specimens, and a network trained on the first two (the sim checkpoint)."""
    root = tmp_path_factory.mktemp("adda")
    path = root / "sim.h5"
    with h5py.File(path, "w") as f:
        write_landmark_names(f, HIP_LANDMARKS)
        f.attrs["pixel_mm"] = 0.5
        for k, g in enumerate(("01", "02", "03")):
            write_group(f, g, _discs(12, 32, k))
    ds = ImageDataset(path, ["02", "03"])
    ckpt = root / "sim.pt"
    train_multitask(ds, PROFILE, seed=0, dr_preset="none", progress=False, checkpoint=ckpt)
    return {"path": path, "ds": ds, "ckpt": ckpt, "root": root}


def _inverted(ds: ImageDataset) -> DomainImages:
    """The toy target domain: the source images inverted (max - x per image), a shift z-scoring cannot undo (a
    global gain or offset it would remove entirely)."""
    x = ds.images
    return DomainImages((x.max(axis=(1, 2), keepdims=True) - x).astype(np.float32), ds.group_of.astype(str))


def test_relativistic_losses_are_the_official_formulas():
    g = torch.Generator().manual_seed(0)
    d_s, d_t = torch.rand(2, 1, 5, 5, generator=g), torch.rand(2, 1, 5, 5, generator=g)
    sig = torch.sigmoid
    official_d = -(torch.log(sig(d_t - d_s)) + torch.log(1 - sig(d_s - d_t))).mean() / 2
    official_adv = -(torch.log(1 - sig(d_t - d_s)) + torch.log(sig(d_s - d_t))).mean() / 2
    torch.testing.assert_close(discriminator_loss(d_s, d_t), official_d)
    torch.testing.assert_close(adversarial_loss(d_s, d_t), official_adv)
    torch.testing.assert_close(discriminator_loss(d_s, d_t), adversarial_loss(d_t, d_s))  # the game's symmetry
    same = torch.full((3,), 0.7)
    assert float(discriminator_loss(same, same)) == pytest.approx(np.log(2))  # no preference: log 2 for both
    assert float(adversarial_loss(same, same)) == pytest.approx(np.log(2))
    # the discriminator's loss falls as it ranks the target above the source, the network's rises
    assert float(discriminator_loss(torch.zeros(1), torch.ones(1))) == pytest.approx(-F.logsigmoid(torch.ones(1)))
    with torch.no_grad():
        out = PixelDiscriminator(16)(torch.randn(2, 16, 9, 7))
    assert out.shape == (2, 1, 9, 7) and float(out.min()) > 0 and float(out.max()) < 1  # per pixel, sigmoid


@pytest.mark.parametrize("fused", [True, False])
def test_decoder_features_are_what_the_heads_see(fused):
    model = build_model(7, 14, (8, 16), fused=fused).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        feats, out = decoder_features(model, x)
        ref = model(x)
        heads = model.heads(feats)
    assert feats.shape == (2, 16, 32, 32)  # the official 16-channel map at input resolution
    for k in ("seg_logits", "heatmaps"):
        torch.testing.assert_close(out[k], ref[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(heads[k], ref[k], rtol=1e-4, atol=1e-5)


def test_adda_aligns_a_toy_feature_shift(sim):
    """Without the adversarial loss the discriminator separates the domains (accuracy -> 1); with it, from the
    same start, its accuracy falls back toward chance, the feature gap closes and the source task loss holds."""
    target = _inverted(sim["ds"])
    runs = {}
    for name, w in (("control", 0.0), ("adda", TOY.adv_weight)):
        ckpt = train_adda(sim["ckpt"], sim["ds"], target, TOY.with_overrides(adv_weight=w), sim["root"] / name,
                          seed=0, progress=False, profile=PROFILE, held_out="01")
        runs[name] = read_record(ckpt.parent / RECORD)["history"]
    acc = {k: np.array([h["disc_acc"] for h in v]) for k, v in runs.items()}
    gap = {k: np.array([h["feature_gap"] for h in v]) for k, v in runs.items()}
    assert acc["control"][0] == acc["adda"][0]  # the same first discriminator steps
    late = {k: v[-8:].mean() for k, v in acc.items()}
    assert late["control"] > 0.9  # separable domains: the discriminator wins
    # with the adversarial loss it loses its lead: falls from its peak toward chance, far below the control
    assert late["adda"] < acc["adda"][:15].max() - 0.1 and late["adda"] < late["control"] - 0.2
    assert gap["adda"][-5:].mean() < 0.6 * gap["control"][-5:].mean() and gap["adda"][-5:].mean() < gap["adda"][0]
    task = np.array([h["loss"] for h in runs["adda"]])  # Dice + NCC on the source: -1 (perfect) .. 1
    first = runs["adda"][0]["loss"]
    assert np.isfinite(task).all() and task.max() < first + 0.05 and task[-1] <= first


def test_checkpoint_is_evaluated_as_any_trained_model(sim):
    target = _inverted(sim["ds"])
    ckpt = train_adda(sim["ckpt"], sim["ds"], target, TINY, sim["root"] / "eval", seed=0, progress=False,
                      profile=PROFILE)
    model = load_trained_model(ckpt, PROFILE)
    blob = torch.load(ckpt, weights_only=False)
    assert blob["state"]["epoch"] == 2 and blob["best"] is None
    assert all(torch.equal(v, blob["model"][k]) for k, v in model.state_dict().items())
    before = load_trained_model(sim["ckpt"], PROFILE)
    assert not all(torch.equal(v, before.state_dict()[k]) for k, v in model.state_dict().items())  # it adapted
    test = ImageDataset(sim["path"], ["01"])
    s = summarize_hip(evaluate_hip(model, test, PROFILE.train.heatmap_sigma_px, 0.5, device="cpu"))
    assert 0 <= s["dice_mean"] <= 1
    # a network passed as an object is copied, not changed, and gives the same run as its checkpoint
    again = train_adda(before, sim["ds"], target, TINY, sim["root"] / "object", seed=0, progress=False,
                       profile=PROFILE)
    assert again.read_bytes() == ckpt.read_bytes()
    assert all(torch.equal(v, load_trained_model(sim["ckpt"], PROFILE).state_dict()[k])
               for k, v in before.state_dict().items())


def test_kill_and_resume_gives_the_same_checkpoint_bytes(sim, monkeypatch):
    target = _inverted(sim["ds"])
    kw = dict(seed=2, progress=False, profile=PROFILE, dr_preset="regular")
    per_epoch = 24 // (4 * 3) * 3  # iterations of k_disc + k_clf batches
    monkeypatch.setenv(FAULT_ENV, str(per_epoch + 2))
    with pytest.raises(RuntimeError, match="injected fault"):
        train_adda(sim["ckpt"], sim["ds"], target, TINY, sim["root"] / "killed", **kw)
    assert torch.load(sim["root"] / "killed" / CHECKPOINT, weights_only=False)["state"]["epoch"] == 1
    monkeypatch.delenv(FAULT_ENV)
    resumed = train_adda(sim["ckpt"], sim["ds"], target, TINY, sim["root"] / "killed", **kw)
    fresh = train_adda(sim["ckpt"], sim["ds"], target, TINY, sim["root"] / "fresh", **kw)
    assert resumed.read_bytes() == fresh.read_bytes()
    other = train_adda(sim["ckpt"], sim["ds"], target, TINY, sim["root"] / "other", **{**kw, "seed": 3})
    assert other.read_bytes() != fresh.read_bytes()


def test_held_out_specimen_never_reaches_adda(sim):
    target = _inverted(sim["ds"])
    with_test = ImageDataset(sim["path"], ["01", "02"])
    kw = dict(progress=False, profile=PROFILE, held_out="01")
    with pytest.raises(HeldOutLeak, match="'source'"):
        train_adda(sim["ckpt"], with_test, target, TINY, sim["root"] / "leak", **kw)
    leaky = DomainImages(target.images, np.where(np.arange(len(target)) == 0, "01", target.groups))
    with pytest.raises(HeldOutLeak, match="'target_images'"):
        train_adda(sim["ckpt"], sim["ds"], leaky, TINY, sim["root"] / "leak", **kw)
    with pytest.raises(HeldOutLeak, match="unknown groups"):
        train_adda(sim["ckpt"], sim["ds"], target.images, TINY, sim["root"] / "leak", **kw)
    with pytest.raises(ConfigError, match="'target_images'.*resize"):
        train_adda(sim["ckpt"], sim["ds"], DomainImages(target.images[:, :16, :16], target.groups), TINY,
                   sim["root"] / "leak", **kw)
    assert not (sim["root"] / "leak").exists()
    ckpt = train_adda(sim["ckpt"], sim["ds"], target, TINY, sim["root"] / "ok", **kw)
    assert read_record(ckpt.parent / RECORD)["groups_seen"] == {"source": ["02", "03"], "target": ["02", "03"]}
