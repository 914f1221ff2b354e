"""Paired statistics against hand-computed cases."""

import numpy as np
import pytest
from scipy import stats as sps

from synthex_lib.learning.stats import format_p, holm, mean_difference, paired_test, paired_tost, paired_values


def test_pairs_drop_any_nan_side():
    a, b = paired_values([1.0, np.nan, 3.0, 4.0], [1.5, 2.0, np.nan, 3.0])
    assert a.tolist() == [1.0, 4.0] and b.tolist() == [1.5, 3.0]
    with pytest.raises(ValueError, match="equal shapes"):
        paired_values([1, 2], [1, 2, 3])


def test_paired_t_is_the_one_sample_t_of_the_differences():
    a = np.array([0.80, 0.75, 0.90, 0.60, 0.85])
    b = np.array([0.70, 0.74, 0.80, 0.65, 0.70])
    d = a - b  # 0.10, 0.01, 0.10, -0.05, 0.15: mean 0.062, sd 0.0779
    t = d.mean() / (d.std(ddof=1) / np.sqrt(5))
    assert paired_test(a, b, "greater", "t") == pytest.approx(sps.t.sf(t, 4))
    assert paired_test(a, b, "less", "t") == pytest.approx(sps.t.cdf(t, 4))


def test_wilcoxon_exact_on_a_hand_case():
    # differences +1, +2, +3, +4, +5: every rank positive; exact one-sided P = 1 / 2^5
    a = np.array([2.0, 4.0, 6.0, 8.0, 10.0])
    b = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert paired_test(a, b, "greater") == pytest.approx(1 / 32)
    assert paired_test(a, b, "less") == pytest.approx(1.0)


def test_pairing_matters():
    # a = b + 0.01 on every image, but images vary widely: an unpaired test sees nothing, a paired one sees it
    rng = np.random.default_rng(0)
    b = rng.uniform(0.2, 0.9, 40)
    a = b + 0.01 + rng.normal(0, 0.002, 40)
    assert sps.ttest_ind(a, b, alternative="greater").pvalue > 0.3
    assert paired_test(a, b, "greater") < 1e-6


def test_tost_equivalent_and_not():
    rng = np.random.default_rng(1)
    b = rng.uniform(0.5, 0.9, 200)
    same = b + rng.normal(0, 0.02, 200)
    shifted = b + 0.1 + rng.normal(0, 0.02, 200)
    assert paired_tost(same, b, margin=0.05) < 0.001
    assert paired_tost(shifted, b, margin=0.05) > 0.99
    assert np.isnan(paired_tost([1.0], [1.0], 0.1))


def test_mean_difference_ci_by_hand():
    a, b = np.array([3.0, 5.0, 7.0]), np.array([1.0, 2.0, 3.0])  # d = 2, 3, 4: mean 3, sd 1
    e = mean_difference(a, b)
    half = sps.t.ppf(0.975, 2) * 1 / np.sqrt(3)
    assert e["diff"] == 3 and e["low"] == pytest.approx(3 - half) and e["high"] == pytest.approx(3 + half)
    assert e["dz"] == pytest.approx(3.0) and e["n"] == 3


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (monotone); NaN stays out of the family
    out = holm([0.04, 0.01, np.nan, 0.02])
    assert out[1] == pytest.approx(0.03) and out[3] == pytest.approx(0.04) and out[0] == pytest.approx(0.04)
    assert np.isnan(out[2])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]


def test_format_p():
    assert format_p(0.0123456) == "0.012" and format_p(0.00001) == "< 0.001" and format_p(float("nan")) == "n/a"
