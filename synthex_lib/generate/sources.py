"""The controlled-study sources, in one explicit table.

A source yields :class:`~synthex_lib.datasets.cases.ControlledCase` objects for a profile and a
seed: the virtual lab samples poses and emulates the real images; DeepFluoro reads the real
images with their registered projection matrices. A new source (another real dataset) is one
function returning such cases, added to :data:`SOURCES`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.cases import ControlledCase
from synthex_lib.generate.lab_source import lab_source
from synthex_lib.realdata.deepfluoro import controlled_cases as deepfluoro_cases

#: name -> factory(profile, seed, **options) -> iterator of ControlledCase
SOURCES: dict[str, Callable[..., Iterator[ControlledCase]]] = {
    "lab": lab_source,
    "deepfluoro": deepfluoro_cases,
}


def get_source(name: str) -> Callable[..., Iterator[ControlledCase]]:
    """The factory of a controlled-study source; ConfigError naming the choices for an unknown name."""
    if name not in SOURCES:
        known = ", ".join(sorted(SOURCES))
        raise ConfigError(f"unknown dataset {name!r} for a controlled study: choose one of {known}")
    return SOURCES[name]
