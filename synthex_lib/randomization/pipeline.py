"""Running the domain-randomization pipeline: the steps of a configuration applied to a batch.

:mod:`synthex_lib.randomization.config` parses and validates a configuration (a tree of effects,
sequences and "some of" groups; its docstring gives the format) into steps; this module holds the
callable :class:`DomainRandomization` that applies them to a batch.

Randomness: every sample owns the uniforms ``seeded_rng(seed, "domain-randomization",
index, epoch).random(K)``, K fixed by the configuration; each node reads its own slots of that
row (gate, choices, parameters, field offsets). A sample's result therefore depends only on (seed,
index, epoch) and the configuration, never on the batch it is in or on the number of DataLoader
workers (bit for bit with the same batch composition; to float rounding of a grouped convolution
otherwise). Switching a step off with ``enabled: false`` keeps every other step's draws; removing
a step or changing a control-grid size re-deals the slots after it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import yaml

from synthex_lib.core.errors import DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.randomization.base import Batch
from synthex_lib.randomization.config import (
    EffectNode,
    GroupNode,
    Node,
    at_resolution,
    count_slots,
    parse_config,
    read_spec,
    steps_config,
    walk,
)
from synthex_lib.randomization.presets import REFERENCE_PX, preset_config
from synthex_lib.randomization.registry import EFFECTS


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
        self.n_slots = n_slots if n_slots is not None else count_slots(steps)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: dict[str, Any] | str, seed: int = 0) -> DomainRandomization:
        """Build from a dict, a YAML string or a preset name (see :mod:`synthex_lib.randomization.config`);
        raises :class:`ConfigError`."""
        parsed = parse_config(config)
        return cls(parsed.steps, seed=seed, name=parsed.name, n_slots=parsed.n_slots)

    @classmethod
    def from_spec(cls, spec: Any, seed: int = 0) -> DomainRandomization:
        """What a command-line option or a papermill parameter carries: a preset name, a config
        dict, a YAML/JSON string, or the path of a ``.yaml``/``.yml``/``.json`` file holding one."""
        if isinstance(spec, DomainRandomization):
            return spec
        return cls.from_config(read_spec(spec), seed=seed)

    @classmethod
    def from_preset(cls, name: str, seed: int = 0, *, reproduce_defects: bool = False) -> DomainRandomization:
        """A named preset: ``none``, ``regular``, ``strong`` (paper text), ``official-regular``,
        ``official-strong`` (released code). ``reproduce_defects`` makes ``official-strong`` keep the
        released code's label misalignment (elastic step moves the image only) and 8-bit affine."""

        return cls.from_config(preset_config(name, reproduce_defects=reproduce_defects), seed=seed)

    def at_resolution(self, image_px: int, reference_px: int = REFERENCE_PX) -> DomainRandomization:
        """This randomization for images of ``image_px`` pixels when its pixel lengths (translation, blur sigma
        and kernels, pooling kernels, elastic displacement: the parameters with ``unit="px"``) are written for
        ``reference_px`` (the presets: the paper's 360 px images): each is scaled by ``image_px / reference_px``
        (integers round half up, never below their lower bound), so that an effect does the same to the anatomy
        at any network resolution. Relative parameters (crop fraction, box and dropout sizes) and the 3 x 3
        sharpen/emboss kernels are left as they are. The same seed and sample key draw the same relative values.
        Returns ``self`` when the sizes are equal."""
        if int(image_px) == int(reference_px):
            return self
        steps = at_resolution(self.steps, int(image_px) / int(reference_px))
        return DomainRandomization(steps, seed=self.seed, name=f"{self.name} ({reference_px} px lengths at "
                                   f"{image_px} px)", n_slots=self.n_slots)

    def to_config(self) -> dict[str, Any]:
        """Plain dict (YAML-safe) that :meth:`from_config` turns back into an equal pipeline."""
        return steps_config(self.name, self.steps)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_config(), sort_keys=False)

    # -- introspection --------------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        return list(walk(self.steps))

    def effect_names(self) -> list[str]:
        """Names of the effect steps (what ``overrides`` keys refer to)."""
        return [n.name for n in walk(self.steps) if isinstance(n, EffectNode)]

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
