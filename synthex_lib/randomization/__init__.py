"""Domain randomization of X-ray batches (paper Methods, "Domain randomization"), label-consistent.

``DomainRandomization.from_preset(name, seed=0)`` returns a callable on batch dicts (``image``
float32 [B, 1, H, W], ``labels`` int64 [B, H, W], ``landmarks`` float32 [B, L, 2] as (x = col,
y = row) pixels, ``visible`` bool [B, L], optional ``index`` [B] and ``epoch``). Presets: ``none``,
``regular``, ``strong`` (paper text), ``official-regular``, ``official-strong`` (released code);
see :mod:`synthex_lib.randomization.presets` for how they differ. Any preset is a plain dict/YAML
(``to_config`` / ``from_config``).
"""

from synthex_lib.core.errors import ConfigError
from synthex_lib.randomization.pipeline import DomainRandomization
from synthex_lib.randomization.presets import PRESET_DOCS, preset_config, preset_names
from synthex_lib.randomization.registry import EFFECTS, effect_class

__all__ = ["ConfigError", "DomainRandomization", "EFFECTS", "PRESET_DOCS", "effect_class", "preset_config",
           "preset_names"]
