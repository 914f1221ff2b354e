"""Evaluation metrics of the paper, as computed by the official evaluation scripts.

* Landmarks (``est_lands_csv.py``): the predicted location is the heatmap's maximum (optionally
  restricted to pixels of the landmark's structure in the predicted segmentation); its
  confidence is the NCC between a patch around the maximum and a Gaussian template of the
  training sigma; a landmark is *activated* when NCC >= threshold (0.9 in Table 1). The error is
  the Euclidean distance in pixels times the pixel pitch in mm (detector plane, as the official
  0.194 mm x downsampling factor); non-activated landmarks are excluded from the error and
  reported as the detection rate.
* Segmentation: per-image Dice averaged over classes 1..C-1; a class absent from both ground
  truth and prediction scores 1.
* Binary lesion segmentation (COVID-19): per-image sensitivity, specificity, precision,
  accuracy, F1 and F2 with the official ``(x + 1e-4) / (y + 1e-4)`` smoothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthex_lib.core.constants import HIP_LANDMARK_LABELS, HIP_LANDMARKS


def _gauss_template(size: int, sigma: float) -> np.ndarray:
    c = (size - 1) / 2
    yy, xx = np.mgrid[:size, :size]
    return np.exp(-((xx - c) ** 2 + (yy - c) ** 2) / (2 * sigma**2))


def ncc_np(a: np.ndarray, b: np.ndarray) -> float:
    """Normalized cross-correlation of two equally shaped arrays (sample std), 0 for flat inputs."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


@dataclass
class LandmarkPrediction:
    xy: np.ndarray  # [L, 2] (col, row)
    confidence: np.ndarray  # [L] NCC with the Gaussian template


def detect_landmarks(heatmaps: np.ndarray, sigma_px: float, seg: np.ndarray | None = None,
                     landmark_labels: list[tuple[int, ...]] | None = None, patch_px: int | None = None
                     ) -> LandmarkPrediction:
    """heatmaps [L, H, W] -> locations (col, row) and NCC confidences.

    ``seg`` [H, W] with ``landmark_labels[l]`` restricts landmark ``l``'s maximum to those labels, as the
    official ``est_lands_csv.py``; when the structure is absent from the predicted segmentation the
    landmark is not detected (confidence 0, location the unrestricted maximum). ``patch_px`` defaults to
    ``10 * sigma`` (official: 25 * 8 / ds with sigma 2.5 * 8 / ds).
    """
    n, h, w = heatmaps.shape
    patch = int(patch_px or max(5, round(10 * sigma_px)))
    half = patch // 2
    tmpl = _gauss_template(2 * half + 1, sigma_px)
    padded = np.pad(heatmaps, ((0, 0), (half, half), (half, half)), mode="reflect")
    xy = np.zeros((n, 2))
    conf = np.zeros(n)
    for i in range(n):
        hm = heatmaps[i]
        structure_found = True
        if seg is not None and landmark_labels is not None:
            allowed = np.isin(seg, landmark_labels[i])
            structure_found = bool(allowed.any())
            if structure_found:
                hm = np.where(allowed, hm, -np.inf)
        r, c = np.unravel_index(int(np.argmax(hm)), hm.shape)
        xy[i] = (c, r)
        conf[i] = ncc_np(padded[i, r:r + 2 * half + 1, c:c + 2 * half + 1], tmpl) if structure_found else 0.0
    return LandmarkPrediction(xy=xy, confidence=conf)


def hip_landmark_labels(names: tuple[str, ...] | list[str] = HIP_LANDMARKS) -> list[tuple[int, ...]]:
    """Per landmark, the 2D labels it must lie on (FH on the femurs, the others on the hemipelves)."""
    return [HIP_LANDMARK_LABELS[n] for n in names]


def landmark_errors_mm(pred_xy: np.ndarray, gt_xy: np.ndarray, activated: np.ndarray, gt_visible: np.ndarray,
                       pixel_mm: float) -> np.ndarray:
    """Per-landmark error in mm, NaN where not activated or not visible in the ground truth."""
    d = np.linalg.norm(np.asarray(pred_xy, float) - np.asarray(gt_xy, float), axis=-1) * pixel_mm
    return np.where(np.asarray(activated, bool) & np.asarray(gt_visible, bool), d, np.nan)


def dice_per_class(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> np.ndarray:
    """Dice of classes 1..num_classes-1 for one image; 1.0 where a class is absent from both."""
    out = np.ones(num_classes - 1)
    for c in range(1, num_classes):
        p, g = pred == c, gt == c
        s = p.sum() + g.sum()
        if s > 0:
            out[c - 1] = 2.0 * np.logical_and(p, g).sum() / s
    return out


def dice_per_image(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    return float(dice_per_class(pred, gt, num_classes).mean())


def binary_confusion_metrics(pred: np.ndarray, gt: np.ndarray, eps: float = 1e-4) -> dict[str, float]:
    """Per-image sensitivity, specificity, precision, accuracy, F1 and F2 of a binary mask (the official COVID
    ``test.py``): each ratio smoothed as ``(x + eps) / (y + eps)``, so an empty class on both sides scores 1.

    F-beta is ``(1 + b^2) P R / (b^2 P + R)`` of the smoothed precision P and sensitivity R. The official script
    adds ``eps`` to the numerator and denominator of F-beta as well, which gives ``1 + b^2`` (F1 = 2, F2 = 5)
    when P and R are both near 0, an empty prediction on an image with a lesion; we keep the limit (near 0) instead.
    """
    p, g = np.asarray(pred, bool), np.asarray(gt, bool)
    if p.shape != g.shape:
        raise ValueError(f"prediction and ground truth masks differ in shape: {p.shape} vs {g.shape}")
    tp, tn = float((p & g).sum()), float((~p & ~g).sum())
    fp, fn = float((p & ~g).sum()), float((~p & g).sum())
    sens = (tp + eps) / (tp + fn + eps)
    spec = (tn + eps) / (tn + fp + eps)
    prec = (tp + eps) / (tp + fp + eps)
    acc = (tp + tn + eps) / (tp + tn + fp + fn + eps)

    def fbeta(beta: float) -> float:
        den = beta**2 * prec + sens
        return (1 + beta**2) * prec * sens / den if den > 0 else 0.0

    return {"sensitivity": sens, "specificity": spec, "precision": prec, "accuracy": acc,
            "f1": fbeta(1.0), "f2": fbeta(2.0)}


def activation_curve(errors_mm: np.ndarray, confidences: np.ndarray, gt_visible: np.ndarray,
                     thresholds: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The paper's Fig. 4 curve: for each NCC threshold, the fraction of visible landmarks activated
    and their mean error. ``errors_mm`` are raw distances (not masked), all arrays [N, L]."""
    th = np.linspace(0.0, 0.99, 34) if thresholds is None else np.asarray(thresholds)
    vis = np.asarray(gt_visible, bool)
    frac, mean = np.zeros(len(th)), np.full(len(th), np.nan)
    for i, t in enumerate(th):
        act = (confidences >= t) & vis
        frac[i] = act.sum() / max(vis.sum(), 1)
        if act.any():
            mean[i] = float(errors_mm[act].mean())
    return {"threshold": th, "activated_fraction": frac, "mean_error_mm": mean}
