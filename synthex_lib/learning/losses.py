"""Losses of the multi-task network, as in the official SyntheX code (``DiceAndHeatMapLoss2D``).

* Segmentation: soft Dice on softmax probabilities, background included,
  ``-(2 sum(t p) + eps) / (sum t^2 + sum p^2 + eps)`` per class, averaged over classes and batch.
* Landmarks: normalized cross-correlation (NCC) between predicted and target heatmaps,
  ``-(NCC + 1) / 2`` per heatmap; heatmaps of invisible landmarks (all-zero targets) are left out
  (in the official code they contribute a constant and no gradient).
* Total: ``w_seg * Dice + (1 - w_seg) * NCC`` with ``w_seg = 0.5`` (equal weights), in [-1, 0].

An optional pixel mask (1 inside the image, 0 on padding) restricts both terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def soft_dice_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None,
                   eps: float = 1e-4) -> torch.Tensor:
    """logits [B, C, H, W], labels int64 [B, H, W], mask [B, H, W] in {0, 1}. Returns a scalar in [-1, 0]."""
    probs = torch.softmax(logits, dim=1)
    target = F.one_hot(labels.long(), probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    if mask is not None:
        m = mask.unsqueeze(1).to(probs.dtype)
        probs, target = probs * m, target * m
    inter = (probs * target).sum(dim=(2, 3))
    denom = (target * target).sum(dim=(2, 3)) + (probs * probs).sum(dim=(2, 3))
    return -((2 * inter + eps) / (denom + eps)).mean()


def ncc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None, eps: float = 1e-8) -> torch.Tensor:
    """Normalized cross-correlation over the last two dims: a, b [..., H, W] -> [...].

    Zero-mean, sample standard deviation (N - 1), as in the official ``ncc_2d``.
    """
    if mask is not None:
        m = mask.to(a.dtype)
        while m.dim() < a.dim():
            m = m.unsqueeze(1)
        m = m.expand_as(a)
        n = m.sum(dim=(-2, -1)).clamp_min(2)
        ma = (a * m).sum(dim=(-2, -1)) / n
        mb = (b * m).sum(dim=(-2, -1)) / n
        da = (a - ma[..., None, None]) * m
        db = (b - mb[..., None, None]) * m
    else:
        n = torch.tensor(a.shape[-1] * a.shape[-2], dtype=a.dtype, device=a.device)
        da = a - a.mean(dim=(-2, -1), keepdim=True)
        db = b - b.mean(dim=(-2, -1), keepdim=True)
    sa = torch.sqrt((da * da).sum(dim=(-2, -1)) / (n - 1))
    sb = torch.sqrt((db * db).sum(dim=(-2, -1)) / (n - 1))
    return (da * db).sum(dim=(-2, -1)) / (n - 1) / (sa * sb + eps)


def heatmap_ncc_loss(pred: torch.Tensor, target: torch.Tensor, visible: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
    """pred, target [B, L, H, W]; visible bool [B, L]. Mean of -(NCC + 1)/2 over visible landmarks (0 if none)."""
    vals = -(ncc(pred, target, mask) + 1) / 2
    vis = visible.to(vals.dtype)
    return (vals * vis).sum() / vis.sum().clamp_min(1)


def multitask_loss(out: dict[str, torch.Tensor], labels: torch.Tensor, heatmaps: torch.Tensor,
                   visible: torch.Tensor, mask: torch.Tensor | None = None, seg_weight: float = 0.5
                   ) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss and its parts (as floats) for logging."""
    dice = soft_dice_loss(out["seg_logits"], labels, mask)
    heat = heatmap_ncc_loss(out["heatmaps"], heatmaps, visible, mask)
    total = seg_weight * dice + (1 - seg_weight) * heat
    return total, {"loss": float(total.detach()), "dice_loss": float(dice.detach()), "ncc_loss": float(heat.detach())}
