"""Sources of precisely matched (controlled-study) cases.

A controlled study renders naive, heuristic and realistic replicas of every "real" image at
exactly the same specimen and pose. A *source* yields :class:`ControlledCase` objects: the
virtual lab's source (``"lab"``) samples poses and emulates the real images; the DeepFluoro
source (``"deepfluoro"``) reads the real images with their registered projection matrices.
The table of sources is :data:`synthex_lib.generate.sources.SOURCES`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

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
        P_true: float64 [N, 3, 4], the poses at which emulated real images are *acquired* (the virtual lab:
            the registered ``P`` plus a registration error, :mod:`synthex_lib.generate.registration`), or
            None when ``P`` is the acquisition pose (simulation-only sets, real datasets whose true pose is
            unknown).
        P_parts: structures registered on their own (DeepFluoro: each femur), label id -> float64
            [N, 3, 4] registered projection of that structure *of the CT* (its 2D label and its landmarks
            are projected with it); absent ids use ``P``.
        part_from_ct: label id -> 4x4 rigid transform (LPS mm) of a structure that moved between the CT and
            the X-ray session (the femurs), mapping its CT position to its session position; absent ids
            did not move.
        acquisition: the specimen as it lies in the X-ray session (femurs articulated, gas moved, drapes:
            :mod:`synthex_lib.anatomy.session`), imaged by the emulated scanner; None: ``specimen`` itself.
    """

    group: str
    specimen: Specimen
    P: np.ndarray
    image_size: tuple[int, int]
    real: SpecimenImages | None = None
    device: str = "cios-fusion"
    P_true: np.ndarray | None = None
    P_parts: dict[int, np.ndarray] = field(default_factory=dict)
    part_from_ct: dict[int, np.ndarray] = field(default_factory=dict)
    acquisition: Any = None

    @property
    def P_acquired(self) -> np.ndarray:
        """[N, 3, 4] the poses the real images are acquired at (``P_true``, else ``P``)."""
        return self.P if self.P_true is None else self.P_true

    @property
    def imaged_specimen(self) -> Any:
        """The specimen the emulated scanner images (``acquisition``, else ``specimen``)."""
        return self.specimen if self.acquisition is None else self.acquisition
