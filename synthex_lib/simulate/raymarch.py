"""The one ray-marching engine shared by every projector: cone-beam line integrals through a voxel volume.

Frames and units:

* ``channels`` is a float tensor ``[C, Z, Y, X]`` whose array axes are aligned with LPS: the world
  position (mm) of voxel ``[k, j, i]`` is ``origin + (i * spacing[0], j * spacing[1], k * spacing[2])``.
* ``P`` (3x4, or a batch ``[B, 3, 4]``) maps homogeneous LPS mm to homogeneous pixels (col, row); pixel
  centres sit at integer coordinates, the centre of the top-left pixel at (0, 0).
* The result is ``[B, C, H, W]``: for every pixel, the integral of each channel along the ray from the
  X-ray source through that pixel's centre, in (channel units) x mm.

The interpolant is trilinear with zero padding: a voxel of value 1 contributes like a cube of its size to a
ray along an axis, and everything outside the volume is 0. Each ray is culled to the volume's bounding
box (index range ``(-1, n)`` per axis, where the zero-padded interpolant vanishes) before sampling.

Two sampling schemes, selected by ``step_mm``:

* ``step_mm=None`` (default of the fast projectors): Joseph's slice-stepping scheme (Joseph 1982; the
  cone-beam forward projector of ASTRA). Each ray is sampled once per slice perpendicular to its dominant
  axis (the axis it crosses fastest in voxel units), at the slice's voxel centres, so the trilinear
  interpolant reduces there exactly to a bilinear one (4 reads instead of 8). The step along the ray is
  ``spacing[a] / |cos(angle to axis a)|``, i.e. between 1 and sqrt(3) voxel sizes.
* ``step_mm > 0``: uniform samples every ``step_mm`` mm along the ray (trilinear, 8 reads), anchored at the
  source (sample ``m`` lies ``m * step_mm`` mm from the source), so results do not depend on culling or
  tiling. This is xreg's scheme (its default step is 1 mm) and DeepDRR's (0.1 mm).

Every ray is oriented from the source towards the scene: the line through the source and the pixel is
intersected with the volume box; when the source lies outside the box (always, in practice) the whole
intersection is on one side of the source and is integrated whatever the sign convention of ``P``
(DeepFluoro's matrices have negative focal lengths, and ``P`` and ``-P`` are the same projective map).
Only when the source lies inside the box does the sign of ``P`` choose the half-line: the one on which
the third homogeneous coordinate of ``P @ X`` has the same sign as for the volume centre.

Two back ends compute the identical sample positions: a ``numba`` CPU kernel (parallel over detector rows,
no intermediate memory; written by hand because no maintained library offers a batched multi-channel
cone-beam projector on CPU with this sampling) and a ``torch`` one (``grid_sample``; any torch device,
CUDA included), tiled over rays so that memory stays under ``max_tile_bytes`` whatever the detector size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from synthex_lib.core.errors import ConfigError
from synthex_lib.geometry import Camera, projection_array

try:  # numba is a main dependency; the torch back end is the fallback if it cannot be imported
    import numba
    from numba import njit, prange

    HAVE_NUMBA = True
except ImportError:  # pragma: no cover - exercised only on installs without numba
    HAVE_NUMBA = False

#: Default memory budget (bytes) of one tile of the torch back end.
DEFAULT_TILE_BYTES = 256 * 2**20


# --- geometry ----------------------------------------------------------------------------------

def as_projection_batch(P: np.ndarray | torch.Tensor | Sequence | Camera) -> np.ndarray:
    """``P`` (or the ``pixel_from_world`` of a :class:`~synthex_lib.geometry.Camera` or a sequence of them)
    as a float64 array ``[B, 3, 4]``; raises :class:`ConfigError` for a wrong shape, non-finite
    values or a singular left 3x3 block (no unique source)."""
    P = projection_array(P)
    if isinstance(P, torch.Tensor):
        P = P.detach().cpu().numpy()
    arr = np.asarray(P, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (3, 4):
        raise ConfigError(f"parameter 'P' must have shape [3, 4] or [B, 3, 4], got {tuple(np.shape(P))}")
    if not np.isfinite(arr).all():
        raise ConfigError("parameter 'P' contains NaN or inf")
    for b, M in enumerate(arr[:, :, :3]):
        if not abs(np.linalg.det(M)) > 1e-12 * np.abs(M).max() ** 3:
            raise ConfigError(f"parameter 'P' (pose {b}): the left 3x3 block is singular; not a projection matrix")
    return arr


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    try:
        W, H = (int(s) for s in size)
    except (TypeError, ValueError):
        raise ConfigError(f"parameter 'size' must be (W, H) positive integers, got {size!r}") from None
    if W <= 0 or H <= 0 or (W, H) != tuple(size):
        raise ConfigError(f"parameter 'size' must be (W, H) positive integers, got {tuple(size)!r}")
    return W, H


def pose_frames(P: np.ndarray, spacing: Sequence[float], origin: Sequence[float],
                shape_zyx: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-pose ray geometry in voxel-index units.

    Returns ``(src_idx [B, 3], A [B, 3, 3], Minv [B, 3, 3], sign [B])``: the source in continuous voxel
    indices (i, j, k) = (x, y, z); ``Minv @ [u, v, 1]`` is the (unnormalised) world direction of pixel
    (u, v) in mm, ``A = diag(1 / spacing) @ Minv`` the same direction in index units; ``sign`` (+-1) orients
    rays towards the scene when the source is inside the volume box (see the module docstring).
    """
    P = as_projection_batch(P)
    sp = np.asarray(spacing, np.float64)
    org = np.asarray(origin, np.float64)
    nz, ny, nx = (int(n) for n in shape_zyx)
    centre = org + (np.array([nx, ny, nz]) - 1) / 2 * sp
    Minv = np.linalg.inv(P[:, :, :3])
    src = -np.einsum("bij,bj->bi", Minv, P[:, :, 3])
    w_centre = P[:, 2, :3] @ centre + P[:, 2, 3]
    sign = np.where(w_centre >= 0, 1.0, -1.0)
    src_idx = (src - org) / sp
    A = Minv / sp[None, :, None]
    return src_idx, A, Minv, sign


# --- numba back end ----------------------------------------------------------------------------

if HAVE_NUMBA:
    @njit(cache=True)
    def _ray_setup(b, r, q, src, A, Minv, sign, nx, ny, nz):  # pragma: no cover - compiled
        u = float(q)
        v = float(r)
        mx = Minv[b, 0, 0] * u + Minv[b, 0, 1] * v + Minv[b, 0, 2]
        my = Minv[b, 1, 0] * u + Minv[b, 1, 1] * v + Minv[b, 1, 2]
        mz = Minv[b, 2, 0] * u + Minv[b, 2, 1] * v + Minv[b, 2, 2]
        s = sign[b] / math.sqrt(mx * mx + my * my + mz * mz)
        dx = (A[b, 0, 0] * u + A[b, 0, 1] * v + A[b, 0, 2]) * s
        dy = (A[b, 1, 0] * u + A[b, 1, 1] * v + A[b, 1, 2]) * s
        dz = (A[b, 2, 0] * u + A[b, 2, 1] * v + A[b, 2, 2]) * s
        cx = src[b, 0]
        cy = src[b, 1]
        cz = src[b, 2]
        t0 = -1e300
        t1 = 1e300
        for ax in range(3):
            if ax == 0:
                c, d, n = cx, dx, nx
            elif ax == 1:
                c, d, n = cy, dy, ny
            else:
                c, d, n = cz, dz, nz
            if d == 0.0:
                if c <= -1.0 or c >= n:
                    t0 = 1.0
                    t1 = 0.0
            else:
                ta = (-1.0 - c) / d
                tb = (n - c) / d
                if ta > tb:
                    ta, tb = tb, ta
                if ta > t0:
                    t0 = ta
                if tb < t1:
                    t1 = tb
        if t0 < 0.0 < t1:  # source inside the box: keep the half-line towards the scene
            t0 = 0.0
        return cx, cy, cz, dx, dy, dz, t0, t1

    @njit(cache=True)
    def _layout(shape, mat):  # pragma: no cover - compiled
        """The preamble shared by both kernels: ``(nz, ny, nx, C, sx, sy, sz, single)`` from ``shape`` =
        (Z, Y, X, V values per voxel, C outputs): voxel strides (in values) along x, y, z of the flat volume,
        and whether the single-channel fast path applies."""
        nz, ny, nx, V, C = shape[0], shape[1], shape[2], shape[3], shape[4]
        single = mat.size == 0 and C == 1
        return nz, ny, nx, C, V, nx * V, ny * nx * V, single

    @njit(cache=True)
    def _corner_weight(i, n, a):  # pragma: no cover - compiled
        """Weight of corner ``i`` (0 or 1 away from the floor) for fraction ``a``, 0 if outside [0, n)."""
        return 0.0 if (i < 0 or i >= n) else 1.0

    @njit(cache=True)
    def _acc(flat, mat, o, w, C, a0, a1, a2, a3, acc):  # pragma: no cover - compiled
        """Add ``w`` x voxel ``o`` to the accumulators (scalars for the first four channels, kept in registers;
        ``acc`` for the rest). Channel mode (``mat`` empty): ``flat`` holds C interleaved values per voxel.
        Material mode: ``flat`` holds one value per voxel, added to the channel ``mat[o]``."""
        if mat.size == 0:
            a0 += w * flat[o]
            if C > 1:
                a1 += w * flat[o + 1]
                if C > 2:
                    a2 += w * flat[o + 2]
                    if C > 3:
                        a3 += w * flat[o + 3]
                        for ch in range(4, C):
                            acc[ch] += w * flat[o + ch]
        else:  # branch-free selects keep the four accumulators in registers (no store-load chains)
            m = mat[o]
            v = w * flat[o]
            a0 += v * (m == 0)
            a1 += v * (m == 1)
            a2 += v * (m == 2)
            a3 += v * (m == 3)
            if m >= 4:  # acc has C + 1 slots; the last collects materials >= C (ignored)
                acc[m if m < C else C] += v
        return a0, a1, a2, a3

    @njit(cache=True)
    def _store(out, b, r, q, C, a0, a1, a2, a3, acc, scale):  # pragma: no cover - compiled
        out[b, 0, r, q] = a0 * scale
        if C > 1:
            out[b, 1, r, q] = a1 * scale
        if C > 2:
            out[b, 2, r, q] = a2 * scale
        for ch in range(3, C):
            out[b, ch, r, q] = (a3 if ch == 3 else acc[ch]) * scale

    @njit(cache=True)
    def _joseph_general(flat, mat, C, k, p, s, sa, spp, sss, npp, ns, a0, a1, a2, a3, acc):  # pragma: no cover
        """One slice sample at in-slice coordinates (p, s), with zero padding at the volume's border."""
        fp = math.floor(p)
        fs = math.floor(s)
        ip = int(fp)
        js = int(fs)
        ap = p - fp
        as_ = s - fs
        base = k * sa + ip * spp + js * sss
        w00 = (1.0 - ap) * (1.0 - as_) * _corner_weight(ip, npp, ap) * _corner_weight(js, ns, as_)
        w10 = ap * (1.0 - as_) * _corner_weight(ip + 1, npp, ap) * _corner_weight(js, ns, as_)
        w01 = (1.0 - ap) * as_ * _corner_weight(ip, npp, ap) * _corner_weight(js + 1, ns, as_)
        w11 = ap * as_ * _corner_weight(ip + 1, npp, ap) * _corner_weight(js + 1, ns, as_)
        if w00 != 0.0:
            a0, a1, a2, a3 = _acc(flat, mat, base, w00, C, a0, a1, a2, a3, acc)
        if w10 != 0.0:
            a0, a1, a2, a3 = _acc(flat, mat, base + spp, w10, C, a0, a1, a2, a3, acc)
        if w01 != 0.0:
            a0, a1, a2, a3 = _acc(flat, mat, base + sss, w01, C, a0, a1, a2, a3, acc)
        if w11 != 0.0:
            a0, a1, a2, a3 = _acc(flat, mat, base + spp + sss, w11, C, a0, a1, a2, a3, acc)
        return a0, a1, a2, a3

    @njit(cache=True)
    def _interior(c0, g, n, klo, khi):  # pragma: no cover - compiled
        """Slices k in [klo, khi] where ``c0 + k g`` keeps both interpolation corners inside [0, n - 1]
        (with a 1e-6 voxel margin against rounding): returns (lo, hi), empty when lo > hi."""
        top = n - 1 - 1e-6
        if g == 0.0:
            return (klo, khi) if (1e-6 <= c0 <= top) else (klo, klo - 1)
        u = (1e-6 - c0) / g
        v = (top - c0) / g
        if u > v:
            u, v = v, u
        lo = max(klo, int(math.ceil(u + 1e-9)))
        hi = min(khi, int(math.floor(v - 1e-9)))
        return lo, hi

    @njit(parallel=True, cache=True)
    def _march_joseph(flat, mat, shape, src, A, Minv, sign, W, H, out):  # pragma: no cover - compiled
        nz, ny, nx, C, sx, sy, sz, single = _layout(shape, mat)
        B = src.shape[0]
        material_mode = mat.size > 0
        for br in prange(B * H):
            b = br // H
            r = br - b * H
            acc = np.zeros(C + 1, np.float64)
            for q in range(W):
                cx, cy, cz, dx, dy, dz, t0, t1 = _ray_setup(b, r, q, src, A, Minv, sign, nx, ny, nz)
                if not t1 > t0:
                    continue
                adx = abs(dx)
                ady = abs(dy)
                adz = abs(dz)
                # dominant axis a (slice stride sa, n_a) and the two in-plane axes p, s
                if adx >= ady and adx >= adz:
                    ca, da, na, sa = cx, dx, nx, sx
                    cp, dp, npp, spp = cy, dy, ny, sy
                    cs, ds, ns, sss = cz, dz, nz, sz
                elif ady >= adz:
                    ca, da, na, sa = cy, dy, ny, sy
                    cp, dp, npp, spp = cx, dx, nx, sx
                    cs, ds, ns, sss = cz, dz, nz, sz
                else:
                    ca, da, na, sa = cz, dz, nz, sz
                    cp, dp, npp, spp = cx, dx, nx, sx
                    cs, ds, ns, sss = cy, dy, ny, sy
                pa = ca + t0 * da
                pb = ca + t1 * da
                if pa > pb:
                    pa, pb = pb, pa
                klo = max(int(math.ceil(pa)), 0)
                khi = min(int(math.floor(pb)), na - 1)
                if khi < klo:
                    continue
                a0 = a1 = a2 = a3 = 0.0
                for ch in range(C + 1):
                    acc[ch] = 0.0
                gp = dp / da  # in-plane advance per slice
                gs = ds / da
                p0 = cp - ca * gp  # in-plane coordinates at slice 0
                s0 = cs - ca * gs
                # slices whose 4 corners are all inside: no bounds checks there (the bulk of every ray)
                ilo, ihi = _interior(p0, gp, npp, klo, khi)
                jlo, jhi = _interior(s0, gs, ns, klo, khi)
                ilo = max(ilo, jlo)
                ihi = min(ihi, jhi)
                if ihi < ilo:
                    ilo = khi + 1
                    ihi = khi
                for k in range(klo, ilo):
                    a0, a1, a2, a3 = _joseph_general(flat, mat, C, k, p0 + k * gp, s0 + k * gs, sa, spp, sss,
                                                     npp, ns, a0, a1, a2, a3, acc)
                if single:
                    for k in range(ilo, ihi + 1):
                        p = p0 + k * gp
                        s = s0 + k * gs
                        ip = int(p)  # p >= 0: truncation is floor
                        js = int(s)
                        ap = p - ip
                        as_ = s - js
                        o = k * sa + ip * spp + js * sss
                        v00 = flat[o]
                        v01 = flat[o + sss]
                        top = v00 + ap * (flat[o + spp] - v00)
                        bot = v01 + ap * (flat[o + spp + sss] - v01)
                        a0 += top + as_ * (bot - top)
                elif material_mode:
                    for k in range(ilo, ihi + 1):
                        p = p0 + k * gp
                        s = s0 + k * gs
                        ip = int(p)
                        js = int(s)
                        ap = p - ip
                        as_ = s - js
                        o = k * sa + ip * spp + js * sss
                        m = mat[o]
                        if m == mat[o + spp] and m == mat[o + sss] and m == mat[o + spp + sss] and m < 4:
                            # one material at all four corners (the bulk; predictable along a ray)
                            v00 = flat[o]
                            v01 = flat[o + sss]
                            top = v00 + ap * (flat[o + spp] - v00)
                            bot = v01 + ap * (flat[o + spp + sss] - v01)
                            v = top + as_ * (bot - top)
                            if m == 0:
                                a0 += v
                            elif m == 1:
                                a1 += v
                            elif m == 2:
                                a2 += v
                            else:
                                a3 += v
                        else:
                            a0, a1, a2, a3 = _acc(flat, mat, o, (1.0 - ap) * (1.0 - as_), C, a0, a1, a2, a3, acc)
                            a0, a1, a2, a3 = _acc(flat, mat, o + spp, ap * (1.0 - as_), C, a0, a1, a2, a3, acc)
                            a0, a1, a2, a3 = _acc(flat, mat, o + sss, (1.0 - ap) * as_, C, a0, a1, a2, a3, acc)
                            a0, a1, a2, a3 = _acc(flat, mat, o + spp + sss, ap * as_, C, a0, a1, a2, a3, acc)
                else:
                    for k in range(ilo, ihi + 1):
                        p = p0 + k * gp
                        s = s0 + k * gs
                        ip = int(p)
                        js = int(s)
                        ap = p - ip
                        as_ = s - js
                        o = k * sa + ip * spp + js * sss
                        a0, a1, a2, a3 = _acc(flat, mat, o, (1.0 - ap) * (1.0 - as_), C, a0, a1, a2, a3, acc)
                        a0, a1, a2, a3 = _acc(flat, mat, o + spp, ap * (1.0 - as_), C, a0, a1, a2, a3, acc)
                        a0, a1, a2, a3 = _acc(flat, mat, o + sss, (1.0 - ap) * as_, C, a0, a1, a2, a3, acc)
                        a0, a1, a2, a3 = _acc(flat, mat, o + spp + sss, ap * as_, C, a0, a1, a2, a3, acc)
                for k in range(max(ihi + 1, ilo), khi + 1):
                    a0, a1, a2, a3 = _joseph_general(flat, mat, C, k, p0 + k * gp, s0 + k * gs, sa, spp, sss,
                                                     npp, ns, a0, a1, a2, a3, acc)
                _store(out, b, r, q, C, a0, a1, a2, a3, acc, 1.0 / abs(da))

    @njit(parallel=True, cache=True)
    def _march_uniform(flat, mat, shape, src, A, Minv, sign, W, H, step, out):  # pragma: no cover - compiled
        nz, ny, nx, C, sx, sy, sz, single = _layout(shape, mat)
        B = src.shape[0]
        for br in prange(B * H):
            b = br // H
            r = br - b * H
            acc = np.zeros(C + 1, np.float64)
            for q in range(W):
                cx, cy, cz, dx, dy, dz, t0, t1 = _ray_setup(b, r, q, src, A, Minv, sign, nx, ny, nz)
                if not t1 > t0:
                    continue
                sgn_t = 1.0 if t1 > 0.0 else -1.0  # samples at m * step on the scene side of the source
                lo = min(t0 * sgn_t, t1 * sgn_t)
                hi = max(t0 * sgn_t, t1 * sgn_t)
                mlo = int(math.ceil(lo / step))
                mhi = int(math.floor(hi / step))
                if mhi < mlo:
                    continue
                a0 = a1 = a2 = a3 = 0.0
                for ch in range(C + 1):
                    acc[ch] = 0.0
                for m in range(mlo, mhi + 1):
                    t = sgn_t * m * step
                    x = cx + t * dx
                    y = cy + t * dy
                    z = cz + t * dz
                    fx = math.floor(x)
                    fy = math.floor(y)
                    fz = math.floor(z)
                    i0 = int(fx)
                    j0 = int(fy)
                    k0 = int(fz)
                    ax = x - fx
                    ay = y - fy
                    az = z - fz
                    base = k0 * sz + j0 * sy + i0 * sx
                    inside = i0 >= 0 and i0 + 1 < nx and j0 >= 0 and j0 + 1 < ny and k0 >= 0 and k0 + 1 < nz
                    if inside and single:  # the bulk: 7 linear interpolations, no bounds checks
                        v000 = flat[base]
                        v001 = flat[base + sx]
                        v010 = flat[base + sy]
                        v011 = flat[base + sy + sx]
                        v100 = flat[base + sz]
                        v101 = flat[base + sz + sx]
                        v110 = flat[base + sz + sy]
                        v111 = flat[base + sz + sy + sx]
                        c00 = v000 + ax * (v001 - v000)
                        c01 = v010 + ax * (v011 - v010)
                        c10 = v100 + ax * (v101 - v100)
                        c11 = v110 + ax * (v111 - v110)
                        c0 = c00 + ay * (c01 - c00)
                        c1 = c10 + ay * (c11 - c10)
                        a0 += c0 + az * (c1 - c0)
                        continue
                    for dk in range(2):
                        wz = az if dk == 1 else 1.0 - az
                        if not inside:
                            wz *= _corner_weight(k0 + dk, nz, az)
                        for dj in range(2):
                            wy = wz * (ay if dj == 1 else 1.0 - ay)
                            if not inside:
                                wy *= _corner_weight(j0 + dj, ny, ay)
                            for di in range(2):
                                wt = wy * (ax if di == 1 else 1.0 - ax)
                                if not inside:
                                    wt *= _corner_weight(i0 + di, nx, ax)
                                if wt != 0.0:
                                    o = base + dk * sz + dj * sy + di * sx
                                    a0, a1, a2, a3 = _acc(flat, mat, o, wt, C, a0, a1, a2, a3, acc)
                _store(out, b, r, q, C, a0, a1, a2, a3, acc, step)


def _numba_line_integrals(vol_zyxc: np.ndarray, src, A, Minv, sign, W, H, step_mm,
                          material: np.ndarray | None = None, n_materials: int = 0) -> np.ndarray:
    B = src.shape[0]
    C = vol_zyxc.shape[3] if material is None else int(n_materials)
    out = np.zeros((B, C, H, W), np.float32)
    torch_threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS)))
    flat = vol_zyxc.reshape(-1)
    mat = np.zeros(0, np.uint8) if material is None else material.reshape(-1)
    shape = np.array([*vol_zyxc.shape, C], np.int64)
    if step_mm is None:
        _march_joseph(flat, mat, shape, src, A, Minv, sign, W, H, out)
    else:
        _march_uniform(flat, mat, shape, src, A, Minv, sign, W, H, float(step_mm), out)
    if torch.get_num_threads() != torch_threads:  # numba's OpenMP pool start resets the shared OpenMP setting
        torch.set_num_threads(torch_threads)
    return out


# --- torch back end ----------------------------------------------------------------------------

def _torch_rays(b: int, pix: torch.Tensor, src, A, Minv, sign, shape_xyz, dev):
    """Ray origin, direction (index units per mm) and culled interval [t0, t1] (mm), float64."""
    W = pix  # (N, 3) homogeneous pixels (u, v, 1), float64
    m = W @ torch.as_tensor(Minv[b].T, dtype=torch.float64, device=dev)
    d = W @ torch.as_tensor(A[b].T, dtype=torch.float64, device=dev)
    d = d * (float(sign[b]) / m.norm(dim=1, keepdim=True))
    c = torch.as_tensor(src[b], dtype=torch.float64, device=dev)
    n = torch.as_tensor(shape_xyz, dtype=torch.float64, device=dev)
    inv = 1.0 / d  # +-inf where d == 0, handled below
    ta = (-1.0 - c) * inv
    tb = (n - c) * inv
    tlo = torch.minimum(ta, tb)
    thi = torch.maximum(ta, tb)
    zero_d = d == 0
    inside = (c > -1.0) & (c < n)
    tlo = torch.where(zero_d, torch.where(inside, -math.inf, math.inf), tlo)
    thi = torch.where(zero_d, torch.where(inside, math.inf, -math.inf), thi)
    t0 = tlo.amax(dim=1)
    t1 = thi.amin(dim=1)
    t0 = torch.where((t0 < 0) & (t1 > 0), torch.zeros_like(t0), t0)  # source inside: scene side only
    return c, d, t0, t1


def _torch_tile(vol5: torch.Tensor, c, d, t0, t1, step_mm, shape_xyz) -> torch.Tensor:
    """Integrals [C, N] for one tile of N rays."""
    C = vol5.shape[1]
    N = d.shape[0]
    n = torch.as_tensor(shape_xyz, dtype=torch.float64, device=d.device)
    hit = t1 > t0
    if step_mm is None:
        axis = d.abs().argmax(dim=1)
        ca = c[axis]
        da = d.gather(1, axis[:, None])[:, 0]
        na = n[axis]
        pa = ca + t0 * da
        pb = ca + t1 * da
        klo = torch.clamp(torch.ceil(torch.minimum(pa, pb)), min=0)
        khi = torch.minimum(torch.floor(torch.maximum(pa, pb)), na - 1)
        count = torch.where(hit, (khi - klo + 1).clamp(min=0), torch.zeros_like(klo))
        nmax = int(count.max().item()) if N else 0
        if nmax == 0:
            return torch.zeros((C, N), dtype=vol5.dtype, device=vol5.device)
        m = torch.arange(nmax, dtype=torch.float64, device=d.device)
        k = klo[:, None] + m[None, :]
        t = (k - ca[:, None]) / da[:, None]
        pos = c[None, None, :] + t[:, :, None] * d[:, None, :]
        pos.scatter_(2, axis[:, None, None].expand(N, nmax, 1), k[:, :, None])  # exact slice coordinate
        weight = torch.where(hit, 1.0 / da.abs(), torch.zeros_like(da))
    else:
        sgn_t = torch.where(t1 > 0, 1.0, -1.0).to(torch.float64)
        lo = torch.minimum(t0 * sgn_t, t1 * sgn_t)
        hi = torch.maximum(t0 * sgn_t, t1 * sgn_t)
        mlo = torch.ceil(lo / step_mm)
        mhi = torch.floor(hi / step_mm)
        count = torch.where(hit, (mhi - mlo + 1).clamp(min=0), torch.zeros_like(mlo))
        nmax = int(count.max().item()) if N else 0
        if nmax == 0:
            return torch.zeros((C, N), dtype=vol5.dtype, device=vol5.device)
        m = torch.arange(nmax, dtype=torch.float64, device=d.device)
        t = sgn_t[:, None] * (mlo[:, None] + m[None, :]) * step_mm
        pos = c[None, None, :] + t[:, :, None] * d[:, None, :]
        weight = torch.where(hit, torch.full_like(t0, float(step_mm)), torch.zeros_like(t0))
    valid = m[None, :] < count[:, None]
    # grid_sample, align_corners=False: normalised = (2 * index + 1) / n - 1; zero padding outside
    grid = ((2.0 * pos + 1.0) / n - 1.0).to(vol5.dtype)
    grid = torch.where(valid[:, :, None], grid, torch.full_like(grid, -3.0))  # invalid -> far outside -> 0
    samples = torch.nn.functional.grid_sample(vol5, grid[None, :, :, None, :], mode="bilinear",
                                              padding_mode="zeros", align_corners=False)  # [1, C, N, nmax, 1]
    return samples[0, :, :, :, 0].sum(dim=2) * weight.to(vol5.dtype)[None, :]


def _torch_line_integrals(channels: torch.Tensor, src, A, Minv, sign, W, H, step_mm, max_tile_bytes, dev):
    C, nz, ny, nx = channels.shape
    vol5 = channels.to(device=dev, dtype=torch.float32)[None]
    B = src.shape[0]
    shape_xyz = (nx, ny, nz)
    bytes_per_sample = 4 * (C + 8) + 8 * 6  # samples, grid, float64 positions and parameters
    rays_per_tile = max(1, int(max_tile_bytes // (bytes_per_sample * max(nx, ny, nz))))  # Joseph: <= n slices
    out = torch.zeros((B, C, H * W), dtype=torch.float32, device=dev)
    vv, uu = torch.meshgrid(torch.arange(H, dtype=torch.float64, device=dev),
                            torch.arange(W, dtype=torch.float64, device=dev), indexing="ij")
    pix = torch.stack([uu.reshape(-1), vv.reshape(-1), torch.ones(H * W, dtype=torch.float64, device=dev)], 1)
    for b in range(B):
        c, d, t0, t1 = _torch_rays(b, pix, src, A, Minv, sign, shape_xyz, dev)
        if step_mm is not None:  # bound on the samples per ray of this pose
            span = torch.where(t1 > t0, t1 - t0, torch.zeros_like(t0))
            nb = int(torch.ceil(span.max() / step_mm).item()) + 2 if span.numel() else 1
            rays_per_tile = max(1, int(max_tile_bytes // (bytes_per_sample * nb)))
        for s0 in range(0, H * W, rays_per_tile):
            s1 = min(H * W, s0 + rays_per_tile)
            out[b, :, s0:s1] = _torch_tile(vol5, c, d[s0:s1], t0[s0:s1], t1[s0:s1], step_mm, shape_xyz)
    return out.reshape(B, C, H, W)


# --- public entry point ------------------------------------------------------------------------

def _check_common(size, step_mm, spacing, origin):
    W, H = _check_size(size)
    if step_mm is not None and not (isinstance(step_mm, int | float) and step_mm > 0 and math.isfinite(step_mm)):
        raise ConfigError(f"parameter 'step_mm' must be None (slice stepping) or a positive number, got {step_mm!r}")
    sp = tuple(float(s) for s in spacing)
    if len(sp) != 3 or not all(s > 0 and math.isfinite(s) for s in sp):
        raise ConfigError(f"parameter 'spacing' must be three positive mm values (x, y, z), got {spacing!r}")
    org = tuple(float(o) for o in origin)
    if len(org) != 3 or not all(math.isfinite(o) for o in org):
        raise ConfigError(f"parameter 'origin' must be three finite LPS mm values, got {origin!r}")
    return W, H, sp, org


def _ray_preamble(P, sp, org, shape_zyx, dev: torch.device, backend: str | None):
    """The ray setup shared by both back ends and both entry points: per-pose frames in voxel-index
    units (:func:`pose_frames`) and the back end to run, ``(src, A, Minv, sign, backend)``."""
    src, A, Minv, sign = pose_frames(as_projection_batch(P), sp, org, shape_zyx)
    return src, A, Minv, sign, _pick_backend(backend, dev)


def _pick_backend(backend: str | None, dev: torch.device) -> str:
    if backend is None:
        return "numba" if (HAVE_NUMBA and dev.type == "cpu") else "torch"
    if backend == "numba":
        if not HAVE_NUMBA:
            raise ConfigError("backend 'numba' requested but numba is not installed: pip install numba")
        if dev.type != "cpu":
            raise ConfigError(f"backend 'numba' runs on the CPU only, got device {dev}")
        return backend
    if backend == "torch":
        return backend
    raise ConfigError(f"parameter 'backend' must be 'numba', 'torch' or None, got {backend!r}")


def line_integrals(channels: torch.Tensor | np.ndarray, spacing: Sequence[float], origin: Sequence[float],
                   P: np.ndarray | torch.Tensor, size: Sequence[int], step_mm: float | None = None,
                   device: str | torch.device | None = None, *, backend: str | None = None,
                   max_tile_bytes: int = DEFAULT_TILE_BYTES) -> torch.Tensor:
    """Cone-beam line integrals of several channels for a batch of poses.

    Args:
        channels: ``[C, Z, Y, X]`` (or ``[Z, Y, X]``) float volume, axes aligned with LPS. A tensor whose
            memory is channels-last (``t.permute(1, 2, 3, 0).is_contiguous()``) is used without a copy by
            the CPU back end.
        spacing: voxel size (x, y, z) in mm.
        origin: LPS mm of voxel ``[0, 0, 0]``.
        P: ``[3, 4]`` or ``[B, 3, 4]`` projection matrices mapping LPS mm to pixel (col, row).
        size: detector size ``(W, H)`` in pixels.
        step_mm: ``None`` for Joseph slice stepping (one bilinear sample per slice), or a step in mm along
            the ray (trilinear samples at multiples of ``step_mm`` from the source).
        device: torch device of the computation and the result (default: that of ``channels``; CPU for
            numpy input).
        backend: ``"numba"`` (CPU only), ``"torch"`` (any device) or ``None``: numba on CPU when installed,
            torch elsewhere. Both sample at the same points.
        max_tile_bytes: memory bound of one tile of rays for the torch back end.

    Returns:
        float32 tensor ``[B, C, H, W]`` on ``device``: integrals in (channel units) x mm.
    """
    W, H, sp, org = _check_common(size, step_mm, spacing, origin)
    if isinstance(channels, np.ndarray):
        channels = torch.from_numpy(np.ascontiguousarray(channels, dtype=np.float32))
    if channels.ndim == 3:
        channels = channels[None]
    if channels.ndim != 4:
        raise ConfigError(f"parameter 'channels' must be [C, Z, Y, X], got shape {tuple(channels.shape)}")
    dev = torch.device(device) if device is not None else channels.device
    src, A, Minv, sign, engine = _ray_preamble(P, sp, org, channels.shape[1:], dev, backend)
    if engine == "numba":
        vol = channels.detach().to("cpu", torch.float32).permute(1, 2, 3, 0).contiguous().numpy()
        return torch.from_numpy(_numba_line_integrals(vol, src, A, Minv, sign, W, H, step_mm))
    with torch.no_grad():
        return _torch_line_integrals(channels.detach(), src, A, Minv, sign, W, H, step_mm, int(max_tile_bytes), dev)


def material_line_integrals(density: torch.Tensor | np.ndarray, material: torch.Tensor | np.ndarray,
                            n_materials: int, spacing: Sequence[float], origin: Sequence[float],
                            P: np.ndarray | torch.Tensor, size: Sequence[int], step_mm: float | None = None,
                            device: str | torch.device | None = None, *, backend: str | None = None,
                            max_tile_bytes: int = DEFAULT_TILE_BYTES) -> torch.Tensor:
    """Line integrals of ``density x [material == m]`` for ``m < n_materials``: ``[B, n_materials, H, W]``.

    Exactly :func:`line_integrals` of the channels ``density * one_hot(material)`` (the same samples and the
    same trilinear interpolation of the product, so mass is conserved at material boundaries), but the CPU
    back end reads one float and one byte per voxel instead of ``n_materials`` floats: a threshold material
    decomposition costs little more than a single channel.

    Args:
        density: ``[Z, Y, X]`` float (e.g. g/cm^3).
        material: ``[Z, Y, X]`` integer material index per voxel (values >= ``n_materials`` are ignored).
        n_materials: number of output channels.
        Other arguments as in :func:`line_integrals`.
    """
    W, H, sp, org = _check_common(size, step_mm, spacing, origin)
    density = torch.as_tensor(density)
    material = torch.as_tensor(material)
    if density.ndim != 3 or tuple(material.shape) != tuple(density.shape):
        raise ConfigError(f"'density' and 'material' must both be [Z, Y, X] of one shape, got "
                          f"{tuple(density.shape)} and {tuple(material.shape)}")
    if not (isinstance(n_materials, int) and 0 < n_materials <= 255):
        raise ConfigError(f"parameter 'n_materials' must be an integer in 1..255, got {n_materials!r}")
    dev = torch.device(device) if device is not None else density.device
    src, A, Minv, sign, engine = _ray_preamble(P, sp, org, density.shape, dev, backend)
    if engine == "numba":
        dens = density.detach().to("cpu", torch.float32).contiguous().numpy()[..., None]
        mat = material.detach().to("cpu")
        if mat.dtype != torch.uint8:
            mat = mat.clamp(0, 255).to(torch.uint8)
        mat = mat.contiguous().numpy()
        return torch.from_numpy(_numba_line_integrals(dens, src, A, Minv, sign, W, H, step_mm, mat, n_materials))
    with torch.no_grad():
        d = density.detach().to(dev, torch.float32)
        m = material.detach().to(dev).long()
        chans = torch.stack([d * (m == k) for k in range(n_materials)])
        return _torch_line_integrals(chans, src, A, Minv, sign, W, H, step_mm, int(max_tile_bytes), dev)
