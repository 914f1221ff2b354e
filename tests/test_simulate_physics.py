"""Physics functions against NIST tables, analytic Beer-Lambert and their defining properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from synthex_lib.core.errors import ConfigError
from synthex_lib.simulate.physics import density as dens
from synthex_lib.simulate.physics import detector as det
from synthex_lib.simulate.physics import noise as nz
from synthex_lib.simulate.physics.materials import linear_attenuation, mass_attenuation, mass_attenuation_table
from synthex_lib.simulate.physics.scatter import scatter_estimate
from synthex_lib.simulate.physics.spectrum import monoenergetic, tube_spectrum

# NIST X-ray Mass Attenuation Coefficients (Hubbell & Seltzer), mu/rho in cm^2/g at 60 keV
NIST_60KEV = {"water": 0.2059, "bone": 0.3148, "soft tissue": 0.2048, "air": 0.1875}


@pytest.mark.parametrize("material", sorted(NIST_60KEV))
def test_nist_mass_attenuation_at_60_kev(material):
    assert float(mass_attenuation(material, 60.0)) == pytest.approx(NIST_60KEV[material], rel=0.01)


def test_mass_attenuation_shapes_aliases_and_errors():
    e = np.array([[30.0, 60.0], [90.0, 120.0]])
    mu = mass_attenuation("cortical bone", e)
    assert mu.shape == (2, 2) and np.all(np.diff(mu.reshape(-1)) < 0)  # falls with energy above the K edges
    assert mass_attenuation_table(("air", "soft tissue", "bone"), e[0]).shape == (3, 2)
    assert float(linear_attenuation("water", 40.0)) == pytest.approx(0.02683, rel=0.005)  # xreg's mu_water, 1/mm
    with pytest.raises(ConfigError):
        mass_attenuation("unobtainium", 60.0)
    with pytest.raises(ConfigError):
        mass_attenuation("water", -1.0)


def test_spectrum_normalisation_and_mean_energy():
    s = tube_spectrum()  # 90 kVp, 4 mm Al
    assert s.weights.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(s.weights > 0) and s.energies_kev.max() <= 90.0
    # DeepDRR's 90KV_AL40 table has a mean of 49.2 keV; spekpy at the same setting gives 48.7 keV
    assert s.mean_energy_kev == pytest.approx(49.2, abs=1.5)
    # the mean does not depend on the binning, and more filtration hardens the beam
    assert tube_spectrum(bin_kev=5.0).mean_energy_kev == pytest.approx(s.mean_energy_kev, abs=0.05)
    assert tube_spectrum(al_mm=8.0).mean_energy_kev > s.mean_energy_kev + 1.0
    assert tube_spectrum(kvp=60.0).mean_energy_kev < s.mean_energy_kev - 5.0
    mono = monoenergetic(60.0)
    assert mono.mean_energy_kev == 60.0 and mono.weights.sum() == 1.0
    with pytest.raises(ConfigError):
        tube_spectrum(kvp=5.0)


def test_hu_to_density_formula_and_thresholds():
    hu = np.array([-1100.0, -1000.0, -800.0, -799.0, 0.0, 350.0, 351.0, 1000.0])
    rho = dens.hu_to_density(hu)
    np.testing.assert_allclose(rho[[1, 4, 7]], [0.001, 1.03, 1.6186], atol=1e-4)
    assert rho[0] == 0.0  # clamped
    frac = dens.material_fractions(hu)
    np.testing.assert_array_equal(frac.sum(0), 1.0)
    np.testing.assert_array_equal(frac.argmax(0), [0, 0, 0, 1, 1, 1, 2, 2])  # air <= -800 < soft <= 350 < bone
    np.testing.assert_array_equal(dens.material_index(hu), frac.argmax(0))
    np.testing.assert_allclose(dens.material_density_channels(hu).sum(0), rho, rtol=1e-6)
    t = torch.as_tensor(hu)  # the torch versions agree with numpy
    np.testing.assert_allclose(dens.hu_to_density(t).numpy(), rho, rtol=1e-6)
    np.testing.assert_array_equal(dens.material_index(t).numpy(), dens.material_index(hu))


def test_heuristic_formula():
    hu = np.array([-1000.0, -130.0, -100.0, 0.0, 1000.0])
    mu = dens.heuristic_mu(hu)  # hu_lower = -130, xreg's mu_water and mu_air
    expected = np.maximum(hu + 130.0, 0) * (0.02683 - 2.485e-6) / 1000
    np.testing.assert_allclose(mu, expected, rtol=1e-12)
    assert mu[0] == 0 and mu[1] == 0 and mu[3] == pytest.approx(130 * 0.02683 / 1000, rel=1e-3)
    # hu_lower = -1000 is the linear map mu_water (1 + HU / 1000)
    np.testing.assert_allclose(dens.heuristic_mu(hu, hu_lower=-1000.0, mu_air=0.0),
                               0.02683 * dens.water_fraction(hu), rtol=1e-12)
    np.testing.assert_array_equal(dens.water_fraction(np.array([-1024.0, -1000.0, 0.0])), [0.0, 0.0, 1.0])


def test_monoenergetic_and_polychromatic_beer_lambert():
    thickness_g_cm2 = torch.tensor([0.0, 1.0, 5.0, 10.0, 20.0], dtype=torch.float64)
    A = torch.zeros(1, 3, 1, 5, dtype=torch.float64)
    A[0, 1, 0] = thickness_g_cm2  # soft tissue
    mono = monoenergetic(60.0)
    mu = mass_attenuation_table(("air", "soft tissue", "bone"), mono.energies_kev)
    signal, trans = det.polychromatic_signal(A, mu, mono)
    np.testing.assert_allclose(trans[0, 0].numpy(), np.exp(-mu[1, 0] * thickness_g_cm2.numpy()), rtol=1e-12)
    np.testing.assert_allclose(signal[0, 0].numpy(), 60.0 * trans[0, 0].numpy(), rtol=1e-12)
    # polychromatic: flat field = mean energy; beam hardening = the effective mu falls with thickness
    spec = tube_spectrum()
    mu = mass_attenuation_table(("air", "soft tissue", "bone"), spec.energies_kev)
    signal, _ = det.polychromatic_signal(A, mu, spec)
    assert float(signal[0, 0, 0]) == pytest.approx(det.flat_field_signal(spec), rel=1e-12)
    line = det.neglog(signal, det.flat_field_signal(spec))[0, 0].numpy()
    mu_eff = line[1:] / thickness_g_cm2.numpy()[1:]
    assert np.all(np.diff(mu_eff) < 0)
    assert det.monoenergetic_transmission(0.02, np.array([50.0])) == pytest.approx(np.exp(-1.0))


def test_saturation_and_log():
    s = torch.tensor([-1.0, 0.5, 2.0])
    np.testing.assert_array_equal(det.saturate(s, 1.0).numpy(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(det.neglog(torch.tensor([1.0, np.exp(-2.0)]), 1.0).numpy(), [0.0, 2.0], atol=1e-6)
    assert torch.isfinite(det.neglog(torch.tensor([0.0]), 1.0)).all()


def test_quantum_noise_statistics_and_determinism():
    shape = (200, 200)
    signal = torch.full(shape, 40.0, dtype=torch.float64)
    trans = torch.full(shape, 0.25, dtype=torch.float64)
    out = nz.quantum_noise(signal, trans, 10000.0, nz.torch_generator(np.random.default_rng(0)), kernel=None)
    rel = (out / signal - 1).numpy()
    assert abs(rel.mean()) < 1e-3
    assert rel.std() == pytest.approx(1 / np.sqrt(2500.0), rel=0.03)  # Poisson: sd/mean = 1/sqrt(N)
    # the detector kernel keeps the variance and correlates neighbours
    corr = nz.quantum_noise(signal, trans, 10000.0, nz.torch_generator(np.random.default_rng(0)))
    r = (corr / signal - 1).numpy()
    assert r.std() == pytest.approx(rel.std(), rel=0.05)
    lag1 = np.corrcoef(r[:, :-1].ravel(), r[:, 1:].ravel())[0, 1]
    assert lag1 > 0.1 and abs(np.corrcoef(rel[:, :-1].ravel(), rel[:, 1:].ravel())[0, 1]) < 0.03
    again = nz.quantum_noise(signal, trans, 10000.0, nz.torch_generator(np.random.default_rng(0)))
    np.testing.assert_array_equal(again.numpy(), corr.numpy())
    other = nz.quantum_noise(signal, trans, 10000.0, nz.torch_generator(np.random.default_rng(1)))
    assert not np.array_equal(other.numpy(), corr.numpy())
    e = nz.electronic_noise(torch.zeros(shape, dtype=torch.float64), 2.0, nz.torch_generator(np.random.default_rng(2)))
    assert e.std().item() == pytest.approx(2.0, rel=0.03)


def test_scatter_kernel_superposition():
    shape = (128, 128)
    primary = torch.full(shape, 40.0, dtype=torch.float64)
    # no object: no scatter
    assert torch.count_nonzero(scatter_estimate(primary, torch.ones(shape, dtype=torch.float64), 1.0)) == 0
    # a broad uniform object: the scatter-to-primary ratio at the centre is amplitude x (-ln T)
    t = 0.02
    trans = torch.full(shape, t, dtype=torch.float64)
    s = scatter_estimate(primary * t, trans, pixel_mm=2.0, amplitude=0.1, sigma_mm=20.0)
    spr = (s[64, 64] / (primary[64, 64] * t)).item()
    assert spr == pytest.approx(0.1 * -np.log(t), rel=0.02)
    assert s[0, 0] < s[64, 64]  # less scatter at the field edge
    # scatter is smooth: it spreads a point source over about sigma
    point = torch.ones(shape, dtype=torch.float64)
    point[64, 64] = 0.5
    spread = scatter_estimate(torch.ones(shape, dtype=torch.float64), point, pixel_mm=1.0, sigma_mm=8.0)
    assert spread[64, 64 + 8] / spread[64, 64] == pytest.approx(np.exp(-0.5), rel=0.25)
