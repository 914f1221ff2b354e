"""The scanner's Monte Carlo photon transport against analytic cases: slab transmission, Klein-Nishina,
the energy balance, the rise of scatter with thickness, the grid, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from synthex_lib import geometry
from synthex_lib.anatomy.tissues import Material
from synthex_lib.simulate import hardware as hw
from synthex_lib.simulate.reality import attenuation as at
from synthex_lib.simulate.reality import montecarlo as mc

SIZE = 32
CAM = geometry.Camera.from_device(geometry.CIOS_FUSION.binned(SIZE), geometry.carm_pose(np.zeros(3), 600.0))


def _slab(thickness_mm: float, density: float = 1.0, sp: float = 5.0) -> mc.MCVolume:
    """A water-like (ICRU soft tissue) slab across the beam (+y), 400 mm wide, centred on the isocentre."""
    n = 80
    ny = int(round(thickness_mm / sp))
    d = np.full((n, ny, n, 1), density, np.float32)
    return mc.MCVolume(d, (int(Material.SOFT),), (-(n - 1) / 2 * sp, -(ny - 1) / 2 * sp, -(n - 1) / 2 * sp),
                       (sp, sp, sp))


def _photons(n: int, energy: float, central: bool, seed: int = 0) -> mc.Photons:
    w = np.zeros((SIZE, SIZE))
    if central:
        w[15:17, 15:17] = 1.0  # a narrow beam: every path crosses the slab within 0.1 deg of the normal
    else:
        w[:] = 1.0
    return mc.sample_photons(CAM, (SIZE, SIZE), w, np.array([energy]), np.ones((SIZE, 1)), n,
                             np.random.default_rng(seed))


def test_unscattered_transmission_through_a_slab_is_beer_lambert():
    n = 100_000
    for t_mm in (50.0, 150.0):
        tal = mc.transport(_slab(t_mm), CAM, (SIZE, SIZE), _photons(n, 60.0, True), 1, csi_mm=0.6)
        mu = at.mass_attenuation(int(Material.SOFT), 60.0)[0] / 10.0  # 1/mm at 1 g/cm^3
        p = np.exp(-mu * t_mm)
        sigma = np.sqrt(p * (1 - p) / n)
        assert tal.primary_hits.sum() / n == pytest.approx(p, abs=4 * sigma)


def test_energy_is_accounted_photon_by_photon():
    tal = mc.transport(_slab(200.0), CAM, (SIZE, SIZE), _photons(20_000, 80.0, False), 2, csi_mm=0.6)
    e = tal.energy
    assert e[mc.T_EMITTED] == pytest.approx(20_000 * 80.0, rel=0.02)  # energies spread over a 0-width bin
    assert tal.balance_error < 1e-9
    assert e[mc.T_PHOTO] > 0 and e[mc.T_COMPTON] > 0 and e[mc.T_N_COH] > 0  # every interaction occurs


def test_scatter_rises_with_thickness_and_the_grid_rejects_it():
    spr = []
    for t_mm in (50.0, 100.0, 200.0):
        tal = mc.transport(_slab(t_mm), CAM, (SIZE, SIZE), _photons(40_000, 60.0, False), 3, csi_mm=0.6,
                           grid_ratio=10.0, grid_primary_transmission=0.72, cell_px=4.0, grid_lead_mm=0.29)
        c = slice(3, 5)  # central cells
        eta = at.csi_absorption(np.array([60.0]), 0.6)[0]
        prim = tal.primary_hits[c, c].sum() * 60.0 * eta
        s0, sg = tal.scatter_energy[c, c].sum(), tal.scatter_energy_grid[c, c].sum()
        spr.append(s0 / prim)
        assert sg < 0.5 * 0.72 * s0  # the grid passes far less scatter than primary
    assert spr[0] < spr[1] < spr[2]
    assert 0.05 < spr[0] and spr[2] < 5.0


def test_klein_nishina_sampling_matches_the_cross_section():
    state = np.zeros(1, np.uint64)
    state[0] = 99
    e = 80.0
    k = e / mc.MEC2_KEV
    samples = np.array([mc._klein_nishina(e, state) for _ in range(100_000)])
    mu = np.linspace(-1, 1, 4001)
    ratio = 1 / (1 + k * (1 - mu))
    pdf = ratio**2 * (ratio + 1 / ratio - (1 - mu**2))
    edges = np.linspace(-1, 1, 11)
    hist = np.histogram(samples[:, 1], edges)[0] / len(samples)
    ref = np.array([np.trapezoid(pdf[(mu >= a) & (mu <= b)], mu[(mu >= a) & (mu <= b)]) for a, b in
                    zip(edges[:-1], edges[1:], strict=True)])
    np.testing.assert_allclose(hist, ref / ref.sum(), atol=0.004)
    # Compton kinematics: E' = E / (1 + k (1 - cos))
    np.testing.assert_allclose(samples[:, 0], e / (1 + k * (1 - samples[:, 1])), rtol=1e-9)


def test_rayleigh_is_forward_peaked_by_the_form_factor():
    state = np.zeros(1, np.uint64)
    state[0] = 5
    q = np.arange(0.0, mc.Q_MAX + mc.Q_STEP / 2, mc.Q_STEP)
    cdf = at.form_factor_cdf(int(Material.SOFT), q)
    cos60 = np.array([mc._rayleigh(60.0, cdf, mc.Q_STEP, at.INV_HC_PER_KEV, state) for _ in range(20_000)])
    cos20 = np.array([mc._rayleigh(20.0, cdf, mc.Q_STEP, at.INV_HC_PER_KEV, state) for _ in range(20_000)])
    assert cos60.mean() > 0.8  # Thomson alone gives a mean cosine of 0
    assert cos20.mean() < cos60.mean()  # wider at lower energy (the same q is a larger angle)


def test_transport_is_deterministic_for_a_seed():
    vol, ph = _slab(100.0), _photons(5000, 60.0, False)
    a = mc.transport(vol, CAM, (SIZE, SIZE), ph, 7, csi_mm=0.6, cell_px=4.0)
    b = mc.transport(vol, CAM, (SIZE, SIZE), ph, 7, csi_mm=0.6, cell_px=4.0)
    c = mc.transport(vol, CAM, (SIZE, SIZE), ph, 8, csi_mm=0.6, cell_px=4.0)
    assert a.scatter_energy.tobytes() == b.scatter_energy.tobytes()
    assert a.scatter_energy.tobytes() != c.scatter_energy.tobytes()


def test_grid_angular_transmission():
    g = hw.AntiScatterGrid(ratio=10.0, lines_per_cm=70.0, primary_transmission=0.72)
    assert g.angular_transmission(0.0) == pytest.approx(0.72)
    assert g.angular_transmission(0.05) == pytest.approx(0.36)
    assert g.angular_transmission(0.2) == 0.0  # opaque lamellae
    assert g.lead_path_mm == pytest.approx(10 * 0.72 / 7.0 * 0.28)
    assert 0 < g.angular_transmission(0.2, mu_lead_per_mm=5.0) < 0.72 * np.exp(-5.0 * g.lead_path_mm) * 1.01


def test_coarse_volume_conserves_mass():
    rng = np.random.default_rng(0)
    ch = rng.uniform(0, 2, (13, 10, 11, 2)).astype(np.float32)
    v = mc.coarse_volume(ch, (3, 5), (0.0, 0.0, 0.0), (1.5, 1.5, 1.5), 6.0)
    assert v.spacing == (6.0, 6.0, 6.0)
    assert v.densities.sum() * 4**3 == pytest.approx(ch.sum(), rel=1e-5)
    # the coarse voxel [0,0,0] is centred on the mean of its fine voxels' centres
    assert v.origin == pytest.approx((2.25, 2.25, 2.25))
