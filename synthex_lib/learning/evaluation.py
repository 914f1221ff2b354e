"""Evaluation of a trained multi-task network: predictions, per-image Dice and landmark errors in mm.

A landmark counts as detected only when its heatmap passes the NCC activation threshold (0.9 by
default, as in the official evaluation); errors are in mm at the test images' pixel size.

* hip (:func:`evaluate_hip`): Dice over the six structures, 14 landmarks searched on their structures;
* tool (:func:`evaluate_tool`): Dice of the manipulator, its two centreline end points searched over the
  whole image (the official ``calculate_5fold_metric_error.py``: plain argmax, NCC gate);
* lesion (:func:`evaluate_lesion`): the confusion metrics of the binary lesion mask per image (the official
  COVID ``test.py``: softmax channel 1 >= 0.5, which for two classes is the argmax) and its Dice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from synthex_lib.core.constants import HIP_NUM_CLASSES
from synthex_lib.datasets.torch_dataset import ImageDataset
from synthex_lib.learning.device import autocast_for, resolve_device
from synthex_lib.learning.inputs import pad_to_multiple, zscore
from synthex_lib.learning.metrics import (
    binary_confusion_metrics,
    detect_landmarks,
    dice_per_class,
    hip_landmark_labels,
    landmark_errors_mm,
)
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


def evaluate_tool(model: MultiTaskUNet, test_ds: ImageDataset, sigma_px: float, pixel_mm: float,
                  threshold: float = 0.9, device: str | torch.device = "auto") -> dict[str, Any]:
    """Per-image Dice of the manipulator and errors of its base and tip on ``test_ds``: ``dice`` [N] (1.0 where
    the tool is absent from both), ``distance_mm`` [N, 2], ``error_mm`` [N, 2] (NaN where not activated or not
    visible), ``confidence`` [N, 2], ``visible`` [N, 2], plus predictions."""
    segs, heats = predict(model, test_ds.images, device=device)
    n, L = len(segs), heats.shape[1]
    conf, dist, err = np.zeros((n, L)), np.zeros((n, L)), np.zeros((n, L))
    pred_xy = np.zeros((n, L, 2))
    dice = np.zeros(n)
    for i in range(n):
        det = detect_landmarks(heats[i], sigma_px)
        pred_xy[i], conf[i] = det.xy, det.confidence
        dist[i] = np.linalg.norm(det.xy - test_ds.landmarks[i], axis=-1) * pixel_mm
        err[i] = landmark_errors_mm(det.xy, test_ds.landmarks[i], det.confidence >= threshold, test_ds.visible[i],
                                    pixel_mm)
        dice[i] = dice_per_class(segs[i], test_ds.labels[i], 2)[0]
    return {"dice": dice, "distance_mm": dist, "error_mm": err, "confidence": conf, "visible": test_ds.visible,
            "pred_seg": segs, "pred_xy": pred_xy, "heatmaps": heats}


#: the confusion metrics of the lesion task, in the order of the paper's tables
LESION_METRICS = ("sensitivity", "specificity", "precision", "f1", "f2", "accuracy")


def evaluate_lesion(model: MultiTaskUNet, test_ds: ImageDataset, device: str | torch.device = "auto"
                    ) -> dict[str, Any]:
    """Per-image confusion metrics (:data:`LESION_METRICS`, each [N]) and ``dice`` [N] of the binary lesion mask
    on ``test_ds``, plus the predicted masks."""
    segs, _ = predict(model, test_ds.images, device=device)
    rows = [binary_confusion_metrics(segs[i] > 0, test_ds.labels[i] > 0) for i in range(len(segs))]
    out: dict[str, Any] = {k: np.array([r[k] for r in rows]) for k in LESION_METRICS}
    out["dice"] = np.array([dice_per_class((segs[i] > 0).astype(np.uint8), (test_ds.labels[i] > 0).astype(np.uint8),
                                           2)[0] for i in range(len(segs))])
    out["pred_seg"] = segs
    return out


def summarize_lesion(ev: dict[str, Any]) -> dict[str, float]:
    """Mean and standard deviation (ddof 0, as the official script) of each confusion metric and of Dice."""
    out: dict[str, float] = {"images": int(len(ev["dice"]))}
    for k in (*LESION_METRICS, "dice"):
        v = np.asarray(ev[k], float)
        out[f"{k}_mean"], out[f"{k}_std"] = float(v.mean()), float(v.std())
    return out
