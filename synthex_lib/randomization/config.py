"""Configuration of the domain-randomization pipeline: parsing and validating a config into a tree of steps.

A configuration is a dict, the same as a YAML string, or a preset name::

    name: strong                       # free text
    steps:                             # applied in order
      - {effect: crop, size: 0.9}      # an effect: 'effect', optional 'p' (default 1), 'name',
                                       # 'enabled', and the effect's parameters
      - some_of:                       # pick n children per sample (random order), each child
          - {effect: invert, p: 0.5}   # then fires with its own p
          - {effect: blur, p: 0.5, modes: [gaussian]}
        n: 2                           # int or [low, high]
      - sequence: [...]                # children in order, the whole group with probability p
        p: 0.5
    overrides:                         # optional: {node name: {param: value}} edits
      blur: {p: 0.2, sigma: [0, 1]}
    base: strong                       # optional: start from a preset's steps instead of 'steps'

:func:`parse_config` turns it into :class:`EffectNode` / :class:`GroupNode` steps, each owning its
slots of the per-sample uniforms (gate, choices, parameters; see
:mod:`synthex_lib.randomization.pipeline`, which runs the steps on a batch). Bad input raises
:class:`ConfigError` naming the step.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthex_lib.core.errors import ConfigError
from synthex_lib.randomization.base import Effect
from synthex_lib.randomization.presets import preset_config
from synthex_lib.randomization.registry import effect_class

_EFFECT_KEYS = {"effect", "p", "name", "enabled"}


@dataclass
class EffectNode:
    effect: Effect
    name: str
    p: float = 1.0
    enabled: bool = True
    slot: int = 0  # gate uniform; the effect's draws follow

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {"effect": self.effect.name}
        if self.name != self.effect.name:
            d["name"] = self.name
        d["p"] = self.p
        if not self.enabled:
            d["enabled"] = False
        d.update(copy.deepcopy(self.effect.params))
        return d


@dataclass
class GroupNode:
    kind: str  # "sequence" | "some_of"
    children: list[EffectNode | GroupNode]
    p: float = 1.0
    n: tuple[int, int] = (1, 1)
    name: str = ""
    slot: int = 0  # gate; some_of: then n, then one order key per child

    def to_config(self) -> dict[str, Any]:
        d: dict[str, Any] = {self.kind: [c.to_config() for c in self.children], "p": self.p}
        if self.kind == "some_of":
            d["n"] = list(self.n) if self.n[0] != self.n[1] else self.n[0]
        if self.name:
            d["name"] = self.name
        return d


Node = EffectNode | GroupNode


@dataclass
class StepBuilder:
    """Hands out unique step names and consecutive slots of the per-sample uniforms, in configuration order."""

    names: set[str] = field(default_factory=set)
    slots: int = 0

    def take(self, k: int) -> int:
        s = self.slots
        self.slots += k
        return s

    def unique(self, name: str) -> str:
        out, i = name, 2
        while out in self.names:
            out, i = f"{name}-{i}", i + 1
        self.names.add(out)
        return out


def _prob(where: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not (0.0 <= v <= 1.0):
        raise ConfigError(f"{where}: probability 'p' must be a number in [0, 1], got {v!r}")
    return float(v)


def build_step(spec: Any, b: StepBuilder, where: str) -> Node:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: each step must be a mapping with 'effect', 'some_of' or 'sequence', got {spec!r}")
    kinds = [k for k in ("effect", "some_of", "sequence") if k in spec]
    if len(kinds) != 1:
        raise ConfigError(f"{where}: a step needs exactly one of 'effect', 'some_of', 'sequence'; got keys "
                          f"{sorted(spec)}")
    if kinds[0] == "effect":
        cls = effect_class(spec["effect"])
        params = {k: v for k, v in spec.items() if k not in _EFFECT_KEYS}
        eff = cls(**params)
        enabled = spec.get("enabled", True)
        if not isinstance(enabled, bool):
            raise ConfigError(f"{where}: 'enabled' must be true or false, got {enabled!r}")
        name = spec.get("name", eff.name)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: 'name' must be a non-empty string, got {name!r}")
        node = EffectNode(eff, b.unique(name), _prob(f"{where} ({eff.name})", spec.get("p", 1.0)), enabled)
        node.slot = b.take(1 + eff.n_draws)
        return node
    kind = kinds[0]
    extra = sorted(set(spec) - {kind, "p", "n", "name"})
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {extra} in a '{kind}' step; valid: {kind}, p, n, name")
    children_spec = spec[kind]
    if not isinstance(children_spec, list) or not children_spec:
        raise ConfigError(f"{where}: '{kind}' must be a non-empty list of steps")
    gname = b.unique(str(spec["name"])) if spec.get("name") else ""
    node = GroupNode(kind, [], _prob(f"{where} ({kind})", spec.get("p", 1.0)), name=gname)
    if kind == "some_of":
        n = spec.get("n", 1)
        lo_hi = list(n) if isinstance(n, list | tuple) else [n, n]
        if len(lo_hi) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in lo_hi) \
                or not (0 <= lo_hi[0] <= lo_hi[1] <= len(children_spec)):
            raise ConfigError(f"{where}: some_of 'n' must be an int or [low, high] with 0 <= low <= high <= "
                              f"{len(children_spec)} (the number of children), got {n!r}")
        node.n = (lo_hi[0], lo_hi[1])
    node.slot = b.take(1 + (1 + len(children_spec) if kind == "some_of" else 0))
    node.children = [build_step(c, b, f"{where}.{kind}[{i}]") for i, c in enumerate(children_spec)]
    for c in node.children:
        if isinstance(c, EffectNode) and c.effect.resizes:
            raise ConfigError(f"{where}: effect '{c.effect.name}' changes the image size and must be a top-level "
                              "step with p = 1")
    return node


@dataclass
class ParsedConfig:
    """A validated configuration: the top-level steps, the pipeline's name, the number of uniforms per sample."""

    steps: list[Node]
    name: str
    n_slots: int


def parse_config(config: dict[str, Any] | str) -> ParsedConfig:
    """Validate a config (a dict, a YAML string, or a preset name) into steps; raises :class:`ConfigError`."""
    if isinstance(config, str):
        try:
            config = yaml.safe_load(config)
        except yaml.YAMLError as e:
            raise ConfigError(f"domain randomization config is not valid YAML: {e}") from e
    if isinstance(config, str):  # a bare preset name
        config = preset_config(config)
    if not isinstance(config, dict):
        raise ConfigError(f"domain randomization config must be a mapping, got {type(config).__name__}")
    unknown = sorted(set(config) - {"name", "steps", "base", "overrides", "doc"})
    if unknown:
        raise ConfigError(f"domain randomization config: unknown key(s) {unknown}; "
                          "valid: name, steps, base, overrides, doc")
    if "base" in config:
        if "steps" in config:
            raise ConfigError("domain randomization config: give either 'base' or 'steps', not both")
        base = preset_config(config["base"])
        steps_spec = base["steps"]
        name = config.get("name", f"{config['base']} (edited)" if config.get("overrides") else config["base"])
    else:
        steps_spec = config.get("steps", [])
        name = config.get("name", "custom")
    if not isinstance(steps_spec, list):
        raise ConfigError("domain randomization config: 'steps' must be a list")
    steps_spec = apply_overrides(steps_spec, config.get("overrides"))
    b = StepBuilder()
    steps = [build_step(s, b, f"steps[{i}]") for i, s in enumerate(steps_spec)]
    for i, s in enumerate(steps):
        if isinstance(s, EffectNode) and s.effect.resizes and (s.p != 1.0 or not s.enabled):
            raise ConfigError(f"steps[{i}]: effect '{s.effect.name}' changes the image size, so it needs p = 1 "
                              "and enabled (remove the step to switch it off)")
    return ParsedConfig(steps, str(name), b.slots)


def read_spec(spec: Any) -> Any:
    """What a command-line option or a papermill parameter carries, as a config: the text of a
    ``.yaml``/``.yml``/``.json`` file named by ``spec``, else ``spec`` itself (a preset name, a
    config dict, a YAML/JSON string)."""
    if isinstance(spec, str) and spec.strip().lower().endswith((".yaml", ".yml", ".json")):
        path = Path(spec.strip())
        if not path.is_file():
            raise ConfigError(f"domain randomization config file {path} does not exist")
        return path.read_text()
    return spec


def steps_config(name: str, steps: list[Node]) -> dict[str, Any]:
    """Plain dict (YAML-safe) that :func:`parse_config` turns back into equal steps."""
    return {"name": name, "steps": [s.to_config() for s in steps]}


def walk(nodes: list[Node]) -> Iterator[Node]:
    for n in nodes:
        yield n
        if isinstance(n, GroupNode):
            yield from walk(n.children)


def apply_overrides(steps: list[Any], overrides: Any) -> list[Any]:
    if overrides is None:
        return steps
    if not isinstance(overrides, dict):
        raise ConfigError(f"'overrides' must map step names to parameter edits, got {overrides!r}")
    steps = copy.deepcopy(steps)
    found: dict[str, dict[str, Any]] = {}
    names = StepBuilder()

    def collect(spec: Any) -> None:  # same naming order as build_step
        if not isinstance(spec, dict):
            return
        if "effect" in spec:
            found[names.unique(str(spec.get("name", spec["effect"])))] = spec
            return
        if spec.get("name"):
            found[names.unique(str(spec["name"]))] = spec
        children = spec.get("some_of", spec.get("sequence", []))
        for c in children if isinstance(children, list) else []:
            collect(c)

    for it in steps:
        collect(it)
    for name, edits in overrides.items():
        if name not in found:
            raise ConfigError(f"overrides: unknown step '{name}'; valid: {', '.join(found) or '(none)'}")
        if not isinstance(edits, dict):
            raise ConfigError(f"overrides['{name}'] must be a mapping of parameter -> value, got {edits!r}")
        found[name].update(copy.deepcopy(edits))
    return steps


def _scale_px(effect: Effect, factor: float) -> dict[str, Any]:
    """``effect``'s parameters with every pixel length (``Param.unit == "px"``) multiplied by ``factor``; integer
    sizes round half up; nothing goes below its lower bound."""
    out = copy.deepcopy(effect.params)
    for k, spec in effect.PARAMS.items():
        if spec.unit != "px":
            continue
        low = spec.bounds[0] if spec.bounds else 0.0

        def scale(v: float, integer: bool) -> float | int:
            x = v * factor
            return max(int(low), math.floor(x + 0.5)) if integer else max(float(low), x)  # noqa: B023

        if spec.kind in ("range", "int_range"):
            out[k] = [scale(v, spec.kind == "int_range") for v in out[k]]
        elif spec.kind in ("float", "int"):
            out[k] = scale(out[k], spec.kind == "int")
        elif spec.kind == "int_choices":
            out[k] = sorted({scale(v, True) for v in out[k]})
    return out


def at_resolution(nodes: list[Node], factor: float) -> list[Node]:
    """A copy of the steps with every effect's pixel lengths scaled by ``factor`` (image size / the size the
    configuration was written for); the per-sample draws (slots) are unchanged, so the same sample key draws
    the same relative values."""
    if not factor > 0:
        raise ConfigError(f"the resolution factor must be positive, got {factor!r}")
    out: list[Node] = []
    for n in nodes:
        if isinstance(n, EffectNode):
            out.append(EffectNode(type(n.effect)(**_scale_px(n.effect, factor)), n.name, n.p, n.enabled, n.slot))
        else:
            out.append(GroupNode(n.kind, at_resolution(n.children, factor), n.p, n.n, n.name, n.slot))
    return out


def count_slots(nodes: list[Node]) -> int:
    top = 0
    for n in walk(nodes):
        if isinstance(n, EffectNode):
            k = 1 + n.effect.n_draws
        else:
            k = 1 + (1 + len(n.children) if n.kind == "some_of" else 0)
        top = max(top, n.slot + k)
    return top
