import numpy as np
import pytest
import torch

from synthex_lib.learning import metrics as M
from synthex_lib.learning.losses import heatmap_ncc_loss, ncc, soft_dice_loss
from synthex_lib.learning.stats import one_tailed_ttest, summarize
from synthex_lib.simulate.labels import gaussian_heatmaps


def test_dice_hand_computed():
    gt = np.zeros((4, 4), int)
    gt[:2, :2] = 1  # 4 px of class 1
    pred = np.zeros((4, 4), int)
    pred[:2, :1] = 1  # 2 px, both correct
    pred[3, 3] = 2  # class 2 only in the prediction
    d = M.dice_per_class(pred, gt, num_classes=4)
    assert d[0] == pytest.approx(2 * 2 / (2 + 4))  # 0.667
    assert d[1] == 0.0  # predicted, absent in ground truth
    assert d[2] == 1.0  # absent from both
    assert M.dice_per_image(pred, gt, 4) == pytest.approx((2 / 3 + 0 + 1) / 3)


def test_binary_confusion_metrics_hand_computed():
    gt = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)  # tp 2, fn 1, fp 1, tn 4
    m = M.binary_confusion_metrics(pred, gt)
    assert m["sensitivity"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["specificity"] == pytest.approx(4 / 5, abs=1e-4)
    assert m["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["accuracy"] == pytest.approx(6 / 8, abs=1e-4)
    assert m["f1"] == pytest.approx(2 / 3, abs=5e-4)
    p, r = 2 / 3, 2 / 3
    assert m["f2"] == pytest.approx(5 * p * r / (4 * p + r), abs=5e-4)


def test_landmark_detection_finds_gaussian_peak_with_full_confidence():
    xy = torch.tensor([[[20.0, 30.0], [15.0, 40.0]]])
    hm = gaussian_heatmaps(xy, (64, 64), sigma_px=2.5, visible=torch.ones(1, 2, dtype=torch.bool))[0].numpy()
    det = M.detect_landmarks(hm, sigma_px=2.5)
    assert np.allclose(det.xy, [[20, 30], [15, 40]])
    assert (det.confidence > 0.99).all()
    noise = np.random.default_rng(0).random((1, 64, 64))
    assert M.detect_landmarks(noise, sigma_px=2.5).confidence[0] < 0.5


def test_detection_restricted_to_structure():
    hm = np.zeros((1, 32, 32))
    hm[0, 5, 5] = 10.0  # strongest peak outside the structure
    hm[0, 20, 20] = 1.0
    seg = np.zeros((32, 32), int)
    seg[15:25, 15:25] = 5
    det = M.detect_landmarks(hm, 2.0, seg=seg, landmark_labels=[(5,)])
    assert tuple(det.xy[0]) == (20, 20)


def test_landmark_whose_structure_is_absent_is_not_detected():
    """As the official evaluation: no pixel of the landmark's structure predicted -> not detected."""
    yy, xx = np.mgrid[:32, :32]
    hm = np.exp(-((xx - 10) ** 2 + (yy - 12) ** 2) / (2 * 2.0**2))[None]  # a perfect peak
    seg = np.zeros((32, 32), int)
    seg[0:4, 0:4] = 1  # only a hemipelvis; the landmark belongs to the femur (5)
    assert M.detect_landmarks(hm, 2.0).confidence[0] > 0.99
    det = M.detect_landmarks(hm, 2.0, seg=seg, landmark_labels=[(5, 6)])
    assert det.confidence[0] == 0.0 and tuple(det.xy[0]) == (10, 12)


def test_landmark_error_masks_non_activated_and_invisible():
    err = M.landmark_errors_mm(np.array([[3.0, 4.0], [0, 0], [1, 1]]), np.zeros((3, 2)),
                               activated=np.array([True, False, True]), gt_visible=np.array([True, True, False]),
                               pixel_mm=0.5)
    assert err[0] == pytest.approx(2.5) and np.isnan(err[1]) and np.isnan(err[2])


def test_summarize_matches_official_definition():
    s = summarize(np.array([1.0, 2.0, 3.0, 4.0, np.nan]))
    assert s["mean"] == 2.5 and s["n"] == 4
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4]))
    assert s["ci95"] == pytest.approx(1.96 * s["std"] / 2)


def test_one_tailed_ttest_direction():
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 200), rng.normal(1, 1, 200)
    assert one_tailed_ttest(a, b, "less") < 1e-6
    assert one_tailed_ttest(a, b, "greater") > 0.99


def test_losses_defining_values():
    labels = torch.randint(0, 3, (2, 8, 8))
    perfect = torch.nn.functional.one_hot(labels, 3).permute(0, 3, 1, 2).float() * 100
    assert soft_dice_loss(perfect, labels).item() == pytest.approx(-1.0, abs=1e-3)
    a = torch.rand(2, 3, 8, 8)
    assert torch.allclose(ncc(a, 2 * a + 1), torch.ones(2, 3), atol=1e-5)
    assert torch.allclose(ncc(a, -a), -torch.ones(2, 3), atol=1e-5)
    vis = torch.tensor([[True, False, True], [False, False, True]])
    # invisible landmarks do not count: a perfect visible prediction gives the minimum -1
    target = a.clone()
    target[~vis] = 0
    pred = a.clone()
    pred[~vis] = torch.rand(3, 8, 8)
    assert heatmap_ncc_loss(pred, target, vis).item() == pytest.approx(-1.0, abs=1e-5)


def test_activation_curve_is_monotone():
    rng = np.random.default_rng(1)
    conf = rng.random((10, 14))
    err = rng.random((10, 14)) * 10
    curve = M.activation_curve(err, conf, np.ones((10, 14), bool))
    assert (np.diff(curve["activated_fraction"]) <= 0).all()
    assert curve["activated_fraction"][0] == 1.0
