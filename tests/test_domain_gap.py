"""The measured domain gap: each figure against a hand-computed case or its defining property."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import SpecimenImages
from synthex_lib.experiments import domain_gap as g

RNG = np.random.default_rng(0)


def test_pixel_correlation_and_ssim_are_blind_to_grey_level_scales():
    x = RNG.normal(size=(32, 32))
    assert g.pixel_correlation(x, 2 * x + 3) == pytest.approx(1.0)
    assert g.pixel_correlation(x, -x) == pytest.approx(-1.0)
    assert np.isnan(g.pixel_correlation(x, np.ones_like(x)))
    smooth = ndimage.gaussian_filter(x, 2)
    assert g.ssim(smooth, 5 * smooth - 1) == pytest.approx(1.0, abs=1e-4)  # windowing removes the affine map
    assert g.ssim(smooth, ndimage.gaussian_filter(RNG.normal(size=(32, 32)), 2)) < 0.5
    with pytest.raises(ConfigError, match="different sizes"):
        g.pixel_correlation(x, x[:5])


def test_immerkaer_noise_estimate_recovers_white_noise_on_a_smooth_image():
    yy, xx = np.mgrid[0:128, 0:128]
    base = 0.01 * xx + 0.02 * yy + np.sin(xx / 20.0)
    for sigma in (0.05, 0.2):
        est = g.noise_sigma(base + RNG.normal(0, sigma, base.shape))
        assert est == pytest.approx(sigma, rel=0.05)
    assert g.noise_sigma(base) < 0.005  # the smooth image alone is almost no "noise"


def test_bone_cnr_of_a_hand_made_image():
    seg = np.zeros((64, 64), np.uint8)
    seg[20:44, 20:44] = 1
    img = np.where(seg == 1, 1.0, 0.0) + RNG.normal(0, 0.1, seg.shape)
    assert g.bone_cnr(img, seg) == pytest.approx(10.0, rel=0.1)
    assert g.bone_cnr(-img, seg) == pytest.approx(-10.0, rel=0.1)
    assert np.isnan(g.bone_cnr(img, np.zeros_like(seg)))


def test_nps_of_white_noise_is_flat_at_its_variance_and_blur_tilts_it():
    mean, sd, pix = 100.0, 2.0, 0.5
    img = mean + RNG.normal(0, sd, (128, 128))
    f, nnps = g.radial_nps(img, pix)
    low, ratio = g.nps_bands(f, nnps)
    assert low == pytest.approx(sd**2 * pix**2 / mean**2, rel=0.1)  # NNPS = sigma^2 a^2 / mean^2 for white noise
    assert ratio == pytest.approx(1.0, abs=0.15)
    assert f.max() <= 0.5 / pix * np.sqrt(2)
    blurred = mean + ndimage.gaussian_filter(RNG.normal(0, sd, (128, 128)), 1.0)
    assert g.nps_bands(*g.radial_nps(blurred, pix))[1] > 5  # correlated noise: power moves to low frequencies


def test_gap_table_puts_the_real_domain_at_one_and_a_noisier_copy_below():
    seg = np.zeros((3, 48, 48), np.uint8)
    seg[:, 10:30, 10:30] = 1
    clean = np.stack([ndimage.gaussian_filter(RNG.normal(size=(48, 48)), 3) + 2 * (s == 1) for s in seg])
    real = SpecimenImages(clean.astype(np.float32), seg, np.zeros((3, 2, 14), np.float32))
    noisy = SpecimenImages((3 * clean + RNG.normal(0, 0.5, clean.shape)).astype(np.float32), seg, real.lands)
    tab = g.gap_to_real({"real": real, "noisy": noisy})
    assert tab.loc["real", "pixel correlation with real"] == pytest.approx(1.0)
    assert tab.loc["real", "SSIM with real"] == pytest.approx(1.0, abs=1e-4)
    assert 0.5 < tab.loc["noisy", "pixel correlation with real"] < 0.999
    assert tab.loc["noisy", "noise sigma (window units)"] > tab.loc["real", "noise sigma (window units)"]
    with pytest.raises(ConfigError, match="no 'real' domain"):
        g.gap_to_real({"noisy": noisy})


def test_water_slab_scatter_and_grid():
    figs = g.slab_figures(size=48, seed=1)
    assert 0.05 < figs["realistic"].spr < 2.0
    real = figs["real"]
    assert 0 < real.spr < real.spr_without_grid  # the grid removes scatter
    assert real.noise_rel > 0 and np.isfinite(real.bands[0])
    tab = g.slab_table(figs)
    assert list(tab.index) == ["realistic", "real"]
