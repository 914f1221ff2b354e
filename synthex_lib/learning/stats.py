"""Summary statistics and tests used for the paper's tables.

``summarize`` matches the official script: mean, population standard deviation (``np.std``,
ddof 0) and a normal 95 % confidence half-width ``1.96 std / sqrt(n)``. The paper compares
methods with one-tailed t-tests (Welch's, unequal variances, here).
"""

from __future__ import annotations

import numpy as np
from scipy import stats as sps


def summarize(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return {"mean": float("nan"), "std": float("nan"), "ci95": float("nan"), "n": 0}
    std = float(np.std(v))
    return {"mean": float(v.mean()), "std": std, "ci95": 1.96 * std / np.sqrt(n), "n": n}


def one_tailed_ttest(a: np.ndarray, b: np.ndarray, alternative: str = "less") -> float:
    """P value of Welch's t-test that mean(a) < mean(b) (``alternative="less"``) or > (``"greater"``)."""
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return float("nan")
    return float(sps.ttest_ind(a, b, equal_var=False, alternative=alternative).pvalue)


def format_mean_std(mean: float, std: float, digits: int = 2) -> str:
    if not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# --- paired designs ---------------------------------------------------------------------------------
# Every method of a controlled study is tested on the same real images, so comparisons are paired:
# per-image Dice of method A and method B on image i, per-(image, landmark) errors where both methods
# activated the landmark.


def paired_values(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pairs (a_i, b_i) where both are finite; ``a`` and ``b`` must have the same shape (flattened)."""
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"paired values need equal shapes, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def paired_test(a: np.ndarray, b: np.ndarray, alternative: str = "greater", method: str = "wilcoxon") -> float:
    """One-tailed P value that the paired differences ``a - b`` are > 0 (``"greater"``) or < 0 (``"less"``).

    ``method``: ``"wilcoxon"`` (signed-rank, zero differences dropped, the default: Dice and mm errors
    are far from normal) or ``"t"`` (paired t-test). NaN with fewer than 2 non-zero pairs.
    """
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    x, y = paired_values(a, b)
    d = x - y
    if np.count_nonzero(d) < 2:
        return float("nan")
    if method == "t":
        return float(sps.ttest_rel(x, y, alternative=alternative).pvalue)
    if method == "wilcoxon":
        return float(sps.wilcoxon(d, zero_method="wilcox", alternative=alternative).pvalue)
    raise ValueError(f"method must be 'wilcoxon' or 't', got {method!r}")


def paired_tost(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """Equivalence of paired means within ``+-margin`` (two one-sided paired t-tests, TOST): the P value
    is the larger of the two one-sided P values; small P means the mean difference lies inside the margin.
    NaN with fewer than 2 pairs."""
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin!r}")
    x, y = paired_values(a, b)
    d = x - y
    n = d.size
    if n < 2:
        return float("nan")
    se = float(np.std(d, ddof=1) / np.sqrt(n))
    if se == 0:
        return 0.0 if abs(float(d.mean())) < margin else 1.0
    t_low = (d.mean() + margin) / se  # H0: mean <= -margin
    t_high = (d.mean() - margin) / se  # H0: mean >= +margin
    p_low = float(sps.t.sf(t_low, n - 1))
    p_high = float(sps.t.cdf(t_high, n - 1))
    return max(p_low, p_high)


def welch_tost(a: np.ndarray, b: np.ndarray, margin: float) -> float:
    """Equivalence of two independent means within ``+-margin`` (two one-sided Welch t-tests, TOST: unequal
    variances, Welch-Satterthwaite degrees of freedom): the larger one-sided P value; small P means the
    difference of the means lies inside the margin. Non-finite values are dropped; NaN with fewer than 2 values
    in either sample."""
    if not margin > 0:
        raise ValueError(f"margin must be positive, got {margin!r}")
    a = np.asarray(a, float).ravel()
    b = np.asarray(b, float).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if a.size < 2 or b.size < 2:
        return float("nan")
    va, vb = np.var(a, ddof=1) / a.size, np.var(b, ddof=1) / b.size
    se = float(np.sqrt(va + vb))
    d = float(a.mean() - b.mean())
    if se == 0:
        return 0.0 if abs(d) < margin else 1.0
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    p_low = float(sps.t.sf((d + margin) / se, df))  # H0: difference <= -margin
    p_high = float(sps.t.cdf((d - margin) / se, df))  # H0: difference >= +margin
    return max(p_low, p_high)


def pitman_morgan(a: np.ndarray, b: np.ndarray, alternative: str = "less") -> float:
    """One-tailed Pitman-Morgan test of paired variances: P that var(``a``) < var(``b``) (``"less"``) or >
    (``"greater"``) by chance. For pairs, var(a) - var(b) = cov(a + b, a - b), so the test is the t-test of the
    correlation r of the sums and differences, ``t = r sqrt(n - 2) / sqrt(1 - r^2)`` with n - 2 degrees of
    freedom (Pitman 1939, Morgan 1939). Non-finite pairs are dropped; NaN with fewer than 3 pairs or with
    constant sums or differences."""
    if alternative not in ("greater", "less"):
        raise ValueError(f"alternative must be 'greater' or 'less', got {alternative!r}")
    x, y = paired_values(a, b)
    n = x.size
    s, d = x + y, x - y
    if n < 3 or np.std(s) == 0 or np.std(d) == 0:
        return float("nan")
    r = float(np.corrcoef(s, d)[0, 1])
    if abs(r) >= 1:
        return 0.0 if (r < 0) == (alternative == "less") else 1.0
    t = r * np.sqrt(n - 2) / np.sqrt(1 - r * r)
    return float(sps.t.cdf(t, n - 2) if alternative == "less" else sps.t.sf(t, n - 2))


def mean_difference(a: np.ndarray, b: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Paired effect size: mean of ``a - b`` with its t confidence interval, and Cohen's d_z
    (mean difference / standard deviation of the differences)."""
    x, y = paired_values(a, b)
    d = x - y
    n = int(d.size)
    if n < 2:
        return {"diff": float("nan"), "low": float("nan"), "high": float("nan"), "dz": float("nan"), "n": n}
    sd = float(np.std(d, ddof=1))
    half = float(sps.t.ppf(0.5 + confidence / 2, n - 1) * sd / np.sqrt(n))
    m = float(d.mean())
    return {"diff": m, "low": m - half, "high": m + half, "dz": m / sd if sd > 0 else float("nan"), "n": n}


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted P values (NaN entries are left out of the family and stay NaN)."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx], kind="stable")]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def format_p(p: float) -> str:
    """A P value to 2 significant figures (``< 0.001`` below that), ``n/a`` when not computed."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p < 0.001:
        return "< 0.001"
    return f"{p:.2g}"
