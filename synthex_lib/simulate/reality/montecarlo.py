"""Coarse Monte Carlo photon transport: the emulated scanners' scatter (and a check of their primary).

Method (as the literature does for fast scatter estimates: coarse voxels, few photons, then
smoothing; Zbijewski & Beekman, IEEE TMI 2006; Sisniega et al., Med. Phys. 2013):

* photons leave the focal spot towards a point drawn uniformly inside a detector pixel, the pixel drawn
  with probability proportional to the tube fluence reaching it (heel effect, collimator), the energy
  from the tube spectrum of that pixel's row (or column) (the scanner's own ``spekpy`` spectra);
* they are transported through a coarse (default 6 mm) block average of the scanner's per-material
  density channels by delta (Woodcock) tracking: free paths are sampled with the majorant of the
  total attenuation over the volume, and a collision is real with probability mu(x) / mu_max;
* a real collision is, in proportion to the per-element cross sections of the voxel's materials
  (:mod:`.attenuation`), photoelectric absorption (the energy is deposited locally; fluorescence is
  not followed: the K-lines of the tissues' elements are below 4 keV), incoherent (Compton)
  scattering, whose angle and energy follow the Klein-Nishina distribution (Kahn's rejection method;
  the binding correction of the incoherent scattering function is neglected: it only lowers the
  forward cross section below ~10 degrees, where the grid passes scatter anyway), or coherent
  (Rayleigh) scattering, its momentum transfer sampled from the material's independent-atom form
  factor and its angle from the Thomson factor ``(1 + cos^2)/2`` by rejection;
* photons below 5 keV are absorbed where they are; photons leaving the volume fly in straight lines (air is
  neglected) to the detector plane, where each scattered photon is scored with its expected CsI
  absorption ``1 - exp(-mu t / cos alpha)`` (alpha: angle to the detector normal), once without
  and once behind the anti-scatter grid, whose transmission ``Tp max(0, 1 - r |tan delta|)``
  depends on the angle delta between the photon and the focused lamella in the plane across the
  lamellae (a geometric channel of ratio r); the photons that meet a lamella cross
  ``r x D x (1 - Tp) / cos(delta)`` of lead (D the interspace) and pass with the lead's attenuation
  (septal penetration; Day & Dance, Phys. Med. Biol. 1983, treat grids the same way).

The tallies are energies and photon numbers per coarse detector cell; the scanner scales them by
the photons per MC photon and smooths them (scatter is low-frequency). An energy balance
(emitted = photoelectric + Compton electrons + cut-off + escaped) is kept exactly, photon by photon.

Random numbers: a splitmix64 stream inside the kernel, seeded by one draw of the caller's generator,
so that the same generator state gives the same bytes. Written by hand with ``numba`` (no maintained
Python library offers voxel photon transport with this scoring on a CPU).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from numba import njit
from scipy import ndimage

from synthex_lib import geometry
from synthex_lib.core.errors import ConfigError, require_positive
from synthex_lib.simulate.reality import attenuation as att

#: electron rest energy (keV)
MEC2_KEV = 510.99895
#: photons below this energy (keV) are absorbed where they are
E_CUT_KEV = 5.0
#: energy grid of the cross-section tables (keV)
E_STEP_KEV = 0.5
#: momentum-transfer grid of the form-factor tables (1/Angstrom)
Q_STEP = 0.005
Q_MAX = 12.5
#: indices of the energy tallies
#: lead (g/cm^3), the grid's lamellae
LEAD_DENSITY = 11.35
T_EMITTED, T_PHOTO, T_COMPTON, T_CUTOFF, T_ESCAPED, T_N_PHOTO, T_N_INCOH, T_N_COH, T_N_PRIMARY_HITS = range(9)
N_TALLIES = 9

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0


@njit(cache=True)
def _rand(state: np.ndarray) -> float:  # pragma: no cover - compiled
    """Uniform in [0, 1) from a splitmix64 stream (``state``: uint64[1], advanced in place)."""
    state[0] += _GOLDEN
    z = state[0]
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    z = z ^ (z >> _S31)
    return float(z >> _S11) * _INV53


@njit(cache=True)
def _rotate(u: float, v: float, w: float, cos_t: float, phi: float) -> tuple[float, float, float]:  # pragma: no cover
    """Direction after scattering by polar cosine ``cos_t`` and azimuth ``phi`` about (u, v, w)."""
    sin_t = np.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    cp, sp = np.cos(phi), np.sin(phi)
    if abs(w) > 0.99999:
        un, vn, wn = sin_t * cp, sin_t * sp, cos_t * (1.0 if w > 0 else -1.0)
    else:
        tmp = np.sqrt(1.0 - w * w)
        un = sin_t * (u * w * cp - v * sp) / tmp + u * cos_t
        vn = sin_t * (v * w * cp + u * sp) / tmp + v * cos_t
        wn = -sin_t * cp * tmp + w * cos_t
    n = np.sqrt(un * un + vn * vn + wn * wn)
    return un / n, vn / n, wn / n


@njit(cache=True)
def _klein_nishina(e_kev: float, state: np.ndarray) -> tuple[float, float]:  # pragma: no cover - compiled
    """(scattered energy keV, cos theta) from the Klein-Nishina distribution (Kahn's rejection method)."""
    k = e_kev / MEC2_KEV
    while True:
        r1, r2, r3 = _rand(state), _rand(state), _rand(state)
        if r1 <= (1.0 + 2.0 * k) / (9.0 + 2.0 * k):
            eta = 1.0 + 2.0 * k * r2
            if r3 <= 4.0 * (1.0 / eta - 1.0 / (eta * eta)):
                break
        else:
            eta = (1.0 + 2.0 * k) / (1.0 + 2.0 * k * r2)
            mu = 1.0 + (1.0 - eta) / k
            if r3 <= 0.5 * (mu * mu + 1.0 / eta):
                break
    return e_kev / eta, 1.0 - (eta - 1.0) / k


@njit(cache=True)
def _rayleigh(e_kev: float, cdf: np.ndarray, q_step: float, inv_hc: float, state: np.ndarray
              ) -> float:  # pragma: no cover - compiled
    """cos theta of a coherent scattering: q^2 from the form-factor cdf, then the Thomson factor by rejection."""
    q_max = e_kev * inv_hc
    n = cdf.shape[0]
    f = min(q_max / q_step, n - 1.000001)
    i = int(f)
    c_max = cdf[i] + (f - i) * (cdf[i + 1] - cdf[i])
    while True:
        target = _rand(state) * c_max
        lo, hi = 0, i + 1
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if cdf[mid] < target:
                lo = mid
            else:
                hi = mid
        c0, c1 = cdf[lo], cdf[lo + 1]
        q2a, q2b = (lo * q_step) ** 2, ((lo + 1) * q_step) ** 2
        q2 = q2a + (target - c0) / (c1 - c0) * (q2b - q2a) if c1 > c0 else q2a
        mu = 1.0 - 2.0 * q2 / (q_max * q_max)
        mu = min(1.0, max(-1.0, mu))
        if _rand(state) <= 0.5 * (1.0 + mu * mu):
            return mu


@njit(cache=True)
def _transport(vol, org, sp, e0, de, xs, mumax, cdf, q_step, inv_hc, src, dirs, energies, seed,
               R, t, K, sdd, width, height, cell, mu_csi_tab, csi_mm, grid_ratio, grid_tp, mu_pb_tab, lead_mm, e_cut,
               s_e_nogrid, s_q_nogrid, s_e_grid, s_q_grid, p_count, tallies):  # pragma: no cover - compiled
    nz, ny, nx, nm = vol.shape
    ne = mumax.shape[0]
    lo0, lo1, lo2 = org[0] - 0.5 * sp[0], org[1] - 0.5 * sp[1], org[2] - 0.5 * sp[2]
    hi0, hi1, hi2 = lo0 + nx * sp[0], lo1 + ny * sp[1], lo2 + nz * sp[2]
    state = np.zeros(1, np.uint64)
    state[0] = np.uint64(seed)
    mu_c = np.zeros((nm, 3))
    hc, wc = s_e_grid.shape
    for n in range(dirs.shape[0]):
        x, y, z = src[0], src[1], src[2]
        u, v, w = dirs[n, 0], dirs[n, 1], dirs[n, 2]
        e = energies[n]
        tallies[T_EMITTED] += e
        scattered = False
        alive = True
        # enter the volume box (slab method)
        tmin, tmax = -1e30, 1e30
        for a in range(3):
            p = x if a == 0 else (y if a == 1 else z)
            d = u if a == 0 else (v if a == 1 else w)
            lo = lo0 if a == 0 else (lo1 if a == 1 else lo2)
            hi = hi0 if a == 0 else (hi1 if a == 1 else hi2)
            if abs(d) < 1e-12:
                if p < lo or p > hi:
                    tmin, tmax = 1.0, -1.0
            else:
                t1, t2 = (lo - p) / d, (hi - p) / d
                if t1 > t2:
                    t1, t2 = t2, t1
                tmin, tmax = max(tmin, t1), min(tmax, t2)
        if tmax > max(tmin, 0.0):
            s0 = max(tmin, 0.0) + 1e-6
            x, y, z = x + s0 * u, y + s0 * v, z + s0 * w
            for _step in range(100000):
                f = (e - e0) / de
                ie = min(max(int(f), 0), ne - 2)
                fa = min(max(f - ie, 0.0), 1.0)
                mmax = mumax[ie] + fa * (mumax[ie + 1] - mumax[ie])
                s = -np.log(1.0 - _rand(state)) / mmax
                x, y, z = x + s * u, y + s * v, z + s * w
                if x < lo0 or x >= hi0 or y < lo1 or y >= hi1 or z < lo2 or z >= hi2:
                    break
                i = min(int((x - lo0) / sp[0]), nx - 1)
                j = min(int((y - lo1) / sp[1]), ny - 1)
                k = min(int((z - lo2) / sp[2]), nz - 1)
                total = 0.0
                for c in range(nm):
                    rho = vol[k, j, i, c]
                    for q in range(3):
                        val = 0.0
                        if rho > 0:
                            val = 0.1 * rho * (xs[c, q, ie] + fa * (xs[c, q, ie + 1] - xs[c, q, ie]))
                        mu_c[c, q] = val
                        total += val
                r = _rand(state) * mmax
                if r >= total:
                    continue  # virtual collision
                acc = 0.0
                cc, kind = nm - 1, 2
                found = False
                for c in range(nm):
                    for q in range(3):
                        acc += mu_c[c, q]
                        if r < acc:
                            cc, kind = c, q
                            found = True
                            break
                    if found:
                        break
                if kind == 0:
                    tallies[T_PHOTO] += e
                    tallies[T_N_PHOTO] += 1
                    alive = False
                    break
                if kind == 1:
                    e_new, cos_t = _klein_nishina(e, state)
                    tallies[T_COMPTON] += e - e_new
                    tallies[T_N_INCOH] += 1
                    e = e_new
                else:
                    cos_t = _rayleigh(e, cdf[cc], q_step, inv_hc, state)
                    tallies[T_N_COH] += 1
                u, v, w = _rotate(u, v, w, cos_t, 2.0 * np.pi * _rand(state))
                scattered = True
                if e < e_cut:
                    tallies[T_CUTOFF] += e
                    alive = False
                    break
        if not alive:
            continue
        tallies[T_ESCAPED] += e
        # fly to the detector plane (camera frame: source at 0, detector at z = sdd)
        xc = R[0, 0] * x + R[0, 1] * y + R[0, 2] * z + t[0]
        yc = R[1, 0] * x + R[1, 1] * y + R[1, 2] * z + t[1]
        zc = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z + t[2]
        uc = R[0, 0] * u + R[0, 1] * v + R[0, 2] * w
        vc = R[1, 0] * u + R[1, 1] * v + R[1, 2] * w
        wcam = R[2, 0] * u + R[2, 1] * v + R[2, 2] * w
        if wcam <= 1e-9 or zc > sdd:
            continue
        s = (sdd - zc) / wcam
        hx, hy, hz = xc + s * uc, yc + s * vc, sdd
        h0 = K[0, 0] * hx + K[0, 1] * hy + K[0, 2] * hz
        h1 = K[1, 0] * hx + K[1, 1] * hy + K[1, 2] * hz
        h2 = K[2, 0] * hx + K[2, 1] * hy + K[2, 2] * hz
        col, row = h0 / h2 + 0.5, h1 / h2 + 0.5
        if col < 0 or row < 0 or col >= width or row >= height:
            continue
        ci, ri = min(int(col / cell), wc - 1), min(int(row / cell), hc - 1)
        if not scattered:
            p_count[ri, ci] += 1.0
            tallies[T_N_PRIMARY_HITS] += 1
            continue
        f = (e - e0) / de
        ie = min(max(int(f), 0), ne - 2)
        fa = min(max(f - ie, 0.0), 1.0)
        mu_csi = mu_csi_tab[ie] + fa * (mu_csi_tab[ie + 1] - mu_csi_tab[ie])
        eta = 1.0 - np.exp(-mu_csi * csi_mm / wcam)
        s_e_nogrid[ri, ci] += eta * e
        s_q_nogrid[ri, ci] += eta
        if grid_ratio > 0:
            delta = np.arctan2(uc, wcam) - np.arctan2(hx, hz)
            f_open = max(0.0, 1.0 - grid_ratio * abs(np.tan(delta)))
            mu_pb = mu_pb_tab[ie] + fa * (mu_pb_tab[ie + 1] - mu_pb_tab[ie])
            cos_d = max(abs(np.cos(delta)), 1e-3)
            tg = grid_tp * (f_open + (1.0 - f_open) * np.exp(-mu_pb * lead_mm / cos_d))
        else:
            tg = 1.0
        s_e_grid[ri, ci] += tg * eta * e
        s_q_grid[ri, ci] += tg * eta


# --- tables ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tables:
    """Cross-section tables of the channels: energies ``e0 + i de`` (keV), ``xs`` [M, 3, E] cm^2/g
    (photo, incoh, coh), the CsI and lead attenuations [E] (1/mm) and the form-factor cdfs [M, Q] on
    ``q = i Q_STEP``."""

    e0: float
    de: float
    xs: np.ndarray
    mu_csi: np.ndarray
    mu_pb: np.ndarray
    cdf: np.ndarray


@lru_cache(maxsize=16)
def tables(ids: tuple[int, ...], e_max_kev: float) -> Tables:
    """Tables for channel materials ``ids`` (anatomy material ids) up to ``e_max_kev`` (cached)."""
    e = np.arange(1.0, float(e_max_kev) + 2 * E_STEP_KEV + 1e-9, E_STEP_KEV)
    xs = np.stack([att.cross_sections(i, e) for i in ids])
    mu_csi = att.mass_attenuation(att.CSI_FRACTIONS, e) * att.CSI_DENSITY / 10.0
    mu_pb = att.mass_attenuation({"Pb": 1.0}, e) * LEAD_DENSITY / 10.0
    q = np.arange(0.0, Q_MAX + Q_STEP / 2, Q_STEP)
    cdf = np.stack([att.form_factor_cdf(i, q) for i in ids])
    return Tables(float(e[0]), E_STEP_KEV, np.ascontiguousarray(xs), mu_csi, mu_pb, np.ascontiguousarray(cdf))


# --- volume ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MCVolume:
    """A coarse density volume: ``densities`` float32 [Z, Y, X, M] (g/cm^3), ``ids`` one material per channel,
    ``origin`` (LPS mm of voxel [0, 0, 0]'s centre) and ``spacing`` (x, y, z) mm."""

    densities: np.ndarray
    ids: tuple[int, ...]
    origin: tuple[float, float, float]
    spacing: tuple[float, float, float]


def coarse_volume(channels: np.ndarray, ids: tuple[int, ...], origin: tuple[float, float, float],
                  spacing: tuple[float, float, float], voxel_mm: float) -> MCVolume:
    """Block-average channels-last densities [Z, Y, X, M] to voxels of about ``voxel_mm`` (mass conserved).

    The blocks are ``round(voxel_mm / spacing)`` voxels per side (at least 1); the volume is padded with
    air (zeros) to whole blocks, so the total mass is kept. Works slab by slab.
    """
    require_positive("voxel_mm", float(voxel_mm))
    sp = np.asarray(spacing, np.float64)
    f = np.maximum(1, np.rint(float(voxel_mm) / sp).astype(int))  # x, y, z
    nz, ny, nx, nm = channels.shape
    oz, oy, ox = -(-nz // f[2]), -(-ny // f[1]), -(-nx // f[0])
    out = np.zeros((oz, oy, ox, nm), np.float32)
    for bz in range(oz):
        slab = np.asarray(channels[bz * f[2]:(bz + 1) * f[2]], np.float32)
        pad = np.zeros((f[2], oy * f[1], ox * f[0], nm), np.float32)
        pad[:slab.shape[0], :ny, :nx] = slab
        out[bz] = pad.reshape(f[2], oy, f[1], ox, f[0], nm).mean(axis=(0, 2, 4))
    new_sp = sp * f
    new_org = np.asarray(origin, np.float64) + 0.5 * (f - 1) * sp
    return MCVolume(out, tuple(int(i) for i in ids), tuple(float(v) for v in new_org),
                    tuple(float(v) for v in new_sp))


def majorant(volume: MCVolume, tab: Tables) -> np.ndarray:
    """[E] maximum over the voxels of the total linear attenuation (1/mm) at each table energy."""
    d = volume.densities.reshape(-1, volume.densities.shape[-1]).astype(np.float64)
    mu_tot = tab.xs.sum(axis=1)  # [M, E]
    best = np.zeros(mu_tot.shape[1])
    for s in range(0, len(d), 1 << 16):
        best = np.maximum(best, (d[s:s + (1 << 16)] @ mu_tot).max(axis=0))
    return np.maximum(best * 0.1, 1e-9) * 1.0001


# --- photons and transport ---------------------------------------------------------------------------

@dataclass
class Photons:
    """Photons leaving the focal spot: ``source`` (3,) LPS mm, unit ``directions`` [N, 3], ``energies`` [N] keV."""

    source: np.ndarray
    directions: np.ndarray
    energies: np.ndarray


def sample_photons(camera: geometry.Camera, size: tuple[int, int], pixel_weights: np.ndarray,
                   energies_kev: np.ndarray, spectra: np.ndarray, n: int, rng: np.random.Generator,
                   heel_axis: str = "row") -> Photons:
    """``n`` photons aimed at uniform points inside pixels drawn with probability ``pixel_weights`` [H, W].

    ``spectra`` [n_axis, E] are photon fluences per energy bin along the heel axis (rows, or columns when
    ``heel_axis == "col"``); a photon's energy is drawn from its pixel's row (column) spectrum and spread
    uniformly over its bin (bins of equal width around ``energies_kev``).
    """
    w, h = size
    p = np.asarray(pixel_weights, np.float64).ravel()
    if p.shape[0] != w * h or np.any(p < 0) or p.sum() <= 0:
        raise ConfigError("parameter 'pixel_weights' must be a non-negative [H, W] map with a positive sum")
    require_positive("n", int(n), integer=True)
    idx = rng.choice(w * h, size=int(n), p=p / p.sum())
    rows, cols = idx // w, idx % w
    uv = np.stack([cols + rng.uniform(-0.5, 0.5, n), rows + rng.uniform(-0.5, 0.5, n)], axis=1)
    axis = rows if heel_axis == "row" else cols
    cdf = np.cumsum(spectra, axis=1)
    cdf /= cdf[:, -1:]
    k = np.minimum((rng.uniform(size=n)[:, None] > cdf[axis]).sum(axis=1), len(energies_kev) - 1)
    de = float(energies_kev[1] - energies_kev[0]) if len(energies_kev) > 1 else 0.0
    e = energies_kev[k] + rng.uniform(-0.5, 0.5, n) * de
    d = camera.ray_direction(uv)
    return Photons(np.asarray(camera.source_lps, np.float64), np.ascontiguousarray(d, np.float64),
                   np.ascontiguousarray(np.maximum(e, 1.0), np.float64))


@dataclass
class Tallies:
    """Raw tallies of one transport, per MC photon (unit weight); cells are ``cell`` pixels square.

    ``scatter_energy`` / ``scatter_quanta``: scattered photons' expected absorbed energy (keV) and number
    in the CsI per cell, without the grid; ``*_grid``: behind the grid; ``primary_hits``: unscattered photons
    per cell (no CsI, no grid); ``energy``: the balance (:data:`T_EMITTED` ... indices); ``n``: photons run.
    """

    scatter_energy: np.ndarray
    scatter_quanta: np.ndarray
    scatter_energy_grid: np.ndarray
    scatter_quanta_grid: np.ndarray
    primary_hits: np.ndarray
    energy: np.ndarray
    n: int
    cell: float

    @property
    def balance_error(self) -> float:
        """Relative mismatch of emitted and accounted energy (photoelectric + Compton + cut-off + escaped)."""
        e = self.energy
        acc = e[T_PHOTO] + e[T_COMPTON] + e[T_CUTOFF] + e[T_ESCAPED]
        return float(abs(e[T_EMITTED] - acc) / max(e[T_EMITTED], 1e-30))


_MAJORANTS: dict[int, tuple[MCVolume, tuple, np.ndarray]] = {}


def transport(volume: MCVolume, camera: geometry.Camera, size: tuple[int, int], photons: Photons, seed: int,
              csi_mm: float, grid_ratio: float = 0.0, grid_primary_transmission: float = 1.0,
              cell_px: float = 1.0, e_max_kev: float | None = None, grid_lead_mm: float = 0.0) -> Tallies:
    """Transport ``photons`` through ``volume`` and score them on the detector of ``camera`` (``size`` = (W, H)).

    ``grid_ratio`` 0: no grid; ``grid_lead_mm``: lead crossed by a photon that meets the lamellae
    (:attr:`~synthex_lib.simulate.hardware.AntiScatterGrid.lead_path_mm`). ``cell_px``: scoring cell side in
    detector pixels. ``seed``: the kernel's random stream (an int in [0, 2^63)). The majorant is cached on
    the volume object.
    """
    w, h = (int(s) for s in size)
    require_positive("cell_px", float(cell_px))
    require_positive("csi_mm", float(csi_mm))
    e_max = float(np.max(photons.energies)) if e_max_kev is None else float(e_max_kev)
    tab = tables(tuple(volume.ids), float(np.ceil(e_max)))
    key = (tuple(volume.ids), tab.e0, len(tab.mu_csi))
    cached = _MAJORANTS.get(id(volume))
    if cached is not None and cached[0] is volume and cached[1] == key:
        mumax = cached[2]
    else:
        mumax = majorant(volume, tab)
        if len(_MAJORANTS) > 8:
            _MAJORANTS.clear()
        _MAJORANTS[id(volume)] = (volume, key, mumax)
    hc, wc = int(np.ceil(h / cell_px)), int(np.ceil(w / cell_px))
    arrays = [np.zeros((hc, wc)) for _ in range(5)]
    tal = np.zeros(N_TALLIES)
    R = np.ascontiguousarray(camera.pose.R, np.float64)
    t = np.ascontiguousarray(camera.pose.t, np.float64)
    K = np.ascontiguousarray(camera.intrinsic, np.float64)
    vol = np.ascontiguousarray(volume.densities, np.float32)
    _transport(vol, np.asarray(volume.origin, np.float64), np.asarray(volume.spacing, np.float64), tab.e0, tab.de,
               tab.xs, mumax, tab.cdf, Q_STEP, att.INV_HC_PER_KEV, photons.source, photons.directions,
               photons.energies, int(seed), R, t, K, float(camera.sdd_mm), float(w), float(h), float(cell_px),
               tab.mu_csi, float(csi_mm), float(grid_ratio), float(grid_primary_transmission), tab.mu_pb,
               float(grid_lead_mm), E_CUT_KEV,
               *arrays, tal)
    return Tallies(arrays[0], arrays[1], arrays[2], arrays[3], arrays[4], tal, len(photons.energies), float(cell_px))


def smooth_to_pixels(cells: np.ndarray, size: tuple[int, int], cell_px: float, sigma_mm: float, pixel_mm: float
                     ) -> np.ndarray:
    """Cell tallies [hc, wc] -> a smooth per-pixel image [H, W] (per-cell totals divided by the cell area).

    Gaussian smoothing of standard deviation ``sigma_mm`` (at the detector; reflecting edges), then
    bilinear interpolation at the pixel centres.
    """
    w, h = size
    dens = np.asarray(cells, np.float64) / float(cell_px) ** 2
    sig = float(sigma_mm) / (float(cell_px) * float(pixel_mm))
    if sig > 0:
        dens = ndimage.gaussian_filter(dens, sig, mode="reflect", truncate=3.0)
    rr = (np.arange(h) + 0.5) / cell_px - 0.5
    cc = (np.arange(w) + 0.5) / cell_px - 0.5
    coords = np.meshgrid(rr, cc, indexing="ij")
    return ndimage.map_coordinates(dens, coords, order=1, mode="nearest")
