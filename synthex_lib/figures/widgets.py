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

from synthex_lib.figures.overlay import as_batch, batch_item, draw_sample
from synthex_lib.randomization import DomainRandomization, effect_class, preset_config, preset_names
from synthex_lib.randomization.base import Param
from synthex_lib.randomization.config import StepBuilder

_LAYOUT = w.Layout(width="360px")
_STYLE = {"description_width": "110px"}


def _param_widget(name: str, spec: Param, value: Any) -> w.Widget:
    """One control for one parameter (kind-specific); its ``value`` maps back via :func:`_param_value`."""
    lo, hi = spec.ui or spec.bounds or (0.0, 1.0)
    kw = {"description": name, "layout": _LAYOUT, "style": _STYLE, "continuous_update": False}
    if spec.kind == "range":
        lo, hi = min(lo, value[0]), max(hi, value[1])
        return w.FloatRangeSlider(value=list(value), min=lo, max=hi, step=(hi - lo) / 200, readout_format=".3g", **kw)
    if spec.kind == "int_range":
        return w.IntRangeSlider(value=list(value), min=int(min(lo, value[0])), max=int(max(hi, value[1])), **kw)
    if spec.kind == "float":
        lo, hi = min(lo, value), max(hi, value)
        return w.FloatSlider(value=value, min=lo, max=hi, step=(hi - lo) / 200, readout_format=".3g", **kw)
    if spec.kind == "int":
        return w.IntSlider(value=value, min=int(min(lo, value)), max=int(max(hi, value)), **kw)
    kw.pop("continuous_update")
    if spec.kind == "bool":
        return w.Checkbox(value=value, **kw)
    if spec.kind == "choice":
        return w.Dropdown(options=list(spec.options), value=value, **kw)
    if spec.kind == "choices":
        return w.SelectMultiple(options=list(spec.options), value=tuple(dict.fromkeys(value)), rows=len(spec.options),
                                **kw)
    return w.Text(value=", ".join(str(v) for v in value), **kw)  # int_choices


def _param_value(spec: Param, widget: w.Widget) -> Any:
    v = widget.value
    if spec.kind in ("range", "int_range"):
        return list(v)
    if spec.kind == "choices":
        return list(v)
    if spec.kind == "int_choices":
        return [int(t) for t in str(v).replace(",", " ").split()]
    return v


class DRExplorer:
    """The explorer's state and widgets (``widget`` is what Jupyter displays)."""

    def __init__(self, sample: dict[str, Any], preset: str = "strong", seed: int = 0, copies: int = 6,
                 columns: int = 3):
        self.sample = sample
        self.preset = w.Dropdown(options=preset_names(), value=preset, description="preset", style=_STYLE)
        self.seed = w.IntText(value=seed, description="seed", style=_STYLE, layout=w.Layout(width="200px"))
        self.epoch = w.IntText(value=0, description="epoch", style=_STYLE, layout=w.Layout(width="200px"))
        self.copies = w.IntSlider(value=copies, min=1, max=12, description="copies", style=_STYLE,
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
        panels, titles = [], []
        for name, step in _named_steps(preset_config(self.preset.value)["steps"]):
            ctl: dict[str, tuple[Param | None, w.Widget]] = {}
            ctl["p"] = (None, w.FloatSlider(value=step.get("p", 1.0), min=0, max=1, step=0.05, description="p",
                                            layout=_LAYOUT, style=_STYLE, continuous_update=False))
            if "effect" in step:
                ctl["enabled"] = (None, w.Checkbox(value=step.get("enabled", True), description="enabled",
                                                   style=_STYLE))
                cls = effect_class(step["effect"])
                params = cls(**{k: v for k, v in step.items() if k in cls.PARAMS}).params
                for pname, spec in cls.PARAMS.items():
                    ctl[pname] = (spec, _param_widget(pname, spec, params[pname]))
                if cls.resizes:
                    ctl["p"][1].disabled = True
                    ctl["enabled"][1].disabled = True
            elif "some_of" in step:
                n = step.get("n", 1)
                n = list(n) if isinstance(n, list | tuple) else [n, n]
                ctl["n"] = (Param(n, "int_range", "children per sample"),
                            w.IntRangeSlider(value=n, min=0, max=len(step["some_of"]), description="n (some of)",
                                             layout=_LAYOUT, style=_STYLE, continuous_update=False))
            for _, c in ctl.values():
                c.observe(self._on_change, names="value")
            panels.append(w.VBox([c for _, c in ctl.values()]))
            titles.append(name if "effect" in step else f"[group] {name}")
            self._controls[name] = ctl
        self.effects.children = panels
        self.effects.titles = tuple(titles)
        self.effects.selected_index = None

    @property
    def overrides(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, ctl in self._controls.items():
            out[name] = {}
            for key, (spec, widget) in ctl.items():
                out[name][key] = widget.value if spec is None else _param_value(spec, widget)
        return out

    @property
    def config(self) -> dict[str, Any]:
        """The configuration the controls describe (a preset plus overrides)."""
        return {"base": self.preset.value, "overrides": copy.deepcopy(self.overrides)}

    def pipeline(self) -> DomainRandomization:
        return DomainRandomization.from_config(self.config, seed=int(self.seed.value))

    # -- drawing ---------------------------------------------------------------------------------
    def figure(self) -> plt.Figure:
        """Input plus ``copies`` randomized copies (sample keys 0..copies-1) with overlays."""
        n = int(self.copies.value)
        dr = self.pipeline()
        batch = as_batch(self.sample, n)
        out = dr({**batch, "epoch": int(self.epoch.value)})
        fired = dr.fired(range(n), int(self.epoch.value))
        cols = min(self.columns, n + 1)
        rows = -(-(n + 1) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.5 * rows), squeeze=False)
        for ax in axes.flat:
            ax.axis("off")
        draw_sample(axes.flat[0], **batch_item(batch, 0), title="input")
        for i in range(n):
            draw_sample(axes.flat[i + 1], **batch_item(out, i), title=f"#{i}: " + (", ".join(fired[i]) or "-"))
        fig.tight_layout(pad=0.4)
        return fig

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


def _named_steps(steps: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, step) for every effect step and every named group, named as the pipeline names them."""

    names = StepBuilder()
    out: list[tuple[str, dict[str, Any]]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for st in items:
            if "effect" in st:
                out.append((names.unique(str(st.get("name", st["effect"]))), st))
                continue
            if st.get("name"):
                out.append((names.unique(str(st["name"])), st))
            walk(st.get("some_of", st.get("sequence", [])))

    walk(steps)
    return out


def dr_explorer(sample: dict[str, Any], preset: str = "strong", seed: int = 0, copies: int = 6) -> w.VBox:
    """Live explorer of the domain randomization of one ``sample`` (``image`` [H, W] or [1, H, W],
    ``labels`` [H, W], ``landmarks`` [L, 2] as (x, y) pixels, ``visible`` [L]); returns the widget to
    display (``widget.explorer`` is the :class:`DRExplorer` behind it)."""
    return DRExplorer(sample, preset=preset, seed=seed, copies=copies).widget
