"""Name -> effect class registry (the names used in configurations)."""

from __future__ import annotations

from synthex_lib.core.errors import ConfigError
from synthex_lib.randomization.base import Effect
from synthex_lib.randomization.filters import Blur, Pooling, SharpenEmboss
from synthex_lib.randomization.intensity import (
    BoxCorruption,
    Contrast,
    Dropout,
    Gamma,
    Invert,
    Multiply,
    Noise,
    SaltPepper,
)
from synthex_lib.randomization.spatial import Affine, Crop, Elastic, PiecewiseAffine

#: Every effect by configuration name, regular ones first, then the paper's 11 strong ones, then
#: the official code's elastic step.
EFFECTS: dict[str, type[Effect]] = {
    cls.name: cls
    for cls in (Noise, Gamma, Crop, Invert, SaltPepper, Affine, Contrast, Blur, BoxCorruption, Dropout,
                SharpenEmboss, Pooling, Multiply, PiecewiseAffine, Elastic)
}


def effect_class(name: object) -> type[Effect]:
    """The effect class called ``name``; raises :class:`ConfigError` listing the valid names."""
    if not isinstance(name, str) or name not in EFFECTS:
        raise ConfigError(f"unknown domain-randomization effect {name!r}; valid effects: {', '.join(EFFECTS)}")
    return EFFECTS[name]
