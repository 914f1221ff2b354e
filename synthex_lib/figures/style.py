"""The book's look, set in one place: resolution, fonts, the colour-blind-safe palette, the label colours.

Every figures module imports this module, and importing it applies :func:`book_style` once, so a
chapter gets the same look whichever figures module it imports first (tables included:
:mod:`synthex_lib.figures.tables`).

* Resolution: figures are laid out at ``figure.dpi`` = 100 (so a figure ``COLUMN_IN`` wide is the
  width of the book's text column) and written as PNG at ``BOOK_DPI`` = 150 dpi. In an IPython
  kernel the inline backend is told to write PNGs at ``BOOK_DPI`` whatever ``figure.dpi`` a
  notebook sets later, so no chapter can shrink its figures by lowering ``figure.dpi``.
* Palette: Okabe and Ito, "Color Universal Design" (2008), the colour-blind-safe set of 8 colours
  (also Wong, Nature Methods 8, 441, 2011). Real2Real is gold as in the paper's Fig. 4 (Gao et al.,
  Nature Machine Intelligence 5, 2023); the simulated domains use blue, bluish green and reddish
  purple, none of which a reader with a colour-vision deficiency confuses with gold.
* Labels: ONE colour per label id (:data:`LABEL_COLORS`, :data:`LABEL_CMAP`) for every overlay of the
  book, with :func:`label_legend` naming them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np
from cycler import cycler
from IPython import get_ipython
from IPython.core.pylabtools import select_figure_formats
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib_inline.config import InlineBackend

from synthex_lib.anatomy.chest import CHEST_LABELS
from synthex_lib.anatomy.tool import TOOL_LABEL
from synthex_lib.core.constants import HIP_LABELS
from synthex_lib.figures.tables import install_table_display

#: resolution of every PNG the book shows (dots per inch of the figure's own size)
BOOK_DPI = 150
#: layout resolution: a figure ``COLUMN_IN`` inches wide fills the text column of the book's pages
LAYOUT_DPI = 100
#: width of the book's text column in figure inches (sphinx-book-theme: about 700 CSS px at a 1280 px window)
COLUMN_IN = 7.0

#: Okabe-Ito colours (Okabe and Ito 2008)
OKABE_ITO = {
    "black": "#000000", "orange": "#E69F00", "sky blue": "#56B4E9", "bluish green": "#009E73",
    "yellow": "#F0E442", "blue": "#0072B2", "vermillion": "#D55E00", "reddish purple": "#CC79A7",
}
#: Real2Real's colour in the paper's Fig. 4 (gold); Okabe-Ito's orange is that gold
GOLD = OKABE_ITO["orange"]
#: colour of each image domain in curves and bars; the simulated domains are kept far from gold
DOMAIN_COLORS = {"real": GOLD, "realistic": OKABE_ITO["blue"], "heuristic": OKABE_ITO["bluish green"],
                 "naive": OKABE_ITO["reddish purple"]}
#: the adaptation rows: one colour per synthetic domain they start from, the line style tells the method
DOMAIN_COLORS |= {"realistic-cyclegan": OKABE_ITO["sky blue"], "realistic-adda": OKABE_ITO["sky blue"],
                  "naive-cyclegan": OKABE_ITO["vermillion"], "naive-adda": OKABE_ITO["vermillion"]}
#: the scaled-up set (realistic simulation of the scale cohort): black, the paper's best model
DOMAIN_COLORS |= {"realistic-scaled": OKABE_ITO["black"]}
#: line style of each domain, so that the curves differ without colour too
DOMAIN_STYLES = {"real": "-", "realistic": "--", "heuristic": "-.", "naive": ":",
                 "realistic-cyclegan": "-", "naive-cyclegan": "-", "realistic-adda": "-.", "naive-adda": "-.",
                 "realistic-scaled": "-"}
#: the default colour cycle: Okabe-Ito without yellow (too light on white) and with gold last
COLOR_CYCLE = [OKABE_ITO[c] for c in ("blue", "vermillion", "bluish green", "reddish purple", "sky blue", "black",
                                      "orange")]

#: colours of label ids 1..6, the same in every overlay of the book. For the hip task (DeepFluoro's ids):
#: 1 left hemipelvis, 2 right hemipelvis, 3 vertebrae, 4 upper sacrum, 5 left femur, 6 right femur.
#: Chest and tool label maps reuse the colours by id.
LABEL_COLORS = [OKABE_ITO["vermillion"], OKABE_ITO["blue"], OKABE_ITO["yellow"], OKABE_ITO["reddish purple"],
                OKABE_ITO["bluish green"], OKABE_ITO["sky blue"]]
#: label map colour map for ``imshow(labels, cmap=LABEL_CMAP, vmin=0, vmax=len(LABEL_COLORS))``; 0 is transparent
LABEL_CMAP = ListedColormap(["#00000000", *LABEL_COLORS])
#: landmark markers: visible ones white-filled dots with a black edge, invisible ones (kept, flagged) red crosses
LANDMARK_COLOR = "#ffffff"
INVISIBLE_COLOR = OKABE_ITO["vermillion"]

#: label names per specimen kind (``Specimen.kind``)
LABEL_NAMES: dict[str, dict[int, str]] = {
    "hip": {k: v.replace("-", " ") for k, v in HIP_LABELS.items() if k},
    "chest": {k: v.replace("-", " ") for k, v in CHEST_LABELS.items() if k},
    "tool": {TOOL_LABEL: "continuum manipulator"},
}

BOOK_RC = {
    "figure.dpi": LAYOUT_DPI,
    "savefig.dpi": BOOK_DPI,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "figure.titlesize": 10,
    "axes.prop_cycle": cycler(color=COLOR_CYCLE),
    "image.interpolation": "nearest",
}


def label_color(label: int) -> str:
    """Colour of label id ``label`` (1-based; ids beyond the palette wrap around)."""
    return LABEL_COLORS[(int(label) - 1) % len(LABEL_COLORS)]


def domain_color(name: str, fallback_index: int = 0) -> str:
    """Colour of a curve named after an image domain (``"real strong DR"`` -> gold); other names take
    colours of :data:`COLOR_CYCLE` that are not gold."""
    first = name.split()[0] if name.split() else name
    if first in DOMAIN_COLORS:
        return DOMAIN_COLORS[first]
    others = [c for c in COLOR_CYCLE if c not in DOMAIN_COLORS.values()] or [c for c in COLOR_CYCLE if c != GOLD]
    return others[fallback_index % len(others)]


def landmark_handle(label: str = "landmark", marker: str = "o", color: str = LANDMARK_COLOR) -> Line2D:
    """A legend entry for landmark markers (default: the visible-landmark dot)."""
    if marker == "o":
        return Line2D([], [], ls="", marker="o", ms=5, mfc=color, mec="black", label=label)
    return Line2D([], [], ls="", marker=marker, ms=5, mec=color, mew=1.2, label=label)


def label_legend(target: plt.Axes | plt.Figure, labels: Iterable[int] | None = None, kind: str = "hip",
                 landmarks: bool = False, invisible: bool = False, extra: Iterable[object] = (),
                 **kwargs: object) -> object:
    """Add a legend of the label colours (ids ``labels``, default all of ``kind``) and, if asked, of the
    landmark markers (and any ``extra`` handles), to an axes or above a figure's panels. Returns the legend."""
    names: Mapping[int, str] = LABEL_NAMES.get(kind, {})
    ids = sorted(names) if labels is None else sorted({int(v) for v in labels if int(v) > 0})
    handles: list[object] = [Patch(facecolor=label_color(i), edgecolor="none", label=names.get(i, f"label {i}"))
                             for i in ids]
    if landmarks:
        handles.append(landmark_handle())
    if invisible:
        handles.append(landmark_handle("landmark flagged invisible", "x", INVISIBLE_COLOR))
    handles.extend(extra)
    if isinstance(target, plt.Figure):
        opts = {"loc": "lower center", "ncol": min(len(handles), 4), "frameon": False,
                "bbox_to_anchor": (0.5, 1.0), **kwargs}
        return target.legend(handles=handles, **opts)
    opts = {"loc": "upper right", "frameon": True, "framealpha": 0.85, "fontsize": 7, **kwargs}
    return target.legend(handles=handles, **opts)


def robust_window(image: np.ndarray) -> tuple[float, float]:
    """Grey window of one image: Tukey's fences (quartiles -/+ 1.5 x the interquartile range), clipped
    to the image's range, so that a minority of outliers (dropped-out pixels, the zero padding of a
    warp, salt and pepper) does not stretch the window over the rest of the image."""
    x = np.asarray(image, np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return 0.0, 1.0
    q1, q3 = np.percentile(x, [25, 75])
    lo, hi = max(float(x.min()), q1 - 1.5 * (q3 - q1)), min(float(x.max()), q3 + 1.5 * (q3 - q1))
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def shared_window(images: Iterable[np.ndarray]) -> tuple[float, float]:
    """One grey window for a row of images: the union of their :func:`robust_window` ranges, so that
    intensity effects (multiply, invert, contrast) show as changes against the input."""
    wins = [robust_window(im) for im in images]
    if not wins:
        return 0.0, 1.0
    return min(w[0] for w in wins), max(w[1] for w in wins)


def book_style() -> None:
    """Apply the book's matplotlib settings (:data:`BOOK_RC`) and its table display
    (:func:`synthex_lib.figures.tables.install_table_display`) and, inside an IPython kernel, make the
    inline backend write every PNG at :data:`BOOK_DPI`. Idempotent."""
    mpl.rcParams.update(BOOK_RC)
    install_table_display()
    shell = get_ipython()
    if shell is None:
        return
    cfg = InlineBackend.instance(parent=shell)
    if cfg.print_figure_kwargs.get("dpi") != BOOK_DPI:
        # kept in the inline backend's configuration, so a later `%matplotlib inline` keeps it too
        cfg.print_figure_kwargs = {**cfg.print_figure_kwargs, "dpi": BOOK_DPI}
    if "inline" in str(mpl.rcParams["backend"]):
        select_figure_formats(shell, cfg.figure_formats, **cfg.print_figure_kwargs)

book_style()
