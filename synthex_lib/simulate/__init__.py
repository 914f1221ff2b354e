"""X-ray simulation from CT: one ray-marching engine, naive / heuristic / realistic physics, an optional DeepDRR
adapter, and file input. See :mod:`synthex_lib.simulate.projectors` for the ``render`` contract.

The names below are imported lazily, so that ``synthex --help`` (which imports :mod:`.cli`) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "get_projector": "synthex_lib.simulate.projectors",
    "QUANTITIES": "synthex_lib.simulate.projectors",
    "line_integrals": "synthex_lib.simulate.raymarch",
    "material_line_integrals": "synthex_lib.simulate.raymarch",
    "volume_from_file": "synthex_lib.simulate.volume_io",
    "Volume": "synthex_lib.simulate.volume_io",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'synthex_lib.simulate' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
