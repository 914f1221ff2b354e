"""Sources of precisely matched (controlled-study) cases.

A controlled study renders naive, heuristic and realistic replicas of every "real" image at
exactly the same specimen and pose. A *source* yields :class:`ControlledCase` objects: the
virtual lab's source (``"lab"``) samples poses and emulates the real images; the DeepFluoro
source (``"deepfluoro"``) reads the real images with their registered projection matrices.
Sources register themselves by name; :func:`get_source` looks one up.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.datasets.layout import SpecimenImages
from synthex_lib.errors import ConfigError


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
    P: np.ndarray  # noqa: N815
    image_size: tuple[int, int]
    real: SpecimenImages | None = None
    device: str = "cios-fusion"


#: name -> factory(profile_name, seed, **options) -> iterator of ControlledCase
_SOURCES: dict[str, Callable[..., Iterator[ControlledCase]]] = {}


def register_source(name: str, factory: Callable[..., Iterator[ControlledCase]]) -> None:
    _SOURCES[name] = factory


def get_source(name: str) -> Callable[..., Iterator[ControlledCase]]:
    # importing these modules registers the built-in sources ("lab" and "deepfluoro")
    import synthex_lib.data.deepfluoro  # noqa: F401
    import synthex_lib.datasets.generate  # noqa: F401

    if name not in _SOURCES:
        known = ", ".join(sorted(_SOURCES))
        raise ConfigError(f"unknown dataset {name!r} for a controlled study: choose one of {known}")
    return _SOURCES[name]
