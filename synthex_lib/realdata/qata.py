"""QaTa-COV19 chest X-rays with COVID-19 infection masks (Degerli et al. 2021).

Three layouts are recognised under the dataset folder (``paths.real_dir("qata-cov19")`` by
default), at any depth below it:

* ``v1``: ``QaTa-COV19-v1/Images/<name>.png`` and ``QaTa-COV19-v1/Ground-truths/mask_<name>.png``;
  images without a mask are listed by :attr:`QaTaCOV19.unmasked` and left out of the pairs
  (2,951 of 4,603 have masks);
* ``v2``: ``QaTa-COV19-v2/{Train Set,Test Set}/{Images,Ground-truths}`` with the same naming;
* ``folds``: the SyntheX re-split ``Fold{1..5}/{train,valid,test}/{proj,seg}/NNNNN.png``.

Images load as float32 in [0, 1] (8-bit / 255; colour PNGs averaged to grey), masks as uint8
{0, 1} (any value >= half the mask's type maximum is lesion). The network input of the paper is
224 x 224; :meth:`QaTaCOV19.arrays` resizes with antialiased bilinear interpolation (images) and nearest neighbour
(masks) when ``size`` is given.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from synthex_lib.core import paths
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.datasets.layout import H5_LIBVER, SpecimenImages, write_group, write_landmark_names

SPLITS_V2 = ("Train Set", "Test Set")
FOLD_SPLITS = ("train", "valid", "test")


@dataclass(frozen=True)
class Pair:
    """One image with its mask; ``split`` is ``v1``, a v2 set name, or ``Fold<k>/<split>``."""

    image: Path
    mask: Path
    name: str
    split: str


class QaTaCOV19:
    """Index of a QaTa-COV19 folder (see the module docstring for the layouts).

    Raises :class:`DataError` naming the folder when no known layout is found, and naming the
    file for a mask without its image.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        root = Path(path) if path is not None else paths.real_dir("qata-cov19")
        if not root.is_dir():
            raise DataError(f"{root}: folder not found; run 'synthex data import qata-cov19 FILE.zip' "
                            "(see 'synthex data status qata-cov19') or pass the folder")
        self.root = root
        self.pairs: list[Pair] = []
        self.unmasked: list[Path] = []
        folds = sorted(root.glob("**/Fold[1-9]"))
        v1 = sorted(d for d in root.glob("**/QaTa-COV19-v1") if d.is_dir())
        v2 = sorted(d for d in root.glob("**/QaTa-COV19-v2") if d.is_dir())
        if folds:
            self.layout = "folds"
            for fold in folds:
                for split in FOLD_SPLITS:
                    d = fold / split
                    if d.is_dir():
                        self._index_numbered(d, f"{fold.name}/{split}")
        elif v1 or v2:
            self.layout = "v1" if v1 else "v2"
            if v1:
                self._index_named(v1[0], "v1")
            else:
                for s in SPLITS_V2:
                    if (v2[0] / s).is_dir():
                        self._index_named(v2[0] / s, s)
        elif (root / "Images").is_dir() and (root / "Ground-truths").is_dir():
            self.layout = "v1"
            self._index_named(root, "v1")
        else:
            raise DataError(f"{root}: no QaTa-COV19 layout found (expected QaTa-COV19-v1/Images + Ground-truths, "
                            "QaTa-COV19-v2/{Train Set,Test Set}/..., or Fold1..5/{train,valid,test}/{proj,seg})")
        if not self.pairs:
            raise DataError(f"{root}: the {self.layout} layout holds no image with a mask")

    def _index_named(self, d: Path, split: str) -> None:
        images, masks = d / "Images", d / "Ground-truths"
        if not images.is_dir() or not masks.is_dir():
            raise DataError(f"{d}: expected the folders 'Images' and 'Ground-truths'")
        by_name = {p.name: p for p in images.iterdir() if p.suffix.lower() == ".png"}
        seen = set()
        for m in sorted(masks.iterdir()):
            if m.suffix.lower() != ".png":
                continue
            if not m.name.startswith("mask_"):
                raise DataError(f"{m}: a ground-truth file must be named mask_<image name>")
            name = m.name[len("mask_"):]
            if name not in by_name:
                raise DataError(f"{m}: mask without its image {images / name}")
            self.pairs.append(Pair(by_name[name], m, Path(name).stem, split))
            seen.add(name)
        self.unmasked.extend(p for n, p in sorted(by_name.items()) if n not in seen)

    def _index_numbered(self, d: Path, split: str) -> None:
        proj, seg = d / "proj", d / "seg"
        if not proj.is_dir() or not seg.is_dir():
            raise DataError(f"{d}: expected the folders 'proj' and 'seg'")
        images = {p.name: p for p in proj.iterdir() if p.suffix.lower() == ".png"}
        for m in sorted(seg.iterdir()):
            if m.suffix.lower() != ".png":
                continue
            if m.name not in images:
                raise DataError(f"{m}: mask without its image {proj / m.name}")
            self.pairs.append(Pair(images[m.name], m, m.stem, split))
        self.unmasked.extend(p for n, p in sorted(images.items()) if not (seg / n).exists())

    @property
    def splits(self) -> list[str]:
        return sorted({p.split for p in self.pairs})

    def select(self, split: str | None = None, fold: int | None = None) -> list[Pair]:
        """Pairs of one split (``"train"``, ``"Test Set"``, ``"v1"`` ...) and/or fold (1-5, folds layout)."""
        out = self.pairs
        if fold is not None:
            if self.layout != "folds":
                raise ConfigError(f"parameter 'fold' needs the 5-fold layout; {self.root} has the {self.layout} layout")
            out = [p for p in out if p.split.split("/")[0] == f"Fold{fold}"]
        if split is not None:
            out = [p for p in out if p.split.split("/")[-1] == split]
        if not out:
            raise ConfigError(f"no QaTa-COV19 pairs for split={split!r} fold={fold!r}; splits: {self.splits}")
        return out

    @staticmethod
    def load(pair: Pair) -> tuple[np.ndarray, np.ndarray]:
        """(image float32 [0, 1] (rows, cols), mask uint8 {0, 1}) of one pair."""
        img, imax = _read_png(pair.image)
        mask, mmax = _read_png(pair.mask)
        if img.shape != mask.shape:
            raise DataError(f"{pair.mask}: mask shape {mask.shape} differs from its image's {img.shape} ({pair.image})")
        thr = 1 if mask.max() <= 1 else mmax / 2
        return (img / imax).astype(np.float32), (mask >= thr).astype(np.uint8)

    def arrays(self, split: str | None = None, fold: int | None = None, size: int | None = None,
               limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Stacked (images [N, H, W] float32, masks [N, H, W] uint8), resized to ``size`` x ``size`` if given."""
        pairs = self.select(split, fold)[:limit]
        imgs, masks = [], []
        for p in pairs:
            img, mask = self.load(p)
            if size is not None:
                img, mask = resize_pair(img, mask, size)
            elif imgs and img.shape != imgs[0].shape:
                raise DataError(f"{p.image}: size {img.shape} differs from {imgs[0].shape}; pass 'size' to resize")
            imgs.append(img)
            masks.append(mask)
        return np.stack(imgs), np.stack(masks)


def _read_png(path: Path) -> tuple[np.ndarray, float]:
    """Grey-level array (float64) and the maximum of its pixel type."""

    try:
        im = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise DataError(f"{path}: not a readable image ({str(exc).strip().splitlines()[-1]})") from exc
    arr = sitk.GetArrayFromImage(im)
    if im.GetNumberOfComponentsPerPixel() > 1:
        arr = arr[..., :3].mean(-1)
    if arr.ndim != 2:
        raise DataError(f"{path}: expected a 2D image, found shape {arr.shape}")
    kind = sitk.GetArrayViewFromImage(im).dtype
    vmax = float(np.iinfo(kind).max) if np.issubdtype(kind, np.integer) else 1.0
    return arr.astype(np.float64), vmax


def resize_pair(img: np.ndarray, mask: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Resize an image (antialiased bilinear) and its mask (nearest) to ``size`` x ``size``."""

    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    out = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0, 0].numpy()
    mout = F.interpolate(m, size=(size, size), mode="nearest-exact")[0, 0].numpy()
    return np.clip(out, 0, 1).astype(np.float32), mout.astype(np.uint8)


#: the groups of a QaTa-COV19 file in the layout of :mod:`synthex_lib.datasets.layout`: the five folds' test sets
QATA_FOLDS = 5


def fold_of_pairs(qata: QaTaCOV19, seed: int = 0) -> list[list[Pair]]:
    """The five folds of the real-image test: the SyntheX re-split's ``Fold<k>/test`` sets (``folds`` layout), else
    every masked pair (sorted by name) dealt into five folds by ``seeded_rng(seed, "qata-folds")`` (v1, v2)."""
    if qata.layout == "folds":
        return [qata.select("test", k) for k in range(1, QATA_FOLDS + 1)]
    pairs = sorted(qata.pairs, key=lambda p: (p.split, p.name))
    if len(pairs) < QATA_FOLDS:
        raise DataError(f"{qata.root}: {len(pairs)} masked image(s), fewer than the {QATA_FOLDS} folds of the test")
    order = seeded_rng(seed, "qata-folds").permutation(len(pairs))
    return [[pairs[i] for i in sorted(order[k::QATA_FOLDS])] for k in range(QATA_FOLDS)]


def write_qata_layout(qata: QaTaCOV19, out: str | os.PathLike[str], size: int, seed: int = 0) -> Path:
    """Write the masked images of ``qata`` as one ``real.h5`` of the project's layout (atomically): groups ``"01"``
    .. ``"05"`` (the folds of :func:`fold_of_pairs`), images in [0, 1] resized to ``size`` x ``size``, masks {0, 1},
    no landmarks. Returns the file's path."""
    path = Path(out)
    folds = fold_of_pairs(qata, seed)
    with paths.atomic_path(path) as tmp:
        with h5py.File(tmp, "w", libver=H5_LIBVER) as f:
            for k, v in {"task": "chest", "domain": "real", "dataset": "qata-cov19", "projector": "real",
                         "image_size": int(size), "real_is_emulated": False, "layout": qata.layout,
                         "source": str(qata.root), "seed": int(seed)}.items():
                f.attrs[k] = v
            write_landmark_names(f, [])
            for k, pairs in enumerate(folds, start=1):
                imgs, masks = [], []
                for p in pairs:
                    img, mask = QaTaCOV19.load(p)
                    img, mask = resize_pair(img, mask, size)
                    imgs.append(img)
                    masks.append(mask)
                n = len(imgs)
                write_group(f, f"{k:02d}", SpecimenImages(np.stack(imgs), np.stack(masks),
                                                          np.zeros((n, 2, 0), np.float32), np.zeros((n, 0), bool),
                                                          attrs={"names": json.dumps([p.name for p in pairs])}))
    return path
