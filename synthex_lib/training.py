"""Training and evaluation of the multi-task network (segmentation + landmark heatmaps).

The recipe follows the paper's Methods and the official code: SGD with Nesterov momentum (Adam on
the CPU profiles, see :mod:`synthex_lib.experiments.profiles`),
learning rate halved every ``lr_step_epochs`` epochs, batch of ``batch_size``, domain
randomization applied to every training batch (deterministic per sample index and epoch),
per-image z-scoring after randomization, Gaussian heatmap targets built from the randomized
landmarks (peak 1; the official code uses the normalised pdf, which the scale-invariant NCC loss
cannot tell apart), and the Dice + NCC loss of :mod:`synthex_lib.losses`. Checkpoints are written
atomically after every epoch, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from synthex_lib import paths
from synthex_lib.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.errors import ConfigError
from synthex_lib.experiments.profiles import Profile, get_profile
from synthex_lib.losses import multitask_loss
from synthex_lib.metrics import detect_landmarks, dice_per_image, hip_landmark_labels, landmark_errors_mm
from synthex_lib.models import MultiTaskUNet, build_model
from synthex_lib.simulate.labels import gaussian_heatmaps


def zscore(image: torch.Tensor) -> torch.Tensor:
    """Per-image z-scoring of [B, 1, H, W] (the official normalisation)."""
    m = image.mean(dim=(1, 2, 3), keepdim=True)
    s = image.std(dim=(1, 2, 3), keepdim=True)
    return (image - m) / (s + 1e-6)


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "reflect") -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two dims at the bottom/right to multiples of ``multiple``; returns the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode=mode if min(h, w) > max(ph, pw) else "replicate")
    return x, (h, w)


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
    from synthex_lib.randomization import DomainRandomization

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
    model = build_model(num_classes, num_landmarks, profile.unet_channels).to(device)
    if profile.optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=profile.lr, weight_decay=profile.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=profile.lr, momentum=profile.momentum, nesterov=True,
                              weight_decay=profile.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=profile.lr_step_epochs, gamma=profile.lr_gamma)
    state = TrainState()
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        blob = torch.load(ckpt, map_location=device, weights_only=False)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        state = TrainState(**blob["state"])
    dr = make_randomizer(dr_preset, seed)
    sigma = profile.heatmap_sigma_px
    steps_per_epoch = math.ceil(len(train_ds) / profile.batch_size)
    total = profile.epochs * steps_per_epoch
    if profile.max_iterations:
        total = min(total, profile.max_iterations)
    bar = tqdm(total=total, initial=min(state.step, total), desc="train", disable=not progress, leave=False)
    while state.epoch < profile.epochs and not (profile.max_iterations and state.step >= profile.max_iterations):
        gen = torch.Generator().manual_seed(seed * 1_000_003 + state.epoch)
        loader = DataLoader(train_ds, batch_size=profile.batch_size, shuffle=True, generator=gen,
                            collate_fn=_collate, num_workers=0)
        model.train()
        sums: dict[str, float] = {}
        n = 0
        for batch in loader:
            if profile.max_iterations and state.step >= profile.max_iterations:
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


@torch.no_grad()
def predict(model: MultiTaskUNet, images: np.ndarray, batch_size: int = 8, device: str = "cpu"
            ) -> tuple[np.ndarray, np.ndarray]:
    """images float [N, H, W] (log domain) -> (labels uint8 [N, H, W], heatmaps float32 [N, L, H, W])."""
    model.eval()
    segs, heats = [], []
    for i in range(0, len(images), batch_size):
        x = zscore(torch.from_numpy(np.asarray(images[i:i + batch_size], np.float32))[:, None]).to(device)
        x, (h, w) = pad_to_multiple(x, model.size_multiple)
        out = model(x)
        segs.append(out["seg_logits"][..., :h, :w].argmax(1).to(torch.uint8).cpu().numpy())
        heats.append(out["heatmaps"][..., :h, :w].float().cpu().numpy())
    return np.concatenate(segs), np.concatenate(heats)


def evaluate_hip(model: MultiTaskUNet, test_ds: ImageDataset, sigma_px: float, pixel_mm: float,
                 threshold: float = 0.9, device: str = "cpu") -> dict[str, Any]:
    """Per-image Dice and per-landmark errors of the hip task on ``test_ds``.

    Returns arrays: ``dice`` [N], ``distance_mm`` [N, L] (raw), ``error_mm`` [N, L] (NaN where not
    activated or not visible), ``confidence`` [N, L], ``visible`` [N, L], plus predictions.
    """
    segs, heats = predict(model, test_ds.images, device=device)
    lab_sets = hip_landmark_labels()
    n, L = len(segs), heats.shape[1]  # noqa: N806
    conf = np.zeros((n, L))
    dist = np.zeros((n, L))
    err = np.zeros((n, L))
    pred_xy = np.zeros((n, L, 2))
    dice = np.zeros(n)
    for i in range(n):
        det = detect_landmarks(heats[i], sigma_px, seg=segs[i], landmark_labels=lab_sets)
        pred_xy[i], conf[i] = det.xy, det.confidence
        dist[i] = np.linalg.norm(det.xy - test_ds.landmarks[i], axis=-1) * pixel_mm
        err[i] = landmark_errors_mm(det.xy, test_ds.landmarks[i], det.confidence >= threshold, test_ds.visible[i],
                                    pixel_mm)
        dice[i] = dice_per_image(segs[i], test_ds.labels[i], HIP_NUM_CLASSES)
    return {"dice": dice, "distance_mm": dist, "error_mm": err, "confidence": conf, "visible": test_ds.visible,
            "pred_seg": segs, "pred_xy": pred_xy, "heatmaps": heats}


def summarize_hip(ev: dict[str, Any]) -> dict[str, float]:
    from synthex_lib.stats import summarize

    lm = summarize(ev["error_mm"])
    dc = summarize(ev["dice"])
    vis = np.asarray(ev["visible"], bool)
    return {
        "landmark_error_mm_mean": lm["mean"], "landmark_error_mm_std": lm["std"], "landmark_error_mm_ci95": lm["ci95"],
        "landmarks_activated": lm["n"], "landmarks_visible": int(vis.sum()),
        "detection_rate": lm["n"] / max(int(vis.sum()), 1),
        "dice_mean": dc["mean"], "dice_std": dc["std"], "dice_ci95": dc["ci95"], "images": dc["n"],
    }


def load_trained_model(checkpoint: str | os.PathLike[str], profile: Profile | str, num_classes: int = HIP_NUM_CLASSES,
                       num_landmarks: int = len(HIP_LANDMARKS), device: str = "cpu") -> MultiTaskUNet:
    profile = get_profile(profile)
    model = build_model(num_classes, num_landmarks, profile.unet_channels)
    blob = torch.load(checkpoint, map_location=device, weights_only=False)
    model.load_state_dict(blob["model"])
    return model.to(device).eval()
