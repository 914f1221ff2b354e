"""The manual annotation of the lab's real tool images: the error a human annotator adds to their labels.

The paper's real continuum-manipulator images were annotated by hand (NMI, 'Surgical robotic tool
detection': "ground-truth segmentation masks and landmark locations were annotated manually"), while
the synthetic images' labels are exact projections. The lab's emulated real images therefore carry an
annotator's error on top of the exact projection, drawn per image from ``image_rng(..., "annotation")``:

* each landmark (the centreline's base and tip) moves by a 2D Gaussian of ``landmark_sd_mm`` per axis in
  the detector plane;
* the outline of the mask moves outwards (positive) or inwards by one offset per image drawn from
  N(0, ``outline_sd_mm``), applied with the Euclidean distance to the mask's boundary in mm.

Both standard deviations are assumptions of the lab (the paper reports no inter-annotator figure): half a
millimetre, about one pixel of the paper's 480 px tool images (0.58 mm). At a coarser stored pixel an
offset smaller than half a pixel leaves the mask unchanged, as it would a human outline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class AnnotationErrorModel:
    """A manual annotator's error, in mm in the detector plane (see the module docstring)."""

    landmark_sd_mm: float = 0.5
    outline_sd_mm: float = 0.5

    def describe(self) -> str:
        """One line for a file's attributes and the book."""
        return (f"manual (emulated): landmarks N(0, {self.landmark_sd_mm} mm) per axis, outline offset "
                f"N(0, {self.outline_sd_mm} mm)")


#: the lab's annotator of its real tool images
MANUAL_ANNOTATION = AnnotationErrorModel()


def offset_mask(mask: np.ndarray, offset_mm: float, pixel_mm: float) -> np.ndarray:
    """A binary mask [H, W] whose outline moved by ``offset_mm`` (> 0 outwards): pixels whose centre lies within
    ``offset_mm`` outside the mask join it (< 0: within ``-offset_mm`` inside leave it); distances in mm are pixel
    distances (``scipy.ndimage.distance_transform_edt``, to the nearest pixel of the other side) times ``pixel_mm``."""
    m = np.asarray(mask, bool)
    if offset_mm == 0 or not m.any() or m.all():
        return m.copy()
    if offset_mm > 0:
        outside_mm = ndimage.distance_transform_edt(~m) * pixel_mm
        return m | (outside_mm <= offset_mm)
    inside_mm = ndimage.distance_transform_edt(m) * pixel_mm
    return m & (inside_mm > -offset_mm)


def annotate(segs: np.ndarray, lands: np.ndarray, visible: np.ndarray, pixel_mm: float,
             rngs: Sequence[np.random.Generator], model: AnnotationErrorModel = MANUAL_ANNOTATION
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The manual labels of exact ones: ``segs`` uint8 [N, H, W] (one foreground id), ``lands`` float32
    [N, 2, L] (row 0 = x = column, row 1 = y), ``visible`` bool [N, L]; one generator per image. Returns new
    arrays; a landmark moved off the image is flagged invisible."""
    segs, lands, visible = np.array(segs), np.array(lands, np.float32), np.array(visible, bool)
    n, h, w = segs.shape
    for i in range(n):
        rng = rngs[i]
        shift = rng.normal(0.0, model.landmark_sd_mm / pixel_mm, size=(2, lands.shape[2]))
        offset = float(rng.normal(0.0, model.outline_sd_mm))
        fg = segs[i] > 0
        if fg.any():
            label = int(segs[i][fg].max())
            segs[i] = offset_mask(fg, offset, pixel_mm).astype(np.uint8) * label
        lands[i] += shift.astype(np.float32)
        inside = (lands[i, 0] >= 0) & (lands[i, 0] <= w - 1) & (lands[i, 1] >= 0) & (lands[i, 1] <= h - 1)
        visible[i] &= inside
    return segs, lands, visible
