"""Building blocks of the domain randomization: the batch, parameter specs, the effect base class.

Every effect works on a *sub-batch* (the samples it fires on) and receives, per sample, a row of
uniform draws in [0, 1) that the pipeline derives from (seed, sample index, epoch). Effects never
touch a global random generator, so a sample's result depends only on its own key, never on the
batch it travels in or on the DataLoader worker that made it.

Shapes and frames: ``image`` float [n, 1, H, W]; ``labels`` int64 [n, H, W]; ``landmarks`` float
[n, L, 2] as (x = col, y = row) pixels with the centre of the top-left pixel at (0, 0);
``visible`` bool [n, L].
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from synthex_lib.core.errors import ConfigError

#: Smallest intensity range used as a divisor (a constant image keeps its value).
TINY = 1e-12


_KEYS = ("image", "labels", "landmarks", "visible")


@dataclass
class Batch:
    """A batch of samples travelling through the pipeline.

    ``owned`` names the tensors this pipeline created (safe to write in place); tensors that came
    from the caller are never modified in place.
    """

    image: torch.Tensor
    labels: torch.Tensor | None = None
    landmarks: torch.Tensor | None = None
    visible: torch.Tensor | None = None
    owned: set[str] = field(default_factory=set)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.image.shape[-2]), int(self.image.shape[-1])

    def select(self, idx: torch.Tensor, keys: tuple[str, ...] = _KEYS) -> Batch:
        """The sub-batch of the samples ``idx`` (int64); keys not in ``keys`` are left out (None)."""
        def sel(k: str) -> torch.Tensor | None:
            t = getattr(self, k)
            return None if t is None or k not in keys else t.index_select(0, idx.to(t.device))
        return Batch(*(sel(k) for k in _KEYS), owned=set(keys))

    def assign(self, idx: torch.Tensor, sub: Batch) -> None:
        """Write the sub-batch ``sub`` back into the samples ``idx`` (same image size)."""
        for key in _KEYS:
            t, s = getattr(self, key), getattr(sub, key)
            if t is None or s is None:
                continue
            if key in self.owned:
                t.index_copy_(0, idx.to(t.device), s)
            else:
                setattr(self, key, t.index_copy(0, idx.to(t.device), s))
                self.owned.add(key)

    def adopt(self, before: Batch) -> Batch:
        """Mark as owned the tensors that differ from ``before`` (fresh) or that ``before`` owned."""
        self.owned = {k for k in _KEYS if getattr(self, k) is not getattr(before, k) or k in before.owned}
        return self

    def with_image(self, image: torch.Tensor) -> Batch:
        return Batch(image, self.labels, self.landmarks, self.visible, owned=self.owned | {"image"})

    def image_out(self) -> torch.Tensor:
        """Where an effect may write its new image: the image itself when the pipeline owns it
        (in-place, saving an allocation), else a new tensor."""
        return self.image if "image" in self.owned else torch.empty_like(self.image)


@dataclass(frozen=True)
class Param:
    """Specification of one effect parameter.

    ``kind``: ``"range"`` (two floats lo <= hi; a single number means lo = hi), ``"int_range"``
    (two ints, inclusive), ``"float"``, ``"int"``, ``"bool"``, ``"choice"`` (one of ``options``),
    ``"choices"`` (a non-empty list drawn from ``options``; repeats weight the draw) or
    ``"int_choices"`` (a non-empty list of ints within ``bounds``). ``unit="px"`` marks a length in pixels
    of the image the effect runs on: :func:`~synthex_lib.randomization.config.at_resolution` scales it when a
    configuration written for one image size runs at another.
    """

    default: Any
    kind: str
    doc: str
    bounds: tuple[float, float] | None = None
    options: tuple[str, ...] = ()
    ui: tuple[float, float] | None = None  #: slider extent in the explorer (default: ``bounds``)
    unit: str = ""  #: "px" for a length in pixels, else "" (dimensionless or relative to the image)


def _check_number(effect: str, name: str, v: Any, bounds: tuple[float, float] | None, integer: bool) -> float:
    ok = isinstance(v, int | float) and not isinstance(v, bool)
    if ok and integer:
        ok = float(v).is_integer()
    if not ok or v != v:  # NaN check
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"effect '{effect}': parameter '{name}' must be {kind}, got {v!r}")
    if bounds is not None and not (bounds[0] <= v <= bounds[1]):
        raise ConfigError(f"effect '{effect}': parameter '{name}' = {v!r} lies outside [{bounds[0]}, {bounds[1]}]")
    return int(v) if integer else float(v)


def validate_param(effect: str, name: str, spec: Param, value: Any) -> Any:
    """Return ``value`` normalised to plain Python types, or raise :class:`ConfigError`."""
    k = spec.kind
    if k in ("range", "int_range"):
        integer = k == "int_range"
        vals = list(value) if isinstance(value, list | tuple) else [value, value]
        if len(vals) != 2:
            raise ConfigError(f"effect '{effect}': parameter '{name}' must be [low, high], got {value!r}")
        lo, hi = (_check_number(effect, name, v, spec.bounds, integer) for v in vals)
        if lo > hi:
            raise ConfigError(f"effect '{effect}': parameter '{name}' has low {lo} > high {hi}")
        return [lo, hi]
    if k in ("float", "int"):
        return _check_number(effect, name, value, spec.bounds, k == "int")
    if k == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"effect '{effect}': parameter '{name}' must be true or false, got {value!r}")
        return value
    if k == "choice":
        if value not in spec.options:
            raise ConfigError(f"effect '{effect}': parameter '{name}' = {value!r} is unknown; "
                              f"valid: {', '.join(spec.options)}")
        return value
    if k == "choices":
        vals = [value] if isinstance(value, str) else list(value) if isinstance(value, list | tuple) else None
        if not vals:
            raise ConfigError(f"effect '{effect}': parameter '{name}' must be a non-empty list drawn from "
                              f"{', '.join(spec.options)}; got {value!r}")
        bad = [v for v in vals if v not in spec.options]
        if bad:
            raise ConfigError(f"effect '{effect}': parameter '{name}' has unknown {bad!r}; "
                              f"valid: {', '.join(spec.options)}")
        return vals
    if k == "int_choices":
        vals = list(value) if isinstance(value, list | tuple) else [value]
        if not vals:
            raise ConfigError(f"effect '{effect}': parameter '{name}' must be a non-empty list of integers")
        return [_check_number(effect, name, v, spec.bounds, True) for v in vals]
    raise AssertionError(f"unknown parameter kind {k}")  # pragma: no cover - programming error


class Effect(ABC):
    """One randomization effect. Subclasses set the class attributes and implement :meth:`apply`.

    ``n_draws`` uniforms per sample are reserved for the effect's scalar parameters (and the
    offsets of its per-pixel random fields); :meth:`apply` turns them into parameter values. It
    returns new tensors, or the input tensors themselves when unchanged, never views of them; it
    may write in place only into ``batch.image_out()``.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    spatial: ClassVar[bool] = False
    resizes: ClassVar[bool] = False
    n_draws: ClassVar[int] = 0
    PARAMS: ClassVar[dict[str, Param]] = {}

    def __init__(self, **params: Any) -> None:
        unknown = sorted(set(params) - set(self.PARAMS))
        if unknown:
            valid = ", ".join(self.PARAMS) or "(none)"
            raise ConfigError(f"effect '{self.name}': unknown parameter(s) {', '.join(unknown)}; valid: {valid}")
        self.params: dict[str, Any] = {
            k: validate_param(self.name, k, spec, params.get(k, spec.default)) for k, spec in self.PARAMS.items()
        }
        self.check()

    def check(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Cross-parameter validation (override when needed)."""

    @abstractmethod
    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        """Randomize ``batch`` (all samples fire); ``u`` is float64 [n, n_draws] on the CPU."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


# ----------------------------------------------------------------------------------------------
# Helpers shared by the effects
# ----------------------------------------------------------------------------------------------

def lerp(bounds: list[float], u: torch.Tensor) -> torch.Tensor:
    """Uniform draw in [lo, hi] from uniforms ``u``."""
    return bounds[0] + (bounds[1] - bounds[0]) * u


def pick(u: torch.Tensor, n: int) -> torch.Tensor:
    """Uniform integer in {0, ..., n-1} from uniforms ``u`` (int64)."""
    return (u * n).long().clamp_(0, n - 1)


def int_between(bounds: list[int], u: torch.Tensor) -> torch.Tensor:
    """Uniform integer in {lo, ..., hi} (inclusive) from uniforms ``u`` (int64)."""
    return bounds[0] + pick(u, bounds[1] - bounds[0] + 1)


def per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample vector [n] to broadcast against ``like`` [n, ...] (dtype/device of like)."""
    return v.to(device=like.device, dtype=like.dtype).view(-1, *([1] * (like.dim() - 1)))


def intensity_range(image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample minimum and range (max - min, at least :data:`TINY`), each [n, 1, 1, 1]."""
    lo = image.amin(dim=(1, 2, 3), keepdim=True)
    hi = image.amax(dim=(1, 2, 3), keepdim=True)
    return lo, (hi - lo).clamp_min(TINY)


#: Seed of the fixed banks of i.i.d. random numbers that per-pixel fields are cut from.
BANK_SEED = 20230214
_BANKS: dict[tuple[str, str, torch.dtype, int], torch.Tensor] = {}


def _bank(kind: str, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    size = max(1 << 22, 1 << math.ceil(math.log2(4 * n)))  # a function of n only: reproducible
    key = (kind, str(device), dtype, size)
    if key not in _BANKS:
        g = torch.Generator().manual_seed(BANK_SEED + (1 if kind == "normal" else 0))
        t = torch.empty(size, dtype=torch.float32)
        if kind == "normal":
            t.normal_(0.0, 1.0, generator=g)
        else:
            t.uniform_(0.0, 1.0, generator=g)
        _BANKS[key] = t.to(device=device, dtype=dtype)
    return _BANKS[key]


def random_field(u: torch.Tensor, shape: tuple[int, ...], device: torch.device, kind: str = "uniform",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[n, *shape] per-pixel i.i.d. random field (``"uniform"`` in [0, 1) or ``"normal"``), one per
    sample, from the sample's uniform draw ``u`` [n].

    Each field is a window, at an offset given by ``u``, of a fixed bank of at least 4 M i.i.d.
    numbers (generated once per device from :data:`BANK_SEED` on the CPU, so CPU and CUDA see the
    same numbers). Within an image the values are exactly i.i.d.; across images the windows
    overlap only as shifted copies, which no network can exploit. This costs one copy instead of
    drawing 100 k numbers per image (the dominant cost of regular DR otherwise), and makes the field
    depend on the sample's key alone.
    """
    n_el = int(math.prod(shape))
    bank = _bank(kind, n_el, device, dtype)
    offsets = (u.to(torch.float64) * (bank.numel() - n_el + 1)).long().clamp_(0, bank.numel() - n_el).tolist()
    if not offsets:
        return torch.empty((0, *shape), device=device, dtype=dtype)
    return torch.stack([bank[o:o + n_el] for o in offsets]).view(len(offsets), *shape)


def landmarks_inside(landmarks: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """bool [n, L]: landmark within the image area (pixel centres 0..W-1, area -0.5..W-0.5)."""
    h, w = hw
    x, y = landmarks[..., 0], landmarks[..., 1]
    return (x >= -0.5) & (x < w - 0.5) & (y >= -0.5) & (y < h - 0.5)


def update_visibility(batch: Batch) -> Batch:
    """Flag landmarks moved out of the image as invisible (coordinates are kept, never dropped)."""
    if batch.landmarks is not None and batch.visible is not None:
        batch.visible = batch.visible & landmarks_inside(batch.landmarks, batch.hw)
    return batch
