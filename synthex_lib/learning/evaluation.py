"""Evaluation of a trained multi-task network: predictions, per-image Dice and landmark errors in mm.

A landmark counts as detected only when its heatmap passes the NCC activation threshold (0.9 by
default, as in the official evaluation); errors are in mm at the test images' pixel size.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthex_lib.core.constants import HIP_NUM_CLASSES
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.learning.device import autocast_for, resolve_device
from synthex_lib.learning.inputs import pad_to_multiple, zscore
from synthex_lib.learning.metrics import detect_landmarks, dice_per_class, hip_landmark_labels, landmark_errors_mm
from synthex_lib.learning.models import MultiTaskUNet
from synthex_lib.learning.stats import summarize


@torch.no_grad()
def predict(model: MultiTaskUNet, images: np.ndarray, batch_size: int = 8, device: str | torch.device = "auto"
            ) -> tuple[np.ndarray, np.ndarray]:
    """images float [N, H, W] (log domain) -> (labels uint8 [N, H, W], heatmaps float32 [N, L, H, W]).

    ``device``: where to run (``auto``: the model's device)."""
    device = next(model.parameters()).device if str(device) == "auto" else resolve_device(device)
    model = model.to(device).eval()
    segs, heats = [], []
    for i in range(0, len(images), batch_size):
        x = zscore(torch.from_numpy(np.asarray(images[i:i + batch_size], np.float32))[:, None]).to(device)
        x, (h, w) = pad_to_multiple(x, model.size_multiple)
        with autocast_for(device):
            out = model(x)
        segs.append(out["seg_logits"][..., :h, :w].argmax(1).to(torch.uint8).cpu().numpy())
        heats.append(out["heatmaps"][..., :h, :w].float().cpu().numpy())
    return np.concatenate(segs), np.concatenate(heats)


def evaluate_hip(model: MultiTaskUNet, test_ds: ImageDataset, sigma_px: float, pixel_mm: float,
                 threshold: float = 0.9, device: str | torch.device = "auto") -> dict[str, Any]:
    """Per-image Dice and per-landmark errors of the hip task on ``test_ds``.

    Returns arrays: ``dice`` [N] (mean over the structures), ``dice_per_class`` [N, C - 1] (structures 1..C-1,
    1.0 where absent from both), ``distance_mm`` [N, L] (raw), ``error_mm`` [N, L] (NaN where not activated or
    not visible), ``confidence`` [N, L], ``visible`` [N, L], plus predictions.
    """
    segs, heats = predict(model, test_ds.images, device=device)
    lab_sets = hip_landmark_labels()
    n, L = len(segs), heats.shape[1]
    conf = np.zeros((n, L))
    dist = np.zeros((n, L))
    err = np.zeros((n, L))
    pred_xy = np.zeros((n, L, 2))
    dice_cls = np.zeros((n, HIP_NUM_CLASSES - 1))
    for i in range(n):
        det = detect_landmarks(heats[i], sigma_px, seg=segs[i], landmark_labels=lab_sets)
        pred_xy[i], conf[i] = det.xy, det.confidence
        dist[i] = np.linalg.norm(det.xy - test_ds.landmarks[i], axis=-1) * pixel_mm
        err[i] = landmark_errors_mm(det.xy, test_ds.landmarks[i], det.confidence >= threshold, test_ds.visible[i],
                                    pixel_mm)
        dice_cls[i] = dice_per_class(segs[i], test_ds.labels[i], HIP_NUM_CLASSES)
    return {"dice": dice_cls.mean(axis=1), "dice_per_class": dice_cls, "distance_mm": dist, "error_mm": err,
            "confidence": conf, "visible": test_ds.visible,
            "pred_seg": segs, "pred_xy": pred_xy, "heatmaps": heats}


def summarize_hip(ev: dict[str, Any]) -> dict[str, float]:
    lm = summarize(ev["error_mm"])
    dc = summarize(ev["dice"])
    vis = np.asarray(ev["visible"], bool)
    return {
        "landmark_error_mm_mean": lm["mean"], "landmark_error_mm_std": lm["std"], "landmark_error_mm_ci95": lm["ci95"],
        "landmarks_activated": lm["n"], "landmarks_visible": int(vis.sum()),
        "detection_rate": lm["n"] / max(int(vis.sum()), 1),
        "dice_mean": dc["mean"], "dice_std": dc["std"], "dice_ci95": dc["ci95"], "images": dc["n"],
    }
