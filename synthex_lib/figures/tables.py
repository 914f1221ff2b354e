"""How the book shows tables, in one place.

Inside an IPython kernel, :func:`install_table_display` (called by
:func:`synthex_lib.figures.style.book_style`, so by importing any figures module) makes every pandas
DataFrame a chapter displays render through :func:`book_html`: cells never truncated, no bare
0..n-1 index, numbers to 4 significant figures, P values to 2 (:func:`synthex_lib.learning.stats.format_p`),
booleans as yes / no, missing values as a dash, wide tables scrolling inside the page (the
``book-table-wrap`` class, styled in ``_static/book.css``). DataFrames stay DataFrames: only their
display changes, and the plain-text form keeps pandas' own layout, untruncated.

:func:`style_claims` and :func:`with_paper_detection` reshape two tables of the results chapters for
readers (verdict words instead of True / False, the paper's detection rate beside ours).
"""

from __future__ import annotations

import math
import re
from html import escape
from typing import Any

import numpy as np
import pandas as pd
from IPython import get_ipython

from synthex_lib.learning.stats import format_p

#: the preprint reports landmark errors at 90 % of the landmarks activated (Gao et al., arXiv:2206.06127,
#: Table 5: "Landmark Detection Errors (mm) at 90% activation percentage"); the NMI paper's Table 1
#: uses the NCC > 0.9 threshold and gives no rate.
PAPER_ACTIVATION_PERCENT = 90
#: column names that hold P values
_P_COLUMN = re.compile(r"^(p|p value|p-value|p \(.*\)|p_value|p_holm)$", re.IGNORECASE)
#: what a missing cell shows
NA = "–"

PANDAS_OPTIONS = {"display.max_colwidth": None, "display.max_columns": None, "display.width": 0,
                  "display.max_rows": 200}


def is_p_column(name: Any) -> bool:
    """Whether a column holds P values (``P``, ``P (Holm)``, ``p value``, ...)."""
    return isinstance(name, str) and bool(_P_COLUMN.match(name.strip()))


def format_number(v: Any) -> str:
    """One cell: integers with thousands separators, other floats to 4 significant figures (never in
    exponent form between 1e-3 and 1e15), booleans yes / no, missing values a dash, text as is."""
    if v is None or (isinstance(v, float | np.floating) and math.isnan(v)):
        return NA
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}" if abs(int(v)) >= 10000 else str(int(v))
    if isinstance(v, float | np.floating):
        x = float(v)
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == round(x) and abs(x) < 1e15:
            return f"{x:,.0f}" if abs(x) >= 10000 else f"{x:.0f}"
        if abs(x) >= 1e4:
            return f"{x:,.0f}"
        if abs(x) < 1e-3:
            return f"{x:.2e}"
        return f"{x:.4g}"
    return str(v)


def bare_index(index: pd.Index) -> bool:
    """True for pandas' default 0..n-1 index without a name, which says nothing to a reader."""
    return (isinstance(index, pd.RangeIndex) and index.name is None and index.start == 0 and index.step == 1)


def column_decimals(values: Any) -> int | None:
    """Decimals that show every float of a column to 4 significant figures (at most 4), so that a column
    reads 24.0 / 24.8 rather than 24 / 24.8; None when the column holds no such float."""
    best = None
    for v in values:
        if isinstance(v, float | np.floating) and not isinstance(v, bool) and math.isfinite(v) and v != 0:
            if abs(v) < 1e-3 or abs(v) >= 1e4:
                continue
            text = f"{float(v):.4g}"
            d = len(text.split(".")[1]) if "." in text else 0
            best = d if best is None else max(best, d)
    return None if best is None else min(best, 4)


def book_frame(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every cell turned into the text the book shows (:func:`format_number`; the floats of a
    float column with one number of decimals, :func:`column_decimals`; P columns with
    :func:`synthex_lib.learning.stats.format_p`)."""
    out = pd.DataFrame(index=df.index)
    for j, col in enumerate(df.columns):
        values = df.iloc[:, j]
        if is_p_column(col):
            out[j] = [format_p(v) if isinstance(v, float | np.floating | int) and not isinstance(v, bool)
                      else format_number(v) for v in values]
            continue
        d = column_decimals(values) if pd.api.types.is_float_dtype(values.dtype) else None
        out[j] = [f"{float(v):.{d}f}" if d is not None and isinstance(v, float | np.floating) and math.isfinite(v)
                  and (v == 0 or 1e-3 <= abs(v) < 1e4) else format_number(v) for v in values]
    out.columns = df.columns
    return out


def book_html(df: pd.DataFrame) -> str:
    """The HTML of a DataFrame as the book shows it (see the module docstring); deterministic, so stored
    notebook outputs compare equal between runs."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"book_html expects a pandas DataFrame, got {type(df).__name__}")
    text = book_frame(df)
    show_index = not bare_index(df.index)
    if isinstance(df.columns, pd.RangeIndex) and df.columns.name is None and len(df.columns) == 1:
        text.columns = [""]
    html = text.to_html(index=show_index, border=0, escape=True, na_rep=NA, classes=["book-table"],
                        justify="left")
    note = ""
    if len(df) > PANDAS_OPTIONS["display.max_rows"]:
        note = f'<p class="book-table-note">{escape(f"{len(df)} rows")}</p>'
    return f'<div class="book-table-wrap">{html}{note}</div>'


def install_table_display() -> bool:
    """Set pandas' display options (:data:`PANDAS_OPTIONS`) and, inside an IPython kernel, render every
    displayed DataFrame with :func:`book_html`. Returns whether the HTML formatter was installed."""
    for key, value in PANDAS_OPTIONS.items():
        pd.set_option(key, value)
    shell = get_ipython()
    if shell is None:
        return False
    shell.display_formatter.formatters["text/html"].for_type(pd.DataFrame, book_html)
    return True


def _verdict(v: Any) -> str:
    if isinstance(v, bool | np.bool_):
        return "held" if v else "not held"
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not testable"
    return str(v)


#: the columns of a claims table shown first, in this order (the rest follow as they come)
CLAIM_COLUMNS_FIRST = ("metric", "verdict", "ours (A vs B)", "A - B (95% CI)", "P (Holm)", "folds", "paper")


def style_claims(df: pd.DataFrame) -> pd.DataFrame:
    """The claims table (``experiments.hip_analysis.check_claims``) for readers: P values to 2 significant figures
    (``< 0.001`` below), boolean verdict columns ("held here", "held") as "held" / "not held" / "not
    testable" (missing, or a ``testable`` column False; that column is then dropped), the claim as the
    index instead of 0..n-1, and :data:`CLAIM_COLUMNS_FIRST` first, so that the verdict is in view on a narrow
    page. Text cells (already formatted P values, verdicts) are kept as they are."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"style_claims expects a pandas DataFrame, got {type(df).__name__}")
    out = df.copy()
    testable = None
    if "testable" in out.columns:
        testable = out.pop("testable").astype(bool).to_numpy()
    for col in out.columns:
        if is_p_column(col):
            out[col] = [format_p(float(v)) if isinstance(v, float | np.floating | int) and not isinstance(v, bool)
                        else (NA if v is None else str(v)) for v in out[col]]
        elif isinstance(col, str) and "held" in col.lower():
            out[col] = [_verdict(v) for v in out[col]]
            if testable is not None:
                out[col] = np.where(testable, out[col], "not testable")
    if "claim" in out.columns and bare_index(out.index):
        out = out.set_index("claim")
    first = [c for c in CLAIM_COLUMNS_FIRST if c in out.columns]  # what a reader needs before scrolling right
    return out[first + [c for c in out.columns if c not in first]]


def with_paper_detection(df: pd.DataFrame, percent: int = PAPER_ACTIVATION_PERCENT) -> pd.DataFrame:
    """Put the paper's detection rate beside ours in a comparison table.

    * A table with a ``detected (ours ...)`` column (``experiments.hip_analysis.compare_with_paper``) gets a
      ``detected (paper)`` column right after it: ``percent`` % where the row has a paper landmark
      error, a dash where it has none.
    * A table with a ``landmarks activated`` column and rows named ``paper ...`` (the training chapter)
      gets ``percent`` % in those rows.

    ``percent`` defaults to the preprint's 90 % (Table 5 reports errors at 90 % activation)."""
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"with_paper_detection expects a pandas DataFrame, got {type(df).__name__}")
    out = df.copy()
    rate = f"{percent} %"
    ours = [c for c in out.columns if isinstance(c, str) and c.startswith("detected (ours")]
    if ours:
        paper_mm = [c for c in out.columns if isinstance(c, str) and c.startswith("landmark") and "paper" in c]
        has = (out[paper_mm[0]].map(lambda v: isinstance(v, str) and v not in ("", "n/a", NA) or
                                    (isinstance(v, float) and not math.isnan(v)))
               if paper_mm else pd.Series(True, index=out.index))
        out.insert(list(out.columns).index(ours[0]) + 1, "detected (paper: preprint Table 5)",
                   np.where(has, rate, NA))
    if "landmarks activated" in out.columns:
        rows = [i for i in out.index if isinstance(i, str) and i.startswith("paper")]
        out.loc[rows, "landmarks activated"] = rate
    return out
