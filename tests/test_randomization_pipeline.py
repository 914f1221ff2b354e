"""Domain-randomization pipeline: presets, label consistency, determinism, configuration errors."""

from __future__ import annotations

import pytest
import torch
import yaml

from synthex_lib.core.config import get_profile
from synthex_lib.core.constants import HIP_LABELS
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.figures.phantom import (
    PHANTOM_LANDMARK_LABELS,
    disc_phantom,
    landmark_label_agreement,
    stack_samples,
)
from synthex_lib.learning.training import make_randomizer
from synthex_lib.randomization import EFFECTS, DomainRandomization, preset_config, preset_names

SIZE = 128
PRESETS = ["none", "regular", "strong", "official-regular", "official-strong"]


@pytest.fixture(scope="module")
def phantom_batch() -> dict:
    return stack_samples(disc_phantom(SIZE, radius=8.0, seed=2), 24)


def check_labels(out: dict, min_agreement: float = 0.99) -> None:
    hits, count = landmark_label_agreement(out, PHANTOM_LANDMARK_LABELS)
    assert count > 0 and hits / count >= min_agreement, (hits, count)
    assert set(out["labels"].unique().tolist()) <= set(HIP_LABELS)
    assert out["labels"].dtype == torch.int64 and out["visible"].dtype == torch.bool
    assert torch.isfinite(out["image"]).all()


def test_preset_names_and_shapes(phantom_batch):
    assert preset_names() == PRESETS
    for name in PRESETS:
        out = DomainRandomization.from_preset(name, seed=1)(phantom_batch)
        s = SIZE  # the paper-text presets resample their crop to the input size
        assert out["image"].shape == (24, 1, s, s) and out["image"].dtype == torch.float32
        assert out["labels"].shape == (24, s, s) and out["landmarks"].shape == (24, 14, 2)
        assert out["visible"].shape == (24, 14)
        assert DomainRandomization.from_preset(name).output_size((SIZE, SIZE)) == (s, s)
    none = DomainRandomization.from_preset("none")(phantom_batch)
    assert none["image"] is phantom_batch["image"]


SPATIAL = {
    "crop": {"size": 0.8},
    "affine": {"rotate_deg": [-30, 30], "translate_px": [0, 20], "shear_deg": [-10, 10], "scale": [0.8, 1.2]},
    "piecewise_affine": {"scale": [0.03, 0.05]},
    "elastic": {"alpha": [0.5, 3.5], "sigma": 0.25},
}


@pytest.mark.parametrize("effect", sorted(SPATIAL))
def test_label_check_after_spatial_effects(phantom_batch, effect):
    for padding in ("zeros", "reflection") if effect != "crop" else (None,):
        params = dict(SPATIAL[effect], **({"padding": padding} if padding else {}))
        dr = DomainRandomization.from_config({"steps": [{"effect": effect, **params}]}, seed=5)
        out = dr(phantom_batch)
        check_labels(out)
        assert not torch.equal(out["landmarks"], phantom_batch["landmarks"])


def _image_label_agreement(out: dict) -> float:
    """Fraction of pixels where the warped image (a copy of the label map) rounds to the label."""
    return ((out["image"][:, 0] - out["labels"]).abs() < 0.5).float().mean().item()


@pytest.mark.parametrize("effect", sorted(SPATIAL))
def test_image_and_labels_move_together(phantom_batch, effect):
    b = {**phantom_batch, "image": phantom_batch["labels"][:, None].float()}
    out = DomainRandomization.from_config({"steps": [{"effect": effect, **SPATIAL[effect]}]}, seed=5)(b)
    assert _image_label_agreement(out) > 0.97  # disagreement only on bilinear disc borders
    if effect == "elastic":  # the official code's defect (image warped, labels not) fails this check
        bad = DomainRandomization.from_config({"steps": [{"effect": effect, **SPATIAL[effect],
                                                          "move_labels": False}]}, seed=5)(b)
        assert _image_label_agreement(bad) < 0.96


@pytest.mark.parametrize("preset", ["strong", "official-strong", "regular"])
def test_label_check_after_full_presets(phantom_batch, preset):
    dr = DomainRandomization.from_preset(preset, seed=3)
    for epoch in range(3):
        check_labels(dr({**phantom_batch, "epoch": epoch}))


def test_every_strong_effect_is_label_safe(phantom_batch):
    steps = preset_config("strong")["steps"][1]["some_of"]
    for step in steps:
        out = DomainRandomization.from_config({"steps": [{**step, "p": 1.0}]}, seed=4)(phantom_batch)
        check_labels(out)


def test_landmarks_leaving_the_image_become_invisible():
    b = stack_samples(disc_phantom(SIZE, radius=8.0, seed=2), 16)
    dr = DomainRandomization.from_config({"steps": [{"effect": "crop", "size": 0.3}]}, seed=0)
    out = dr(b)
    s = out["image"].shape[-1]
    lm = out["landmarks"]
    inside = (lm >= -0.5).all(-1) & (lm[..., 0] < s - 0.5) & (lm[..., 1] < s - 0.5)
    assert torch.equal(out["visible"], inside) and (~out["visible"]).any()
    check_labels(out)


def test_determinism_independent_of_batch_split_and_order(phantom_batch):
    dr = DomainRandomization.from_preset("strong", seed=11)
    full = dr({**phantom_batch, "epoch": 2})
    # other batch compositions: labels/landmarks exactly equal, images to float rounding (a grouped
    # convolution may sum in another order)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(0))
    parts = [{k: v[perm[i:i + 5]] for k, v in phantom_batch.items()} for i in range(0, 24, 5)]
    outs = [dr({**p, "epoch": 2}) for p in parts]
    inv = torch.argsort(perm)
    for key in ("image", "labels", "landmarks", "visible"):
        cat = torch.cat([o[key] for o in outs])[inv]
        if key == "image":
            assert torch.allclose(cat, full[key], atol=1e-5, rtol=1e-5)
        else:
            assert torch.equal(cat, full[key]), key
    again = DomainRandomization.from_preset("strong", seed=11)({**phantom_batch, "epoch": 2})
    assert torch.equal(again["image"], full["image"])  # same seed, same bytes
    other_epoch = dr({**phantom_batch, "epoch": 3})
    other_seed = DomainRandomization.from_preset("strong", seed=12)({**phantom_batch, "epoch": 2})
    assert not torch.equal(other_epoch["image"], full["image"])
    assert not torch.equal(other_seed["image"], full["image"])


class _Phantoms(torch.utils.data.Dataset):
    def __init__(self, dr: DomainRandomization | None = None):
        self.sample = disc_phantom(64, radius=4.0, seed=1)
        self.dr = dr

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> dict:
        item = {**self.sample, "index": torch.tensor(i)}
        if self.dr is not None:  # randomize inside the dataset, as a batch of one
            one = self.dr({k: v[None] for k, v in item.items()})
            item = {k: v[0] for k, v in one.items()}
        return item


def test_determinism_independent_of_workers_and_where_it_runs():
    dr = DomainRandomization.from_preset("strong", seed=7)
    ref = dr(next(iter(torch.utils.data.DataLoader(_Phantoms(), batch_size=8))))
    # after collation (the training loop): the same bytes whatever the number of workers
    for workers in (0, 2):
        got = [dr({**b, "epoch": 1}) for b in torch.utils.data.DataLoader(_Phantoms(), batch_size=4,
                                                                           num_workers=workers)]
        if workers == 0:
            first = got
        else:
            for g, f in zip(got, first, strict=True):
                assert all(torch.equal(g[k], f[k]) for k in ("image", "labels", "landmarks", "visible"))
    # inside __getitem__ on batches of one: same labels, images equal to float rounding
    for workers in (0, 2):
        loader = torch.utils.data.DataLoader(_Phantoms(dr), batch_size=3, num_workers=workers)
        got = list(loader)
        for key in ("labels", "visible"):
            assert torch.equal(torch.cat([g[key] for g in got]), ref[key])
        assert torch.allclose(torch.cat([g["image"] for g in got]), ref["image"], atol=1e-5)


def test_input_batch_is_not_modified(phantom_batch):
    before = {k: v.clone() for k, v in phantom_batch.items()}
    for name in ("strong", "official-strong"):
        cfg = preset_config(name)
        DomainRandomization.from_config(cfg, seed=0)(phantom_batch)
    for k, v in before.items():
        assert torch.equal(phantom_batch[k], v), k


def test_image_only_batches_and_missing_visibility():
    img = torch.rand(4, 1, 40, 40)
    out = DomainRandomization.from_preset("strong", seed=0)({"image": img})
    assert out["image"].shape == (4, 1, 40, 40) and "labels" not in out
    lm = torch.tensor([[[5.0, 5.0], [float("nan"), float("nan")]]]).expand(4, -1, -1)
    out = DomainRandomization.from_preset("regular")({"image": img, "landmarks": lm})
    assert not out["visible"][:, 1].any()


def test_config_round_trip_yaml_and_overrides():
    for name in PRESETS:
        dr = DomainRandomization.from_preset(name)
        cfg = dr.to_config()
        assert DomainRandomization.from_config(cfg).to_config() == cfg
        assert DomainRandomization.from_config(dr.to_yaml()).to_config() == cfg
        assert yaml.safe_load(dr.to_yaml()) == cfg
    dr = DomainRandomization.from_config({"base": "strong", "overrides": {"blur": {"p": 0.2, "sigma": [0, 1]},
                                                                          "pooling": {"enabled": False}}})
    cfg = dr.to_config()
    blur = [s for s in cfg["steps"][1]["some_of"] if s["effect"] == "blur"][0]
    pool = [s for s in cfg["steps"][1]["some_of"] if s["effect"] == "pooling"][0]
    assert blur["p"] == 0.2 and blur["sigma"] == [0.0, 1.0] and pool["enabled"] is False
    assert DomainRandomization.from_config("regular").to_config() == DomainRandomization.from_preset(
        "regular").to_config()
    defects = DomainRandomization.from_preset("official-strong", reproduce_defects=True).to_config()
    text = yaml.safe_dump(defects)
    assert "move_labels: false" in text and "quantize_levels: 256" in text
    assert "move_labels: true" in yaml.safe_dump(DomainRandomization.from_preset("official-strong").to_config())


def test_edited_preset_changes_the_output(phantom_batch):
    base = DomainRandomization.from_preset("regular", seed=0)(phantom_batch)
    edited = DomainRandomization.from_config({"base": "regular", "overrides": {"noise": {"sigma": [0.2, 0.2]}}})
    out = edited(phantom_batch)
    assert torch.equal(out["labels"], base["labels"])  # same crop (same draws)
    assert (out["image"] - base["image"]).std() > 0.05


@pytest.mark.parametrize(("config", "message"), [
    ({"steps": [{"effect": "blurr"}]}, "valid effects: noise, gamma, crop"),
    ("no-such-preset", "valid presets: none, regular, strong, official-regular, official-strong"),
    ({"steps": [{"effect": "blur", "sigmaa": 1}]}, "unknown parameter(s) sigmaa; valid: modes, sigma, kernel"),
    ({"steps": [{"effect": "blur", "sigma": [3, 1]}]}, "low 3.0 > high 1.0"),
    ({"steps": [{"effect": "blur", "modes": ["box"]}]}, "valid: gaussian, average"),
    ({"steps": [{"effect": "noise", "p": 1.5}]}, "probability 'p'"),
    ({"steps": [{"effect": "crop", "p": 0.5}]}, "changes the image size"),
    ({"steps": [{"some_of": [{"effect": "crop"}]}]}, "changes the image size"),
    ({"steps": [{"some_of": [{"effect": "noise"}], "n": 3}]}, "some_of 'n'"),
    ({"base": "strong", "overrides": {"blurr": {"p": 0}}}, "unknown step 'blurr'; valid: crop"),
    ({"stepz": []}, "unknown key(s) ['stepz']"),
    ("steps: [", "not valid YAML"),
])
def test_bad_configs_raise_one_clear_error(config, message):
    with pytest.raises(ConfigError) as e:
        if isinstance(config, str) and not config.startswith("steps"):
            DomainRandomization.from_preset(config)
        else:
            DomainRandomization.from_config(config)
    assert message in str(e.value)


def test_bad_batches_raise_data_error():
    dr = DomainRandomization.from_preset("regular")
    with pytest.raises(DataError, match="image"):
        dr({"image": torch.rand(2, 40, 40)})
    with pytest.raises(DataError, match="labels"):
        dr({"image": torch.rand(2, 1, 40, 40), "labels": torch.zeros(2, 30, 30, dtype=torch.long)})
    with pytest.raises(DataError, match="NaN"):
        dr({"image": torch.full((2, 1, 40, 40), float("nan"))})
    with pytest.raises(DataError, match="index"):
        dr({"image": torch.rand(2, 1, 40, 40), "index": torch.arange(3)})


def test_registry_lists_all_issue_effects():
    assert set(EFFECTS) == {"noise", "gamma", "crop", "invert", "salt_pepper", "affine", "contrast", "blur",
                            "box_corruption", "dropout", "sharpen_emboss", "pooling", "multiply",
                            "piecewise_affine", "elastic"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(phantom_batch):
    dr = DomainRandomization.from_preset("strong", seed=9)
    cpu = dr(phantom_batch)
    gpu = dr({k: v.cuda() for k, v in phantom_batch.items()})
    assert gpu["image"].device.type == "cuda"
    assert torch.allclose(gpu["image"].cpu(), cpu["image"], atol=1e-3)
    agree = (gpu["labels"].cpu() == cpu["labels"]).float().mean()
    assert agree > 0.999 and torch.equal(gpu["visible"].cpu(), cpu["visible"])


def test_spec_from_file_and_the_dr_command(tmp_path, capsys):
    import argparse

    from synthex_lib.cli import dr as cli

    path = tmp_path / "dr.yaml"
    path.write_text(DomainRandomization.from_preset("official-strong").to_yaml())
    assert DomainRandomization.from_spec(str(path)).to_config() == DomainRandomization.from_preset(
        "official-strong").to_config()
    assert DomainRandomization.from_spec("regular").name == "regular"
    with pytest.raises(ConfigError, match="does not exist"):
        DomainRandomization.from_spec(str(tmp_path / "missing.yaml"))
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["dr", "check", str(path)])
    assert args.func(args) == 0 and "ok: official-strong" in capsys.readouterr().out
    args = parser.parse_args(["dr", "show", "official-strong", "--reproduce-defects"])
    assert args.func(args) == 0 and "move_labels: false" in capsys.readouterr().out


# --- pixel lengths at other resolutions ---------------------------------------------------------------


def test_at_resolution_scales_pixel_lengths_only():
    strong = DomainRandomization.from_preset("strong")
    assert strong.at_resolution(360) is strong  # the presets are written for 360 px
    low = strong.at_resolution(64).to_config()
    effects = {e["effect"]: e for s in low["steps"] for e in s.get("some_of", [s])}
    f = 64 / 360
    assert effects["affine"]["translate_px"] == pytest.approx([0.0, 20.0 * f])
    assert effects["blur"]["sigma"] == pytest.approx([0.0, 3.0 * f])
    assert effects["blur"]["kernel"] == [1, 1]  # 2-7 px at 360 px is at most 1.2 px at 64 px: round half up, >= 1
    assert effects["pooling"]["kernel"] == [1]
    # relative and dimensionless parameters are untouched
    ref = {e["effect"]: e for s in strong.to_config()["steps"] for e in s.get("some_of", [s])}
    for name in ("crop", "dropout", "box_corruption", "piecewise_affine", "noise", "sharpen_emboss"):
        assert effects[name] == ref[name], name
    assert effects["affine"]["rotate_deg"] == ref["affine"]["rotate_deg"]
    # upscaling works too, and integers round half up
    up = DomainRandomization.from_preset("strong").at_resolution(720).to_config()
    up_eff = {e["effect"]: e for s in up["steps"] for e in s.get("some_of", [s])}
    assert up_eff["blur"]["kernel"] == [4, 14] and up_eff["pooling"]["kernel"] == [4, 6, 8]
    elastic = DomainRandomization.from_preset("official-strong").at_resolution(36).to_config()
    el = elastic["steps"][0]["sequence"][-1]["some_of"][-1]
    assert el["effect"] == "elastic" and el["alpha"] == pytest.approx([0.05, 0.35])
    assert el["sigma"] == pytest.approx(0.025)


def test_at_resolution_moves_the_anatomy_by_the_same_fraction_of_the_image():
    """The defining property: a translation written for 360 px images moves a landmark by the same fraction of
    the field of view at 72 px, with the same draws."""
    config = {"name": "shift", "steps": [{"effect": "affine", "rotate_deg": 0.0, "shear_deg": 0.0, "scale": 1.0,
                                          "translate_px": [20.0, 20.0]}]}
    moves = {}
    for size in (360, 72):
        dr = DomainRandomization.from_config(config, seed=3).at_resolution(size)
        c = (size - 1) / 2
        batch = {"image": torch.zeros(6, 1, size, size), "landmarks": torch.full((6, 1, 2), c),
                 "visible": torch.ones(6, 1, dtype=torch.bool), "index": torch.arange(6)}
        out = dr(batch)
        moves[size] = (out["landmarks"][:, 0] - c) / size
    assert moves[360].norm(dim=-1) == pytest.approx(torch.full((6,), 20 / 360), abs=1e-6)
    torch.testing.assert_close(moves[72], moves[360], atol=1e-6, rtol=0)
    assert DomainRandomization.from_config(config).at_resolution(72).fired(range(6)) == \
        DomainRandomization.from_config(config).fired(range(6))


def test_training_scales_the_randomization_to_the_network_size():
    dr = make_randomizer("strong", 0, 64, 360)
    assert "at 64 px" in dr.name
    assert make_randomizer("strong", 0).name == "strong"
    assert make_randomizer("strong", 0, 64, 64).name == "strong"
    with pytest.raises(ConfigError, match="dr_reference_px"):
        get_profile("smoke", dr_reference_px=0)
