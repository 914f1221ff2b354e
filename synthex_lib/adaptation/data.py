"""The images the adaptation methods see: unlabelled images with the specimen group of each, the collector of
the real training images (which refuses the held-out specimen), and the per-image standardisation.

The paper (Gao et al., Nat. Mach. Intell. 2023, Methods "Domain adaptation"): "We strictly enforced the data
split used during task-model training so that images from the test set were excluded during both CycleGAN
and task network training." Every image reaching :func:`~synthex_lib.adaptation.cyclegan.train.train_cyclegan`
or :func:`~synthex_lib.adaptation.adda.train_adda` therefore carries its group, the runs check the held-out
group against them and record the groups they saw.

Images are float32 ``[N, H, W]`` line integrals (log domain, bone bright), on any scale: the methods work on
per-image standardised images (zero mean, unit standard deviation, as the task network's inputs:
:func:`synthex_lib.learning.inputs.zscore`), so a gain or offset of a whole image is invisible to them.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.datasets.layout import list_groups
from synthex_lib.datasets.torch_dataset import ImageDataset

#: the group recorded for images given as a bare array (their specimens are unknown)
UNKNOWN_GROUP = "?"
#: added to the standard deviation, as :func:`synthex_lib.learning.inputs.zscore`
STD_EPS = 1e-6


class HeldOutLeak(ConfigError):  # noqa: N818 (a ConfigError: the caller passed the test specimen)
    """Images of the held-out (test) specimen were about to reach a domain-adaptation method."""


@dataclass(frozen=True)
class DomainImages:
    """Unlabelled images of one domain: ``images`` float32 [N, H, W] (log domain), ``groups`` str [N] (the
    specimen group of each image) and ``origin`` (the file they were read from, or ``"array"``)."""

    images: np.ndarray
    groups: np.ndarray
    origin: str = "array"

    def __len__(self) -> int:
        return len(self.images)

    def group_set(self) -> list[str]:
        """The distinct groups, sorted."""
        return sorted({str(g) for g in self.groups.tolist()})

    def summary(self) -> dict[str, Any]:
        """What identifies the images of a run: count, shape, groups and the sha256 of the pixels (not where they
        were read from: moving a data folder does not change a run)."""
        return {"n": len(self), "shape": list(self.images.shape[1:]), "groups": self.group_set(),
                "sha256": array_digest(self.images)}


def array_digest(a: np.ndarray) -> str:
    """sha256 (hex) of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def as_domain_images(x: DomainImages | np.ndarray, name: str) -> DomainImages:
    """``x`` as checked :class:`DomainImages` (a bare array gets the group :data:`UNKNOWN_GROUP`); raises
    :class:`ConfigError` naming ``name`` unless the images are a non-empty finite [N, H, W] array."""
    if isinstance(x, DomainImages):
        images, groups, origin = x.images, np.asarray(x.groups).astype(str), x.origin
    else:
        images, groups, origin = x, None, "array"
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[0] == 0 or min(images.shape[1:]) < 1:
        raise ConfigError(f"parameter '{name}' must be a non-empty float array [N, H, W], got shape {images.shape}")
    if not np.issubdtype(images.dtype, np.number) or not np.isfinite(images).all():
        raise ConfigError(f"parameter '{name}' must hold finite numbers (found NaN, inf or a non-numeric dtype)")
    images = images.astype(np.float32, copy=False)
    if groups is None:
        groups = np.full(len(images), UNKNOWN_GROUP)
    if groups.shape != (len(images),):
        raise ConfigError(f"parameter '{name}': {groups.shape} groups for {len(images)} images (one per image)")
    return DomainImages(images, groups, origin)


def check_excluded(images: DomainImages, held_out: str | Sequence[str] | None, name: str) -> None:
    """Raise :class:`HeldOutLeak` if any image of ``images`` belongs to a held-out group, or if the groups are
    unknown while a held-out group is named (a bare array cannot be checked)."""
    check_groups(images.groups.tolist(), held_out, name)


def check_groups(groups: Iterable[Any], held_out: str | Sequence[str] | None, name: str) -> None:
    """:func:`check_excluded` of the groups of some images (one entry per image, or the distinct ones)."""
    if held_out is None:
        return
    banned = {held_out} if isinstance(held_out, str) else {str(g) for g in held_out}
    seen = {str(g) for g in groups}
    leak = sorted(seen & banned)
    if leak:
        raise HeldOutLeak(f"parameter '{name}' holds images of the held-out group(s) {leak}: the test specimen "
                          "must never reach a domain-adaptation method; exclude it from the images")
    if UNKNOWN_GROUP in seen:
        raise HeldOutLeak(f"parameter '{name}' has images of unknown groups, so the held-out group "
                          f"{sorted(banned)} cannot be checked: pass DomainImages (unlabelled_training_images)")


def unlabelled_training_images(path: str | os.PathLike[str], held_out: str | Sequence[str],
                               groups: Sequence[str] | None = None, image_size: int | None = None) -> DomainImages:
    """The unlabelled images of the training specimens of one HDF5 file (e.g. ``real.h5`` of the controlled
    dataset), as the adaptation methods see them.

    Args:
        path: an HDF5 file in the layout of :mod:`synthex_lib.datasets.layout`.
        held_out: the test specimen group(s) of the fold. It must be a group of the file, and it must not be
            in ``groups``: naming it there raises :class:`HeldOutLeak` (the assertion that keeps the test
            specimen out of CycleGAN and ADDA).
        groups: the groups to read (default: every group of the file but the held-out ones).
        image_size: resize to this many px per side as the task network's datasets do (bilinear), or None.
    """
    banned = [held_out] if isinstance(held_out, str) else [str(g) for g in held_out]
    present = list_groups(path)
    missing = [g for g in banned if g not in present]
    if not banned or missing:
        raise ConfigError(f"parameter 'held_out' must name group(s) of {path} (present: {present}), got "
                          f"{held_out!r}")
    chosen = [g for g in present if g not in banned] if groups is None else [str(g) for g in groups]
    leak = sorted(set(chosen) & set(banned))
    if leak:
        raise HeldOutLeak(f"parameter 'groups' includes the held-out group(s) {leak} of {path}: the test "
                          "specimen must never reach a domain-adaptation method; remove it from 'groups'")
    absent = [g for g in chosen if g not in present]
    if absent or not chosen:
        raise ConfigError(f"parameter 'groups' must name groups of {path} (present: {present}), got {chosen}")
    ds = ImageDataset(path, chosen, image_size=image_size)
    out = DomainImages(ds.images.astype(np.float32), ds.group_of.astype(str), str(path))
    if set(out.group_set()) & set(banned):  # the reader must have honoured the split
        raise DataError(f"{path}: the reader returned images of the held-out group(s) {banned}")
    return out


def standardize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image z-scoring of ``[B, 1, H, W]`` (mean and unbiased sd over each image, sd + :data:`STD_EPS`, as
    :func:`synthex_lib.learning.inputs.zscore`); returns ``(z, mean, sd)``, ``mean`` and ``sd`` ``[B, 1, 1, 1]``."""
    m = x.mean(dim=(1, 2, 3), keepdim=True)
    s = x.std(dim=(1, 2, 3), keepdim=True) + STD_EPS
    return (x - m) / s, m, s


def destandardize(z: torch.Tensor, mean: torch.Tensor, sd: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`standardize`: ``z * sd + mean``."""
    return z * sd + mean
