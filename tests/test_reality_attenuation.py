"""The scanner's own material code: elemental ICRU-44 mixtures against NIST and against xraydb's formulas."""

from __future__ import annotations

import numpy as np
import pytest
import xraydb

from synthex_lib.anatomy.tissues import MATERIAL_COMPOSITION, Material
from synthex_lib.core.errors import ConfigError
from synthex_lib.simulate.reality import attenuation as at
from synthex_lib.simulate.scanner import material_mu_rho


def test_nist_water_and_cortical_bone_at_60_kev():
    # Hubbell & Seltzer, NIST X-ray mass attenuation coefficients (NISTIR 5632): water 0.2059, ICRU-44
    # cortical bone 0.3148 cm^2/g at 60 keV
    assert at.mass_attenuation(at.WATER_FRACTIONS, 60.0)[0] == pytest.approx(0.2059, rel=0.01)
    assert material_mu_rho(int(Material.CORTICAL), np.array([60.0]))[0] == pytest.approx(0.3148, rel=0.01)


def test_elemental_mixture_matches_the_formula_results_within_one_percent():
    e = np.arange(30.0, 121.0, 5.0)
    for m, (formula, rho) in MATERIAL_COMPOSITION.items():
        ref = np.asarray(xraydb.material_mu(formula, e * 1000.0, density=rho)) / rho
        np.testing.assert_allclose(material_mu_rho(int(m), e), ref, rtol=0.01)


def test_cross_sections_add_up_and_compton_dominates_tissue():
    e = np.array([30.0, 60.0, 100.0])
    xs = at.cross_sections(int(Material.SOFT), e)
    np.testing.assert_allclose(xs.sum(axis=0), at.mass_attenuation(int(Material.SOFT), e))
    assert xs[1, 1] > xs[0, 1] and xs[1, 1] > xs[2, 1]  # incoherent dominates soft tissue at 60 keV
    assert at.cross_sections(int(Material.CORTICAL), e)[0, 0] > xs[0, 0]  # calcium: more photoelectric
    with pytest.raises(ConfigError, match="material id"):
        at.cross_sections(42, e)
    with pytest.raises(ConfigError, match="energies_kev"):
        at.cross_sections(int(Material.SOFT), np.array([-1.0]))


def test_csi_absorption_and_obliquity():
    e = np.array([40.0, 80.0])
    eta = at.csi_absorption(e, 0.6)
    ref = 1 - np.exp(-np.asarray(xraydb.material_mu("CsI", e * 1000.0, density=4.51)) * 0.06)
    np.testing.assert_allclose(eta, ref, rtol=0.01)
    assert np.all(at.csi_absorption(e, 0.6, 0.5) > eta)  # an oblique photon crosses more CsI
