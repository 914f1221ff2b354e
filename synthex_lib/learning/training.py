"""Training and evaluation of the multi-task network (segmentation + landmark heatmaps).

The recipe follows the paper's Methods and the official code: SGD with Nesterov momentum (Adam on
the CPU profiles, see :mod:`synthex_lib.core.config`),
learning rate halved every ``lr_step_epochs`` epochs (for at most ``epochs``; with ``min_epochs`` the run stops
at the first epoch from ``min_epochs`` on at which its convergence criterion holds), batch of ``batch_size``, domain
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
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from synthex_lib.core import paths
from synthex_lib.core.config import Profile, TrainConfig, get_profile
from synthex_lib.core.constants import HIP_LANDMARKS, HIP_NUM_CLASSES
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.learning.device import autocast_for, cpu_threads, resolve_device
from synthex_lib.learning.inputs import pad_to_multiple, zscore
from synthex_lib.learning.losses import multitask_loss
from synthex_lib.learning.models import MultiTaskUNet, build_model
from synthex_lib.randomization import DomainRandomization
from synthex_lib.randomization.presets import REFERENCE_PX
from synthex_lib.simulate.labels import gaussian_heatmaps


def _collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in samples[0]:
        vals = [s[k] for s in samples]
        out[k] = torch.stack(vals) if isinstance(vals[0], torch.Tensor) else vals
    return out


def make_randomizer(preset: str | dict, seed: int, image_px: int | None = None,
                    reference_px: int | None = None) -> DomainRandomization:
    """Domain randomization from a preset name, a config dict, YAML text or a ``.yaml``/``.json`` file (the
    forms ``synthex dr check`` accepts; see :mod:`synthex_lib.randomization`). With ``image_px`` its pixel
    lengths, written for ``reference_px`` images (default: the presets' 360 px), are scaled to ``image_px``
    (:meth:`~synthex_lib.randomization.DomainRandomization.at_resolution`)."""
    dr = DomainRandomization.from_spec(preset, seed=seed)
    if image_px is None:
        return dr
    return dr.at_resolution(image_px, reference_px or REFERENCE_PX)


#: the convergence criterion (recorded per run): over the last fifth of the epochs the validation loss
#: improved by less than this fraction of its total improvement (from the untrained network to the best epoch)
CONVERGENCE_TAIL = 0.2
CONVERGENCE_FRACTION = 0.02


@dataclass
class TrainState:
    """Where a run stands: epochs and optimizer steps done, one history entry per epoch (training loss
    parts, learning rate, and ``val_loss`` when a validation set is given; the first entry also holds
    ``initial_val_loss``, the validation loss of the untrained network), and the best validation epoch."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = float("inf")


def convergence(history: list[dict[str, float]], key: str = "val_loss", tail: float = CONVERGENCE_TAIL,
                fraction: float = CONVERGENCE_FRACTION) -> dict[str, Any]:
    """Did a run converge? Over the last ``tail`` of the epochs, the best ``key`` improved by less than
    ``fraction`` of its total improvement: from the untrained network (the first entry's ``initial_<key>``)
    to the best epoch, so that the criterion does not depend on how much an epoch learns (a task that learns
    most of what it can in its first epoch would otherwise be judged against the small rest). Without
    ``initial_<key>`` (histories written before it was recorded) the total runs from the first epoch. Falls
    back to the training ``loss`` when the history has no ``key``. Returns ``converged``, ``tail_improvement``
    (as a fraction of the total), the key used, the baseline and the number of epochs; a run of fewer than 5
    epochs, or one that never improved, is not converged."""
    if history and key not in history[0]:
        key = "loss"
    v = np.array([h[key] for h in history], float)
    start = float(history[0].get(f"initial_{key}", np.nan)) if history else float("nan")
    baseline = "the untrained network" if np.isfinite(start) else "the first epoch"
    out: dict[str, Any] = {"criterion": f"{key}: last {tail:.0%} of epochs improved < {fraction:.0%} of the total "
                                        f"(from {baseline})",
                           "key": key, "epochs": int(v.size), "converged": False, "tail_improvement": float("nan"),
                           "baseline": baseline}
    if v.size < 5 or not np.isfinite(v).all():
        return out
    k = max(1, int(np.ceil(tail * v.size)))
    total = float((start if np.isfinite(start) else v[0]) - v.min())
    if total <= 0:
        return out
    tail_gain = float(max(0.0, v[:-k].min() - v.min()))
    out["tail_improvement"] = tail_gain / total
    out["converged"] = bool(tail_gain < fraction * total)
    return out


def stopped_converged(history: list[dict[str, float]], min_epochs: int) -> bool:
    """Whether a run that stops once converged (``min_epochs`` > 0) is done: at least ``min_epochs`` epochs, with
    validation losses, and the convergence criterion met (:func:`convergence`)."""
    if not min_epochs or len(history) < min_epochs or "val_loss" not in history[-1]:
        return False
    return bool(convergence(history)["converged"])


def make_optimizer(parameters: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser of ``cfg``: Adam, or SGD with Nesterov momentum (the paper's), with weight decay. The
    multi-tensor (``foreach``) implementation updates all parameters in a few vectorised calls: on the quick
    U-Net's 150-odd small tensors the per-tensor loop was 6 % of a training step (py-spy)."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=cfg.lr, weight_decay=cfg.weight_decay, foreach=True)
    return torch.optim.SGD(parameters, lr=cfg.lr, momentum=cfg.momentum, nesterov=True,
                           weight_decay=cfg.weight_decay, foreach=True)


def lr_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-epoch learning-rate schedule of ``cfg.lr_schedule``: ``step`` (times ``lr_gamma`` every
    ``lr_step_epochs`` epochs, the paper's) or ``cosine`` (from ``lr`` down to 0 at epoch ``epochs``)."""
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=0.0)
    return torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)


def _loader(ds: Dataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, generator=gen, collate_fn=_collate, num_workers=0)


@torch.no_grad()
def validation_loss(model: MultiTaskUNet, val_ds: Dataset, sigma: float, batch_size: int,
                    device: torch.device) -> float:
    """Mean loss on ``val_ds`` without randomization, in evaluation mode."""
    model.eval()
    total, n = 0.0, 0
    for batch in _loader(val_ds, batch_size, False, 0):
        loss, _ = _loss_on_batch(model, batch, sigma, device)
        total += float(loss) * len(batch["image"])
        n += len(batch["image"])
    return total / max(n, 1)


def train_multitask(train_ds: Dataset, profile: Profile, *, seed: int = 0, dr_preset: str | dict = "regular",
                    num_classes: int = HIP_NUM_CLASSES, num_landmarks: int = len(HIP_LANDMARKS),
                    checkpoint: str | os.PathLike[str] | None = None, progress: bool = True,
                    device: str | torch.device | None = "auto", val_ds: Dataset | None = None
                    ) -> tuple[MultiTaskUNet, TrainState]:
    """Train a multi-task U-Net on ``train_ds``; resume from ``checkpoint`` if it exists.

    With ``val_ds`` the validation loss is computed after every epoch and the returned model carries the
    weights of the best validation epoch (model selection, as the paper's validation split); without it,
    the last epoch's. ``device``: ``auto`` (CUDA when present), ``cpu`` or ``cuda[:N]``; GPUs train in mixed
    precision. On the CPU the same seed gives the same bytes.
    """
    if len(train_ds) == 0:
        raise ConfigError("the training set is empty: check the dataset and the held-out specimen")
    dev = resolve_device(device)
    cfg = profile.train
    with cpu_threads(cfg.cpu_threads if dev.type == "cpu" else torch.get_num_threads()):
        return _train(train_ds, profile, seed, dr_preset, num_classes, num_landmarks, checkpoint, progress, dev,
                      val_ds)


def _train(train_ds: Dataset, profile: Profile, seed: int, dr_preset: str | dict, num_classes: int,
           num_landmarks: int, checkpoint: str | os.PathLike[str] | None, progress: bool, dev: torch.device,
           val_ds: Dataset | None) -> tuple[MultiTaskUNet, TrainState]:
    cfg = profile.train
    torch.manual_seed(seed)
    model = build_model(num_classes, num_landmarks, cfg.unet_channels, network=cfg.network).to(dev)
    opt = make_optimizer(model.parameters(), cfg)
    sched = lr_scheduler(opt, cfg)
    scaler = torch.amp.GradScaler("cuda", enabled=dev.type == "cuda" and not torch.cuda.is_bf16_supported())
    state = TrainState()
    best: dict[str, torch.Tensor] | None = None
    ckpt = Path(checkpoint) if checkpoint else None
    if ckpt is not None and ckpt.exists():
        blob = load_checkpoint(ckpt, dev)
        model.load_state_dict(blob["model"])
        opt.load_state_dict(blob["optimizer"])
        sched.load_state_dict(blob["scheduler"])
        state = TrainState(**blob["state"])
        best = blob.get("best")
    dr = make_randomizer(dr_preset, seed, cfg.image_size, cfg.dr_reference_px)
    sigma = cfg.heatmap_sigma_px
    total = cfg.epochs * math.ceil(len(train_ds) / cfg.batch_size)
    if cfg.max_iterations:
        total = min(total, cfg.max_iterations)
    bar = tqdm(total=total, initial=min(state.step, total), desc="train", disable=not progress, leave=False)
    initial = None  # the untrained network's validation loss: the baseline of the convergence criterion
    if state.epoch == 0 and val_ds is not None and len(val_ds):
        initial = validation_loss(model, val_ds, sigma, cfg.batch_size, dev)
    while state.epoch < cfg.epochs and not (cfg.max_iterations and state.step >= cfg.max_iterations) \
            and not stopped_converged(state.history, cfg.min_epochs):
        model.train()
        sums: dict[str, float] = {}
        n = 0
        for batch in _loader(train_ds, cfg.batch_size, True, seed * 1_000_003 + state.epoch):
            if cfg.max_iterations and state.step >= cfg.max_iterations:
                break
            b = dr({"image": batch["image"], "labels": batch["labels"], "landmarks": batch["landmarks"],
                    "visible": batch["visible"], "index": batch["index"], "epoch": state.epoch})
            loss, parts = _loss_on_batch(model, b, sigma, dev, cfg.cpu_precision)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            state.step += 1
            n += 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(epoch=state.epoch, loss=f"{parts['loss']:.3f}")
        sched.step()
        state.epoch += 1
        entry = {"epoch": state.epoch, "step": state.step, "lr": opt.param_groups[0]["lr"],
                 **{k: v / max(n, 1) for k, v in sums.items()}}
        if state.epoch == 1 and initial is not None:
            entry["initial_val_loss"] = initial
        if val_ds is not None and len(val_ds):
            entry["val_loss"] = validation_loss(model, val_ds, sigma, cfg.batch_size, dev)
            if entry["val_loss"] < state.best_val_loss:
                state.best_val_loss, state.best_epoch = entry["val_loss"], state.epoch
                best = {k: v.detach().clone() for k, v in model.state_dict().items()}
        state.history.append(entry)
        if ckpt is not None:
            _save_checkpoint(ckpt, model, opt, sched, state, best)
    bar.close()
    if best is not None:
        model.load_state_dict(best)
    return model, state


def _loss_on_batch(model: MultiTaskUNet, b: dict[str, torch.Tensor], sigma: float, device: torch.device,
                   cpu_precision: str = "float32"):
    """The multi-task loss of a batch: the forward pass in the device's precision (:func:`autocast_for`), the
    loss in float32."""
    image = zscore(b["image"].float()).to(device)
    h, w = image.shape[-2:]
    heat = gaussian_heatmaps(b["landmarks"].to(device), (w, h), sigma, visible=b["visible"].to(device))
    image, _ = pad_to_multiple(image, model.size_multiple)
    labels = F.pad(b["labels"].to(device), (0, image.shape[-1] - w, 0, image.shape[-2] - h))
    heat = F.pad(heat, (0, image.shape[-1] - w, 0, image.shape[-2] - h))
    mask: torch.Tensor | None = None
    if image.shape[-2:] != (h, w):  # padded: the loss sees the image's pixels only
        mask = torch.zeros(labels.shape, device=device)
        mask[:, :h, :w] = 1
    with autocast_for(device, cpu_precision):
        out = model(image)
    out = {k: v.float() for k, v in out.items()}
    return multitask_loss(out, labels, heat, b["visible"].to(device), mask)


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """A training checkpoint; a truncated or foreign file raises one :class:`DataError` line naming it."""
    try:
        blob = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: truncated or corrupted checkpoint ({str(exc).splitlines()[0][:120]}); "
                        "delete it to train the run again") from None
    if not isinstance(blob, dict) or "model" not in blob or "state" not in blob:
        raise DataError(f"{path}: not a checkpoint of this library; delete it to train the run again")
    return blob


def _save_checkpoint(path: Path, model, opt, sched, state: TrainState, best: dict[str, torch.Tensor] | None) -> None:
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "state": state.__dict__, "best": best}, buf)
    paths.atomic_write_bytes(path, buf.getvalue())


def load_trained_model(checkpoint: str | os.PathLike[str], profile: Profile | str, num_classes: int = HIP_NUM_CLASSES,
                       num_landmarks: int = len(HIP_LANDMARKS), device: str = "cpu") -> MultiTaskUNet:
    profile = get_profile(profile)
    model = build_model(num_classes, num_landmarks, profile.train.unet_channels, network=profile.train.network,
                        pretrained=False)  # the checkpoint holds every weight
    blob = load_checkpoint(checkpoint, device)
    model.load_state_dict(blob.get("best") or blob["model"])  # the selected (best validation) weights
    return model.to(device).eval()
