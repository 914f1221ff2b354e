"""Spatial effects: they move the image, the label map (nearest, so label values stay in the label
set) and the landmarks together; landmarks that leave the image are flagged invisible.

* ``crop`` cuts at integer offsets (plain slicing: nothing to interpolate).
* ``affine`` takes kornia's label-consistent geometry (``get_affine_matrix2d`` for the matrix,
  ``transform_points`` for the landmarks) driven by our per-sample draws (kornia's augmentation
  modules draw from the global torch generator, which would break per-sample determinism); the
  sampling grid is built directly (``F.affine_grid``'s batched matmul is ~10x slower on the CPU)
  and shared by image (bilinear) and labels (nearest).
* ``piecewise_affine`` and ``elastic`` are written here: kornia's non-rigid augmentations do not
  move keypoints (RandomElasticTransform leaves them in place, RandomThinPlateSpline refuses
  masks; ``../shared/reference/augmentation.md`` section 2), and albumentations/imgaug are
  numpy-only and slow (PiecewiseAffine 0.1-1 s per image).

Coordinates: landmarks (x = col, y = row) in pixels, pixel centres at integers, which is kornia's
``align_corners=True`` pixel frame.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from kornia.geometry.linalg import transform_points
from kornia.geometry.transform import get_affine_matrix2d

from synthex_lib.randomization.base import (
    Batch,
    Effect,
    Param,
    lerp,
    random_field,
    update_visibility,
)

PADDING = ("zeros", "border", "reflection")


def _warp_labels_nearest(labels: torch.Tensor, grid: torch.Tensor, padding: str) -> torch.Tensor:
    """Sample an int64 label map [n, H, W] at ``grid`` [n, h, w, 2] (normalised, align_corners)."""
    out = F.grid_sample(labels[:, None].float(), grid, mode="nearest", padding_mode=padding, align_corners=True)
    return out[:, 0].long()  # nearest sampling returns the label values (or 0 padding) exactly


@lru_cache(maxsize=16)
def _base_grid(h: int, w: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """[H, W, 2] identity grid_sample grid (align_corners=True)."""
    xs = torch.linspace(-1.0, 1.0, w, dtype=dtype, device=device) if w > 1 else torch.zeros(1, device=device)
    ys = torch.linspace(-1.0, 1.0, h, dtype=dtype, device=device) if h > 1 else torch.zeros(1, device=device)
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).to(dtype)


def _smooth(f: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing (std ``sigma`` px, zero border as imgaug's constant mode) of
    [..., H, W], as a sum of shifted copies per tap (for the official sigma of 0.25 px that is 3
    taps; torch's conv2d takes ~100x longer for a one-channel 3-tap kernel on the CPU)."""
    r = max(1, math.ceil(3 * sigma))
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=torch.float64) / sigma) ** 2)
    k = (k / k.sum()).tolist()
    for dim in (-1, -2):
        out = f * k[r]
        n = f.shape[dim]
        for o in range(1, min(r, n - 1) + 1):
            # out[i] += k[r - o] f[i - o] + k[r + o] f[i + o]  (zero outside)
            out.narrow(dim, o, n - o).add_(f.narrow(dim, 0, n - o), alpha=k[r - o])
            out.narrow(dim, 0, n - o).add_(f.narrow(dim, o, n - o), alpha=k[r + o])
        f = out
    return f


class Crop(Effect):
    """Random square crop of ``size`` x the shorter side, at a uniform random position.

    With ``resize`` on (the default) the crop is resampled back to the square of the input's shorter side
    (bilinear image, nearest labels, landmarks mapped by the same scale, pixel centres at integers), so a
    network trains on images of the size it is tested on and the crop acts as a zoom of ``1 / size``. With
    ``resize`` off the crop is the output: the image shrinks to the crop's side and landmarks shift by the
    offset. Either way the step fires for every sample (it is a top-level step with p = 1).

    Why resampling is the default (measured at ``quick``, Real2Real, 64 px, held-out specimen 03, 120 epochs):
    trained on unresized 57 px crops (padded to 64 for the network) and tested on the full 64 px images, the
    network's soft Dice on its own training images was 0.70 on full images against 0.85 on 57 px crops of
    them, and held-out Dice was 0.558 (regular DR) and 0.562 (strong); with the crop resampled, 0.670 and 0.658.
    """

    name = "crop"
    summary = "random square crop"
    spatial = True
    resizes = True
    n_draws = 2
    PARAMS = {"size": Param(0.9, "float", "side of the square crop / shorter image side", (1e-3, 1.0)),
              "resize": Param(True, "bool", "resample the crop back to the input's shorter side (a zoom); "
                                                "off: the output is the crop")}

    def crop_size(self, hw: tuple[int, int]) -> int:
        """The crop's side in px."""
        return max(1, int(math.floor(self.params["size"] * min(hw) + 1e-6)))

    def output_size(self, hw: tuple[int, int]) -> tuple[int, int]:
        s = min(hw) if self.params["resize"] else self.crop_size(hw)
        return s, s

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        h, w = x.shape[-2:]
        s = self.crop_size((h, w))
        r0 = ((h - s + 1) * u[:, 0]).floor().long().clamp_max(h - s)
        c0 = ((w - s + 1) * u[:, 1]).floor().long().clamp_max(w - s)
        if self.params["resize"]:
            return self._resized(batch, r0, c0, s, min(h, w))
        r0l, c0l = r0.tolist(), c0.tolist()
        image = torch.stack([x[i, :, r:r + s, c:c + s] for i, (r, c) in enumerate(zip(r0l, c0l, strict=True))])
        out = Batch(image, None, None, batch.visible)
        if batch.labels is not None:
            out.labels = torch.stack([batch.labels[i, r:r + s, c:c + s]
                                      for i, (r, c) in enumerate(zip(r0l, c0l, strict=True))])
        if batch.landmarks is not None:
            off = torch.stack([c0, r0], dim=-1).to(batch.landmarks)
            out.landmarks = batch.landmarks - off[:, None, :]
        return update_visibility(out)

    @staticmethod
    def _resized(batch: Batch, r0: torch.Tensor, c0: torch.Tensor, s: int, out_px: int) -> Batch:
        """Crops of side ``s`` at (``r0``, ``c0``) resampled to ``out_px`` squares: output pixel j samples
        source pixel ``offset + j (s - 1) / (out_px - 1)`` (both frames with pixel centres at integers)."""
        x = batch.image
        h, w = x.shape[-2:]
        step = (s - 1) / (out_px - 1) if out_px > 1 else 0.0
        j = torch.arange(out_px, dtype=torch.float64)
        cols = c0.double()[:, None] + j[None] * step  # [n, out] source columns
        rows = r0.double()[:, None] + j[None] * step
        gx = (2 * cols / max(w - 1, 1) - 1).to(x.dtype)
        gy = (2 * rows / max(h - 1, 1) - 1).to(x.dtype)
        grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), -1).to(x.device)
        image = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=True)
        out = Batch(image, None, None, batch.visible)
        if batch.labels is not None:
            out.labels = _warp_labels_nearest(batch.labels, grid, "border")
        if batch.landmarks is not None:
            off = torch.stack([c0, r0], dim=-1).to(batch.landmarks)
            out.landmarks = (batch.landmarks - off[:, None, :]) / (step if step > 0 else 1.0)
        return update_visibility(out)


class Affine(Effect):
    """Random affine warp about the image centre: rotation, translation (uniform direction, magnitude
    in ``translate_px``), shear on x and y, isotropic scale. Bilinear image, nearest labels, the same
    padding for both; landmarks through the same 3x3 matrix (kornia, ``align_corners=True``).

    ``quantize_levels`` > 0 reproduces the official code's PIL path, which rounds the min-max
    normalised image to that many grey levels (256) around the warp.
    """

    name = "affine"
    summary = "affine warp (rotation, translation, shear, scale)"
    spatial = True
    n_draws = 6
    PARAMS = {
        "rotate_deg": Param([-5.0, 5.0], "range", "rotation angle in degrees", (-360.0, 360.0), ui=(-45.0, 45.0)),
        "translate_px": Param([0.0, 20.0], "range", "translation magnitude in pixels", (0.0, 1e5), ui=(0.0, 100.0),
                              unit="px"),
        "shear_deg": Param([-2.0, 2.0], "range", "shear angles (x and y drawn separately) in degrees",
                           (-89.0, 89.0), ui=(-30.0, 30.0)),
        "scale": Param([0.9, 1.1], "range", "isotropic scale factor", (1e-3, 100.0), ui=(0.5, 2.0)),
        "padding": Param("reflection", "choice", "border handling for image and labels", options=PADDING),
        "quantize_levels": Param(0, "int", "0: off; 256: official 8-bit PIL round trip", (0, 65536), ui=(0, 256)),
    }

    def matrices(self, u: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """[n, 3, 3] float64 pixel-frame matrices (source -> destination)."""
        h, w = hw
        n = u.shape[0]
        p = self.params
        ang = lerp(p["rotate_deg"], u[:, 0])
        direction = 2 * torch.pi * u[:, 1]
        mag = lerp(p["translate_px"], u[:, 2])
        trans = torch.stack([mag * torch.cos(direction), mag * torch.sin(direction)], -1)
        shx = torch.deg2rad(lerp(p["shear_deg"], u[:, 3]))
        shy = torch.deg2rad(lerp(p["shear_deg"], u[:, 4]))
        sc = lerp(p["scale"], u[:, 5])[:, None].expand(n, 2)
        centre = torch.tensor([(w - 1) / 2.0, (h - 1) / 2.0], dtype=torch.float64).expand(n, 2)
        return get_affine_matrix2d(trans, centre, sc, ang, shx, shy)

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        hw = (int(x.shape[-2]), int(x.shape[-1]))
        m = self.matrices(u, hw)
        grid = _affine_grid(torch.linalg.inv(m), hw, x.device, x.dtype)
        pad = self.params["padding"]
        levels = self.params["quantize_levels"]
        if levels:
            lo = x.amin(dim=(1, 2, 3), keepdim=True)
            rng = (x.amax(dim=(1, 2, 3), keepdim=True) - lo).clamp_min(1e-12)
            v = ((x - lo) / rng * (levels - 1)).floor()
            v = F.grid_sample(v, grid, mode="bilinear", padding_mode=pad, align_corners=True).round()
            image = lo + rng * v / (levels - 1)
        else:
            image = F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=True)
        out = Batch(image, None, None, batch.visible)
        if batch.labels is not None:
            out.labels = _warp_labels_nearest(batch.labels, grid, pad)
        if batch.landmarks is not None:
            lm = batch.landmarks
            out.landmarks = transform_points(m.to(lm.device), lm.to(torch.float64)).to(lm.dtype)
        return update_visibility(out)


def _affine_grid(inv: torch.Tensor, hw: tuple[int, int], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """grid_sample grid [n, H, W, 2] of the destination -> source pixel matrices ``inv`` [n, 3, 3]
    (the same result as ``F.affine_grid`` on the normalised matrix, without its batched matmul)."""
    h, w = hw
    sx, sy = 2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)
    a = inv[:, :2].clone()
    a[:, 0] *= sx
    a[:, 1] *= sy
    a[:, 0, 2] -= 1.0
    a[:, 1, 2] -= 1.0
    a = a.to(device=device, dtype=dtype)  # [n, 2 (grid x, y), 3]
    xs = torch.arange(w, device=device, dtype=dtype)
    ys = torch.arange(h, device=device, dtype=dtype)
    tx = xs[None, None, :, None] * a[:, None, None, :, 0]  # [n, 1, W, 2]
    ty = ys[None, :, None, None] * a[:, None, None, :, 1] + a[:, None, None, :, 2]  # [n, H, 1, 2]
    return tx + ty


@lru_cache(maxsize=16)
def _triangulation(h: int, w: int, rows: int, cols: int, device: str, dtype: torch.dtype):
    """Regular control grid over the output image, split into triangles (each cell along its
    anti-diagonal from (i+1, j) to (i, j+1)), and the matrices that evaluate the piecewise-linear
    interpolant on it.

    Returns control points P [V, 2] (x, y), v = j * cols + i; triangles [T, 3] of vertex ids;
    linear-interpolation matrices ``wy`` [H, rows], ``wx`` [W, cols]; cell indicators ``ey``
    [H, rows-1], ``ex`` [W, cols-1]; and ``corr`` [H, W] = min(s t, (1 - s)(1 - t)) with (s, t) the
    pixel's position in its cell. Linear interpolation on those triangles equals bilinear
    interpolation minus ``corr`` x (d11 - d10 - d01 + d00) of the pixel's cell, so the exact
    piecewise-affine map costs a few small matrix products.
    """
    xs = torch.linspace(0, w - 1, cols, dtype=torch.float64)
    ys = torch.linspace(0, h - 1, rows, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
    tris = []
    for j in range(rows - 1):
        for i in range(cols - 1):
            v00, v10, v01, v11 = j * cols + i, j * cols + i + 1, (j + 1) * cols + i, (j + 1) * cols + i + 1
            tris += [(v00, v10, v01), (v11, v01, v10)]
    tri = torch.tensor(tris, dtype=torch.long)

    def axis(n_px: int, n_ctl: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = torch.arange(n_px, dtype=torch.float64) / max(n_px - 1, 1) * (n_ctl - 1)
        cell = f.floor().clamp(max=n_ctl - 2).long()
        frac = f - cell
        wts = torch.zeros(n_px, n_ctl, dtype=torch.float64)
        wts[torch.arange(n_px), cell] = 1 - frac
        wts[torch.arange(n_px), cell + 1] += frac
        ind = torch.zeros(n_px, n_ctl - 1, dtype=torch.float64)
        ind[torch.arange(n_px), cell] = 1.0
        return wts, ind, frac

    wx, ex, s = axis(w, cols)
    wy, ey, t = axis(h, rows)
    corr = torch.minimum(s[None, :] * t[:, None], (1 - s[None, :]) * (1 - t[:, None]))
    out = [pts, tri] + [m.to(device=device, dtype=dtype) for m in (wy, wx, ey, ex, corr)]
    return tuple(t.to(device) for t in out)


def _piecewise_grid(dg: torch.Tensor, hw: tuple[int, int], mats: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """grid_sample grid [n, H, W, 2] of the backward map p -> p + d(p), d piecewise linear on the
    control triangles; ``dg`` [n, 2, rows, cols] control displacements (dx, dy) in pixels."""
    h, w = hw
    wy, wx, ey, ex, corr = mats
    sx, sy = 2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)
    dg = dg * torch.tensor([sx, sy], device=dg.device, dtype=dg.dtype)[None, :, None, None]
    delta = dg[:, :, 1:, 1:] - dg[:, :, 1:, :-1] - dg[:, :, :-1, 1:] + dg[:, :, :-1, :-1]
    disp = wy @ dg @ wx.T  # [n, 2, H, W] bilinear
    disp.sub_((ey @ delta @ ex.T).mul_(corr))
    grid = torch.empty((dg.shape[0], h, w, 2), device=dg.device, dtype=dg.dtype)
    torch.add(disp[:, 0], (torch.arange(w, device=dg.device, dtype=dg.dtype) * sx - 1.0)[None, None, :],
              out=grid[..., 0])
    torch.add(disp[:, 1], (torch.arange(h, device=dg.device, dtype=dg.dtype) * sy - 1.0)[None, :, None],
              out=grid[..., 1])
    return grid


class PiecewiseAffine(Effect):
    """Piecewise-affine distortion (imgaug's PiecewiseAffine): a rows x cols grid of control points,
    each jittered by N(0, s) x image size (s drawn per sample from ``scale``), defines a map that is
    affine on each triangle of the grid.

    The map is the *backward* map (output pixel -> source position), evaluated exactly per pixel;
    the image is resampled bilinearly and the labels nearest. Landmarks take the exact inverse: the
    source triangle (jittered) that contains the landmark and the same barycentric coordinates in
    the output triangle. A landmark that no triangle covers has left the image: invisible.
    """

    name = "piecewise_affine"
    summary = "piecewise-affine local distortion"
    spatial = True
    PARAMS = {
        "scale": Param([0.01, 0.05], "range", "jitter std / image size", (0.0, 1.0), ui=(0.0, 0.2)),
        "rows": Param(4, "int", "control-point rows", (2, 16), ui=(2, 8)),
        "cols": Param(4, "int", "control-point columns", (2, 16), ui=(2, 8)),
        "padding": Param("zeros", "choice", "border handling for image and labels", options=PADDING),
    }

    def check(self) -> None:
        self.n_draws = 1 + 2 * self.params["rows"] * self.params["cols"]

    def displacements(self, u: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """[n, V, 2] float64 backward displacements (dx, dy) in pixels at the control points."""
        h, w = hw
        v = self.params["rows"] * self.params["cols"]
        s = lerp(self.params["scale"], u[:, 0])
        z = torch.special.ndtri(u[:, 1:1 + 2 * v].clamp(1e-12, 1 - 1e-12)).view(-1, v, 2)
        return z * s[:, None, None] * torch.tensor([w, h], dtype=torch.float64)

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        n, hw = x.shape[0], (int(x.shape[-2]), int(x.shape[-1]))
        dev = x.device
        rows, cols = self.params["rows"], self.params["cols"]
        pts, tri, *mats = _triangulation(*hw, rows, cols, str(dev), x.dtype)
        d = self.displacements(u, hw)  # [n, V, 2] float64 on the CPU
        grid = _piecewise_grid(d.view(n, rows, cols, 2).permute(0, 3, 1, 2).to(dev, x.dtype), hw, tuple(mats))
        d = d.to(dev)
        pad = self.params["padding"]
        out = Batch(F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=True),
                    None, None, batch.visible)
        if batch.labels is not None:
            out.labels = _warp_labels_nearest(batch.labels, grid, pad)
        if batch.landmarks is not None:
            lm = batch.landmarks
            q = (pts.double()[None] + d.to(dev))[:, tri]  # [n, T, 3, 2] source triangles
            p = pts.double()[tri]  # [T, 3, 2] output triangles
            k = lm.to(torch.float64)[:, :, None, :]  # [n, L, 1, 2]
            q0, e1, e2 = q[:, None, :, 0], q[:, None, :, 1] - q[:, None, :, 0], q[:, None, :, 2] - q[:, None, :, 0]
            r = k - q0

            def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
                return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]

            det = cross(e1, e2)
            ok = det.abs() > 1e-9
            det = torch.where(ok, det, torch.ones_like(det))
            l1, l2 = cross(r, e2) / det, cross(e1, r) / det
            lam = torch.stack([1 - l1 - l2, l1, l2], -1)  # [n, L, T, 3]
            score = torch.where(ok, lam.amin(-1), torch.full_like(det, -torch.inf))
            score = torch.nan_to_num(score, nan=-torch.inf)
            best = score.argmax(-1)  # [n, L]
            lam_b = lam.gather(2, best[..., None, None].expand(-1, -1, 1, 3))[:, :, 0]  # [n, L, 3]
            p_b = p[best]  # [n, L, 3, 2]
            new = (lam_b[..., None] * p_b).sum(2)
            covered = score.gather(2, best[..., None])[..., 0] >= -1e-6
            out.landmarks = new.to(lm.dtype)
            if out.visible is not None:
                out.visible = out.visible & covered
        return update_visibility(out)


class Elastic(Effect):
    """imgaug's ElasticTransformation: backward displacement = Gaussian-smoothed (``sigma`` px)
    uniform(-1, 1) noise x alpha px. The official code uses sigma 0.25, i.e. an almost unsmoothed
    per-pixel jitter of up to alpha pixels.

    ``move_labels`` (default) warps labels (nearest) and landmarks with the image; a landmark moves
    to the output pixel whose source position lies nearest to it (a local search, valid also for
    rough fields where fixed-point iteration diverges). ``move_labels: false`` reproduces the
    official code, which warps the image only and leaves labels misaligned.
    """

    name = "elastic"
    summary = "elastic per-pixel jitter (official code)"
    spatial = True
    n_draws = 2
    MAX_SEARCH = 24
    PARAMS = {
        "alpha": Param([0.5, 3.5], "range", "displacement scale in pixels", (0.0, 100.0), ui=(0.0, 20.0),
                       unit="px"),
        "sigma": Param(0.25, "float", "smoothing of the displacement field in pixels", (0.01, 100.0),
                       ui=(0.01, 10.0), unit="px"),
        "move_labels": Param(True, "bool", "warp labels and landmarks too (false: official defect)"),
        "padding": Param("zeros", "choice", "border handling for image and labels", options=PADDING),
    }

    def apply(self, batch: Batch, u: torch.Tensor) -> Batch:
        x = batch.image
        n, hw = x.shape[0], (int(x.shape[-2]), int(x.shape[-1]))
        h, w = hw
        dev = x.device
        f = random_field(u[:, 1], (2, h, w), dev, dtype=x.dtype).mul_(2).sub_(1)  # U(-1, 1)
        f = _smooth(f, self.params["sigma"])
        alpha = lerp(self.params["alpha"], u[:, 0]).to(device=dev, dtype=x.dtype)
        scale = torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], device=dev, dtype=x.dtype)
        grid = torch.addcmul(_base_grid(h, w, str(dev), x.dtype)[None], f.permute(0, 2, 3, 1),
                             alpha[:, None, None, None] * scale)
        pad = self.params["padding"]
        out = Batch(F.grid_sample(x, grid, mode="bilinear", padding_mode=pad, align_corners=True),
                    batch.labels, batch.landmarks, batch.visible)
        if not self.params["move_labels"]:
            return out
        if batch.labels is not None:
            out.labels = _warp_labels_nearest(batch.labels, grid, pad)
        if batch.landmarks is not None:
            lm = batch.landmarks
            r = min(self.MAX_SEARCH, math.ceil(self.params["alpha"][1]) + 1)  # |smoothed U(-1, 1)| <= 1
            off = torch.arange(-r, r + 1, device=dev)
            oy, ox = torch.meshgrid(off, off, indexing="ij")
            cand = torch.nan_to_num(lm.round(), nan=-1e6)[:, :, None, :] + torch.stack(
                [ox.flatten(), oy.flatten()], -1).to(lm.dtype)  # [n, L, C, 2]
            cx = cand[..., 0].clamp(0, w - 1).long()
            cy = cand[..., 1].clamp(0, h - 1).long()
            idx = (cy * w + cx).view(n, 1, -1).expand(-1, 2, -1)
            dc = f.reshape(n, 2, -1).gather(2, idx) * alpha[:, None, None]  # [n, 2, L*C] pixels
            dc = dc.permute(0, 2, 1).reshape(*cx.shape, 2).to(lm.dtype)
            pos = torch.stack([cx, cy], -1).to(lm.dtype)
            resid = (pos + dc - lm[:, :, None, :]).norm(dim=-1)
            best = resid.argmin(-1)  # [n, L]
            d_best = dc.gather(2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
            out.landmarks = torch.where(torch.isfinite(lm), lm - d_best, lm)
        return update_visibility(out)
