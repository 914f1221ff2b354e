"""A domain-randomization explorer that needs no kernel, no server and no network: precomputed
variants of one sample in a small self-contained HTML + JavaScript widget.

For every effect of a preset (each mode of a multi-mode effect on its own: ``contrast: log``,
``pooling: max``, ...) the sample is randomized at a few strengths, from the preset's weakest to
its strongest setting, with the effect forced to fire (p = 1) and its parameter ranges pinned to
one value per strength (see :func:`effect_sweeps`). Every variant uses the same uniforms (seed,
sample index 0, epoch 0), so moving the strength slider changes the strength only, not the draw.
Labels and landmarks go through the same pipeline call as the image, so their overlay moves with
the spatial effects (crop, affine, piecewise affine, elastic): label-consistent randomization.

The page holds base64 PNGs (8-bit grey image, RGBA overlay of label outlines and landmark dots,
each deduplicated), a ``<select>``, an ``<input type="range">`` and a few lines of inline
JavaScript; :func:`static_explorer` returns it as :class:`IPython.display.HTML`, so a Jupyter Book
page shows it offline. Images larger than ``max_side`` are reduced first (block average; labels
and landmarks follow) to keep the page light (the default cap of 128 px is our choice, not the
paper's: about 1 MB for the 14 effects of ``strong``).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import html
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from IPython.display import HTML
from PIL import Image

from synthex_lib.core.errors import ConfigError
from synthex_lib.figures.explorer import named_steps
from synthex_lib.figures.overlay import LABEL_COLORS, as_batch, label_outlines
from synthex_lib.randomization import DomainRandomization, effect_class, preset_config

#: colour of the landmark dots (as in :func:`synthex_lib.figures.overlay.draw_sample`)
LANDMARK_COLOR = "#00e5ff"


@dataclass(frozen=True)
class Level:
    """One strength of one entry: ``label`` names the pinned parameter values; ``step`` is the
    single-step configuration drawn; ``image``/``overlay`` index the explorer's PNG lists."""

    label: str
    step: dict[str, Any]
    image: int = -1
    overlay: int = -1


@dataclass(frozen=True)
class Entry:
    """One row of the effect menu: an effect (or one mode of it) at increasing strengths."""

    title: str
    effect: str
    doc: str
    levels: tuple[Level, ...]


@dataclass
class StaticExplorer:
    """The precomputed explorer: ``images`` (grey PNG bytes) and ``overlays`` (RGBA PNG bytes) of the
    input (index 0 of each) and of every level of every entry; :meth:`html` is the widget."""

    preset: str
    seed: int
    source: str
    shape: tuple[int, int]
    entries: list[Entry] = field(default_factory=list)
    images: list[bytes] = field(default_factory=list)
    overlays: list[bytes] = field(default_factory=list)

    @property
    def n_variants(self) -> int:
        return sum(len(e.levels) for e in self.entries)

    def data(self) -> dict[str, Any]:
        """What the page's script reads: base64 PNGs and, per entry, its levels' labels and indices."""
        return {
            "images": [base64.b64encode(b).decode("ascii") for b in self.images],
            "overlays": [base64.b64encode(b).decode("ascii") for b in self.overlays],
            "entries": [{"title": e.title, "effect": e.effect, "doc": e.doc,
                         "levels": [{"label": lv.label, "image": lv.image, "overlay": lv.overlay} for lv in e.levels]}
                        for e in self.entries],
            "initial": _initial_entry(self.entries),
        }

    def html(self) -> str:
        """The self-contained widget (no external resource; every id unique to its content)."""
        if not self.entries:
            return (f"<p class='sx-dr-explorer-empty'>Preset '{html.escape(self.preset)}' has no effect to show; "
                    "choose another preset.</p>")
        data = json.dumps(self.data(), separators=(",", ":")).replace("</", "<\\/")
        uid = "sx-dr-" + hashlib.sha1(data.encode()).hexdigest()[:10]
        h, w = self.shape
        scale = max(1, round(256 / max(h, w)))
        size = f"width:{w * scale}px;height:{h * scale}px"
        note = (f"Precomputed in the book: one draw (seed {self.seed}, sample 0, epoch 0) of each effect of the "
                f"'{html.escape(self.preset)}' preset, forced to fire, at increasing strengths from the preset's "
                "weakest to its strongest setting (each parameter range pinned to one value). Coloured outlines: "
                "labels; cyan dots: visible landmarks; both go through the same call as the image, so they move "
                "with spatial effects. Each panel is scaled to its own min-max, as the networks' per-image "
                "z-scoring sees it (so pure brightness scaling looks unchanged). Any other setting: the live "
                "explorer below (running kernel) or <code>synthex explore</code>.")
        return _TEMPLATE.format(uid=uid, size=size, data=data, note=note, source=html.escape(self.source),
                                input_img=_uri(self.images[0]), input_ovl=_uri(self.overlays[0]))

    def _repr_html_(self) -> str:
        return self.html()


def _uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _initial_entry(entries: list[Entry]) -> int:
    """The entry shown first: the first spatial effect that keeps the image size (its overlay moves)."""
    for i, e in enumerate(entries):
        cls = effect_class(e.effect)
        if cls.spatial and not cls.resizes:
            return i
    return 0


# -- strengths ---------------------------------------------------------------------------------------
def _lin(lo: float, hi: float, n: int) -> list[float]:
    return [float(v) for v in np.linspace(lo, hi, n)] if hi != lo else [float(lo)]


def _ints(lo: float, hi: float, n: int) -> list[int]:
    return list(dict.fromkeys(int(round(v)) for v in np.linspace(lo, hi, n)))


def _up_to(hi: float, n: int) -> list[float]:
    """n values from hi/n to hi (a strength axis from barely on to the preset's setting)."""
    return [float(hi) * (k + 1) / n for k in range(n)]


def _fmt(v: float) -> str:
    return f"{v:.3g}"


def _range_levels(step: dict[str, Any], key: str, n: int, unit: str = "") -> list[tuple[str, dict[str, Any]]]:
    lo, hi = step[key]
    vals = _lin(lo, hi, n) if hi > lo else _up_to(hi, n)
    return [(f"{key} = {_fmt(v)}{unit}", {key: [v, v]}) for v in vals]


def _mid(step: dict[str, Any], key: str) -> list[float]:
    lo, hi = step[key]
    return [(lo + hi) / 2, (lo + hi) / 2]


def effect_sweeps(step: dict[str, Any], n: int) -> list[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    """The entries of one effect step of a preset: ``[(mode or "", [(label, parameter edits), ...]), ...]``.

    Each entry is a list of up to ``n`` strengths; a strength pins every swept parameter to one
    value. A parameter the preset draws from a range [lo, hi] is swept from lo to hi; one the preset
    fixes (salt-and-pepper's fraction 0.1) is swept from 1/n of its value up to it; the affine warp
    scales rotation, translation, shear and scale - 1 together up to the preset's extremes; element-wise
    multiplication widens its per-pixel factor range [1 - s, 1 + s] up to the preset's. Other parameters
    keep the preset's values (a second parameter of a mode sits at the middle of its range). Effects
    without a strength (invert, crop) have one level.
    """
    eff = step["effect"]
    full = effect_class(eff)(**{k: v for k, v in step.items() if k in effect_class(eff).PARAMS}).params
    s = {**full, **{k: v for k, v in step.items() if k in full}}
    if eff in ("noise", "gamma", "piecewise_affine"):
        key = {"noise": "sigma", "gamma": "gamma", "piecewise_affine": "scale"}[eff]
        return [("", _range_levels(s, key, n))]
    if eff == "elastic":
        return [("", _range_levels(s, "alpha", n, " px"))]
    if eff == "box_corruption":
        lo, hi = s["count"]
        return [("", [(f"{c} box{'es' if c > 1 else ''}", {"count": [c, c]}) for c in _ints(lo, hi, n)])]
    if eff == "affine":
        rot = max(abs(v) for v in s["rotate_deg"])
        shift = max(s["translate_px"])
        shear = max(abs(v) for v in s["shear_deg"])
        scl = max(s["scale"][1] - 1.0, 1.0 - s["scale"][0])
        out = []
        for t in _up_to(1.0, n):
            edits = {"rotate_deg": [t * rot] * 2, "translate_px": [t * shift] * 2, "shear_deg": [t * shear] * 2,
                     "scale": [1 + t * scl] * 2}
            out.append((f"rotate {_fmt(t * rot)} deg, shift {_fmt(t * shift)} px, shear {_fmt(t * shear)} deg, "
                        f"scale {_fmt(1 + t * scl)}", edits))
        return [("", out)]
    if eff == "salt_pepper":
        res = []
        for kind in dict.fromkeys(s["kinds"]):
            key = "coarse_fraction" if kind == "coarse" else "fraction"
            res.append((kind, [(lab, {"kinds": [kind], **e}) for lab, e in _range_levels(s, key, n)]))
        return res
    if eff == "contrast":
        keys = {"linear": "linear_alpha", "log": "log_gain", "sigmoid": "sigmoid_gain", "gamma": "gamma"}
        res = []
        for mode in dict.fromkeys(s["modes"]):
            fixed = {"sigmoid_cutoff": _mid(s, "sigmoid_cutoff")} if mode == "sigmoid" else {}
            res.append((mode, [(lab, {"modes": [mode], **fixed, **e}) for lab, e in _range_levels(s, keys[mode], n)]))
        return res
    if eff == "blur":
        res = []
        for mode in dict.fromkeys(s["modes"]):
            if mode == "gaussian":
                levels = _range_levels(s, "sigma", n, " px")
            else:
                levels = [(f"kernel = {k} px", {"kernel": [k, k]}) for k in _ints(*s["kernel"], n)]
            res.append((mode, [(lab, {"modes": [mode], **e}) for lab, e in levels]))
        return res
    if eff == "dropout":
        res = []
        for mode in dict.fromkeys(s["modes"]):
            if mode == "pixel":
                levels = _range_levels(s, "pixel_fraction", n)
            else:
                levels = [(lab, {"coarse_size_percent": _mid(s, "coarse_size_percent"), **e})
                          for lab, e in _range_levels(s, "coarse_fraction", n)]
            res.append((mode, [(lab, {"modes": [mode], **e}) for lab, e in levels]))
        return res
    if eff == "sharpen_emboss":
        res = []
        for mode in dict.fromkeys(s["modes"]):
            fixed = {"lightness": _mid(s, "lightness")} if mode == "sharpen" else {"strength": _mid(s, "strength")}
            res.append((mode, [(lab, {"modes": [mode], **fixed, **e}) for lab, e in _range_levels(s, "alpha", n)]))
        return res
    if eff == "pooling":
        kernels = sorted(dict.fromkeys(int(k) for k in s["kernel"]))
        return [(mode, [(f"kernel = {k} px", {"modes": [mode], "kernel": [k]}) for k in kernels])
                for mode in dict.fromkeys(s["modes"])]
    if eff == "multiply":
        res = []
        for mode in dict.fromkeys(s["modes"]):
            if mode == "brightness":
                levels = _range_levels(s, "factor", n)
            else:
                d = max(1.0 - s["factor"][0], s["factor"][1] - 1.0)
                levels = [(f"factor per pixel in [{_fmt(1 - v)}, {_fmt(1 + v)}]", {"factor": [1 - v, 1 + v]})
                          for v in _up_to(d, n)]
            res.append((mode, [(lab, {"modes": [mode], **e}) for lab, e in levels]))
        return res
    if eff == "crop":
        return [("", [(f"size = {_fmt(s['size'])} of the side", {})])]
    # invert and any effect without a strength axis: the preset's setting
    desc = ", ".join(f"{k} = {v}" for k, v in s.items() if not isinstance(v, list | dict)) or "on"
    return [("", [(desc, {})])]


# -- pictures ----------------------------------------------------------------------------------------
def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def reduce_sample(sample: dict[str, Any], max_side: int) -> dict[str, torch.Tensor]:
    """``sample`` with its image reduced by the smallest integer factor f that brings its longer side
    to ``max_side`` px or less: image block-averaged over f x f pixels, labels sampled at each block's
    centre pixel, landmarks mapped to (x - (f - 1) / 2) / f (pixel centres at integers, so a block's
    centre lands on its new pixel's centre). Returned unchanged when already small enough."""
    if isinstance(max_side, bool) or not isinstance(max_side, int) or max_side < 16:
        raise ConfigError(f"static explorer: 'max_side' must be an integer of at least 16 px, got {max_side!r}")
    img = torch.as_tensor(_np(sample["image"]), dtype=torch.float32)
    img = img[None] if img.dim() == 2 else img
    f = -(-max(img.shape[-2:]) // max_side)
    out: dict[str, Any] = dict(sample)
    if f <= 1:
        out["image"] = img
        return out
    h, w = (img.shape[-2] // f) * f, (img.shape[-1] // f) * f
    out["image"] = torch.nn.functional.avg_pool2d(img[None, :, :h, :w], f)[0]
    if sample.get("labels") is not None:
        lab = torch.as_tensor(_np(sample["labels"]))
        out["labels"] = lab[f // 2:h:f, f // 2:w:f].contiguous()
    if sample.get("landmarks") is not None:
        lm = torch.as_tensor(_np(sample["landmarks"]), dtype=torch.float32)
        out["landmarks"] = (lm - (f - 1) / 2) / f
    return out


def _png(arr: np.ndarray, mode: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode=mode).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def grey_png(image: Any) -> bytes:
    """8-bit grey PNG of ``image`` [H, W] or [1, H, W], scaled to its own min-max (a constant image
    is black)."""
    x = _np(image).astype(np.float64)
    x = x[0] if x.ndim == 3 else x
    lo, hi = float(x.min()), float(x.max())
    v = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return _png(np.round(v * 255).astype(np.uint8), "L")


def overlay_png(labels: Any, landmarks: Any, visible: Any, shape: tuple[int, int]) -> bytes:
    """RGBA PNG [H, W]: label borders (4-neighbourhood) in the label colours of
    :data:`~synthex_lib.figures.overlay.LABEL_COLORS`, each visible landmark as a 5-pixel cross at its
    nearest pixel (x = col, y = row), transparent elsewhere."""
    h, w = shape
    rgba = np.zeros((h, w, 4), dtype=np.uint8)
    palette = np.array([[0, 0, 0, 0]] + [[*bytes.fromhex(c[1:]), 255] for c in LABEL_COLORS], dtype=np.uint8)
    if labels is not None:
        edge = label_outlines(_np(labels))
        edge = np.where((edge >= 0) & (edge < len(palette)), edge, 0)
        rgba[:] = palette[edge]
    if landmarks is not None:
        lm = _np(landmarks)
        vis = np.isfinite(lm).all(-1) if visible is None else _np(visible).astype(bool)
        colour = [*bytes.fromhex(LANDMARK_COLOR[1:]), 255]
        for x, y in lm[vis & np.isfinite(lm).all(-1)]:
            c, r = int(round(float(x))), int(round(float(y)))
            for dr, dc in ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1)):
                if 0 <= r + dr < h and 0 <= c + dc < w:
                    rgba[r + dr, c + dc] = colour
    return _png(rgba, "RGBA")


class _Store:
    """PNG lists without duplicates (intensity effects share the input's overlay)."""

    def __init__(self) -> None:
        self.items: list[bytes] = []
        self._index: dict[bytes, int] = {}

    def add(self, png: bytes) -> int:
        if png not in self._index:
            self._index[png] = len(self.items)
            self.items.append(png)
        return self._index[png]


def build_static_explorer(sample: dict[str, Any], preset: str = "strong", seed: int = 0, levels: int = 5,
                          max_side: int = 128, source: str = "") -> StaticExplorer:
    """Precompute the explorer of ``sample`` (``image`` [H, W] or [1, H, W], ``labels`` [H, W],
    ``landmarks`` [L, 2] as (x, y) pixels, ``visible`` [L]) for every effect step of ``preset``
    (:func:`effect_sweeps`, ``levels`` strengths each). Raises :class:`ConfigError` for an unknown
    preset or a ``levels`` outside 1..10."""
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 10:
        raise ConfigError(f"static explorer: 'levels' must be an integer from 1 to 10, got {levels!r}")
    small = reduce_sample(sample, max_side)
    batch = as_batch(small, 1)
    hw = (int(batch["image"].shape[-2]), int(batch["image"].shape[-1]))
    images, overlays = _Store(), _Store()

    def draw(b: dict[str, Any]) -> tuple[int, int]:
        img = b["image"][0]
        lab = b["labels"][0] if b.get("labels") is not None else None
        lm = b["landmarks"][0] if b.get("landmarks") is not None else None
        vis = b["visible"][0] if b.get("visible") is not None else None
        return images.add(grey_png(img)), overlays.add(overlay_png(lab, lm, vis, tuple(img.shape[-2:])))

    draw(batch)  # the input: index 0 of both lists
    ex = StaticExplorer(preset, int(seed), source, hw)
    for name, step in named_steps(preset_config(preset)["steps"]):
        if "effect" not in step:
            continue
        cls = effect_class(step["effect"])
        for mode, sweep in effect_sweeps(step, levels):
            done: list[Level] = []
            for label, edits in sweep:
                one = {**copy.deepcopy(step), **edits, "p": 1.0, "enabled": True}
                dr = DomainRandomization.from_config({"name": f"{name} {label}", "steps": [one]}, seed=int(seed))
                out = dr({**batch, "epoch": 0})
                i, o = draw(out)
                done.append(Level(label, one, i, o))
            title = f"{name}: {mode}" if mode else name
            ex.entries.append(Entry(title, cls.name, cls.summary, tuple(done)))
    ex.images, ex.overlays = images.items, overlays.items
    return ex


def static_explorer(sample: dict[str, Any], preset: str = "strong", seed: int = 0, levels: int = 5,
                    max_side: int = 128, source: str = "") -> HTML:
    """The kernel-free explorer of ``sample`` as :class:`IPython.display.HTML` (see
    :func:`build_static_explorer`); a notebook cell displays it, a Jupyter Book page keeps it working."""
    return HTML(build_static_explorer(sample, preset, seed, levels, max_side, source).html())


_TEMPLATE = """<div class="sx-dr-explorer" id="{uid}">
<style>
#{uid} {{font: 13px/1.4 sans-serif; margin: 0.5em 0;}}
#{uid} .sx-controls {{display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: center; margin-bottom: 0.4em;}}
#{uid} .sx-panels {{display: flex; flex-wrap: wrap; gap: 1em;}}
#{uid} figure {{margin: 0;}}
#{uid} .sx-stack {{position: relative; {size}; background: #000;}}
#{uid} .sx-stack img {{position: absolute; left: 0; top: 0; width: 100%; height: 100%; margin: 0;
  image-rendering: pixelated; max-width: none;}}
#{uid}.sx-nolabels img.sx-ovl {{visibility: hidden;}}
#{uid} figcaption {{font-size: 12px; max-width: 256px;}}
#{uid} .sx-note {{font-size: 12px; color: #555; max-width: 60em;}}
</style>
<div class="sx-controls">
<label>effect <select class="sx-effect" aria-label="effect"></select></label>
<label>strength <input class="sx-strength" type="range" min="0" max="0" step="1" value="0"
 aria-label="strength"></label>
<label><input class="sx-labels" type="checkbox" checked> labels and landmarks</label>
</div>
<div class="sx-panels">
<figure><div class="sx-stack"><img class="sx-img sx-input" alt="input image" src="{input_img}"><img
 class="sx-ovl" alt="input labels" src="{input_ovl}"></div><figcaption>input</figcaption></figure>
<figure><div class="sx-stack"><img class="sx-img sx-variant" alt="randomized image" src="{input_img}"><img
 class="sx-ovl sx-variant-ovl" alt="randomized labels" src="{input_ovl}"></div>
<figcaption><b class="sx-title"></b>: <span class="sx-level"></span><br><span class="sx-doc"></span></figcaption>
</figure>
</div>
<p class="sx-note">{note} Sample: {source}</p>
<script type="application/json" class="sx-data">{data}</script>
<script>
(function () {{
  var here = document.currentScript && document.currentScript.parentElement;
  var root = here && here.classList.contains("sx-dr-explorer") ? here : document.getElementById("{uid}");
  if (!root || root.dataset.ready) return;
  root.dataset.ready = "1";
  var d = JSON.parse(root.querySelector("script.sx-data").textContent);
  var q = function (s) {{ return root.querySelector(s); }};
  var sel = q(".sx-effect"), rng = q(".sx-strength"), img = q(".sx-variant"), ovl = q(".sx-variant-ovl");
  var uri = function (b) {{ return "data:image/png;base64," + b; }};
  d.entries.forEach(function (e, i) {{
    var o = document.createElement("option"); o.value = i; o.textContent = e.title; sel.appendChild(o);
  }});
  function show(toTop) {{
    var e = d.entries[+sel.value];
    rng.max = e.levels.length - 1;
    if (toTop) rng.value = rng.max;
    rng.disabled = e.levels.length < 2;
    var v = e.levels[+rng.value];
    img.src = uri(d.images[v.image]); ovl.src = uri(d.overlays[v.overlay]);
    q(".sx-title").textContent = e.title; q(".sx-level").textContent = v.label; q(".sx-doc").textContent = e.doc;
    root.dataset.state = e.title + " | " + v.label;
  }}
  sel.addEventListener("change", function () {{ show(true); }});
  rng.addEventListener("input", function () {{ show(false); }});
  q(".sx-labels").addEventListener("change", function (ev) {{
    root.classList.toggle("sx-nolabels", !ev.target.checked);
  }});
  sel.value = d.initial;
  show(true);
}})();
</script>
</div>"""
