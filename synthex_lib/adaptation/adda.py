"""ADDA (Tzeng et al., "Adversarial discriminative domain adaptation", CVPR 2017) as the official SyntheX code
runs it (``train_adda.py``; facts in ``/work/shared/reference/official-code.md`` section 6).

* **One** task network, initialised from a checkpoint trained on simulated images, is adapted (the official
  code builds a second, source network and never uses it).
* Its **decoder features before the heads** (:func:`decoder_features`: for
  :class:`~synthex_lib.learning.models.MultiTaskUNet` the PReLU-activated 16-channel output of the U-Net, at
  input resolution; for the TransUNet the 16-channel map its decoder hands the heads) feed a **per-pixel
  discriminator** (:class:`PixelDiscriminator`: 3 x 3 convolutions, stride 1, 16 -> 16 -> 8 -> 4 -> 1, ReLU,
  sigmoid; no pooling).
* **Relativistic losses** on the sigmoid outputs ``D_s`` (simulated, source) and ``D_t`` (real, target), paired
  pixel by pixel: ``L_D = -mean[log s(D_t - D_s) + log(1 - s(D_s - D_t))] / 2`` for the discriminator,
  ``L_adv = -mean[log(1 - s(D_t - D_s)) + log s(D_s - D_t)] / 2`` for the network, whose total loss is the task
  loss (Dice + NCC on the labelled simulated batch, as :mod:`synthex_lib.learning.training`) ``+ adv_weight *
  L_adv`` (0.01).
* **Schedule**: each iteration is ``k_disc`` (20) discriminator steps, then ``k_clf`` (5) network steps, each on
  a fresh source and target batch, for ``len(source) // (batch * (k_disc + k_clf))`` iterations per epoch (at
  least one). Discriminator: Adam 1e-3, weight decay 1e-4, halved every 500 steps. Network: the profile's
  optimiser (``train`` section, as task training), with two schedules on it: the profile's per-epoch one
  (:func:`~synthex_lib.learning.training.lr_scheduler`) and x 0.5 every 500 network steps.
* **Data**: the target images are unlabelled real images of the *training* specimens; both domains get the same
  domain randomization (the official code's shared augmentation flags). Nothing is validated on the held-out
  specimen here (that would select on the test data); the last epoch's weights are the result.

:func:`train_adda` writes ``adda.pt`` atomically after every epoch, in the checkpoint format of
:mod:`synthex_lib.learning.training` (``model``, ``optimizer``, ``scheduler``, ``state``, ``best``; ADDA's own
parts under ``adda``), so :func:`~synthex_lib.learning.training.load_trained_model` and
:mod:`synthex_lib.learning.evaluation` read it as any trained model; a killed run resumes from it with the same
bytes on the CPU. The discriminator's accuracy (the fraction of pixel pairs it ranks correctly, ``D_t > D_s``;
chance 0.5) and the standardised gap between the domains' mean features are recorded per epoch.
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from synthex_lib import __version__
from synthex_lib.adaptation.config import ADDAConfig
from synthex_lib.adaptation.data import (
    UNKNOWN_GROUP,
    DomainImages,
    as_domain_images,
    check_excluded,
    check_groups,
)
from synthex_lib.adaptation.runs import (
    FaultInjector,
    epoch_order,
    load_run_checkpoint,
    save_checkpoint,
    torch_generator,
    write_record,
)
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.learning.device import autocast_for, cpu_threads, resolve_device
from synthex_lib.learning.inputs import pad_to_multiple, zscore
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import MultiTaskUNet
from synthex_lib.learning.training import load_trained_model, lr_scheduler, make_optimizer, make_randomizer
from synthex_lib.simulate.labels import gaussian_heatmaps

#: file names in a run's ``out_dir``
CHECKPOINT = "adda.pt"
RECORD = "adda.json"
KIND = "adda"
FORMAT = 1


class PixelDiscriminator(nn.Module):
    """The official per-pixel discriminator: ``[B, F, H, W]`` features -> ``[B, 1, H, W]`` in (0, 1) (sigmoid),
    3 x 3 convolutions of stride 1 and padding 1 through ``hidden`` channels (official: 16, 8, 4) with ReLU.
    Weights: PyTorch's default initialisation (uniform, Kaiming a = sqrt 5), drawn with ``generator``."""

    def __init__(self, features: int, hidden: Sequence[int] = (16, 8, 4), generator: torch.Generator | None = None
                 ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = features
        for h in hidden:
            layers += [nn.Conv2d(ch, h, 3, padding=1), nn.ReLU(True)]
            ch = h
        layers += [nn.Conv2d(ch, 1, 3, padding=1), nn.Sigmoid()]
        self.model = nn.Sequential(*layers)
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        for m in self.model:
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=g)
                bound = 1 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=g)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.model(feats)


def discriminator_loss(d_s: torch.Tensor, d_t: torch.Tensor) -> torch.Tensor:
    """Official relativistic discriminator loss ``-mean[log s(D_t - D_s) + log(1 - s(D_s - D_t))] / 2`` of the
    sigmoid outputs (same shape, paired element by element); ``log(1 - s(x)) = log s(-x)`` for stability."""
    return -(F.logsigmoid(d_t - d_s) + F.logsigmoid(-(d_s - d_t))).mean() / 2


def adversarial_loss(d_s: torch.Tensor, d_t: torch.Tensor) -> torch.Tensor:
    """Official relativistic loss of the network ``-mean[log(1 - s(D_t - D_s)) + log s(D_s - D_t)] / 2``."""
    return -(F.logsigmoid(-(d_t - d_s)) + F.logsigmoid(d_s - d_t)).mean() / 2


def ranking_accuracy(d_s: torch.Tensor, d_t: torch.Tensor) -> float:
    """The discriminator's accuracy under the relativistic loss: the fraction of paired pixels it ranks target
    above source (``D_t > D_s``), a tie counting one half. 0.5 is chance (a discriminator that cannot tell the
    domains apart, a constant one included); 1 (or 0) a discriminator that separates them."""
    return float(((d_t > d_s).float() + 0.5 * (d_t == d_s).float()).mean())


def decoder_features(model: nn.Module, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``(features [B, F, H, W], outputs)`` of a multi-task network on a z-scored, padded ``[B, 1, H, W]`` batch:
    the decoder features the heads receive (the map ADDA aligns) and the network's usual outputs, in one pass.

    For :class:`MultiTaskUNet` the features are the PReLU-activated U-Net output (the reference path of
    :meth:`MultiTaskUNet.reference_forward`; the heads run fused when the model is fused); for any other network
    whose ``heads`` module is called with the features (the TransUNet), they are captured there and cropped as
    its outputs are.
    """
    if isinstance(model, MultiTaskUNet):
        feats = model.act(model.backbone(image))
        out = model.heads.fused_forward(feats) if model.fused else model.heads(feats)
        return feats, out
    heads = getattr(model, "heads", None)
    if not isinstance(heads, nn.Module):
        raise ConfigError(f"parameter 'model': a {type(model).__name__} has no 'heads' module to take the decoder "
                          "features from (use MultiTaskUNet or TransUNet)")
    captured: list[torch.Tensor] = []
    handle = heads.register_forward_pre_hook(lambda _m, args: captured.append(args[0]))
    try:
        out = model(image)
    finally:
        handle.remove()
    if len(captured) != 1:
        raise ConfigError(f"parameter 'model': its heads ran {len(captured)} times in one forward pass, expected 1")
    feats = captured[0]
    h, w = image.shape[-2:]
    top, left = (feats.shape[-2] - h) // 2, (feats.shape[-1] - w) // 2  # the TransUNet pads symmetrically
    return feats[..., top:top + h, left:left + w], out


def feature_gap(fs: torch.Tensor, ft: torch.Tensor) -> float:
    """Mean over channels of ``|mean_s - mean_t| / sqrt((var_s + var_t) / 2)`` of two feature batches
    ``[B, F, H, W]`` (statistics over batch and pixels): 0 when the domains' features agree on average."""
    ms, mt = fs.mean(dim=(0, 2, 3)), ft.mean(dim=(0, 2, 3))
    vs, vt = fs.var(dim=(0, 2, 3)), ft.var(dim=(0, 2, 3))
    return float(((ms - mt).abs() / ((vs + vt) / 2 + 1e-12).sqrt()).mean())


def _state_digest(model: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in model.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _source_summary(ds: Dataset) -> tuple[dict[str, Any], list[str]]:
    h = hashlib.sha256()
    groups: list[str] = []
    first = None
    for i in range(len(ds)):
        s = ds[i]
        if not isinstance(s, dict) or not {"image", "labels", "landmarks", "visible"} <= set(s):
            raise ConfigError("parameter 'source' must be a dataset of dicts with image, labels, landmarks and "
                              "visible (synthex_lib.datasets.torch_dataset.ImageDataset or a Subset of one)")
        for k in ("image", "labels", "landmarks", "visible"):
            h.update(s[k].numpy().tobytes())
        groups.append(str(s.get("group", UNKNOWN_GROUP)))
        first = first or tuple(s["image"].shape[-2:])
    return {"n": len(ds), "shape": list(first or ()), "groups": sorted(set(groups)), "sha256": h.hexdigest()}, groups


def _source_batch(ds: Dataset, idx: np.ndarray) -> dict[str, torch.Tensor]:
    samples = [ds[int(i)] for i in idx]
    out = {k: torch.stack([s[k] for s in samples]) for k in ("image", "labels", "landmarks", "visible")}
    out["index"] = torch.as_tensor(idx, dtype=torch.int64)
    return out


class _Run:
    """The networks, optimisers and schedules of one ADDA run."""

    def __init__(self, model: nn.Module, config: ADDAConfig, profile: Profile, features: int, seed: int,
                 dev: torch.device) -> None:
        tc = profile.train
        self.model = model
        self.opt = make_optimizer(model.parameters(), tc)
        self.epoch_sched = lr_scheduler(self.opt, tc)
        self.clf_sched = torch.optim.lr_scheduler.StepLR(self.opt, config.clf_step_iterations, config.clf_gamma)
        self.disc = PixelDiscriminator(features, config.disc_channels, torch_generator(seed, KIND, "init", "disc")
                                       ).to(dev)
        self.disc_opt = torch.optim.Adam(self.disc.parameters(), lr=config.disc_lr,
                                         weight_decay=config.disc_weight_decay)
        self.disc_sched = torch.optim.lr_scheduler.StepLR(self.disc_opt, config.disc_step_iterations,
                                                          config.disc_gamma)

    def blob(self, state: dict[str, Any], identity: dict[str, Any]) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.epoch_sched.state_dict(), "state": state, "best": None,
                "synthex_version": __version__,
                KIND: {"identity": identity, "discriminator": self.disc.state_dict(),
                       "disc_optimizer": self.disc_opt.state_dict(), "disc_scheduler": self.disc_sched.state_dict(),
                       "clf_scheduler": self.clf_sched.state_dict()}}

    def load(self, blob: dict[str, Any]) -> None:
        self.model.load_state_dict(blob["model"])
        self.opt.load_state_dict(blob["optimizer"])
        self.epoch_sched.load_state_dict(blob["scheduler"])
        a = blob[KIND]
        self.disc.load_state_dict(a["discriminator"])
        self.disc_opt.load_state_dict(a["disc_optimizer"])
        self.disc_sched.load_state_dict(a["disc_scheduler"])
        self.clf_sched.load_state_dict(a["clf_scheduler"])


def train_adda(model: nn.Module | str | os.PathLike[str], source: Dataset, target_images: DomainImages | np.ndarray,
               config: ADDAConfig, out_dir: str | os.PathLike[str], seed: int = 0, progress: bool = True, *,
               profile: Profile | str = "smoke", dr_preset: str | dict = "none", held_out: str | Sequence[str] | None
               = None, num_classes: int = HIP_NUM_CLASSES, num_landmarks: int = len(HIP_LANDMARKS),
               device: str | torch.device = "cpu") -> Path:
    """Adapt a simulation-trained multi-task network to the target domain with ADDA; returns the checkpoint.

    Args:
        model: the network trained on simulated images (it is copied, not changed), or its checkpoint
            (``train_multitask``'s; built from ``profile`` as
            :func:`~synthex_lib.learning.training.load_trained_model`).
        source: the labelled simulated training images, a dataset of dicts as
            :class:`~synthex_lib.datasets.torch_dataset.ImageDataset` (or a ``Subset``): ``image`` [1, H, W],
            ``labels``, ``landmarks``, ``visible``, ``group``.
        target_images: unlabelled real images of the training specimens, float [N, H, W] of the source's size
            (:func:`~synthex_lib.adaptation.data.unlabelled_training_images`); their groups are checked and recorded.
        config: the schedule (:func:`~synthex_lib.adaptation.config.adda_config`).
        out_dir: where ``adda.pt`` (every epoch, atomic; the run resumes from it) and ``adda.json`` (groups seen,
            history) go.
        profile: its ``train`` section gives the network's optimiser, batch size and heatmap sigma; it must be
            the profile the network was built with, so that ``load_trained_model(adda.pt, profile)`` reads it.
        dr_preset: domain randomization of both domains (the official code's shared flags), as ``train_multitask``.
        held_out: the test specimen group(s): a source or target image of them, or target images of unknown
            groups, raise :class:`~synthex_lib.adaptation.data.HeldOutLeak` before training.
        device: ``cpu`` (bit-reproducible), ``cuda[:N]`` (mixed precision, as task training) or ``auto``.
    """
    if not isinstance(config, ADDAConfig):
        raise ConfigError(f"parameter 'config' must be an ADDAConfig, got {type(config).__name__}")
    config.validate()
    profile = get_profile(profile)
    if len(source) == 0:
        raise ConfigError("parameter 'source' is empty: check the dataset and the held-out specimen")
    src_summary, src_groups = _source_summary(source)
    tgt = as_domain_images(target_images, "target_images")
    check_excluded(tgt, held_out, "target_images")
    check_groups(src_groups, held_out, "source")
    if tuple(src_summary["shape"]) != tuple(tgt.images.shape[1:]):
        raise ConfigError(f"parameter 'target_images': images of {tuple(tgt.images.shape[1:])} px, the source's are "
                          f"{tuple(src_summary['shape'])} (the relativistic loss pairs their pixels): resize them")
    dev = resolve_device(device)
    if isinstance(model, nn.Module):
        net = copy.deepcopy(model).to(dev)
    else:
        net = load_trained_model(model, profile, num_classes, num_landmarks, device=str(dev))
    with cpu_threads(config.cpu_threads if dev.type == "cpu" else torch.get_num_threads()):
        return _train(net, source, src_summary, tgt, config, profile, Path(out_dir), int(seed), progress, dev,
                      dr_preset)


def _task_batch(model: nn.Module, b: dict[str, torch.Tensor], sigma: float, dev: torch.device
                ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
    """Task loss (as task training) and the cropped decoder features of a randomized source batch."""
    image = zscore(b["image"].float()).to(dev)
    h, w = image.shape[-2:]
    heat = gaussian_heatmaps(b["landmarks"].to(dev), (w, h), sigma, visible=b["visible"].to(dev))
    image, _ = pad_to_multiple(image, model.size_multiple)
    labels = F.pad(b["labels"].to(dev), (0, image.shape[-1] - w, 0, image.shape[-2] - h))
    heat = F.pad(heat, (0, image.shape[-1] - w, 0, image.shape[-2] - h))
    mask: torch.Tensor | None = None
    if image.shape[-2:] != (h, w):
        mask = torch.zeros(labels.shape, device=dev)
        mask[:, :h, :w] = 1
    with autocast_for(dev):
        feats, out = decoder_features(model, image)
    out = {k: v.float() for k, v in out.items()}
    loss, parts = multitask_loss(out, labels, heat, b["visible"].to(dev), mask)
    return loss, parts, feats[..., :h, :w].float()


def _features(model: nn.Module, image: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """The cropped decoder features of a (randomized) image batch ``[B, 1, H, W]``, z-scored as task training."""
    x = zscore(image.float()).to(dev)
    h, w = x.shape[-2:]
    x, _ = pad_to_multiple(x, model.size_multiple)
    with autocast_for(dev):
        feats, _ = decoder_features(model, x)
    return feats[..., :h, :w].float()


def _train(model: nn.Module, source: Dataset, src_summary: dict[str, Any], tgt: DomainImages, config: ADDAConfig,
           profile: Profile, out: Path, seed: int, progress: bool, dev: torch.device, dr_preset: str | dict) -> Path:
    tc = profile.train
    ckpt = out / CHECKPOINT
    preset = dr_preset if isinstance(dr_preset, str) else make_randomizer(dr_preset, 0).to_config()
    identity = {"config": config.to_dict(), "seed": seed, "train": tc.to_dict(), "dr_preset": preset,
                "init_model_sha256": _state_digest(model), "source": src_summary, "target": tgt.summary(),
                "format": FORMAT}
    with torch.no_grad():
        probe = zscore(torch.from_numpy(tgt.images[:1])[:, None]).to(dev)
        features = int(decoder_features(model.eval(), pad_to_multiple(probe, model.size_multiple)[0])[0].shape[1])
    model.train()
    run = _Run(model, config, profile, features, seed, dev)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": [], "best_epoch": 0, "best_val_loss": float("inf")}
    if ckpt.exists():
        blob = load_run_checkpoint(ckpt, KIND, identity, dev)
        run.load(blob)
        state = blob["state"]
    dr_src = make_randomizer(dr_preset, seed, tc.image_size, tc.dr_reference_px)
    dr_tgt = make_randomizer(dr_preset, int(seeded_rng(seed, KIND, "target-randomization").integers(0, 2**31)),
                             tc.image_size, tc.dr_reference_px)
    per_iter = config.k_disc + config.k_clf
    iters = max(1, len(source) // (tc.batch_size * per_iter))
    n_batches = iters * per_iter
    tgt_images = torch.from_numpy(tgt.images)[:, None]
    faults = FaultInjector()
    started = time.perf_counter()
    bar = tqdm(total=config.epochs * n_batches, initial=state["step"], desc="adda", disable=not progress, leave=False)
    while state["epoch"] < config.epochs:
        e = state["epoch"]
        src_order = epoch_order(seeded_rng(seed, KIND, "order-source", e), len(source), n_batches * tc.batch_size)
        tgt_order = epoch_order(seeded_rng(seed, KIND, "order-target", e), len(tgt), n_batches * tc.batch_size)
        sums: dict[str, float] = {}
        counts = {"disc": 0, "clf": 0}
        for j in range(n_batches):
            sl = slice(j * tc.batch_size, (j + 1) * tc.batch_size)
            sb = dr_src({**_source_batch(source, src_order[sl]), "epoch": e})
            ti = tgt_order[sl]
            tb = dr_tgt({"image": tgt_images[ti], "index": torch.as_tensor(ti, dtype=torch.int64), "epoch": e,
                         # unlabelled: empty labels so that the randomization's spatial effects have maps to move
                         "labels": torch.zeros((len(ti), *tgt.images.shape[1:]), dtype=torch.int64),
                         "landmarks": torch.zeros((len(ti), sb["landmarks"].shape[1], 2)),
                         "visible": torch.zeros((len(ti), sb["visible"].shape[1]), dtype=torch.bool)})
            kind = "disc" if j % per_iter < config.k_disc else "clf"
            parts = _disc_step(run, sb, tb, dev) if kind == "disc" else _clf_step(run, sb, tb, config,
                                                                                 tc.heatmap_sigma_px, dev)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            counts[kind] += 1
            state["step"] += 1
            bar.update(1)
            faults.tick()
        run.epoch_sched.step()
        state["epoch"] += 1
        disc_keys = ("disc_loss", "disc_acc")
        entry = {"epoch": state["epoch"], "step": state["step"], "lr": run.opt.param_groups[0]["lr"],
                 "disc_lr": run.disc_opt.param_groups[0]["lr"], "disc_steps": counts["disc"],
                 "clf_steps": counts["clf"],
                 **{k: v / max(counts["disc" if k in disc_keys else "clf"], 1) for k, v in sums.items()}}
        state["history"].append(entry)
        save_checkpoint(ckpt, run.blob(state, identity))
    bar.close()
    write_record(out / RECORD, {"method": KIND, "identity": identity, "groups_seen": {
        "source": src_summary["groups"], "target": tgt.group_set()}, "target_origin": tgt.origin,
        "history": state["history"],
        "wall_s_last_call": time.perf_counter() - started, "checkpoint": str(ckpt)})
    return ckpt


def _disc_step(run: _Run, sb: dict[str, Any], tb: dict[str, Any], dev: torch.device) -> dict[str, float]:
    with torch.no_grad():
        fs = _features(run.model, sb["image"], dev)
        ft = _features(run.model, tb["image"], dev)
    d_s, d_t = run.disc(fs), run.disc(ft)
    loss = discriminator_loss(d_s, d_t)
    run.disc_opt.zero_grad(set_to_none=True)
    loss.backward()
    run.disc_opt.step()
    run.disc_sched.step()
    return {"disc_loss": float(loss.detach()), "disc_acc": ranking_accuracy(d_s.detach(), d_t.detach())}


def _clf_step(run: _Run, sb: dict[str, Any], tb: dict[str, Any], config: ADDAConfig, sigma: float,
              dev: torch.device) -> dict[str, float]:
    task, parts, fs = _task_batch(run.model, sb, sigma, dev)
    ft = _features(run.model, tb["image"], dev)
    run.disc.requires_grad_(False)
    adv = adversarial_loss(run.disc(fs), run.disc(ft))
    run.disc.requires_grad_(True)
    loss = task + config.adv_weight * adv
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    run.clf_sched.step()
    return {**parts, "adv_loss": float(adv.detach()), "total_loss": float(loss.detach()),
            "feature_gap": feature_gap(fs.detach(), ft.detach())}


__all__ = ["PixelDiscriminator", "adversarial_loss", "decoder_features", "discriminator_loss", "feature_gap",
           "ranking_accuracy", "train_adda"]
