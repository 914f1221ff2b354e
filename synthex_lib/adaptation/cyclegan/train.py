"""Training of a CycleGAN between unpaired images of two domains (Zhu et al., ICCV 2017).

``A`` is the source domain (simulated images), ``B`` the target (real images of the training specimens);
``g_ab`` translates A to B, ``g_ba`` B to A, ``d_a`` and ``d_b`` are the PatchGAN discriminators. One step, as
Zhu et al. section 3-4:

1. generators (discriminators fixed): least-squares GAN losses ``(d_b(g_ab(a)) - 1)^2`` and
   ``(d_a(g_ba(b)) - 1)^2``, cycle losses ``cycle_weight * |g_ba(g_ab(a)) - a|_1`` (and for ``b``), identity losses
   ``identity_fraction * cycle_weight * |g_ab(b) - b|_1`` (and ``|g_ba(a) - a|_1``); one Adam step on both;
2. discriminators: ``0.5 * [(d(real) - 1)^2 + d(fake)^2]`` with the fakes drawn from a pool of the last
   ``pool_size`` generated images (each new one replaces a stored one, returned instead, with probability 0.5).

Images are standardised per image (zero mean, unit sd: :func:`~synthex_lib.adaptation.data.standardize`), so
any scale of line integrals trains the same CycleGAN; the generators work in those units. An epoch is
``max(N_A, N_B)`` images of each domain in a seeded order (Zhu et al.'s unaligned epoch), with seeded random
crops (``crop_px``) and horizontal flips; the learning rate is constant for ``epochs`` epochs and then falls
linearly to zero over ``decay_epochs``. The checkpoint is written atomically after every epoch; a killed run
resumes from it and ends with the same bytes as an uninterrupted one (on the CPU, same ``cpu_threads``).
Every draw comes from ``seeded_rng(seed, "cyclegan", purpose, epoch)``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from synthex_lib import __version__
from synthex_lib.adaptation.config import CycleGANConfig
from synthex_lib.adaptation.cyclegan.networks import PatchDiscriminator, ResnetGenerator, lsgan_loss
from synthex_lib.adaptation.data import DomainImages, as_domain_images, check_excluded, standardize
from synthex_lib.adaptation.runs import (
    FaultInjector,
    epoch_order,
    load_run_checkpoint,
    save_checkpoint,
    torch_generator,
    write_record,
)
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.learning.device import cpu_threads, resolve_device

#: file names in a run's ``out_dir``
CHECKPOINT = "cyclegan.pt"
RECORD = "cyclegan.json"
#: the checkpoint key that marks a CycleGAN checkpoint of this library (and its format version)
KIND = "cyclegan"
FORMAT = 1


class ImagePool:
    """Zhu et al.'s history of generated images (after Shrivastava et al., CVPR 2017): until ``size`` images are
    stored each new one is stored and returned; then, with probability 0.5, a stored image chosen at random is
    returned and replaced by the new one, else the new one is returned. Draws from the generator passed in."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.images: list[torch.Tensor] = []

    def query(self, batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.size == 0:
            return batch
        out = []
        for img in batch.detach():
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif rng.random() < 0.5:
                k = int(rng.integers(self.size))
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.stack(out)

    def state(self) -> list[torch.Tensor]:
        return [t.cpu() for t in self.images]

    def load(self, images: Sequence[torch.Tensor], device: torch.device) -> None:
        self.images = [t.to(device) for t in images]


def lr_factor(epoch: int, config: CycleGANConfig) -> float:
    """Learning-rate multiplier of 0-based ``epoch``: 1 for the first ``epochs``, then falling linearly by
    ``1 / (decay_epochs + 1)`` per epoch (Zhu et al.: constant, then linear decay to zero)."""
    return 1.0 - max(0, epoch + 1 - config.epochs) / (config.decay_epochs + 1)


def augment(z: torch.Tensor, idx: np.ndarray, rng: np.random.Generator, config: CycleGANConfig) -> torch.Tensor:
    """The training batch of images ``idx`` of ``z`` [N, 1, H, W]: a random ``crop_px`` square of each (when set)
    and a horizontal flip with probability 0.5 (when ``flip``)."""
    out = []
    h, w = z.shape[-2:]
    c = config.crop_px
    for i in idx.tolist():
        img = z[i]
        if c:
            y0, x0 = int(rng.integers(h - c + 1)), int(rng.integers(w - c + 1))
            img = img[:, y0:y0 + c, x0:x0 + c]
        if config.flip and rng.random() < 0.5:
            img = img.flip(-1)
        out.append(img)
    return torch.stack(out)


class CycleGAN:
    """The four networks of one CycleGAN and their optimisers (generators and discriminators each share one
    Adam, as Zhu et al.)."""

    def __init__(self, config: CycleGANConfig, seed: int, device: torch.device) -> None:
        c = config
        self.g_ab = ResnetGenerator(c.ngf, c.n_blocks, c.n_downsampling, c.output_range,
                                    torch_generator(seed, KIND, "init", "g_ab")).to(device)
        self.g_ba = ResnetGenerator(c.ngf, c.n_blocks, c.n_downsampling, c.output_range,
                                    torch_generator(seed, KIND, "init", "g_ba")).to(device)
        self.d_a = PatchDiscriminator(c.ndf, c.n_layers_d, torch_generator(seed, KIND, "init", "d_a")).to(device)
        self.d_b = PatchDiscriminator(c.ndf, c.n_layers_d, torch_generator(seed, KIND, "init", "d_b")).to(device)
        betas = (c.beta1, c.beta2)
        self.opt_g = torch.optim.Adam([*self.g_ab.parameters(), *self.g_ba.parameters()], lr=c.lr, betas=betas)
        self.opt_d = torch.optim.Adam([*self.d_a.parameters(), *self.d_b.parameters()], lr=c.lr, betas=betas)
        self.pool_a, self.pool_b = ImagePool(c.pool_size), ImagePool(c.pool_size)

    def state_dicts(self) -> dict[str, Any]:
        return {"g_ab": self.g_ab.state_dict(), "g_ba": self.g_ba.state_dict(), "d_a": self.d_a.state_dict(),
                "d_b": self.d_b.state_dict(), "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "pool_a": self.pool_a.state(), "pool_b": self.pool_b.state()}

    def load(self, blob: dict[str, Any], device: torch.device) -> None:
        for name in ("g_ab", "g_ba", "d_a", "d_b", "opt_g", "opt_d"):
            getattr(self, name).load_state_dict(blob[name])
        self.pool_a.load(blob["pool_a"], device)
        self.pool_b.load(blob["pool_b"], device)

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            for group in opt.param_groups:
                group["lr"] = lr

    def step(self, real_a: torch.Tensor, real_b: torch.Tensor, config: CycleGANConfig,
             pool_rng: np.random.Generator) -> dict[str, float]:
        """One generator and one discriminator update; returns the loss parts (floats)."""
        lam = config.cycle_weight
        lam_id = config.identity_fraction * lam
        for d in (self.d_a, self.d_b):
            d.requires_grad_(False)
        fake_b = self.g_ab(real_a)
        rec_a = self.g_ba(fake_b)
        fake_a = self.g_ba(real_b)
        rec_b = self.g_ab(fake_a)
        gan = lsgan_loss(self.d_b(fake_b), True) + lsgan_loss(self.d_a(fake_a), True)
        cyc_a, cyc_b = F.l1_loss(rec_a, real_a), F.l1_loss(rec_b, real_b)
        loss_g = gan + lam * (cyc_a + cyc_b)
        idt = torch.zeros(())
        if lam_id > 0:
            idt = F.l1_loss(self.g_ab(real_b), real_b) + F.l1_loss(self.g_ba(real_a), real_a)
            loss_g = loss_g + lam_id * idt
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        for d in (self.d_a, self.d_b):
            d.requires_grad_(True)
        pooled_b = self.pool_b.query(fake_b, pool_rng)
        pooled_a = self.pool_a.query(fake_a, pool_rng)
        loss_d_b = 0.5 * (lsgan_loss(self.d_b(real_b), True) + lsgan_loss(self.d_b(pooled_b), False))
        loss_d_a = 0.5 * (lsgan_loss(self.d_a(real_a), True) + lsgan_loss(self.d_a(pooled_a), False))
        self.opt_d.zero_grad(set_to_none=True)
        (loss_d_a + loss_d_b).backward()
        self.opt_d.step()
        return {"loss_g": float(loss_g.detach()), "gan_g": float(gan.detach()), "loss_d": float(
            (loss_d_a + loss_d_b).detach()), "cycle": float((cyc_a + cyc_b).detach()) / 2,
                "identity": float(idt.detach()) / 2}


def _identity(config: CycleGANConfig, seed: int, a: DomainImages, b: DomainImages) -> dict[str, Any]:
    return {"config": config.to_dict(), "seed": int(seed), "source": a.summary(), "target": b.summary(),
            "format": FORMAT}


def train_cyclegan(source_images: DomainImages | np.ndarray, target_images: DomainImages | np.ndarray,
                   config: CycleGANConfig, out_dir: str | os.PathLike[str], seed: int = 0, progress: bool = True, *,
                   held_out: str | Sequence[str] | None = None, device: str | torch.device = "cpu") -> Path:
    """Train a CycleGAN from unpaired source (A, simulated) and target (B, real) images; returns the checkpoint.

    Args:
        source_images, target_images: float [N, H, W] line integrals of any scale (standardised per image
            here), as :class:`~synthex_lib.adaptation.data.DomainImages` (the groups of the images are checked
            and recorded) or bare arrays (groups unknown). The two domains may differ in N and size.
        config: the sizes and schedule (:func:`~synthex_lib.adaptation.config.cyclegan_config`).
        out_dir: where the checkpoint ``cyclegan.pt`` (every epoch, atomic; the run resumes from it) and the
            record ``cyclegan.json`` (groups seen, history, wall time) go.
        seed: every weight and draw depends on it only.
        held_out: the test specimen group(s): any image of them, or images of unknown groups, raise
            :class:`~synthex_lib.adaptation.data.HeldOutLeak` before training.
        device: ``cpu`` (bit-reproducible), ``cuda[:N]`` or ``auto``.
    """
    if not isinstance(config, CycleGANConfig):
        raise ConfigError(f"parameter 'config' must be a CycleGANConfig, got {type(config).__name__}")
    config.validate()
    a = as_domain_images(source_images, "source_images")
    b = as_domain_images(target_images, "target_images")
    check_excluded(a, held_out, "source_images")
    check_excluded(b, held_out, "target_images")
    for name, d in (("source_images", a), ("target_images", b)):
        if config.crop_px and min(d.images.shape[1:]) < config.crop_px:
            raise ConfigError(f"parameter 'crop_px' ({config.crop_px}) exceeds the size of '{name}' "
                              f"{tuple(d.images.shape[1:])}")
        if min(d.images.shape[1:]) < 2 ** (config.n_layers_d + 1):
            raise ConfigError(f"parameter '{name}': images of {tuple(d.images.shape[1:])} px are too small for "
                              f"a PatchGAN of n_layers_d={config.n_layers_d}")
    dev = resolve_device(device)
    with cpu_threads(config.cpu_threads if dev.type == "cpu" else torch.get_num_threads()):
        return _train(a, b, config, Path(out_dir), int(seed), progress, dev)


def _train(a: DomainImages, b: DomainImages, config: CycleGANConfig, out: Path, seed: int, progress: bool,
           dev: torch.device) -> Path:
    ckpt = out / CHECKPOINT
    identity = _identity(config, seed, a, b)
    net = CycleGAN(config, seed, dev)
    state: dict[str, Any] = {"epoch": 0, "step": 0, "history": []}
    if ckpt.exists():
        blob = load_run_checkpoint(ckpt, KIND, identity, dev)
        net.load(blob, dev)
        state = blob["state"]
    za = standardize(torch.from_numpy(a.images)[:, None])[0].to(dev)
    zb = standardize(torch.from_numpy(b.images)[:, None])[0].to(dev)
    total_epochs = config.epochs + config.decay_epochs
    steps = math.ceil(max(len(a), len(b)) / config.batch_size)
    length = steps * config.batch_size
    faults = FaultInjector()
    started = time.perf_counter()
    bar = tqdm(total=total_epochs * steps, initial=state["step"], desc="cyclegan", disable=not progress, leave=False)
    while state["epoch"] < total_epochs:
        e = state["epoch"]
        lr = config.lr * lr_factor(e, config)
        net.set_lr(lr)
        order_a = epoch_order(seeded_rng(seed, KIND, "order-a", e), len(a), length)
        order_b = epoch_order(seeded_rng(seed, KIND, "order-b", e), len(b), length)
        aug_rng, pool_rng = seeded_rng(seed, KIND, "augment", e), seeded_rng(seed, KIND, "pool", e)
        sums: dict[str, float] = {}
        for k in range(steps):
            sl = slice(k * config.batch_size, (k + 1) * config.batch_size)
            real_a = augment(za, order_a[sl], aug_rng, config)
            real_b = augment(zb, order_b[sl], aug_rng, config)
            parts = net.step(real_a, real_b, config, pool_rng)
            for key, v in parts.items():
                sums[key] = sums.get(key, 0.0) + v
            state["step"] += 1
            bar.update(1)
            bar.set_postfix(epoch=e, cycle=f"{parts['cycle']:.3f}")
            faults.tick()
        state["epoch"] += 1
        state["history"].append({"epoch": state["epoch"], "step": state["step"], "lr": lr,
                                 **{key: v / steps for key, v in sums.items()}})
        save_checkpoint(ckpt, {**net.state_dicts(), "state": state, KIND: {"identity": identity},
                               "synthex_version": __version__})
    bar.close()
    write_record(out / RECORD, {"method": KIND, "identity": identity, "groups_seen": {
        "source": a.group_set(), "target": b.group_set()}, "origins": {"source": a.origin, "target": b.origin},
        "history": state["history"],
        "wall_s_last_call": time.perf_counter() - started, "checkpoint": str(ckpt)})
    return ckpt
