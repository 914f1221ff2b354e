"""One realistic sample to show the randomization on: a simulated hip X-ray of the virtual lab."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthex_lib.core.errors import SynthexError
from synthex_lib.datasets.layout import list_groups, read_group
from synthex_lib.figures.phantom import disc_phantom
from synthex_lib.generate.cache import dataset_dir
from synthex_lib.generate.engine import ensure_dataset


def sample_from_file(path: str | Path, group: str | None = None, index: int = 0) -> dict[str, torch.Tensor]:
    """Image ``index`` of ``group`` (default: the first) of a dataset HDF5 file as a sample dict:
    ``image`` float32 [1, H, W], ``labels`` int64 [H, W], ``landmarks`` float32 [L, 2] (x, y),
    ``visible`` bool [L]."""

    group = group or list_groups(path)[0]
    imgs = read_group(path, group)
    return {
        "image": torch.from_numpy(np.ascontiguousarray(imgs.projs[index], dtype=np.float32))[None],
        "labels": torch.from_numpy(imgs.segs[index].astype(np.int64)),
        "landmarks": torch.from_numpy(np.ascontiguousarray(imgs.landmarks_xy[index], dtype=np.float32)),
        "visible": torch.from_numpy(imgs.visibility()[index].astype(bool)),
    }


def example_sample(profile: str = "smoke", seed: int = 0, dataset: str = "lab", domain: str = "realistic",
                   generate: bool = True) -> tuple[dict[str, torch.Tensor], str]:
    """A simulated hip image of the controlled study (``domain`` simulation of the first specimen)
    and a line saying where it came from.

    Generates the dataset first when ``generate`` (``datasets.generate.ensure_dataset``; instant
    once it exists). Falls back to the synthetic disc phantom, and says so, only when no simulated
    data can be had (generation switched off or failing).
    """

    reason = "generation switched off"
    try:
        folder = dataset_dir("hip-controlled", profile, seed=seed, dataset=dataset)
        if generate:
            folder = ensure_dataset("hip-controlled", profile, seed=seed, dataset=dataset, progress=False)
        path = Path(folder) / f"{domain}.h5"
        if path.exists():
            group = list_groups(path)[0]
            return sample_from_file(path, group), (f"simulated '{domain}' hip image: hip-controlled study, profile "
                                                   f"{profile}, {path.name}, specimen group {group}, image 0")
        reason = f"{path} does not exist"
    except (ImportError, SynthexError, OSError) as e:
        reason = f"{type(e).__name__}: {e}"
    size = 128 if profile == "smoke" else 360
    return disc_phantom(size, radius=size / 30), f"synthetic disc phantom ({reason})"


def summarize(sample: dict[str, Any]) -> str:
    """One line: size, intensity range, labels present, visible landmarks."""
    img = sample["image"]
    labels = sorted(int(v) for v in torch.as_tensor(sample["labels"]).unique())
    return (f"{tuple(img.shape[-2:])} px, intensity {float(img.min()):.2f}..{float(img.max()):.2f}, "
            f"labels {labels}, {int(torch.as_tensor(sample['visible']).sum())}/{len(sample['visible'])} "
            "landmarks visible")
