"""Sources of precisely matched (controlled-study) cases.

A controlled study renders naive, heuristic and realistic replicas of every "real" image at
exactly the same specimen and pose. A *source* yields :class:`ControlledCase` objects: the
virtual lab's source (``"lab"``) samples poses and emulates the real images; the DeepFluoro
source (``"deepfluoro"``) reads the real images with their registered projection matrices.
The table of sources is :data:`synthex_lib.generate.sources.SOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.datasets.layout import SpecimenImages


@dataclass
class ControlledCase:
    """One specimen of a controlled study.

    Attributes:
        group: specimen key in the HDF5 files (``"01"`` ...).
        specimen: CT, labels and 3D landmarks (LPS mm).
        P: float64 [N, 3, 4], LPS mm -> pixel (col, row) of the stored image size.
        image_size: (W, H) of the stored images.
        real: the real images with their labels when the dataset has them (DeepFluoro), or None
            when the source's real images are to be emulated (virtual lab).
        device: name of the imaging device of the real images (``"cios-fusion"``, ``"loopx"``).
    """

    group: str
    specimen: Specimen
    P: np.ndarray
    image_size: tuple[int, int]
    real: SpecimenImages | None = None
    device: str = "cios-fusion"
