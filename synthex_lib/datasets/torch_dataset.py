"""Torch datasets over the HDF5 layout of :mod:`synthex_lib.datasets.layout`.

Samples are dicts: ``image`` float32 [1, H, W] (log domain, as stored), ``labels`` int64 [H, W],
``landmarks`` float32 [L, 2] (x = col, y = row), ``visible`` bool [L], ``index`` int64 (position in
the dataset, which seeds per-sample domain randomization), ``group`` str. When ``image_size``
differs from the stored size, images are resized (bilinear), labels by nearest neighbour, and
landmarks scaled with the pixel-centre convention ``x' = (x + 0.5) s - 0.5``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from synthex_lib.datasets.layout import SpecimenImages, read_group


class ImageDataset(Dataset):
    """All images of the given specimen groups of one HDF5 file, held in memory."""

    def __init__(self, path: str | os.PathLike[str], groups: Sequence[str], image_size: int | None = None,
                 label_file: str | os.PathLike[str] | None = None) -> None:
        self.path = str(path)
        self.groups = list(groups)
        parts: list[SpecimenImages] = [read_group(path, g, label_file=label_file) for g in self.groups]
        self.images = np.concatenate([p.projs for p in parts]).astype(np.float32)
        self.labels = np.concatenate([p.segs for p in parts]).astype(np.int64)
        self.landmarks = np.concatenate([p.landmarks_xy for p in parts]).astype(np.float32)
        self.visible = np.concatenate([p.visibility() for p in parts])
        self.group_of = np.concatenate([[g] * len(p.projs) for g, p in zip(self.groups, parts, strict=True)])
        self.stored_size = self.images.shape[1:]
        self.image_size = image_size
        if image_size is not None and tuple(self.stored_size) != (image_size, image_size):
            self._resize(image_size)

    def _resize(self, size: int) -> None:
        h, w = self.stored_size
        img = torch.from_numpy(self.images)[:, None]
        self.images = F.interpolate(img, size=(size, size), mode="bilinear", align_corners=False)[:, 0].numpy()
        lab = torch.from_numpy(self.labels)[:, None].float()
        self.labels = F.interpolate(lab, size=(size, size), mode="nearest")[:, 0].long().numpy()
        scale = np.array([size / w, size / h], dtype=np.float32)
        self.landmarks = (self.landmarks + 0.5) * scale - 0.5
        inside = (self.landmarks >= 0).all(-1) & (self.landmarks <= size - 1).all(-1)
        self.visible = self.visible & inside

    @property
    def scale(self) -> float:
        """Stored pixels per network pixel (1 when not resized)."""
        return self.stored_size[1] / (self.image_size or self.stored_size[1])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        return {
            "image": torch.from_numpy(self.images[i][None].copy()),
            "labels": torch.from_numpy(self.labels[i].copy()),
            "landmarks": torch.from_numpy(self.landmarks[i].copy()),
            "visible": torch.from_numpy(self.visible[i].copy()),
            "index": torch.tensor(i, dtype=torch.int64),
            "group": str(self.group_of[i]),
        }
