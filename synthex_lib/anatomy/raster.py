"""Rasterizing a continuous anatomy on an axis-aligned LPS grid.

An anatomy is an ordered list of :class:`Part` (painter's order: later parts overwrite earlier
ones). Each part is a signed-distance field, a core tissue, an optional shell (cortical bone,
skin) and an optional label. :func:`classify` evaluates the field on coarse blocks of 8^3 voxels
first and only refines blocks that a surface may cross (SDF Lipschitz bound with a safety
factor), so the cost scales with surface area, not volume.

Frames: arrays ``[z, y, x]``, axes aligned with LPS, voxel ``[k, j, i]`` at
``origin + (i, j, k) * spacing`` (mm).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from synthex_lib.anatomy.sdf import SDF
from synthex_lib.anatomy.tissues import Tissue, tissue_tables
from synthex_lib.core.errors import ConfigError, require_positive
from synthex_lib.core.seeding import seeded_rng

#: block edge (voxels) of the coarse classification
BLOCK = 8
#: margin on the Lipschitz bound of the (approximate) distance fields
SAFETY = 1.35
#: points per chunk of the fine evaluation (memory: ~40 bytes per point and node)
CHUNK_POINTS = 1 << 19


@dataclass(frozen=True)
class Grid:
    """An axis-aligned grid: ``origin`` (LPS mm of voxel [0,0,0]), ``spacing`` (x, y, z) mm, ``shape`` (z, y, x)."""

    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]

    @staticmethod
    def from_bounds(lo: Sequence[float], hi: Sequence[float], spacing: float | Sequence[float]) -> Grid:
        """The grid with voxel centres from ``lo`` stepping by ``spacing`` up to (at most) ``hi``."""
        sp = np.broadcast_to(np.asarray(spacing, np.float64), (3,))
        lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
        n = np.floor((hi - lo) / sp + 1e-6).astype(int) + 1
        if np.any(n < 1) or np.any(sp <= 0):
            raise ConfigError(f"empty grid: bounds {lo} .. {hi} with spacing {sp}")
        return Grid(tuple(float(v) for v in lo), tuple(float(v) for v in sp), (int(n[2]), int(n[1]), int(n[0])))

    def axis(self, i: int) -> np.ndarray:
        """Voxel-centre coordinates (mm) along world axis ``i`` (0 = x, 1 = y, 2 = z)."""
        n = self.shape[2 - i]
        return self.origin[i] + np.arange(n) * self.spacing[i]

    @property
    def hi(self) -> np.ndarray:
        return np.asarray(self.origin) + (np.array(self.shape[::-1]) - 1) * np.asarray(self.spacing)

    def sub(self, k0: int, k1: int) -> Grid:
        """The z slab of slices ``k0:k1``."""
        o = (self.origin[0], self.origin[1], self.origin[2] + k0 * self.spacing[2])
        return Grid(o, self.spacing, (k1 - k0, self.shape[1], self.shape[2]))

    def index_range(self, lo: np.ndarray, hi: np.ndarray) -> tuple[slice, slice, slice] | None:
        """Slices ``[z, y, x]`` of the voxels inside the box [lo, hi] (mm), or None if empty."""
        o, sp = np.asarray(self.origin), np.asarray(self.spacing)
        n = np.array(self.shape[::-1])
        i0 = np.clip(np.floor((np.asarray(lo) - o) / sp).astype(np.int64), 0, n)
        i1 = np.clip(np.ceil((np.asarray(hi) - o) / sp).astype(np.int64) + 1, 0, n)
        if np.any(i1 <= i0):
            return None
        return slice(int(i0[2]), int(i1[2])), slice(int(i0[1]), int(i1[1])), slice(int(i0[0]), int(i1[0]))

    def region(self, sl: tuple[slice, slice, slice]) -> Grid:
        o = np.asarray(self.origin) + np.array([sl[2].start, sl[1].start, sl[0].start]) * np.asarray(self.spacing)
        return Grid(tuple(float(v) for v in o), self.spacing,
                    (sl[0].stop - sl[0].start, sl[1].stop - sl[1].start, sl[2].stop - sl[2].start))


@dataclass
class Raster:
    """A rasterized anatomy.

    Attributes:
        hu: true HU, float32 ``[z, y, x]`` (noise-free, no scanner blur; metals at their true HU).
        labels: uint8 label ids (hip: :data:`synthex_lib.core.constants.HIP_LABELS`; tool: 1 on the tool).
        materials: uint8 material classes (:class:`synthex_lib.anatomy.tissues.Material`).
        tissues: uint8 fine tissue classes (:class:`synthex_lib.anatomy.tissues.Tissue`).
        origin: LPS mm of voxel [0, 0, 0]; spacing: (x, y, z) mm.
        lesion: uint8 COVID-19 lesion mask (chest), else None.
    """

    hu: np.ndarray
    labels: np.ndarray
    materials: np.ndarray
    tissues: np.ndarray
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]
    lesion: np.ndarray | None = None

    @property
    def grid(self) -> Grid:
        return Grid(self.origin, self.spacing, self.hu.shape)  # type: ignore[arg-type]


@dataclass
class Part:
    """One structure of an anatomy, painted in order.

    ``tissue`` fills the core (``d <= -shell``), ``shell_tissue`` the shell ``-shell < d <= 0``
    (the shell thickness may vary in space through ``shell_fn(points) -> mm`` bounded by
    ``shell_mm``). ``label`` is written where the part is painted (None: labels unchanged).
    ``only_over`` restricts painting to voxels whose current tissue is in that set.
    ``relabel_from``: the part changes no tissue; it sets ``label`` where the current label is
    ``relabel_from``. ``tissue=None``: the part only paints its label.
    """

    name: str
    sdf: SDF
    tissue: int | None
    label: int | None = None
    shell_mm: float = 0.0
    shell_tissue: int | None = None
    shell_fn: Callable[[np.ndarray], np.ndarray] | None = None
    shell_min_mm: float | None = None
    only_over: tuple[int, ...] | None = None
    relabel_from: int | None = None


def _classes(part: Part, d: np.ndarray, pts: np.ndarray | None) -> np.ndarray:
    """Exact classes of points with distances ``d`` (0 outside, 1 shell, 2 core)."""
    t_max = part.shell_mm if part.shell_tissue is not None else 0.0
    if t_max > 0:
        t = part.shell_fn(pts) if (part.shell_fn is not None and pts is not None) else np.float32(t_max)
        return np.where(d > 0, 0, np.where(d > -t, 1, 2)).astype(np.uint8)
    return np.where(d > 0, 0, 2).astype(np.uint8)


def _block_pass(part: Part, lo: np.ndarray, hi: np.ndarray, sp: np.ndarray, nvox: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Evaluate block centres: (uniform class per block, ambiguous mask). Blocks span ``nvox``
    voxels per axis; a block is ambiguous when a class boundary may cross it."""
    centre = 0.5 * (lo + hi)
    dc = np.empty(len(lo))
    for s in range(0, len(lo), CHUNK_POINTS // 8):
        sl = slice(s, s + CHUNK_POINTS // 8)
        dc[sl] = part.sdf.eval_blocks(centre[sl, None, :].astype(np.float32), lo[sl], hi[sl])[:, 0]
    r = 0.5 * float(np.linalg.norm((nvox - 1) * sp))
    tol = SAFETY * r + 1e-3
    t_max = part.shell_mm if part.shell_tissue is not None else 0.0
    t_min = part.shell_min_mm if (part.shell_fn is not None and part.shell_min_mm is not None) else t_max
    amb = np.abs(dc) <= tol
    if t_max > 0:
        amb |= (dc >= -(t_max + tol)) & (dc <= -(t_min - tol))
    cls = np.where(dc > 0, 0, np.where(dc > -t_max, 1, 2)).astype(np.uint8)
    return cls, amb


def _sub_pass(part: Part, centres: np.ndarray, plo: np.ndarray, phi: np.ndarray, sp: np.ndarray, nvox: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`_block_pass` for sub-block ``centres`` (P, S, 3) grouped by parent box [plo, phi]."""
    dc = np.empty(centres.shape[:2])
    per = max(1, CHUNK_POINTS // centres.shape[1])
    for s in range(0, len(centres), per):
        sl = slice(s, s + per)
        dc[sl] = part.sdf.eval_blocks(centres[sl].astype(np.float32), plo[sl], phi[sl])
    dc = dc.ravel()
    r = 0.5 * float(np.linalg.norm((nvox - 1) * sp))
    tol = SAFETY * r + 1e-3
    t_max = part.shell_mm if part.shell_tissue is not None else 0.0
    t_min = part.shell_min_mm if (part.shell_fn is not None and part.shell_min_mm is not None) else t_max
    amb = np.abs(dc) <= tol
    if t_max > 0:
        amb |= (dc >= -(t_max + tol)) & (dc <= -(t_min - tol))
    cls = np.where(dc > 0, 0, np.where(dc > -t_max, 1, 2)).astype(np.uint8)
    return cls, amb


def _grid_of(n: int) -> np.ndarray:
    """(n^3, 3) integer offsets (x, y, z), z slowest (array order [z, y, x])."""
    oz, oy, ox = np.meshgrid(*(np.arange(n),) * 3, indexing="ij")
    return np.stack([ox.ravel(), oy.ravel(), oz.ravel()], axis=1)


def classify(part: Part, grid: Grid) -> np.ndarray:
    """uint8 ``[z, y, x]`` over ``grid``: 0 outside, 1 shell, 2 core of ``part``.

    Three passes: centres of 16^3-voxel blocks, centres of the 4^3 sub-blocks of ambiguous blocks,
    then every voxel of ambiguous sub-blocks; a (sub-)block is uniform when its centre is farther
    from every class boundary than its half diagonal times :data:`SAFETY`."""
    b1, b2 = 2 * BLOCK, BLOCK // 2
    sp = np.asarray(grid.spacing, np.float64)
    org = np.asarray(grid.origin, np.float64)
    shape = np.array(grid.shape)  # z, y, x
    nb = -(-shape // b1)
    padded = np.zeros(tuple(nb * b1), np.uint8)
    view1 = padded.reshape(nb[0], b1, nb[1], b1, nb[2], b1).transpose(0, 2, 4, 1, 3, 5)
    n2 = nb * (b1 // b2)
    view2 = padded.reshape(n2[0], b2, n2[1], b2, n2[2], b2).transpose(0, 2, 4, 1, 3, 5)
    # pass 1: big blocks
    bz, by, bx = np.meshgrid(*(np.arange(n) for n in nb), indexing="ij")
    bidx = np.stack([bx.ravel(), by.ravel(), bz.ravel()], axis=1)  # x, y, z block index
    lo = org + bidx * b1 * sp
    cls, amb = _block_pass(part, lo, lo + (b1 - 1) * sp, sp, b1)
    u = bidx[~amb]
    view1[u[:, 2], u[:, 1], u[:, 0]] = cls[~amb][:, None, None, None]
    if not amb.any():
        return padded[: shape[0], : shape[1], : shape[2]]
    # pass 2: centres of the sub-blocks of ambiguous blocks, evaluated per parent block
    parents = bidx[amb]
    k = b1 // b2
    sub = (parents[:, None, :] * k + _grid_of(k)[None]).reshape(-1, 3)
    lo2 = org + sub * b2 * sp
    cls2, amb2 = _sub_pass(part, (lo2 + 0.5 * (b2 - 1) * sp).reshape(len(parents), k**3, 3), lo[amb],
                           lo[amb] + (b1 - 1) * sp, sp, b2)
    u = sub[~amb2]
    view2[u[:, 2], u[:, 1], u[:, 0]] = cls2[~amb2][:, None, None, None]
    # pass 3: voxels of ambiguous sub-blocks
    ab = sub[amb2]
    if len(ab):
        offs = (_grid_of(b2) * sp).astype(np.float32)
        per = max(1, CHUNK_POINTS // b2**3)
        for s in range(0, len(ab), per):
            idx = ab[s:s + per]
            lo3 = org + idx * b2 * sp
            pts = lo3.astype(np.float32)[:, None, :] + offs[None]
            d = part.sdf.eval_blocks(pts, lo3, lo3 + (b2 - 1) * sp)
            view2[idx[:, 2], idx[:, 1], idx[:, 0]] = _classes(part, d, pts).reshape(-1, b2, b2, b2)
    return padded[: shape[0], : shape[1], : shape[2]]


class LatticeNoise:
    """Smooth Gaussian random field (unit standard deviation) on a lattice of ``cell_mm`` cells,
    trilinearly interpolated; defined over [lo, hi] (mm) and seeded by ``keys``."""

    def __init__(self, keys: Sequence[Any], lo: np.ndarray, hi: np.ndarray, cell_mm: float) -> None:
        require_positive("cell_mm", cell_mm)
        self.cell = float(cell_mm)
        self.lo = np.asarray(lo, np.float64) - 2 * self.cell
        n = np.ceil((np.asarray(hi, np.float64) + 2 * self.cell - self.lo) / self.cell).astype(int) + 2
        rng = seeded_rng(*keys)
        lat = rng.standard_normal((n[2], n[1], n[0])).astype(np.float32)
        lat = ndimage.gaussian_filter(lat, 0.8, mode="wrap")
        self.lattice = (lat / max(float(lat.std()), 1e-6)).astype(np.float32)

    def _weights(self, grid: Grid, ax_world: int) -> tuple[np.ndarray, np.ndarray]:
        n = self.lattice.shape[2 - ax_world]
        u = np.clip((grid.axis(ax_world) - self.lo[ax_world]) / self.cell, 0, n - 1.001)
        i0 = np.floor(u).astype(np.int64)
        return i0, (u - i0).astype(np.float32)

    def planes(self, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The lattice interpolated in x and y onto ``grid`` (``[Lz, ny, nx]``) and the z indices and
        weights of each grid slice: slice k is ``A[i0[k]] * (1 - w[k]) + A[i0[k] + 1] * w[k]``."""
        iz, wz = self._weights(grid, 2)
        z0, z1 = int(iz.min()), int(iz.max()) + 2
        out = self.lattice[z0:z1]
        for ax_world, ax_arr in ((0, 2), (1, 1)):
            i0, w = self._weights(grid, ax_world)
            shape = [1, 1, 1]
            shape[ax_arr] = -1
            w = w.reshape(shape)
            out = np.take(out, i0, axis=ax_arr) * (1 - w) + np.take(out, i0 + 1, axis=ax_arr) * w
        return out.astype(np.float32, copy=False), iz - z0, wz

    @staticmethod
    def slab(planes: tuple[np.ndarray, np.ndarray, np.ndarray], k0: int, k1: int) -> np.ndarray:
        """Slices ``k0:k1`` of the field from :meth:`planes`."""
        a, i0, w = planes
        wz = w[k0:k1, None, None]
        return a[i0[k0:k1]] * (1 - wz) + a[i0[k0:k1] + 1] * wz

    def on_grid(self, grid: Grid) -> np.ndarray:
        """The field on every voxel of ``grid`` (separable linear interpolation), float32 [z, y, x]."""
        return self.slab(self.planes(grid), 0, grid.shape[0])

    def at(self, points: np.ndarray) -> np.ndarray:
        """The field at points ``(..., 3)`` (mm)."""
        p = np.asarray(points, np.float64)
        u = (p - self.lo) / self.cell
        coords = np.stack([u[..., 2].ravel(), u[..., 1].ravel(), u[..., 0].ravel()])
        return ndimage.map_coordinates(self.lattice, coords, order=1, mode="nearest").reshape(p.shape[:-1])


class Anatomy(ABC):
    """Base class of the continuous anatomies (hip, chest, tool scene).

    Subclasses hold a small picklable parameter object and build their parts lazily
    (``_build() -> list[Part]``); the parts, noise fields and caches are not pickled.
    Attributes ``bounds`` (lo, hi LPS mm) and ``seed_keys`` are required.
    """

    kind: str = "anatomy"
    #: tissue id -> coarse-noise threshold above which it turns to fat (intermuscular/visceral fat)
    marbling: dict[int, float] = {}
    #: tissue id -> fine-noise threshold above which it turns to gas (AIR): bubbles of a few mm,
    #: the mottled gas of stool
    mottling: dict[int, float] = {}
    texture_fine_mm: float = 2.5
    texture_coarse_mm: float = 12.0

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cache"] = {}
        return state

    # -- to implement --------------------------------------------------------------------------
    @property
    @abstractmethod
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) LPS mm corners of the box holding the whole anatomy."""

    @property
    @abstractmethod
    def seed_keys(self) -> tuple[Any, ...]:
        """Keys of :func:`geometry.seeded_rng` from which this anatomy was drawn."""

    @abstractmethod
    def _build(self) -> list[Part]:
        """The labelled, material-tagged parts making up the anatomy."""

    def tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return tissue_tables()

    # -- shared --------------------------------------------------------------------------------
    @property
    def parts(self) -> list[Part]:
        if "parts" not in self._cache:
            self._cache["parts"] = self._build()
        return self._cache["parts"]

    def noise(self, which: str) -> LatticeNoise:
        key = f"noise-{which}"
        if key not in self._cache:
            cell = self.texture_fine_mm if which == "fine" else self.texture_coarse_mm
            lo, hi = self.bounds
            self._cache[key] = LatticeNoise((*self.seed_keys, "texture", which), lo, hi, cell)
        return self._cache[key]

    def default_grid(self, spacing_mm: float) -> Grid:
        lo, hi = self.bounds
        return Grid.from_bounds(lo, hi, spacing_mm)

    def rasterize(self, spacing_mm: float, bounds_lps: tuple[np.ndarray, np.ndarray] | None = None) -> Raster:
        """Rasterize at isotropic ``spacing_mm`` over ``bounds_lps`` (lo, hi LPS mm; default the
        specimen's bounds). Voxel centres start at ``lo``."""
        require_positive("spacing_mm", spacing_mm)
        lo, hi = self.bounds if bounds_lps is None else bounds_lps
        return self.rasterize_grid(Grid.from_bounds(lo, hi, spacing_mm))

    def rasterize_grid(self, grid: Grid) -> Raster:
        """Rasterize on an arbitrary axis-aligned grid (see :meth:`rasterize`)."""
        tis = np.zeros(grid.shape, np.uint8)
        lab = np.zeros(grid.shape, np.uint8)
        for part in self.parts:
            sl = grid.index_range(part.sdf.lo, part.sdf.hi)
            if sl is None:
                continue
            cls = classify(part, grid.region(sl))
            t_reg, l_reg = tis[sl], lab[sl]
            if part.relabel_from is not None:
                m = (cls > 0) & (l_reg == part.relabel_from)
                l_reg[m] = part.label
                continue
            if part.only_over is not None:
                allowed = np.zeros(256, bool)
                allowed[list(part.only_over)] = True
                cls = np.where(allowed[t_reg], cls, 0).astype(np.uint8)
            if part.tissue is None:  # label-only part
                m = cls > 0
            elif part.shell_tissue is None:
                m = cls > 0
                t_reg[m] = part.tissue
            else:
                m = cls > 0
                t_reg[cls == 2] = part.tissue
                t_reg[cls == 1] = part.shell_tissue
            if part.label is not None:
                l_reg[m] = part.label
        return self._finish(grid, tis, lab)

    def _finish(self, grid: Grid, tis: np.ndarray, lab: np.ndarray) -> Raster:
        """Marbling and mottling, then true HU = tissue HU + texture (fine and coarse random fields),
        slab by slab."""
        hu_t, fine_t, coarse_t, mat_t = self.tables()
        coarse = self.noise("coarse").planes(grid)
        fine = self.noise("fine").planes(grid)
        thr = np.full(256, np.inf, np.float32)
        for t, v in self.marbling.items():
            thr[t] = v
        mthr = np.full(256, np.inf, np.float32)
        for t, v in self.mottling.items():
            mthr[t] = v
        hu = np.empty(grid.shape, np.float32)
        step = max(1, (1 << 21) // max(1, grid.shape[1] * grid.shape[2]))
        for k0 in range(0, grid.shape[0], step):
            k1 = min(grid.shape[0], k0 + step)
            t = tis[k0:k1]
            c = LatticeNoise.slab(coarse, k0, k1)
            f = LatticeNoise.slab(fine, k0, k1)
            if self.marbling:
                t[c > thr[t]] = Tissue.FAT
            if self.mottling:
                t[f > mthr[t]] = Tissue.AIR
            h = hu_t[t]
            h += coarse_t[t] * c
            h += fine_t[t] * f
            hu[k0:k1] = h
        is_lesion = (tis == Tissue.GGO) | (tis == Tissue.CONSOLIDATION)
        lesion = is_lesion.astype(np.uint8) if (self.kind == "chest" or is_lesion.any()) else None
        return Raster(hu=hu, labels=lab, materials=mat_t[tis], tissues=tis, origin=grid.origin, spacing=grid.spacing,
                      lesion=lesion)
