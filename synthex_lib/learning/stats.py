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
