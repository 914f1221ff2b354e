"""The projectors by name, in one explicit table: ``naive``, ``heuristic``, ``realistic`` (the ray-marching
engine with three physics) and ``deepdrr`` (the optional DeepDRR back end, CUDA only)."""

from __future__ import annotations

from typing import Any

from synthex_lib.core.errors import ConfigError
from synthex_lib.simulate.deepdrr_adapter import DeepDRRProjector
from synthex_lib.simulate.projectors import HeuristicProjector, NaiveProjector, RealisticProjector

PROJECTORS: dict[str, type] = {"naive": NaiveProjector, "heuristic": HeuristicProjector,
                               "realistic": RealisticProjector}


def get_projector(name: str, **params: Any):
    """A projector by name: ``naive``, ``heuristic``, ``realistic`` or ``deepdrr`` (optional, CUDA only).

    ``params`` are the fields of the projector's class (``step_mm``, ``photon_count`` ...); an unknown name or
    parameter raises :class:`ConfigError`.
    """
    if name == "deepdrr":
        return DeepDRRProjector(**params)
    if name not in PROJECTORS:
        raise ConfigError(f"unknown projector {name!r}: choose one of {', '.join([*PROJECTORS, 'deepdrr'])}")
    try:
        return PROJECTORS[name](**params)
    except TypeError as exc:
        raise ConfigError(f"projector {name!r}: invalid parameters {sorted(params)} ({exc})") from None
