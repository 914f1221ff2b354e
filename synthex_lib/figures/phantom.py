"""A synthetic labelled sample for checking and timing the randomization: labelled discs with a
landmark at each centre (the label check of the issue), on a smooth X-ray-like background.

Used by the tests, the benchmark and the notebook when no simulated data exist yet.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from synthex_lib.core.constants import HIP_LANDMARK_LABELS, HIP_LANDMARKS
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.randomization.config import EffectNode
from synthex_lib.randomization.pipeline import DomainRandomization
from synthex_lib.randomization.presets import preset_config

#: Label under each phantom landmark, in landmark order.
PHANTOM_LANDMARK_LABELS = torch.tensor([HIP_LANDMARK_LABELS[n][0] for n in HIP_LANDMARKS])


def disc_phantom(size: int = 360, radius: float = 12.0, seed: int = 0) -> dict[str, torch.Tensor]:
    """One sample: ``image`` float32 [1, H, W] (log domain, bone bright, roughly 0-3), ``labels``
    int64 [H, W], ``landmarks`` float32 [14, 2] (x = col, y = row; pixel centres at integers) at the
    centres of non-overlapping discs of ``radius`` px labelled with each landmark's hip label, and
    ``visible`` bool [14] (all True). Discs sit in a jittered 4 x 4 grid, ``radius + 2`` px or more
    from the border and 4 px or more apart."""
    rng = seeded_rng(seed, "disc-phantom", size)
    n = len(HIP_LANDMARKS)
    margin, gap = radius + 2.0, 2 * radius + 4.0
    cell = (size - 2 * margin) / 4.0  # a 4 x 4 grid of cells, one disc in each of 14 of them
    if cell < gap:
        raise ConfigError(f"disc_phantom: size {size} px is too small for radius {radius} px; "
                          f"use size >= {int(np.ceil(4 * gap + 2 * margin))}")
    cells = rng.permutation(16)[:n]
    jitter = rng.uniform(-1, 1, size=(n, 2)) * (cell - gap) / 2
    centres = margin + (np.stack([cells % 4, cells // 4], -1) + 0.5) * cell + jitter
    xy = np.round(centres).astype(np.float32)  # centres on pixel centres
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    labels = np.zeros((size, size), dtype=np.int64)
    image = 0.4 + 0.6 * np.exp(-(((xx - size / 2) ** 2 + (yy - size / 2) ** 2) / (0.35 * size) ** 2))
    image += 0.1 * np.sin(xx / 17.0) * np.cos(yy / 23.0)
    for (cx, cy), name in zip(xy, HIP_LANDMARKS, strict=True):
        lab = HIP_LANDMARK_LABELS[name][0]
        r2 = (xx - cx) ** 2 + (yy - cy) ** 2
        inside = r2 <= radius**2
        labels[inside] = lab
        image += (0.8 + 0.2 * lab) * np.exp(-r2 / (2 * (0.8 * radius) ** 2)) * inside
    image += 0.02 * rng.standard_normal(image.shape)
    return {
        "image": torch.from_numpy(image.astype(np.float32))[None],
        "labels": torch.from_numpy(labels),
        "landmarks": torch.from_numpy(xy),
        "visible": torch.ones(n, dtype=torch.bool),
    }


def stack_samples(sample: dict[str, torch.Tensor], n: int, start_index: int = 0) -> dict[str, torch.Tensor]:
    """A batch of ``n`` copies of ``sample`` with ``index`` = start_index + arange(n)."""
    image = sample["image"] if sample["image"].dim() == 3 else sample["image"][None]
    return {
        "image": image[None].expand(n, -1, -1, -1).contiguous(),
        "labels": sample["labels"][None].expand(n, -1, -1).contiguous(),
        "landmarks": sample["landmarks"][None].expand(n, -1, -1).contiguous(),
        "visible": sample["visible"][None].expand(n, -1).contiguous(),
        "index": torch.arange(start_index, start_index + n),
    }


def landmark_label_agreement(batch: dict[str, torch.Tensor], expected: torch.Tensor) -> tuple[int, int]:
    """(hits, count): visible landmarks whose nearest pixel carries their expected label [L]."""
    lm, vis, lab = batch["landmarks"], batch["visible"], batch["labels"]
    h, w = lab.shape[-2:]
    col = lm[..., 0].round().long().clamp(0, w - 1)
    row = lm[..., 1].round().long().clamp(0, h - 1)
    got = lab.flatten(1).gather(1, (row * w + col).to(lab.device))
    ok = (got == expected.to(got.device)[None]) & vis.to(got.device)
    return int(ok.sum()), int(vis.sum())


def consistency_report(pipelines: dict[str, Any] | None = None, size: int = 160, n: int = 32, epochs: int = 2,
                       seed: int = 0) -> Any:
    """pandas DataFrame of the label check on the disc phantom, one row per pipeline (``pipelines``
    maps a row name to a preset name or a configuration dict; default: regular, strong,
    official-strong and official-strong with its defects reproduced).

    Columns: visible landmarks still on their own label (%); pixels where the randomized image of
    the label map itself still rounds to the randomized labels (%; intensity effects switched off
    for this column, so it measures whether image and labels moved together); landmarks visible (%).
    """


    if pipelines is None:
        pipelines = {"regular": "regular", "strong": "strong", "official-strong": "official-strong",
                     "official-strong (defects reproduced)": preset_config("official-strong", reproduce_defects=True)}
    sample = disc_phantom(size, radius=size / 20, seed=seed)
    rows: dict[str, dict[str, float]] = {}
    for label, cfg in pipelines.items():
        dr = DomainRandomization.from_config(cfg, seed=seed)
        geo = DomainRandomization.from_config(cfg, seed=seed)
        for node in geo.nodes():
            if isinstance(node, EffectNode) and not node.effect.spatial:
                node.enabled = False
        hits = count = vis = tot = 0
        agree = []
        for epoch in range(epochs):
            batch = stack_samples(sample, n, start_index=epoch * n)
            out = dr({**batch, "epoch": epoch})
            h, c = landmark_label_agreement(out, PHANTOM_LANDMARK_LABELS)
            hits, count = hits + h, count + c
            vis, tot = vis + int(out["visible"].sum()), tot + out["visible"].numel()
            g = geo({**batch, "image": batch["labels"][:, None].float(), "epoch": epoch})
            agree.append(((g["image"][:, 0] - g["labels"]).abs() < 0.5).float().mean().item())
        rows[label] = {"landmarks on their label (%)": 100.0 * hits / max(count, 1),
                       "image/label pixel agreement (%)": 100.0 * sum(agree) / len(agree),
                       "landmarks visible (%)": 100.0 * vis / max(tot, 1)}
    return pd.DataFrame(rows).T
