"""Anti-aliased (partial-volume) density channels of an anatomy for the emulated scanners.

Point classification (one material per voxel, decided at the voxel centre) turns a thin cortical
shell into a staircase whose projected thickness jumps by one voxel wherever the surface crosses a
voxel row: a periodic ring/moire pattern at ``tan(angle) / spacing`` cycles/mm that no real
specimen has. Here every output voxel is the *mean* of ``supersample^3`` point samples: the anatomy
is rasterized (:meth:`Anatomy.rasterize_grid`, slab by slab to bound memory) on a grid
``supersample`` times finer, each fine voxel becomes per-composition densities
(:func:`density_channels`), and the densities are block-averaged. Mass is conserved and a shell of
thickness t contributes ``rho t`` along a ray up to the fine grid's quantization.

Frames: arrays ``[z, y, x(, channel)]`` aligned with LPS, voxel ``[k, j, i]`` centred at
``origin + (i, j, k) * spacing`` (mm); densities in g/cm^3.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthex_lib.anatomy.raster import Grid
from synthex_lib.anatomy.tissues import MATERIAL_COMPOSITION, Material, metal_hu
from synthex_lib.core.errors import DataError, require_positive
from synthex_lib.simulate.reality.attenuation import MATERIAL_FRACTIONS

#: fine (supersampled) voxels rasterized per slab: bounds the memory of one slab to ~0.5 GB
SLAB_VOXELS = 1 << 23


def _representatives() -> dict[int, int]:
    """material id -> the first material id of the same elemental composition (they share a channel)."""
    rep: dict[int, int] = {}
    seen: list[tuple[tuple[str, float], ...]] = []
    firsts: list[int] = []
    for m in sorted(MATERIAL_FRACTIONS):
        key = tuple(sorted((e, round(w, 9)) for e, w in MATERIAL_FRACTIONS[m].items()))
        if key in seen:
            rep[m] = firsts[seen.index(key)]
        else:
            seen.append(key)
            firsts.append(m)
            rep[m] = m
    return rep


REPRESENTATIVE = _representatives()
#: nominal density (g/cm^3) and its HU at 70 keV of each material (the anatomy's own definitions)
NOMINAL = {int(m): (float(rho), metal_hu(str(f), float(rho))) for m, (f, rho) in MATERIAL_COMPOSITION.items()}


def material_density(material_id: int, hu: np.ndarray) -> np.ndarray:
    """Density (g/cm^3, float32) of voxels of one material from their true HU.

    ``rho = rho_m (1000 + HU) / (1000 + HU_m)``: linear attenuation is proportional to density for a fixed
    composition, and so is ``1000 + HU`` (``HU_m``: the anatomy's HU of material m at its nominal density).
    """
    rho_m, hu_m = NOMINAL[int(material_id)]
    return np.maximum(np.float32(rho_m) * (np.float32(1000.0) + hu) / np.float32(1000.0 + hu_m), 0).astype(np.float32)


def density_channels(hu: np.ndarray, materials: np.ndarray, skip_air: bool = True
                     ) -> tuple[tuple[int, ...], np.ndarray]:
    """Density channels, channels-last float32 [Z, Y, X, C] (g/cm^3), one per distinct composition.

    The density of a voxel of material m is :func:`material_density`. Materials of the same composition
    (lung and lesion) share a channel; the returned ids are one material id per channel (the
    representative whose cross sections the channel uses). Air is left out by default: 500 mm of it
    attenuate less than 1.5 % at 60 keV, uniformly.
    """
    present = [int(i) for i in np.unique(materials)
               if int(i) in NOMINAL and not (skip_air and int(i) == Material.AIR)]
    reps: list[int] = []
    for m in present:
        if REPRESENTATIVE[m] not in reps:
            reps.append(REPRESENTATIVE[m])
    if not reps:  # nothing but air: one empty soft-tissue channel keeps the shapes valid
        return (int(Material.SOFT),), np.zeros(np.shape(hu) + (1,), np.float32)
    out = np.zeros(np.shape(hu) + (len(reps),), np.float32)
    hu = np.asarray(hu, np.float32)
    for m in present:
        sel = materials == m
        out[..., reps.index(REPRESENTATIVE[m])][sel] = material_density(m, hu[sel])
    return tuple(reps), out


def fine_grid(grid: Grid, supersample: int, k0: int, k1: int) -> Grid:
    """The grid ``supersample`` times finer than slices ``k0:k1`` of ``grid``: its voxels tile the coarse voxels."""
    s = int(supersample)
    sp = np.asarray(grid.spacing, np.float64)
    org = np.asarray(grid.origin, np.float64) + np.array([0.0, 0.0, k0 * sp[2]])
    fo = org - 0.5 * (s - 1) / s * sp
    nz, ny, nx = k1 - k0, grid.shape[1], grid.shape[2]
    return Grid(tuple(float(v) for v in fo), tuple(float(v) for v in sp / s), (nz * s, ny * s, nx * s))


def block_mean(a: np.ndarray, s: int) -> np.ndarray:
    """Mean over ``s^3`` blocks of a [Z, Y, X] array whose shape is a multiple of ``s`` (float32)."""
    if s == 1:
        return np.asarray(a, np.float32)
    z, y, x = a.shape
    return a.reshape(z // s, s, y // s, s, x // s, s).mean(axis=(1, 3, 5), dtype=np.float32)


def partial_volume_channels(anatomy: Any, grid: Grid, supersample: int
                            ) -> tuple[tuple[int, ...], np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Partial-volume density channels of ``anatomy`` on ``grid``.

    Args:
        anatomy: anything with ``rasterize_grid(Grid) -> Raster`` (an :class:`~synthex_lib.anatomy.raster.Anatomy`
            or the scanner's ``VoxelAnatomy``).
        grid: the output grid (its spacing is the scanner's raster spacing).
        supersample: point samples per output voxel side (1: point classification, no anti-aliasing).

    Returns:
        (material id per channel, channels-last float32 [Z, Y, X, C] g/cm^3, (lo, hi) LPS mm of the body:
        the voxel centres of the box holding every non-air fine sample).
    """
    s = int(supersample)
    require_positive("supersample", s, integer=True)
    if not hasattr(anatomy, "rasterize_grid"):
        raise DataError(f"anatomy {type(anatomy).__name__} has no rasterize_grid(grid): the emulated scanner "
                        "rasterizes through the public Anatomy.rasterize_grid interface")
    nz, ny, nx = grid.shape
    per = max(1, SLAB_VOXELS // max(1, ny * nx * s**3))
    reps: list[int] = []
    out = np.zeros((nz, ny, nx, 0), np.float32)
    body_lo = np.full(3, np.inf)
    body_hi = np.full(3, -np.inf)
    for k0 in range(0, nz, per):
        k1 = min(nz, k0 + per)
        fg = fine_grid(grid, s, k0, k1)
        r = anatomy.rasterize_grid(fg)
        mats = np.asarray(r.materials)
        hu = np.asarray(r.hu, np.float32)
        body = np.nonzero(np.any(mats != Material.AIR, axis=(1, 2)))[0]
        if len(body):
            iz = body[[0, -1]]
            iy = np.nonzero(np.any(mats != Material.AIR, axis=(0, 2)))[0][[0, -1]]
            ix = np.nonzero(np.any(mats != Material.AIR, axis=(0, 1)))[0][[0, -1]]
            fo, fs = np.asarray(fg.origin), np.asarray(fg.spacing)
            lo = fo + np.array([ix[0], iy[0], iz[0]]) * fs
            hi = fo + np.array([ix[1], iy[1], iz[1]]) * fs
            body_lo, body_hi = np.minimum(body_lo, lo), np.maximum(body_hi, hi)
        for m in (int(i) for i in np.unique(mats)):
            if m == Material.AIR or m not in NOMINAL:
                continue
            rep = REPRESENTATIVE[m]
            if rep not in reps:  # a composition first met in this slab: grow the channels (rare)
                reps.append(rep)
                grown = np.zeros((nz, ny, nx, len(reps)), np.float32)
                grown[..., :-1] = out
                out = grown
            rho = np.zeros(mats.shape, np.float32)
            sel = mats == m
            rho[sel] = material_density(m, hu[sel])
            out[k0:k1, ..., reps.index(rep)] += block_mean(rho, s)
            del rho, sel
        del r, mats, hu
    if not reps:
        out = np.zeros((nz, ny, nx, 1), np.float32)
        reps = [int(Material.SOFT)]
    if not np.all(np.isfinite(body_lo)):
        body_lo, body_hi = np.asarray(grid.origin, np.float64), grid.hi
    return tuple(reps), out, (body_lo, body_hi)
