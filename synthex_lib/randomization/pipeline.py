"""The batched domain-randomization pipeline: a tree of effects, sequences and "some of" groups.

Configuration (a dict, or the same as a YAML string)::

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

Randomness: every sample owns the uniforms ``seeded_rng(seed, "domain-randomization",
index, epoch).random(K)``, K fixed by the configuration; each node reads its own slots of that
row (gate, choices, parameters, field offsets). A sample's result therefore depends only on (seed,
index, epoch) and the configuration, never on the batch it is in or on the number of DataLoader
workers (bit for bit with the same batch composition; to float rounding of a grouped convolution
otherwise). Switching a step off with ``enabled: false`` keeps every other step's draws; removing
a step or changing a control-grid size re-deals the slots after it.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.randomization.base import Batch, Effect
from synthex_lib.randomization.presets import preset_config
from synthex_lib.randomization.registry import EFFECTS, effect_class

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
class _Builder:
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


def _build(spec: Any, b: _Builder, where: str) -> Node:
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
    node.children = [_build(c, b, f"{where}.{kind}[{i}]") for i, c in enumerate(children_spec)]
    for c in node.children:
        if isinstance(c, EffectNode) and c.effect.resizes:
            raise ConfigError(f"{where}: effect '{c.effect.name}' changes the image size and must be a top-level "
                              "step with p = 1")
    return node


def _walk(nodes: list[Node]) -> Iterator[Node]:
    for n in nodes:
        yield n
        if isinstance(n, GroupNode):
            yield from _walk(n.children)


def _apply_overrides(steps: list[Any], overrides: Any) -> list[Any]:
    if overrides is None:
        return steps
    if not isinstance(overrides, dict):
        raise ConfigError(f"'overrides' must map step names to parameter edits, got {overrides!r}")
    steps = copy.deepcopy(steps)
    found: dict[str, dict[str, Any]] = {}
    names = _Builder()

    def collect(spec: Any) -> None:  # same naming order as _build
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


class DomainRandomization:
    """Callable batch randomizer (see the module docstring for the configuration format).

    ``__call__`` takes and returns a batch dict: ``image`` float [B, 1, H, W], ``labels`` int64
    [B, H, W], ``landmarks`` float [B, L, 2] as (x = col, y = row) pixels, ``visible`` bool [B, L]
    (labels/landmarks/visible may be absent). Optional ``index`` (int [B], dataset sample index;
    default arange(B)) and ``epoch`` (int; default 0) key the randomness. Other keys pass through
    unchanged (build heatmaps *after* this call, from the returned landmarks). Work happens on the
    image's device; a preset that crops returns the cropped size.
    """

    def __init__(self, steps: list[Node], *, seed: int = 0, name: str = "custom", n_slots: int | None = None):
        self.steps = steps
        self.seed = int(seed)
        self.name = name
        self.n_slots = n_slots if n_slots is not None else _count_slots(steps)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any] | str, seed: int = 0) -> DomainRandomization:
        """Build from a dict or a YAML string (see the module docstring); raises :class:`ConfigError`."""
        if isinstance(config, str):
            try:
                config = yaml.safe_load(config)
            except yaml.YAMLError as e:
                raise ConfigError(f"domain randomization config is not valid YAML: {e}") from e
        if isinstance(config, str):  # a bare preset name
            return cls.from_preset(config, seed=seed)
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
        steps_spec = _apply_overrides(steps_spec, config.get("overrides"))
        b = _Builder()
        steps = [_build(s, b, f"steps[{i}]") for i, s in enumerate(steps_spec)]
        for i, s in enumerate(steps):
            if isinstance(s, EffectNode) and s.effect.resizes and (s.p != 1.0 or not s.enabled):
                raise ConfigError(f"steps[{i}]: effect '{s.effect.name}' changes the image size, so it needs p = 1 "
                                  "and enabled (remove the step to switch it off)")
        return cls(steps, seed=seed, name=str(name), n_slots=b.slots)

    @classmethod
    def from_spec(cls, spec: Any, seed: int = 0) -> DomainRandomization:
        """What a command-line option or a papermill parameter carries: a preset name, a config
        dict, a YAML/JSON string, or the path of a ``.yaml``/``.yml``/``.json`` file holding one."""
        if isinstance(spec, DomainRandomization):
            return spec
        if isinstance(spec, str) and spec.strip().lower().endswith((".yaml", ".yml", ".json")):
            path = Path(spec.strip())
            if not path.is_file():
                raise ConfigError(f"domain randomization config file {path} does not exist")
            return cls.from_config(path.read_text(), seed=seed)
        return cls.from_config(spec, seed=seed)

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, *, reproduce_defects: bool = False) -> DomainRandomization:
        """A named preset: ``none``, ``regular``, ``strong`` (paper text), ``official-regular``,
        ``official-strong`` (released code). ``reproduce_defects`` makes ``official-strong`` keep the
        released code's label misalignment (elastic step moves the image only) and 8-bit affine."""

        return cls.from_config(preset_config(name, reproduce_defects=reproduce_defects), seed=seed)

    def to_config(self) -> dict[str, Any]:
        """Plain dict (YAML-safe) that :meth:`from_config` turns back into an equal pipeline."""
        return {"name": self.name, "steps": [s.to_config() for s in self.steps]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_config(), sort_keys=False)

    # -- introspection --------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        return list(_walk(self.steps))

    def effect_names(self) -> list[str]:
        """Names of the effect steps (what ``overrides`` keys refer to)."""
        return [n.name for n in _walk(self.steps) if isinstance(n, EffectNode)]

    def output_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        for s in self.steps:
            if isinstance(s, EffectNode) and s.effect.resizes:
                hw = s.effect.output_size(hw)
        return hw

    def __repr__(self) -> str:
        return f"DomainRandomization(name={self.name!r}, seed={self.seed}, effects={self.effect_names()})"

    # -- running --------------------------------------------------------------------------------
    def draws(self, index: Any, epoch: int) -> torch.Tensor:
        """float64 [B, K] uniforms of the samples ``index`` at ``epoch`` (CPU)."""
        idx = [int(i) for i in index]
        if self.n_slots == 0:
            return torch.zeros((len(idx), 0), dtype=torch.float64)
        u = np.stack([seeded_rng(self.seed, "domain-randomization", i, int(epoch)).random(self.n_slots)
                      for i in idx])
        return torch.from_numpy(u)

    def fired(self, index: Any, epoch: int = 0) -> list[list[str]]:
        """Names of the effects that fire, in order, for each sample ``index`` at ``epoch`` (the
        same draws as :meth:`__call__`, without touching any image)."""
        u = self.draws(index, epoch)
        names: list[list[str]] = [[] for _ in range(u.shape[0])]
        active = torch.ones(u.shape[0], dtype=torch.bool)
        for node in self.steps:
            _trace(node, u, active, names)
        return names

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        b = _as_batch(batch)
        n = b.size
        index = batch.get("index")
        index = list(range(n)) if index is None else (index.tolist() if hasattr(index, "tolist") else list(index))
        if len(index) != n:
            raise DataError(f"batch key 'index' has {len(index)} entries for {n} images")
        epoch = batch.get("epoch", 0)
        epoch = int(epoch.flatten()[0]) if isinstance(epoch, torch.Tensor) else int(epoch)
        u = self.draws(index, epoch)
        active = torch.ones(n, dtype=torch.bool)
        for node in self.steps:
            b = _run(node, b, u, active)
        out = dict(batch)
        out["image"] = b.image
        for k in ("labels", "landmarks", "visible"):
            if getattr(b, k) is not None:
                out[k] = getattr(b, k)
        return out


def _count_slots(nodes: list[Node]) -> int:
    top = 0
    for n in _walk(nodes):
        if isinstance(n, EffectNode):
            k = 1 + n.effect.n_draws
        else:
            k = 1 + (1 + len(n.children) if n.kind == "some_of" else 0)
        top = max(top, n.slot + k)
    return top


def _run(node: Node, b: Batch, u: torch.Tensor, active: torch.Tensor) -> Batch:
    fire = active & (u[:, node.slot] < node.p) if node.p < 1.0 else active.clone()
    if isinstance(node, EffectNode):
        if not node.enabled or not bool(fire.any()):
            return b
        d = u[:, node.slot + 1: node.slot + 1 + node.effect.n_draws]
        if bool(fire.all()):
            return node.effect.apply(b, d).adopt(b)
        idx = fire.nonzero().flatten()
        keys = ("image", "labels", "landmarks", "visible") if node.effect.spatial else ("image",)
        sub = node.effect.apply(b.select(idx, keys), d[idx])
        b.assign(idx, sub)
        return b
    if not bool(fire.any()):
        return b
    if node.kind == "sequence":
        for c in node.children:
            b = _run(c, b, u, fire)
        return b
    count, order = _some_of_order(node, u)
    for pos in range(node.n[1]):
        at_pos = fire & (count > pos)
        for ci, c in enumerate(node.children):
            m = at_pos & (order[:, pos] == ci)
            if bool(m.any()):
                b = _run(c, b, u, m)
    return b


def _some_of_order(node: GroupNode, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per sample: how many children run, and the random order of the children."""
    lo, hi = node.n
    count = lo + (u[:, node.slot + 1] * (hi - lo + 1)).long().clamp_max(hi - lo)
    order = torch.argsort(u[:, node.slot + 2: node.slot + 2 + len(node.children)], dim=1)
    return count, order


def _trace(node: Node, u: torch.Tensor, active: torch.Tensor, names: list[list[str]]) -> None:
    fire = active & (u[:, node.slot] < node.p) if node.p < 1.0 else active.clone()
    if isinstance(node, EffectNode):
        if node.enabled:
            for i in fire.nonzero().flatten().tolist():
                names[i].append(node.name)
        return
    if node.kind == "sequence":
        for c in node.children:
            _trace(c, u, fire, names)
        return
    count, order = _some_of_order(node, u)
    for pos in range(node.n[1]):
        for ci, c in enumerate(node.children):
            _trace(c, u, fire & (count > pos) & (order[:, pos] == ci), names)


def _as_batch(batch: dict[str, Any]) -> Batch:
    if not isinstance(batch, dict) or "image" not in batch:
        raise DataError("domain randomization expects a dict with at least 'image' [B, 1, H, W]")
    img = batch["image"]
    if not isinstance(img, torch.Tensor) or img.dim() != 4 or img.shape[1] != 1 or not img.is_floating_point():
        raise DataError(f"batch 'image' must be a float tensor [B, 1, H, W], got "
                        f"{getattr(img, 'dtype', type(img))} {tuple(getattr(img, 'shape', ()))}")
    n, _, h, w = img.shape
    # NaN propagates through amax/amin: two cheap reductions instead of isfinite(img) (15x slower)
    if not bool(torch.isfinite(torch.stack([img.amax(), img.amin()])).all()):
        raise DataError("batch 'image' holds NaN or infinite values; fix the data (or its loader) before "
                        "domain randomization")
    labels, lm, vis = batch.get("labels"), batch.get("landmarks"), batch.get("visible")
    if labels is not None and (not isinstance(labels, torch.Tensor) or tuple(labels.shape) != (n, h, w)):
        raise DataError(f"batch 'labels' must be an integer tensor [B, H, W] = {(n, h, w)}, got "
                        f"{tuple(getattr(labels, 'shape', ()))}")
    if labels is not None:
        if labels.is_floating_point():
            raise DataError("batch 'labels' must be an integer tensor (int64), got floating point")
        labels = labels.long()
    if lm is not None:
        if not isinstance(lm, torch.Tensor) or lm.dim() != 3 or lm.shape[0] != n or lm.shape[2] != 2:
            raise DataError(f"batch 'landmarks' must be float [B, L, 2] (x, y), got {tuple(getattr(lm, 'shape', ()))}")
        lm = lm.float() if not lm.is_floating_point() else lm
        if vis is None:
            vis = torch.isfinite(lm).all(-1)
        elif not isinstance(vis, torch.Tensor) or tuple(vis.shape) != tuple(lm.shape[:2]):
            raise DataError(f"batch 'visible' must be bool [B, L] = {tuple(lm.shape[:2])}, got "
                            f"{tuple(getattr(vis, 'shape', ()))}")
        vis = vis.bool()
    return Batch(img, labels, lm, vis)


__all__ = ["DomainRandomization", "EFFECTS"]
