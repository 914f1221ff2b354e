"""The live explorer, the static gallery and the effect trace of the domain randomization."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
import torch

from synthex_lib.figures.overlay import as_batch, effect_gallery, effect_rows
from synthex_lib.figures.phantom import disc_phantom
from synthex_lib.randomization import DomainRandomization


@pytest.fixture(scope="module")
def sample() -> dict:
    return disc_phantom(64, radius=4.0, seed=3)


def test_fired_matches_what_changes(sample):
    dr = DomainRandomization.from_config({"steps": [{"some_of": [{"effect": "invert", "p": 0.7},
                                                                 {"effect": "multiply", "p": 0.7}], "n": [0, 2]}]})
    batch = as_batch(sample, 16)
    out = dr(batch)
    changed = (out["image"] != batch["image"]).flatten(1).any(1)
    fired = dr.fired(range(16))
    assert [bool(f) for f in fired] == changed.tolist()
    assert any(len(f) == 2 for f in fired) and any(len(f) == 0 for f in fired)


def test_explorer_controls_edit_the_config(sample):
    from synthex_lib.figures.widgets import dr_explorer

    widget = dr_explorer(sample, preset="strong", copies=2)
    ex = widget.explorer
    assert ex.effects.titles[0] == "crop" and "[group] strong-2-of-11" in ex.effects.titles
    ex._controls["blur"]["p"][1].value = 0.25
    ex._controls["noise"]["sigma"][1].value = [0.01, 0.02]
    ex._controls["pooling"]["modes"][1].value = ("max",)
    cfg = DomainRandomization.from_config(ex.config).to_config()
    strong = {s.get("name", s.get("effect")): s for s in cfg["steps"][1]["some_of"]}
    assert strong["blur"]["p"] == 0.25 and strong["pooling"]["modes"] == ["max"]
    assert cfg["steps"][2]["sigma"] == [0.01, 0.02]
    ex.preset.value = "official-strong"
    assert "elastic" in ex._controls and ex.status.value == ""
    ex._controls["pooling"]["kernel"][1].value = "2, x"  # invalid: reported, not raised
    assert "ValueError" in ex.status.value
    ex._controls["pooling"]["kernel"][1].value = "2, 4"  # fixed: redrawn
    assert ex.status.value == "" and ex.pipeline().to_config()["name"] == "official-strong (edited)"


def test_gallery_has_one_row_per_effect(sample):
    rows = effect_rows("strong")
    assert [t for t, _ in rows] == ["invert", "salt_pepper", "affine", "contrast", "blur", "box_corruption",
                                    "dropout", "sharpen_emboss", "pooling", "multiply", "piecewise_affine",
                                    "noise", "gamma"]
    fig = effect_gallery(sample, copies=2)
    assert len(fig.axes) == (2 + len(rows)) * 3
    official = [t for t, _ in effect_rows("official-strong")]
    assert "elastic" in official and "piecewise_affine" not in official


def test_example_sample_falls_back_to_the_phantom(tmp_path, monkeypatch):
    from synthex_lib.figures.dr_samples import example_sample, summarize

    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    s, source = example_sample("smoke", generate=False)
    assert "phantom" in source and "does not exist" in source
    assert s["image"].shape[0] == 1 and s["labels"].dtype == torch.int64
    assert "landmarks visible" in summarize(s)
