"""Each domain-randomization effect against its defining property (issue 5, "Done when")."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from synthex_lib.figures.phantom import disc_phantom, stack_samples
from synthex_lib.randomization import DomainRandomization

N, SIZE = 6, 96


def run(effect: str, batch: dict | None = None, seed: int = 0, **params) -> tuple[dict, dict]:
    """Apply one effect (p = 1) to a batch of phantoms; returns (input, output)."""
    if batch is None:
        batch = stack_samples(disc_phantom(SIZE, radius=6.0, seed=1), N)
    dr = DomainRandomization.from_config({"steps": [{"effect": effect, **params}]}, seed=seed)
    return batch, dr(batch)


def textured(n: int = N, size: int = SIZE, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    img = torch.rand(n, 1, size, size, generator=g) * 2.0 + 0.5
    return {"image": img, "index": torch.arange(n)}


def test_noise_std_is_sigma_times_range():
    b = textured()
    _, out = run("noise", b, sigma=[0.05, 0.05])
    diff = out["image"] - b["image"]
    rng = b["image"].amax(dim=(1, 2, 3)) - b["image"].amin(dim=(1, 2, 3))
    std = diff.std(dim=(1, 2, 3))
    assert torch.allclose(std, 0.05 * rng, rtol=0.03)
    assert diff.mean().abs() < 0.01 * rng.mean()
    # the drawn sigma lies in its range
    _, out = run("noise", b, sigma=[0.01, 0.02])
    s = (out["image"] - b["image"]).std(dim=(1, 2, 3)) / rng
    assert bool(((s > 0.0097) & (s < 0.0203)).all())


def test_gamma_is_monotone_and_keeps_range():
    b = textured()
    _, out = run("gamma", b, gamma=[0.7, 1.3])
    for i in range(N):
        x, y = b["image"][i].flatten(), out["image"][i].flatten()
        order = torch.argsort(x)
        assert bool((y[order].diff() >= -1e-6).all())
        assert torch.isclose(y.min(), x.min(), atol=1e-5) and torch.isclose(y.max(), x.max(), atol=1e-5)
    # analytic value for a fixed gamma
    _, out = run("gamma", b, gamma=[2.0, 2.0])
    x = b["image"]
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out["image"], lo + (hi - lo) * ((x - lo) / (hi - lo)) ** 2, atol=1e-5)


@pytest.mark.parametrize("mode", ["max", "range"])
def test_invert_swaps_extremes(mode):
    b = textured()
    _, out = run("invert", b, mode=mode)
    x, y = b["image"].flatten(1), out["image"].flatten(1)
    assert torch.equal(x.argmax(1), y.argmin(1)) and torch.equal(x.argmin(1), y.argmax(1))
    expected = x.amax(1, keepdim=True) - x if mode == "max" else x.amax(1, keepdim=True) + x.amin(1, keepdim=True) - x
    assert torch.allclose(y, expected)


@pytest.mark.parametrize("kind", ["salt", "pepper", "impulse", "coarse"])
def test_salt_pepper_replaces_a_fraction_with_extremes(kind):
    b = textured()
    _, out = run("salt_pepper", b, kinds=[kind], fraction=0.1, coarse_fraction=0.3, coarse_size_percent=0.1)
    x, y = b["image"], out["image"]
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    changed = y != x
    assert bool(((y == lo) | (y == hi))[changed].all())
    frac_salt = ((y == hi) & changed).float().mean().item()
    frac_pepper = ((y == lo) & changed).float().mean().item()
    if kind == "salt":
        assert 0.09 < frac_salt < 0.11 and frac_pepper == 0
    elif kind == "pepper":
        assert 0.09 < frac_pepper < 0.11 and frac_salt == 0
    elif kind == "impulse":
        assert 0.04 < frac_salt < 0.06 and 0.04 < frac_pepper < 0.06
    else:  # coarse: replaced pixels come in blocks about 10 px a side
        m = changed[:, 0].numpy()
        assert 0.05 < m.mean() < 0.6
        assert ndimage.binary_opening(m[0], np.ones((3, 3))).sum() > 0.5 * m[0].sum()


def test_affine_identity_translation_and_landmarks():
    b = stack_samples(disc_phantom(SIZE, radius=6.0), N)
    _, out = run("affine", b, rotate_deg=0, translate_px=0, shear_deg=0, scale=1)
    assert torch.allclose(out["image"], b["image"], atol=1e-5)
    assert torch.equal(out["labels"], b["labels"]) and torch.allclose(out["landmarks"], b["landmarks"], atol=1e-4)
    # a 90 degree rotation about the centre of a square image is exact
    _, out = run("affine", b, rotate_deg=[90, 90], translate_px=0, shear_deg=0, scale=1)
    rot = [torch.rot90(b["labels"], k, dims=(1, 2)) for k in (1, 3)]
    assert any(torch.equal(out["labels"], r) for r in rot)
    r_img = [torch.rot90(b["image"], k, dims=(2, 3)) for k in (1, 3)]
    assert any(torch.allclose(out["image"], r, atol=1e-4) for r in r_img)
    lm = out["landmarks"].round().long()
    hit = out["labels"][torch.arange(N)[:, None], lm[..., 1], lm[..., 0]]
    assert torch.equal(hit, b["labels"][torch.arange(N)[:, None], b["landmarks"][..., 1].long(),
                                         b["landmarks"][..., 0].long()])


def test_affine_pushes_landmarks_out_as_invisible():
    b = stack_samples(disc_phantom(SIZE, radius=6.0), N)
    _, out = run("affine", b, rotate_deg=0, translate_px=[500, 500], shear_deg=0, scale=1, padding="zeros")
    assert not out["visible"].any()
    assert out["landmarks"].shape == b["landmarks"].shape and torch.isfinite(out["landmarks"]).all()


def test_contrast_curves():
    b = textured()
    _, out = run("contrast", b, modes=["linear"], linear_alpha=[1.0, 1.0])
    assert torch.allclose(out["image"], b["image"], atol=1e-5)
    for mode in ("linear", "log", "sigmoid", "gamma"):
        _, out = run("contrast", b, modes=[mode])
        x, y = b["image"][0].flatten(), out["image"][0].flatten()
        assert bool((y[torch.argsort(x)].diff() >= -1e-5).all()), mode  # all curves are increasing
        assert not torch.allclose(x, y)


def test_blur_matches_reference_filters():
    b = textured(n=4)
    _, out = run("blur", b, modes=["average"], kernel=[3, 3])
    ref = ndimage.uniform_filter(b["image"].numpy(), size=(1, 1, 3, 3), mode="mirror")
    assert np.allclose(out["image"].numpy(), ref, atol=1e-5)
    _, out = run("blur", b, modes=["average"], kernel=[4, 4])  # even kernel: OpenCV/scipy anchor
    ref = ndimage.uniform_filter(b["image"].numpy(), size=(1, 1, 4, 4), mode="mirror")
    assert np.allclose(out["image"].numpy(), ref, atol=1e-5)
    _, out = run("blur", b, modes=["gaussian"], sigma=[2.0, 2.0])
    ref = ndimage.gaussian_filter(b["image"].numpy(), sigma=(0, 0, 2, 2), mode="mirror", truncate=3.0)
    assert np.abs(out["image"].numpy() - ref)[..., 8:-8, 8:-8].max() < 1e-3
    assert out["image"].std() < 0.5 * b["image"].std()


def test_box_corruption_changes_only_boxes():
    b = textured()
    _, out = run("box_corruption", b, count=[1, 1])
    for i in range(N):
        changed = (out["image"][i, 0] != b["image"][i, 0]).numpy()
        rows, cols = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
        box = changed[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert box.mean() > 0.999  # exactly one rectangle changed
    _, out = run("box_corruption", b, count=[5, 5])
    diff = out["image"] - b["image"]
    assert diff[diff != 0].std() > 0.1 * (b["image"].max() - b["image"].min())  # "large" noise


def test_dropout_fraction_and_blocks():
    b = textured()
    _, out = run("dropout", b, modes=["pixel"], pixel_fraction=[0.01, 0.1])
    zero = (out["image"] == 0).float().mean(dim=(1, 2, 3))
    assert bool(((zero > 0.008) & (zero < 0.104)).all())
    assert bool((out["image"][out["image"] != 0] == b["image"][out["image"] != 0]).all())
    _, out = run("dropout", b, modes=["coarse"], coarse_fraction=[0.2, 0.3], coarse_size_percent=[0.1, 0.1])
    zero = (out["image"][:, 0] == 0).numpy()
    assert 0.05 < zero.mean() < 0.5
    # a 10 x 10 grid of cells (size_percent 0.1): the zero mask is constant on each cell
    cell = np.arange(SIZE) * 10 // SIZE
    ids = cell[:, None] * 10 + cell[None, :]
    for i in range(N):
        per_cell = [np.unique(zero[i][ids == c]) for c in range(100)]
        assert all(len(v) == 1 for v in per_cell)


def test_sharpen_emboss_kernels():
    b = textured(n=4)
    _, out = run("sharpen_emboss", b, alpha=[0, 0])
    assert torch.allclose(out["image"], b["image"], atol=1e-5)
    _, out = run("sharpen_emboss", b, modes=["sharpen"], alpha=[1, 1], lightness=[1, 1])
    k = -np.ones((3, 3))
    k[1, 1] = 9.0
    ref = ndimage.correlate(b["image"].numpy(), k[None, None], mode="mirror")
    assert np.allclose(out["image"].numpy(), ref, atol=1e-4)
    _, out = run("sharpen_emboss", b, modes=["emboss"], alpha=[0.5, 0.5], strength=[1, 1])
    k = 0.5 * np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]]) + 0.5 * np.eye(3)[[1]].T @ np.eye(3)[[1]]
    ref = ndimage.correlate(b["image"].numpy(), k[None, None], mode="mirror")
    assert np.allclose(out["image"].numpy(), ref, atol=1e-4)


@pytest.mark.parametrize("mode", ["average", "max", "min", "median"])
@pytest.mark.parametrize("k", [2, 3, 4])
def test_pooling_flattens_blocks(mode, k):
    b = textured(n=2, size=SIZE)
    _, out = run("pooling", b, modes=[mode], kernel=[k])
    y = out["image"][:, 0].reshape(2, SIZE // k, k, SIZE // k, k)
    assert torch.allclose(y.amax(dim=(2, 4)), y.amin(dim=(2, 4)))
    x = b["image"][:, 0].reshape(2, SIZE // k, k, SIZE // k, k)
    ref = {"average": x.mean(dim=(2, 4)), "max": x.amax(dim=(2, 4)), "min": x.amin(dim=(2, 4)),
           "median": x.permute(0, 1, 3, 2, 4).reshape(2, SIZE // k, SIZE // k, -1).median(-1).values}[mode]
    assert torch.allclose(y[:, :, 0, :, 0], ref, atol=1e-5)


def test_multiply_brightness_and_elementwise():
    b = textured()
    _, out = run("multiply", b, modes=["brightness"], factor=[0.5, 1.5])
    ratio = out["image"] / b["image"]
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), rtol=1e-5)
    assert bool(((ratio >= 0.5 - 1e-6) & (ratio <= 1.5 + 1e-6)).all())
    _, out = run("multiply", b, modes=["elementwise"], factor=[0.5, 1.5])
    ratio = out["image"] / b["image"]
    assert bool(((ratio >= 0.5 - 1e-6) & (ratio <= 1.5 + 1e-6)).all()) and ratio.std() > 0.25


def test_crop_size_and_content():
    b = stack_samples(disc_phantom(SIZE, radius=6.0), N)
    _, out = run("crop", b, size=0.9, resize=False)
    s = int(0.9 * SIZE)
    assert out["image"].shape == (N, 1, s, s) and out["labels"].shape == (N, s, s)
    off = (b["landmarks"] - out["landmarks"])[:, 0].round().long()  # (col, row) offset per sample
    for i in range(N):
        c0, r0 = off[i].tolist()
        assert torch.equal(out["image"][i], b["image"][i, :, r0:r0 + s, c0:c0 + s])
        assert torch.equal(out["labels"][i], b["labels"][i, r0:r0 + s, c0:c0 + s])
    assert torch.allclose(b["landmarks"] - out["landmarks"], off[:, None].float().expand_as(b["landmarks"]))


def test_crop_resized_is_a_zoom_of_the_crop():
    """With ``resize`` the crop is resampled to the input size: a linear ramp stays linear with the
    crop's slope x (s - 1) / (SIZE - 1), labels follow the image, landmarks follow the same map."""
    s = int(0.9 * SIZE)
    yy, xx = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32),
                            indexing="ij")
    ramp = {"image": (xx + 1000 * yy)[None, None].repeat(N, 1, 1, 1), "index": torch.arange(N)}
    _, out = run("crop", ramp, size=0.9, resize=True)
    assert out["image"].shape == (N, 1, SIZE, SIZE)
    step = (s - 1) / (SIZE - 1)
    img = out["image"][:, 0].double()
    c0, r0 = img[:, 0, 0] % 1000, torch.floor(img[:, 0, 0] / 1000)  # integer offsets of the crop
    assert torch.allclose(img[:, 0, 0] - (c0 + 1000 * r0), torch.zeros(N, dtype=torch.float64))
    assert bool(((c0 >= 0) & (c0 <= SIZE - s) & (r0 >= 0) & (r0 <= SIZE - s)).all())
    want = (c0[:, None, None] + xx.double() * step) + 1000 * (r0[:, None, None] + yy.double() * step)
    assert torch.allclose(img, want, rtol=0, atol=0.2)  # float32 bilinear of values up to 1e5

    b = stack_samples(disc_phantom(SIZE, radius=6.0), N)
    bb = {**b, "image": b["labels"][:, None].float()}
    _, out = run("crop", bb, size=0.9, resize=True)
    assert out["labels"].shape == (N, SIZE, SIZE)
    # bilinear label values blend on disc borders only
    assert ((out["image"][:, 0] - out["labels"]).abs() < 0.5).float().mean() > 0.95
    for i in range(N):  # each visible landmark (a disc centre) lands inside its disc's label
        for k in torch.nonzero(out["visible"][i]).flatten().tolist():
            x, y = out["landmarks"][i, k].round().long().tolist()
            assert out["labels"][i, y, x] == b["labels"][i].flatten()[
                int(b["landmarks"][i, k, 1].round()) * SIZE + int(b["landmarks"][i, k, 0].round())]
    # resampling is the default; off, the output is the crop
    plain = DomainRandomization.from_config({"steps": [{"effect": "crop", "size": 0.9}]})
    assert plain.output_size((SIZE, SIZE)) == (SIZE, SIZE)
    assert DomainRandomization.from_config({"steps": [{"effect": "crop", "size": 0.9, "resize": False}]}
                                           ).output_size((SIZE, SIZE)) == (s, s)


def test_piecewise_affine_maps_landmarks_exactly():
    from synthex_lib.randomization.registry import effect_class
    from synthex_lib.randomization.spatial import _piecewise_grid, _triangulation

    b = stack_samples(disc_phantom(SIZE, radius=6.0), N)
    _, out = run("piecewise_affine", b, scale=[0, 0])
    assert torch.allclose(out["image"], b["image"], atol=1e-5) and torch.equal(out["labels"], b["labels"])
    eff = effect_class("piecewise_affine")(scale=[0.03, 0.03])
    u = torch.rand(N, eff.n_draws, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    from synthex_lib.randomization.base import Batch

    res = eff.apply(Batch(b["image"], b["labels"], b["landmarks"], b["visible"]), u)
    # the backward map evaluated at the new landmark position returns the old one
    _, tri, *mats = _triangulation(SIZE, SIZE, 4, 4, "cpu", torch.float64)
    d = eff.displacements(u, (SIZE, SIZE)).view(N, 4, 4, 2).permute(0, 3, 1, 2)
    grid = _piecewise_grid(d, (SIZE, SIZE), tuple(mats))  # [N, H, W, 2] normalised
    g = grid.permute(0, 3, 1, 2)
    new = res.landmarks.double()
    norm = new / (SIZE - 1) * 2 - 1
    back = torch.nn.functional.grid_sample(g, norm[:, :, None, :], mode="bilinear", align_corners=True)
    back = (back[..., 0].permute(0, 2, 1) + 1) / 2 * (SIZE - 1)
    ok = res.visible
    # bilinear sampling of a piecewise-linear map is exact up to the triangle split inside a pixel
    assert (back - b["landmarks"].double())[ok].abs().max() < 0.05


def test_elastic_identity_and_defect_mode():
    b = stack_samples(disc_phantom(SIZE, radius=6.0), N)
    _, out = run("elastic", b, alpha=[0, 0])
    assert torch.allclose(out["image"], b["image"], atol=1e-5) and torch.equal(out["labels"], b["labels"])
    _, out = run("elastic", b, alpha=[3.5, 3.5], move_labels=False)
    assert torch.equal(out["labels"], b["labels"]) and torch.equal(out["landmarks"], b["landmarks"])
    assert not torch.allclose(out["image"], b["image"])
    _, out = run("elastic", b, alpha=[3.5, 3.5])
    assert not torch.equal(out["labels"], b["labels"])
    assert (out["landmarks"] - b["landmarks"]).abs().max() <= 3.5 * 2 ** 0.5 + 1e-4
