"""Training and evaluation of the multi-task network (segmentation + landmark heatmaps).

The recipe follows the paper's Methods and the official code: SGD with Nesterov momentum (Adam on
the CPU profiles, see :mod:`synthex_lib.core.config`),
learning rate halved every ``lr_step_epochs`` epochs, batch of ``batch_size``, domain
randomization applied to every training batch (deterministic per sample index and epoch),
per-image z-scoring after randomization, Gaussian heatmap targets built from the randomized
landmarks (peak 1; the official code uses the normalised pdf, which the scale-invariant NCC loss
cannot tell apart), and the Dice + NCC loss of :mod:`synthex_lib.learning.losses`. Checkpoints are written
atomically after every epoch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from synthex_lib.core import paths
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.learning.inputs import pad_to_multiple, zscore
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import MultiTaskUNet, build_model
from synthex_lib.randomization import DomainRandomization
from synthex_lib.simulate.labels import gaussian_heatmaps


@dataclass
class TrainState:
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def make_randomizer(preset: str | dict, seed: int):
    """Domain randomization from a preset name or a config dict (see :mod:`synthex_lib.randomization`)."""

    if isinstance(preset, dict):
        return DomainRandomization.from_config(preset, seed=seed)
    return DomainRandomization.from_preset(preset, seed=seed)


def train_multitask(train_ds: ImageDataset, profile: Profile, *, seed: int = 0, dr_preset: str | dict = "regular",
                    num_classes: int = HIP_NUM_CLASSES, num_landmarks: int = len(HIP_LANDMARKS),
                    checkpoint: str | os.PathLike[str] | None = None, progress: bool = True,
                    device: str = "cpu") -> tuple[MultiTaskUNet, TrainState]:
    """Train a multi-task U-Net on ``train_ds``; resume from ``checkpoint`` if it exists."""
    if len(train_ds) == 0:
        raise ConfigError("the training set is empty: check the dataset and the held-out specimen")
    torch.manual_seed(seed)
    model = build_model(num_classes, num_landmarks, profile.train.unet_channels).to(device)
    if profile.train.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=profile.train.lr, weight_decay=profile.train.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=profile.train.lr, momentum=profile.train.momentum, nesterov=True,
                              weight_decay=profile.train.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=profile.train.lr_step_epochs, gamma=profile.train.lr_gamma)
    state = TrainState()
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        blob = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        state = TrainState(**blob["state"])
    dr = make_randomizer(dr_preset, seed)
    sigma = profile.train.heatmap_sigma_px
    steps_per_epoch = math.ceil(len(train_ds) / profile.train.batch_size)
    total = profile.train.epochs * steps_per_epoch
    if profile.train.max_iterations:
        total = min(total, profile.train.max_iterations)
    bar = tqdm(total=total, initial=min(state.step, total), desc="train", disable=not progress, leave=False)
    cfg = profile.train
    while state.epoch < cfg.epochs and not (cfg.max_iterations and state.step >= cfg.max_iterations):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + state.epoch)
        loader = DataLoader(train_ds, batch_size=profile.train.batch_size, shuffle=True, generator=gen,
                            collate_fn=_collate, num_workers=0)
        model.train()
        sums: dict[str, float] = {}
        n = 0
        for batch in loader:
            if profile.train.max_iterations and state.step >= profile.train.max_iterations:
                break
            b = dr({"image": batch["image"], "labels": batch["labels"], "landmarks": batch["landmarks"],
                    "visible": batch["visible"], "index": batch["index"], "epoch": state.epoch})
            loss, parts = _loss_on_batch(model, b, sigma, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state.step += 1
            n += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(epoch=state.epoch, loss=f"{parts['loss']:.3f}")
        sched.step()
        state.epoch += 1
        state.history.append({"epoch": state.epoch, "lr": opt.param_groups[0]["lr"],
                              **{k: v / max(n, 1) for k, v in sums.items()}})
        if ckpt is not None:
            _save_checkpoint(ckpt, model, opt, sched, state)
    bar.close()
    return model, state


def _loss_on_batch(model: MultiTaskUNet, b: dict[str, torch.Tensor], sigma: float, device: str):
    image = zscore(b["image"].float()).to(device)
    h, w = image.shape[-2:]
    heat = gaussian_heatmaps(b["landmarks"].to(device), (w, h), sigma, visible=b["visible"].to(device))
    image, _ = pad_to_multiple(image, model.size_multiple)
    labels = F.pad(b["labels"].to(device), (0, image.shape[-1] - w, 0, image.shape[-2] - h))
    heat = F.pad(heat, (0, image.shape[-1] - w, 0, image.shape[-2] - h))
    mask = torch.zeros(labels.shape, device=device)
    mask[:, :h, :w] = 1
    out = model(image)
    return multitask_loss(out, labels, heat, b["visible"].to(device), mask)


def _save_checkpoint(path: Path, model, opt, sched, state: TrainState) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "state": state.__dict__}, buf)
    paths.atomic_write_bytes(path, buf.getvalue())


def load_trained_model(checkpoint: str | os.PathLike[str], profile: Profile | str, num_classes: int = HIP_NUM_CLASSES,
                       num_landmarks: int = len(HIP_LANDMARKS), device: str = "cpu") -> MultiTaskUNet:
    profile = get_profile(profile)
    model = build_model(num_classes, num_landmarks, profile.train.unet_channels)
    blob = torch.load(checkpoint, map_location=device, weights_only=False)
    model.load_state_dict(blob["model"])
    return model.to(device).eval()
