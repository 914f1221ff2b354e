"""Tables of the randomization presets for the book: each effect's parameters per preset, and how often
each effect fires, measured on the pipeline's own draws."""

from __future__ import annotations

from typing import Any

import pandas as pd

from synthex_lib.randomization.pipeline import DomainRandomization
from synthex_lib.randomization.presets import effect_steps, preset_config
from synthex_lib.randomization.registry import EFFECTS


def preset_table(names: tuple[str, ...] = ("regular", "strong", "official-regular", "official-strong")) -> Any:
    """pandas DataFrame: one row per effect, one column per preset, cells 'p=...; param=value; ...'
    (the step's own probability; '-' where the preset lacks the effect)."""
    table: dict[str, dict[str, str]] = {}
    for name in names:
        for st, _ in effect_steps(preset_config(name)["steps"]):
            params = "; ".join(f"{k}={v}" for k, v in st.items() if k not in ("effect", "name", "p"))
            cell = f"p={st.get('p', 1.0):g}" + (f"; {params}" if params else "")
            table.setdefault(st["effect"], {})[name] = cell
    return pd.DataFrame(table).T.reindex(columns=list(names)).fillna("-")


def firing_rates(names: tuple[str, ...] = ("regular", "strong", "official-regular", "official-strong"),
                 n: int = 4000, seed: int = 0) -> Any:
    """pandas DataFrame of how often (percent of samples) each effect fires under each preset,
    measured on the pipeline's own draws for sample keys 0..n-1, plus the mean number of effects
    per sample."""
    rates: dict[str, dict[str, float]] = {}
    for name in names:
        fired = DomainRandomization.from_preset(name, seed=seed).fired(range(n))
        counts: dict[str, int] = {}
        for f in fired:
            for e in f:
                counts[e] = counts.get(e, 0) + 1
        rates[name] = {e: 100.0 * c / n for e, c in counts.items()}
        rates[name]["effects per sample"] = sum(len(f) for f in fired) / n

    df = pd.DataFrame(rates).reindex(columns=list(names)).fillna(0.0)
    order = [e for e in EFFECTS if e in df.index] + [r for r in df.index if r not in EFFECTS]
    return df.reindex(order)
