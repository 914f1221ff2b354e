"""What every domain-randomization explorer shares: the controls of a preset, the configuration they
describe, and the figure they draw.

Two front ends use it: the live Jupyter widget (:mod:`synthex_lib.figures.widgets`) and the local
web app of ``synthex explore`` (:mod:`synthex_lib.figures.explorer_app`). A preset's controls are, per
named step (effect or named group, named as the pipeline names them), its probability ``p``, its
on/off switch and one control per effect parameter (kind, value and slider extent from the effect's
:class:`~synthex_lib.randomization.base.Param`). Edited values go back as ``overrides`` of the preset
(:mod:`synthex_lib.randomization.config`), so the configuration an explorer shows is one that
``DomainRandomization.from_config``, papermill and the CLI accept as it is.
"""

from __future__ import annotations

import copy
import io
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from synthex_lib.core.errors import ConfigError
from synthex_lib.figures.overlay import as_batch, batch_item, draw_sample
from synthex_lib.randomization import DomainRandomization, effect_class, preset_config
from synthex_lib.randomization.base import Param
from synthex_lib.randomization.config import StepBuilder

#: Most randomized copies an explorer draws (the grid stays readable and a redraw stays under ~1 s).
MAX_COPIES = 12


@dataclass(frozen=True)
class Control:
    """One control of one step.

    ``key``: ``"p"``, ``"enabled"``, ``"n"`` (children per sample of a "some of" group) or a parameter
    name; ``kind``: a :class:`Param` kind (``p`` is a ``"float"`` in [0, 1], ``enabled`` a ``"bool"``);
    ``value``: the preset's value; ``lo``/``hi``/``step``: the slider extent (the parameter's ``ui``
    extent, else its bounds, widened to hold ``value``); ``raw``: True when the widget value *is* the
    config value (``p``, ``enabled``), False when :func:`control_value` converts it with ``spec``.
    """

    key: str
    kind: str
    value: Any
    doc: str = ""
    lo: float | None = None
    hi: float | None = None
    step: float | None = None
    options: tuple[str, ...] = ()
    disabled: bool = False
    spec: Param | None = None

    @property
    def raw(self) -> bool:
        return self.spec is None

    def as_json(self) -> dict[str, Any]:
        """The control as plain JSON data (what the web app's page builds its inputs from)."""
        return {"key": self.key, "kind": self.kind, "value": copy.deepcopy(self.value), "doc": self.doc,
                "lo": self.lo, "hi": self.hi, "step": self.step, "options": list(self.options),
                "disabled": self.disabled}


@dataclass(frozen=True)
class StepControls:
    """The controls of one named step: ``name`` is the ``overrides`` key, ``title`` what a panel shows."""

    name: str
    title: str
    effect: str | None
    controls: dict[str, Control] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "effect": self.effect,
                "controls": [c.as_json() for c in self.controls.values()]}


def named_steps(steps: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
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


def param_control(name: str, spec: Param, value: Any) -> Control:
    """The control of one effect parameter: the slider spans ``spec.ui`` (else ``spec.bounds``, else
    [0, 1]), widened to hold ``value``; float sliders move in 1/200 of their span."""
    lo, hi = spec.ui or spec.bounds or (0.0, 1.0)
    kind = spec.kind
    if kind == "range":
        lo, hi = min(lo, value[0]), max(hi, value[1])
        return Control(name, kind, list(value), spec.doc, float(lo), float(hi), (hi - lo) / 200, spec=spec)
    if kind == "int_range":
        return Control(name, kind, list(value), spec.doc, int(min(lo, value[0])), int(max(hi, value[1])), 1,
                       spec=spec)
    if kind == "float":
        lo, hi = min(lo, value), max(hi, value)
        return Control(name, kind, value, spec.doc, float(lo), float(hi), (hi - lo) / 200, spec=spec)
    if kind == "int":
        return Control(name, kind, value, spec.doc, int(min(lo, value)), int(max(hi, value)), 1, spec=spec)
    if kind == "choices":
        return Control(name, kind, list(dict.fromkeys(value)), spec.doc, options=tuple(spec.options), spec=spec)
    if kind == "int_choices":
        return Control(name, kind, ", ".join(str(v) for v in value), spec.doc, lo, hi, spec=spec)
    return Control(name, kind, value, spec.doc, options=tuple(spec.options), spec=spec)  # bool, choice


def step_controls(preset: str) -> list[StepControls]:
    """The controls of every named step of ``preset`` (raises :class:`ConfigError` for an unknown preset)."""
    out: list[StepControls] = []
    for name, step in named_steps(preset_config(preset)["steps"]):
        ctl: dict[str, Control] = {}
        resizes = False
        if "effect" in step:
            cls = effect_class(step["effect"])
            resizes = cls.resizes
        # a resizing effect (crop) cannot be gated per sample: its p and switch are shown, not editable
        ctl["p"] = Control("p", "float", step.get("p", 1.0), "probability that the step fires", 0.0, 1.0, 0.05,
                           disabled=resizes)
        if "effect" in step:
            ctl["enabled"] = Control("enabled", "bool", step.get("enabled", True), "switch the step on or off",
                                     disabled=resizes)
            params = cls(**{k: v for k, v in step.items() if k in cls.PARAMS}).params
            for pname, spec in cls.PARAMS.items():
                ctl[pname] = param_control(pname, spec, params[pname])
        elif "some_of" in step:
            n = step.get("n", 1)
            n = list(n) if isinstance(n, list | tuple) else [n, n]
            ctl["n"] = Control("n", "int_range", n, "children per sample", 0, len(step["some_of"]), 1,
                               spec=Param(n, "int_range", "children per sample"))
        out.append(StepControls(name, name if "effect" in step else f"[group] {name}", step.get("effect"), ctl))
    return out


def control_value(control: Control, value: Any) -> Any:
    """The configuration value of a control set to ``value`` (a widget's or a JSON request's value):
    ranges and choice lists as lists, ``int_choices`` parsed from text such as ``"2, 4"`` (raises
    ``ValueError`` on a non-integer), everything else as it is. The pipeline validates the result."""
    if control.raw:
        return value
    if control.kind in ("range", "int_range", "choices"):
        return list(value)
    if control.kind == "int_choices":
        return [int(t) for t in str(value).replace(",", " ").split()]
    return value


def explorer_config(preset: str, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The configuration a preset plus edited control values describe: ``{"base": preset, "overrides":
    {step name: {key: config value}}}``; ``values`` maps step name -> control key -> widget value.
    Unknown step or control names raise :class:`ConfigError` naming them."""
    steps = {s.name: s for s in step_controls(preset)}
    overrides: dict[str, dict[str, Any]] = {}
    for name, vals in values.items():
        if name not in steps:
            raise ConfigError(f"explorer: preset '{preset}' has no step '{name}'; steps: {', '.join(steps)}")
        if not isinstance(vals, dict):
            raise ConfigError(f"explorer: step '{name}' needs a mapping of control -> value, got {vals!r}")
        ctl = steps[name].controls
        for key, v in vals.items():
            if key not in ctl:
                raise ConfigError(f"explorer: step '{name}' has no control '{key}'; controls: {', '.join(ctl)}")
            overrides.setdefault(name, {})[key] = control_value(ctl[key], v)
    return {"base": preset, "overrides": overrides}


def check_copies(copies: Any) -> int:
    """``copies`` as an int in [1, MAX_COPIES], else :class:`ConfigError`."""
    if isinstance(copies, bool) or not isinstance(copies, int) or not 1 <= copies <= MAX_COPIES:
        raise ConfigError(f"explorer: 'copies' must be an integer from 1 to {MAX_COPIES}, got {copies!r}")
    return copies


def explorer_figure(sample: dict[str, Any], config: dict[str, Any] | str, seed: int = 0, epoch: int = 0,
                    copies: int = 6, columns: int = 3) -> Figure:
    """The input plus ``copies`` randomized copies of ``sample`` (dataset indices 0..copies-1 at
    ``epoch``) under ``config``, each titled with the effects that fired, labels and landmarks
    overlaid (:func:`synthex_lib.figures.overlay.draw_sample`). ``sample``: ``image`` [H, W] or
    [1, H, W], ``labels`` [H, W], ``landmarks`` [L, 2] (x, y) pixels, ``visible`` [L].

    A plain :class:`matplotlib.figure.Figure` (no pyplot state), so threads of a server may draw at
    once. Raises :class:`ConfigError` for a bad configuration or ``copies``."""
    n = check_copies(copies)
    dr = DomainRandomization.from_config(config, seed=int(seed))
    batch = as_batch(sample, n)
    out = dr({**batch, "epoch": int(epoch)})
    fired = dr.fired(range(n), int(epoch))
    cols = max(1, min(int(columns), n + 1))
    rows = -(-(n + 1) // cols)
    fig = Figure(figsize=(2.4 * cols, 2.5 * rows))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    draw_sample(axes.flat[0], **batch_item(batch, 0), title="input")
    for i in range(n):
        draw_sample(axes.flat[i + 1], **batch_item(out, i), title=f"#{i}: " + (", ".join(fired[i]) or "-"))
    fig.tight_layout(pad=0.4)
    return fig


def figure_png(fig: Figure, dpi: int = 80) -> bytes:
    """The PNG bytes of ``fig`` at ``dpi`` dots per inch."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
