"""Named presets: the paper's text (``regular``, ``strong``) and the released code (``official-*``).

How and why they differ (sources: paper Methods, "Domain randomization"; arcadelab/SyntheX
``hip_imaging/src/dataset.py``/``scaledup_dataset.py``, summarised in
``../shared/reference/official-code.md`` section 2):

* **Noise.** Paper: sigma in (0.005, 0.1) x intensity range. Code: (0.005, 0.01), i.e. 10x weaker
  at the top end.
* **How often.** Paper: regular DR "applied every training iteration" (p = 1 here) and up to two
  strong effects per image. Code: the regular branch fires with p = 0.5 and then noise and gamma
  each with p = 0.5; the strong branch fires with p = 0.5, and within it invert, salt-and-pepper,
  contrast and affine each fire with p = 0.5 *and* a SomeOf(1, 2) group (each member again with
  p = 0.5) always runs. ``--heavy-aug`` does not switch the regular branch on; the README uses
  ``--heavy-aug`` only, so ``official-strong`` has no noise/gamma step.
* **Crop.** Paper: a random 90 % square crop; it does not say what the network sees then. Code:
  defined but commented out; ``official-*`` presets keep the full image. Ours resamples the crop
  back to the input size (a zoom of 1/0.9), so training and test images have one size: trained on
  unresized crops and tested on full images, Real2Real lost 0.1 held-out Dice at ``quick``
  (:class:`~synthex_lib.randomization.spatial.Crop`).
* **Strong effects.** The paper lists 11 (its wording paraphrases imgaug's README example, whose
  ranges we use where the paper gives none). The code has no box corruption and no piecewise
  affine; it uses an elastic transformation (alpha 0.5-3.5, sigma 0.25) instead, adds gamma to
  the contrast curves, and narrows ranges: dropout 10-15 %, coarse dropout cells 10-15 % of the
  image size, sharpen alpha 0.5-1 / lightness 1-1.5, emboss alpha 0.5-1 / strength 1-2, average
  blur kernel 4-6, pooling kernel 2 or 4, coarse salt-and-pepper 5 % of 1-10 % cells.
* **Affine.** Both: rotation +-5 deg, translation up to 20 px in a uniform direction, shear +-2
  deg on x and y, scale 0.9-1.1 (the paper gives no ranges; these are the code's), reflection
  padding. The code's PIL path quantizes the image to 8 bits; we do not unless defects are
  reproduced. The code rotates about PIL's (W/2 + 0.5, H/2 + 0.5); we rotate about the image
  centre ((W-1)/2, (H-1)/2), a sub-pixel difference.
* **Replacement values.** imgaug's salt-and-pepper draws near-extreme values from a U-shaped
  Beta on the [0, 255]-scaled image; we use exactly the sample's min and max.
* **Label defect.** The code's imgaug SomeOf step (including the elastic warp) sees the image
  only, so masks and landmarks are *not* moved by the elastic warp: labels end up misaligned by up
  to ~3.5 px. Our ``official-strong`` moves labels and landmarks with the warp; pass
  ``reproduce_defects=True`` to keep the original misalignment (and the 8-bit affine).
* **Order.** Ours: crop first (it does not change the distribution of the other effects), then the
  strong group, then noise and gamma.
"""

from __future__ import annotations

import copy
from typing import Any

from synthex_lib.core.errors import ConfigError

#: the image size (px) that the presets' pixel lengths are written for: the paper's 360 x 360 px hip images (the
#: official code's ``ds 4``); :meth:`DomainRandomization.at_resolution` scales them to other sizes
REFERENCE_PX = 360

_AFFINE = {"rotate_deg": [-5.0, 5.0], "translate_px": [0.0, 20.0], "shear_deg": [-2.0, 2.0],
           "scale": [0.9, 1.1], "padding": "reflection"}

_REGULAR_STEPS: list[dict[str, Any]] = [
    {"effect": "crop", "size": 0.9, "resize": True},
    {"effect": "noise", "p": 1.0, "sigma": [0.005, 0.1]},
    {"effect": "gamma", "p": 1.0, "gamma": [0.7, 1.3]},
]

#: The paper's 11 strong effects with imgaug-README ranges where the paper is silent.
_PAPER_STRONG: list[dict[str, Any]] = [
    {"effect": "invert", "p": 0.5, "mode": "max"},
    {"effect": "salt_pepper", "p": 0.5, "kinds": ["impulse", "pepper", "salt"], "fraction": [0.1, 0.1]},
    {"effect": "affine", "p": 0.5, **_AFFINE},
    {"effect": "contrast", "p": 0.5, "modes": ["linear", "log", "sigmoid"]},
    {"effect": "blur", "p": 0.5, "modes": ["gaussian", "average"], "sigma": [0.0, 3.0], "kernel": [2, 7]},
    {"effect": "box_corruption", "p": 0.5, "count": [1, 5]},
    {"effect": "dropout", "p": 0.5, "modes": ["pixel", "coarse"], "pixel_fraction": [0.01, 0.1],
     "coarse_fraction": [0.03, 0.15], "coarse_size_percent": [0.02, 0.05]},
    {"effect": "sharpen_emboss", "p": 0.5, "modes": ["sharpen", "emboss"], "alpha": [0.0, 1.0],
     "lightness": [0.75, 1.5], "strength": [0.0, 2.0]},
    {"effect": "pooling", "p": 0.5, "modes": ["average", "max", "min", "median"], "kernel": [2, 3, 4]},
    {"effect": "multiply", "p": 0.5, "modes": ["brightness", "elementwise"], "factor": [0.5, 1.5]},
    {"effect": "piecewise_affine", "p": 0.5, "scale": [0.01, 0.05], "rows": 4, "cols": 4},
]


def _official_strong(reproduce_defects: bool) -> list[dict[str, Any]]:
    return [{
        "name": "heavy-branch",
        "p": 0.5,
        "sequence": [
            {"effect": "invert", "p": 0.5, "mode": "max"},
            {"effect": "salt_pepper", "p": 0.5, "kinds": ["impulse", "impulse", "coarse"], "fraction": [0.1, 0.1],
             "coarse_fraction": [0.05, 0.05], "coarse_size_percent": [0.01, 0.1]},
            {"effect": "contrast", "p": 0.5, "modes": ["linear", "gamma", "log", "sigmoid"],
             "linear_alpha": [0.5, 2.0], "gamma": [0.5, 2.0], "log_gain": [0.6, 1.4],
             "sigmoid_gain": [3.0, 10.0], "sigmoid_cutoff": [0.4, 0.6]},
            {"effect": "affine", "p": 0.5, **_AFFINE, "quantize_levels": 256 if reproduce_defects else 0},
            {"name": "some-of-1-2", "n": [1, 2], "some_of": [
                {"effect": "blur", "p": 0.5, "modes": ["gaussian", "average"], "sigma": [0.0, 3.0],
                 "kernel": [4, 6]},
                {"effect": "dropout", "p": 0.5, "modes": ["pixel", "coarse"], "pixel_fraction": [0.1, 0.15],
                 "coarse_fraction": [0.1, 0.15], "coarse_size_percent": [0.1, 0.15]},
                {"effect": "sharpen_emboss", "p": 0.5, "modes": ["sharpen", "emboss"], "alpha": [0.5, 1.0],
                 "lightness": [1.0, 1.5], "strength": [1.0, 2.0]},
                {"effect": "pooling", "p": 0.5, "modes": ["average", "max", "min", "median"], "kernel": [2, 4]},
                {"effect": "multiply", "p": 0.5, "modes": ["brightness", "elementwise"], "factor": [0.5, 1.5]},
                {"effect": "elastic", "p": 0.5, "alpha": [0.5, 3.5], "sigma": 0.25,
                 "move_labels": not reproduce_defects},
            ]},
        ],
    }]


PRESET_DOCS: dict[str, str] = {
    "none": "No randomization: the batch comes back unchanged.",
    "regular": "Paper text, regular DR, every iteration: 90 % random square crop resampled to the input size, "
               "Gaussian noise with sigma U(0.005, 0.1) x intensity range, gamma U(0.7, 1.3) on the min-max "
               "normalised image.",
    "strong": "Paper text, strong DR: crop, then 2 of the 11 strong effects drawn per sample in random order, "
              "each firing with p = 0.5 (so 0-2 effects, 'up to two'), then regular noise and gamma.",
    "official-regular": "Released code, --data-aug: with p = 0.5, noise sigma U(0.005, 0.01) x range (p = 0.5) "
                        "and gamma U(0.7, 1.3) (p = 0.5); no crop.",
    "official-strong": "Released code, --heavy-aug: with p = 0.5, invert, salt-and-pepper, contrast and affine "
                       "(each p = 0.5), then SomeOf(1, 2) of blur, dropout, sharpen/emboss, pooling, multiply and "
                       "elastic (each p = 0.5). Labels follow the elastic warp unless reproduce_defects=True.",
}


def preset_names() -> list[str]:
    return list(PRESET_DOCS)


def preset_config(name: object, *, reproduce_defects: bool = False) -> dict[str, Any]:
    """The configuration dict of preset ``name``; raises :class:`ConfigError` listing valid names."""
    if name == "none":
        steps: list[dict[str, Any]] = []
    elif name == "regular":
        steps = copy.deepcopy(_REGULAR_STEPS)
    elif name == "strong":
        steps = [copy.deepcopy(_REGULAR_STEPS[0]),
                 {"name": "strong-2-of-11", "some_of": copy.deepcopy(_PAPER_STRONG), "n": 2},
                 *copy.deepcopy(_REGULAR_STEPS[1:])]
    elif name == "official-regular":
        steps = [{"name": "regular-branch", "p": 0.5, "sequence": [
            {"effect": "noise", "p": 0.5, "sigma": [0.005, 0.01]},
            {"effect": "gamma", "p": 0.5, "gamma": [0.7, 1.3]},
        ]}]
    elif name == "official-strong":
        steps = _official_strong(reproduce_defects)
    else:
        raise ConfigError(f"unknown domain-randomization preset {name!r}; valid presets: {', '.join(PRESET_DOCS)}")
    label = f"{name} (defects reproduced)" if reproduce_defects and name == "official-strong" else name
    return {"name": label, "doc": PRESET_DOCS[name], "steps": steps}


def effect_steps(steps: list[dict[str, Any]], outer_p: float = 1.0) -> list[tuple[dict[str, Any], float]]:
    out: list[tuple[dict[str, Any], float]] = []
    for st in steps:
        if "effect" in st:
            out.append((st, outer_p))
        else:
            out += effect_steps(st.get("some_of", st.get("sequence", [])), outer_p * st.get("p", 1.0))
    return out
