"""Intensity effects: they change pixel values only, so labels and landmarks stay right by construction.

All of them are batched torch on the input's device. Written by hand because no maintained library
offers them with per-sample parameter ranges, float (not 8-bit) images and per-sample seeding at
once (see ``../shared/reference/augmentation.md``, section 2): e.g. kornia's noise has a fixed
sigma, MONAI lacks salt-and-pepper, log/sigmoid contrast and element-wise multiply.

Intensities are in the image's own units (log domain, bone bright); effects defined on the
"min-max normalised image" map each sample to [0, 1], act, and map back to its original range.
"""

from __future__ import annotations

import torch

from synthex_lib.core.errors import ConfigError
from synthex_lib.randomization.base import (
    Batch,
    Effect,
    Param,
    int_between,
    intensity_range,
    lerp,
    per_sample,
    pick,
    random_field,
)


class Noise(Effect):
    """Additive Gaussian noise, x + N(0, sigma), sigma = U(sigma) x the sample's intensity range."""

    name = "noise"
    summary = "Gaussian noise, sigma a fraction of the intensity range"
    n_draws = 2
    PARAMS = {"sigma": Param([0.005, 0.1], "range", "noise std as a fraction of max - min", (0.0, 10.0), ui=(0.0, 0.3))}

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        _, rng = intensity_range(x)
        sigma = per_sample(lerp(self.params["sigma"], u[:, 0]), x) * rng
        z = random_field(u[:, 1], tuple(x.shape[1:]), x.device, "normal", x.dtype)
        return batch.with_image(torch.addcmul(x, z, sigma, out=z))


class Gamma(Effect):
    """Gamma on the min-max normalised image, mapped back to the original range: lo + r ((x-lo)/r)^g,
    computed as lo + (x - lo)^g r^(1-g) (one power pass)."""

    name = "gamma"
    summary = "gamma transform of the min-max normalised image"
    n_draws = 1
    PARAMS = {"gamma": Param([0.7, 1.3], "range", "exponent gamma", (1e-3, 100.0), ui=(0.2, 3.0))}

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        lo, rng = intensity_range(x)
        g = per_sample(lerp(self.params["gamma"], u[:, 0]), x)
        v = torch.sub(x, lo, out=batch.image_out())  # >= 0 exactly
        return batch.with_image(torch.addcmul(lo, v.pow_(g), rng.pow(1.0 - g), out=v))


class Invert(Effect):
    """Invert intensities: ``max(x) - x`` (paper and official code) or ``max + min - x`` (range kept)."""

    name = "invert"
    summary = "invert intensities"
    PARAMS = {"mode": Param("max", "choice", "'max': max(x) - x; 'range': max(x) + min(x) - x",
                            options=("max", "range"))}

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        if self.params["mode"] == "range":
            hi = hi + x.amin(dim=(1, 2, 3), keepdim=True)
        return batch.with_image(torch.sub(hi, x, out=batch.image_out()))


def coarse_mask(cell_u: torch.Tensor, size_percent: torch.Tensor, fraction: torch.Tensor,
                hw: tuple[int, int]) -> torch.Tensor:
    """bool [n, H, W]: a low-resolution Bernoulli(fraction) mask upsampled (nearest) to H x W.

    The low-resolution mask has round(size_percent x H) x round(size_percent x W) cells (imgaug's
    ``size_percent``), so each True cell is a rectangle of about 1/size_percent pixels a side.
    ``cell_u`` [n, G*G] holds one uniform per cell of the largest grid G (row-major, stride G).
    """
    h, w = hw
    n, gg = cell_u.shape
    g = int(round(gg ** 0.5))
    dev = cell_u.device
    gr = (size_percent * h).round().clamp(1, g).to(dev)
    gc = (size_percent * w).round().clamp(1, g).to(dev)
    rows = torch.arange(h, device=dev, dtype=torch.float64)
    cols = torch.arange(w, device=dev, dtype=torch.float64)
    cr = (rows[None] * gr[:, None] / h).floor().long()  # [n, H]
    cc = (cols[None] * gc[:, None] / w).floor().long()  # [n, W]
    cell = cr[:, :, None] * g + cc[:, None, :]
    vals = cell_u.gather(1, cell.view(n, -1)).view(n, h, w)
    return vals < fraction.to(dev).view(n, 1, 1)


def _grid_size(max_percent: float, hw: tuple[int, int]) -> int:
    return max(1, int(round(max_percent * max(hw))))


class SaltPepper(Effect):
    """Replace a fraction of pixels with the sample's extremes.

    ``kinds`` (one drawn per sample; repeats weight the draw): ``salt`` (max), ``pepper`` (min),
    ``impulse`` (each replaced pixel max or min with equal chance), ``coarse`` (impulse values in
    rectangles: a low-resolution mask with ``coarse_size_percent``, imgaug's CoarseSaltAndPepper).
    imgaug draws replacement values from a U-shaped Beta near 0 and 255 after scaling to [0, 255];
    here they are exactly the sample's min and max, which is what the paper's text describes.
    """

    name = "salt_pepper"
    summary = "impulse / salt / pepper noise"
    n_draws = 6
    PARAMS = {
        "kinds": Param(["impulse", "pepper", "salt"], "choices", "noise types, one per sample",
                       options=("impulse", "salt", "pepper", "coarse")),
        "fraction": Param([0.1, 0.1], "range", "fraction of pixels replaced", (0.0, 1.0)),
        "coarse_fraction": Param([0.05, 0.05], "range", "fraction of coarse cells replaced", (0.0, 1.0)),
        "coarse_size_percent": Param([0.01, 0.1], "range", "coarse grid size / image size", (1e-3, 1.0),
                                     ui=(0.005, 0.3)),
    }

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        n, hw, dev = x.shape[0], tuple(x.shape[-2:]), x.device
        kinds = self.params["kinds"]
        kind = [kinds[k] for k in pick(u[:, 0], len(kinds)).tolist()]
        f = random_field((u[:, 1]), hw, dev)  # [n, H, W]
        frac = lerp(self.params["fraction"], u[:, 2]).to(dev, f.dtype).view(n, 1, 1)
        # replaced: f < frac; salt: f < frac x (1 salt, 0.5 impulse, 0 pepper), a subset of replaced
        salt_share = torch.tensor([{"salt": 1.0, "pepper": 0.0}.get(k, 0.5) for k in kind], dtype=torch.float64)
        mask = f < frac
        salt = f < frac * salt_share.to(dev, f.dtype).view(n, 1, 1)
        coarse = [i for i, k in enumerate(kind) if k == "coarse"]
        if coarse:
            idx = torch.tensor(coarse, device=dev)
            g = _grid_size(self.params["coarse_size_percent"][1], hw)
            cells = random_field((u[coarse, 3]), (g * g,), dev, dtype=torch.float64)
            sp = lerp(self.params["coarse_size_percent"], u[coarse, 4])
            cf = lerp(self.params["coarse_fraction"], u[coarse, 5])
            cm = coarse_mask(cells, sp, cf, hw)
            mask[idx] = cm
            salt[idx] = cm & (f[idx] < 0.5)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        out = torch.where(mask[:, None], lo, x, out=batch.image_out())
        return batch.with_image(torch.where(salt[:, None], hi, out, out=out))


class Contrast(Effect):
    """Contrast change of the min-max normalised image v, mapped back to the original range.

    ``linear``: 0.5 + a (v - 0.5); ``log``: gain log2(1 + v); ``sigmoid``: 1 / (1 + exp(gain (cutoff
    - v))); ``gamma``: v ** g (imgaug's Linear/Log/Sigmoid/GammaContrast on [0, 1]; not clipped).
    """

    name = "contrast"
    summary = "linear / log / sigmoid (/ gamma) contrast"
    n_draws = 3
    PARAMS = {
        "modes": Param(["linear", "log", "sigmoid"], "choices", "contrast curves, one per sample",
                       options=("linear", "log", "sigmoid", "gamma")),
        "linear_alpha": Param([0.5, 2.0], "range", "slope of the linear curve", (0.0, 100.0), ui=(0.0, 4.0)),
        "log_gain": Param([0.6, 1.4], "range", "gain of the log curve", (0.0, 100.0), ui=(0.0, 3.0)),
        "sigmoid_gain": Param([3.0, 10.0], "range", "gain of the sigmoid", (0.0, 1000.0), ui=(0.0, 30.0)),
        "sigmoid_cutoff": Param([0.4, 0.6], "range", "centre of the sigmoid in [0, 1]", (0.0, 1.0)),
        "gamma": Param([0.5, 2.0], "range", "exponent of the gamma curve", (1e-3, 100.0), ui=(0.2, 4.0)),
    }

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        lo, rng = intensity_range(x)
        v = ((x - lo) / rng).clamp_(0.0, 1.0)
        modes = self.params["modes"]
        names = [modes[k] for k in pick(u[:, 0], len(modes)).tolist()]
        out = torch.empty_like(v)
        for m in dict.fromkeys(names):
            sel = [i for i, nm in enumerate(names) if nm == m]
            dsel = torch.tensor(sel, device=v.device)
            vs, a, b = v[dsel], u[sel, 1], u[sel, 2]
            if m == "linear":
                r = 0.5 + per_sample(lerp(self.params["linear_alpha"], a), vs) * (vs - 0.5)
            elif m == "log":
                r = per_sample(lerp(self.params["log_gain"], a), vs) * torch.log2(1.0 + vs)
            elif m == "sigmoid":
                gain = per_sample(lerp(self.params["sigmoid_gain"], a), vs)
                cut = per_sample(lerp(self.params["sigmoid_cutoff"], b), vs)
                r = torch.sigmoid(gain * (vs - cut))
            else:
                r = vs.pow(per_sample(lerp(self.params["gamma"], a), vs))
            out[dsel] = r
        return batch.with_image(torch.addcmul(lo, out, rng))


class Multiply(Effect):
    """Multiply by a factor: one per sample (``brightness``) or one per pixel (``elementwise``)."""

    name = "multiply"
    summary = "brightness or element-wise multiplication"
    n_draws = 3
    PARAMS = {
        "modes": Param(["brightness", "elementwise"], "choices", "one per sample",
                       options=("brightness", "elementwise")),
        "factor": Param([0.5, 1.5], "range", "multiplicative factor", (0.0, 100.0), ui=(0.0, 3.0)),
    }

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        modes = self.params["modes"]
        elem = [i for i, k in enumerate(pick(u[:, 0], len(modes)).tolist()) if modes[k] == "elementwise"]
        fac = per_sample(lerp(self.params["factor"], u[:, 1]), x)
        prod = None
        if elem:
            idx = torch.tensor(elem, device=x.device)
            lo, hi = self.params["factor"]
            f = random_field(u[elem, 2], tuple(x.shape[1:]), x.device, dtype=x.dtype)
            prod = f.mul_(hi - lo).add_(lo).mul_(x.index_select(0, idx))
        out = torch.mul(x, fac, out=batch.image_out())
        if prod is not None:
            out.index_copy_(0, idx, prod)
        return batch.with_image(out)


class Dropout(Effect):
    """Set pixels to 0: a random fraction of single pixels (``pixel``) or of rectangular cells of a
    low-resolution grid (``coarse``, imgaug's CoarseDropout with ``size_percent``)."""

    name = "dropout"
    summary = "pixel or coarse (rectangle) dropout to 0"
    n_draws = 4
    PARAMS = {
        "modes": Param(["pixel", "coarse"], "choices", "one per sample", options=("pixel", "coarse")),
        "pixel_fraction": Param([0.01, 0.1], "range", "fraction of pixels set to 0", (0.0, 1.0)),
        "coarse_fraction": Param([0.03, 0.15], "range", "fraction of grid cells set to 0", (0.0, 1.0)),
        "coarse_size_percent": Param([0.02, 0.05], "range", "grid size / image size", (1e-3, 1.0), ui=(0.005, 0.3)),
    }

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        n, hw = x.shape[0], tuple(x.shape[-2:])
        modes = self.params["modes"]
        mode = [modes[k] for k in pick(u[:, 0], len(modes)).tolist()]
        mask = torch.zeros((n, *hw), dtype=torch.bool, device=x.device)
        pix = [i for i, m in enumerate(mode) if m == "pixel"]
        if pix:
            f = random_field((u[pix, 1]), hw, x.device)
            frac = lerp(self.params["pixel_fraction"], u[pix, 2]).to(x.device, f.dtype).view(-1, 1, 1)
            mask[torch.tensor(pix, device=x.device)] = f < frac
        crs = [i for i, m in enumerate(mode) if m == "coarse"]
        if crs:
            g = _grid_size(self.params["coarse_size_percent"][1], hw)
            cells = random_field((u[crs, 1]), (g * g,), x.device, dtype=torch.float64)
            sp = lerp(self.params["coarse_size_percent"], u[crs, 3])
            cf = lerp(self.params["coarse_fraction"], u[crs, 2])
            mask[torch.tensor(crs, device=x.device)] = coarse_mask(cells, sp, cf, hw)
        out = x.masked_fill_(mask[:, None], 0.0) if "image" in batch.owned else x.masked_fill(mask[:, None], 0.0)
        return batch.with_image(out)


class BoxCorruption(Effect):
    """Add strong Gaussian noise inside a random number of random boxes (official ``_erase_fun``).

    Box sides ~ N(mean, std) x image side, truncated to [1, side] px; noise std = ``noise`` x the
    intensity range inside the box (estimated from every 4th pixel along rows and columns: a
    vectorized stand-in for the official per-box loop). Overlapping boxes add independent noise
    (variances add), as the official sequential loop does.
    """

    name = "box_corruption"
    summary = "boxes corrupted with large noise"
    MAX_BOXES = 16
    POOL = 4
    n_draws = 1 + 1 + 4 * MAX_BOXES
    PARAMS = {
        "count": Param([1, 5], "int_range", "number of boxes", (1, 16)),
        "size_mean": Param(0.15, "float", "mean box side / image side", (0.0, 1.0)),
        "size_std": Param(0.15, "float", "std of box side / image side", (0.0, 1.0)),
        "noise": Param(0.2, "float", "noise std / intensity range inside the box", (0.0, 100.0), ui=(0.0, 2.0)),
    }

    def check(self) -> None:
        if self.params["count"][1] > self.MAX_BOXES:
            raise ConfigError(f"effect 'box_corruption': count must be at most {self.MAX_BOXES}")

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        n, (h, w) = x.shape[0], x.shape[-2:]
        k = self.params["count"][1]
        count = int_between(self.params["count"], u[:, 0])  # [n]
        ub = u[:, 2:2 + 4 * k].view(n, k, 4)

        def side(uu: torch.Tensor, full: int) -> torch.Tensor:
            mu, sd = self.params["size_mean"] * full, max(self.params["size_std"] * full, 1e-6)
            a = torch.special.ndtr(torch.tensor((0.5 - mu) / sd, dtype=torch.float64))
            b = torch.special.ndtr(torch.tensor((full + 0.5 - mu) / sd, dtype=torch.float64))
            s = mu + sd * torch.special.ndtri((a + (b - a) * uu).clamp(1e-12, 1 - 1e-12))
            return s.round().clamp(1, full).long()

        bh, bw = side(ub[..., 0], h), side(ub[..., 1], w)
        r0 = ((h - bh + 1) * ub[..., 2]).floor().long().clamp_max(h - bh)
        c0 = ((w - bw + 1) * ub[..., 3]).floor().long().clamp_max(w - bw)
        on = (torch.arange(k)[None] < count[:, None]).to(x.dtype)  # [n, k]
        dev = x.device
        rows, cols = torch.arange(h), torch.arange(w)
        rin = (rows[None, None] >= r0[..., None]) & (rows[None, None] < (r0 + bh)[..., None])  # [n, k, H]
        cin = (cols[None, None] >= c0[..., None]) & (cols[None, None] < (c0 + bw)[..., None])  # [n, k, W]
        # intensity range inside each box, estimated on every 4th pixel along rows and columns
        f = self.POOL
        sub = x[:, 0, ::f, ::f][:, None]  # [n, 1, Hp, Wp]
        hp, wp = sub.shape[-2:]
        grid_r, grid_c = torch.arange(hp) * f, torch.arange(wp) * f
        rin_p = (grid_r[None, None] >= r0[..., None]) & (grid_r[None, None] < (r0 + bh)[..., None])
        cin_p = (grid_c[None, None] >= c0[..., None]) & (grid_c[None, None] < (c0 + bw)[..., None])
        box_p = (rin_p[..., :, None] & cin_p[..., None, :]).to(dev)  # [n, k, Hp, Wp]
        # boxes narrower than the sampling step may contain no sample: use the whole image's range
        empty = ~box_p.flatten(2).any(-1)
        box_p = box_p | empty[..., None, None]
        big = torch.finfo(x.dtype).max
        bmax = torch.where(box_p, sub, -big).amax(dim=(2, 3))
        bmin = torch.where(box_p, sub, big).amin(dim=(2, 3))
        var = ((bmax - bmin).clamp_min(0) * self.params["noise"]) ** 2 * on.to(dev)  # [n, k]
        var_map = torch.bmm((rin.to(dev, x.dtype) * var[..., None]).transpose(1, 2), cin.to(dev, x.dtype))
        z = random_field(u[:, 1], (h, w), dev, "normal", x.dtype)
        return batch.with_image(z.mul_(var_map.sqrt_()).unsqueeze(1).add_(x))
