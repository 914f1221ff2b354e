"""Live domain-randomization explorer for Jupyter (ipywidgets).

``dr_explorer(sample)`` shows controls for the preset, the seed, the epoch and every effect of the
preset (on/off, probability, each parameter's range), and a grid of randomized copies of
``sample`` with label and landmark overlays that redraws whenever a control changes. The controls
edit the preset through ``overrides`` (see :mod:`synthex_lib.randomization.pipeline`), so
``explorer.config`` is a configuration that papermill, the CLI or ``DomainRandomization.from_config``
accept as it is.
"""

from __future__ import annotations

import copy
from typing import Any

import ipywidgets as w
import matplotlib.pyplot as plt
from IPython.display import display

from synthex_lib.figures.explorer import (
    MAX_COPIES,
    Control,
    control_value,
    explorer_figure,
    named_steps,
    step_controls,
)
from synthex_lib.randomization import DomainRandomization, preset_names
from synthex_lib.randomization.base import Param

_LAYOUT = w.Layout(width="360px")
_STYLE = {"description_width": "110px"}

#: kept for callers of the earlier private name
_named_steps = named_steps


def _control_widget(c: Control) -> w.Widget:
    """The ipywidget of one :class:`~synthex_lib.figures.explorer.Control` (kind-specific)."""
    kw: dict[str, Any] = {"description": c.key, "layout": _LAYOUT, "style": _STYLE, "disabled": c.disabled}
    slider = {**kw, "continuous_update": False}
    if c.kind == "range":
        return w.FloatRangeSlider(value=list(c.value), min=c.lo, max=c.hi, step=c.step, readout_format=".3g",
                                  **slider)
    if c.kind == "int_range":
        return w.IntRangeSlider(value=list(c.value), min=c.lo, max=c.hi, **slider)
    if c.kind == "float":
        return w.FloatSlider(value=c.value, min=c.lo, max=c.hi, step=c.step, readout_format=".3g", **slider)
    if c.kind == "int":
        return w.IntSlider(value=c.value, min=c.lo, max=c.hi, **slider)
    if c.kind == "bool":
        return w.Checkbox(value=c.value, **({**kw, "layout": w.Layout()} if c.raw else kw))
    if c.kind == "choice":
        return w.Dropdown(options=list(c.options), value=c.value, **kw)
    if c.kind == "choices":
        return w.SelectMultiple(options=list(c.options), value=tuple(c.value), rows=len(c.options), **kw)
    return w.Text(value=str(c.value), **kw)  # int_choices as "2, 3, 4"


class DRExplorer:
    """The explorer's state and widgets (``widget`` is what Jupyter displays)."""

    def __init__(self, sample: dict[str, Any], preset: str = "strong", seed: int = 0, copies: int = 6,
                 columns: int = 3):
        self.sample = sample
        self.preset = w.Dropdown(options=preset_names(), value=preset, description="preset", style=_STYLE)
        self.seed = w.IntText(value=seed, description="seed", style=_STYLE, layout=w.Layout(width="200px"))
        self.epoch = w.IntText(value=0, description="epoch", style=_STYLE, layout=w.Layout(width="200px"))
        self.copies = w.IntSlider(value=copies, min=1, max=MAX_COPIES, description="copies", style=_STYLE,
                                  continuous_update=False)
        self.columns = columns
        self.status = w.HTML()
        self.effects = w.Accordion()
        self.out = w.Output()
        self._controls: dict[str, dict[str, tuple[Param | None, w.Widget]]] = {}
        self.preset.observe(self._on_preset, names="value")
        for c in (self.seed, self.epoch, self.copies):
            c.observe(self._on_change, names="value")
        self._build_effects()
        self.widget = w.VBox([w.HBox([self.preset, self.seed, self.epoch, self.copies]), self.effects, self.status,
                              self.out])
        self.widget.explorer = self  # programmatic access from the displayed widget
        self.render()

    # -- controls --------------------------------------------------------------------------------
    def _build_effects(self) -> None:
        self._controls = {}
        self._specs: dict[str, dict[str, Control]] = {}
        panels, titles = [], []
        for st in step_controls(self.preset.value):
            ctl: dict[str, tuple[Param | None, w.Widget]] = {}
            for key, c in st.controls.items():
                widget = _control_widget(c)
                widget.observe(self._on_change, names="value")
                ctl[key] = (c.spec, widget)
            panels.append(w.VBox([c for _, c in ctl.values()]))
            titles.append(st.title)
            self._controls[st.name] = ctl
            self._specs[st.name] = st.controls
        self.effects.children = panels
        self.effects.titles = tuple(titles)
        self.effects.selected_index = None

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, ctl in self._controls.items():
            out[name] = {}
            for key, (_, widget) in ctl.items():
                out[name][key] = control_value(self._specs[name][key], widget.value)
        return out

    @property
    def config(self) -> dict[str, Any]:
        """The configuration the controls describe (a preset plus overrides)."""
        return {"base": self.preset.value, "overrides": copy.deepcopy(self.overrides)}

    def pipeline(self) -> DomainRandomization:
        return DomainRandomization.from_config(self.config, seed=int(self.seed.value))

    # -- drawing ---------------------------------------------------------------------------------
    def figure(self) -> plt.Figure:
        """Input plus ``copies`` randomized copies (sample keys 0..copies-1) with overlays
        (:func:`synthex_lib.figures.explorer.explorer_figure`, the same figure ``synthex explore`` serves)."""
        return explorer_figure(self.sample, self.config, seed=int(self.seed.value), epoch=int(self.epoch.value),
                               copies=int(self.copies.value), columns=self.columns)

    def render(self) -> None:
        try:
            fig = self.figure()
        except Exception as e:  # a control set to an invalid value: say so, keep the last figure
            self.status.value = f"<span style='color:#b00'>{type(e).__name__}: {e}</span>"
            return
        self.status.value = ""
        with self.out:
            self.out.clear_output(wait=True)
            display(fig)
        plt.close(fig)

    def _on_preset(self, _: Any) -> None:
        self._build_effects()
        self.render()

    def _on_change(self, _: Any) -> None:
        self.render()


def dr_explorer(sample: dict[str, Any], preset: str = "strong", seed: int = 0, copies: int = 6) -> w.VBox:
    """Live explorer of the domain randomization of one ``sample`` (``image`` [H, W] or [1, H, W],
    ``labels`` [H, W], ``landmarks`` [L, 2] as (x, y) pixels, ``visible`` [L]); returns the widget to
    display (``widget.explorer`` is the :class:`DRExplorer` behind it)."""
    return DRExplorer(sample, preset=preset, seed=seed, copies=copies).widget
