"""Emulated scanners: every hardware effect against its defining property, foreign-object geometry,
and the whole acquisition (determinism, ADC depth, AEC, heel and its flat-field correction, defects
corrected, the two models differ)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erfinv

from synthex_lib import geometry
from synthex_lib.anatomy.specimen import Specimen
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.seeding import seeded_rng
from synthex_lib.simulate import foreign as fo
from synthex_lib.simulate import hardware as hw
from synthex_lib.simulate.scanner import CIOS_SCANNER, LOOPX_SCANNER, VoxelAnatomy, density_channels, get_scanner

# --- heel effect ----------------------------------------------------------------------------------------


def test_heel_effect_fewer_and_harder_photons_on_the_anode_side():
    pos = [-150.0, 0.0, 150.0]  # mm, negative = anode side
    e, f = hw.heel_spectra(90.0, 10.0, (("Al", 3.0),), pos, 1000.0)
    total = f.sum(axis=1)
    mean_e = (f * e).sum(axis=1) / total
    assert total[0] < 0.9 * total[1]  # a marked heel at 15 cm towards the anode for a 10 deg target
    assert mean_e[0] > mean_e[1] > mean_e[2] - 0.5  # beam hardening in the anode heel
    assert e.max() <= 90.0 and abs(e[1] - e[0] - 2.0) < 1e-9


def test_every_scanner_field_lies_within_its_anode_coverage():
    from synthex_lib.simulate.scanner import CHEST_PANEL

    e, fl = get_scanner("chest-dr").spectra((16, 16), CHEST_PANEL.binned(16).pixel_mm)
    assert (fl.sum(axis=1) > 0.5 * fl[8].sum()).all()  # no row near the anode's heel cut-off


def test_scanner_spectra_follow_its_heel_axis():
    sc = get_scanner("cios-fusion")
    e, fl = sc.spectra((32, 32), geometry.CIOS_FUSION.binned(32).pixel_mm)  # anode at row 0, axis along the rows
    assert fl.shape == (32, len(e))
    assert fl[0].sum() < fl[16].sum()


# --- collimator -----------------------------------------------------------------------------------------

def test_collimator_field_leakage_and_penumbra():
    c = hw.Collimator(margins=(0.25, 0.25, 0.25, 0.25), jitter=0.0, rotation_deg=0.0, iris_radius=None,
                      penumbra_mm=2.0, leakage=0.02)
    t = c.transmission((200, 200), 0.5)
    assert t[100, 100] == pytest.approx(1.0, abs=1e-6)  # field centre
    assert t[5, 5] == pytest.approx(0.02, abs=1e-6)  # under the blades
    row = t[100]
    # the left blade edge lies at 25 % of the width: x = -50 mm + 25 mm = -25 mm from the centre
    x = (np.arange(200) - 99.5) * 0.5
    half = 0.5 * (1 + 0.02)
    x50 = np.interp(half, row[:100], x[:100])
    assert x50 == pytest.approx(-25.0, abs=0.05)
    # 10-90 % width of an erf edge of standard deviation s: 2 * sqrt(2) * erfinv(0.8) * s
    lo = 0.02 + 0.1 * 0.98
    hi = 0.02 + 0.9 * 0.98
    width = np.interp(hi, row[:100], x[:100]) - np.interp(lo, row[:100], x[:100])
    assert width == pytest.approx(2 * np.sqrt(2) * erfinv(0.8) * 2.0, rel=0.02)


def test_collimator_iris_and_per_image_jitter():
    c = hw.Collimator(margins=(0.0, 0.0, 0.0, 0.0), jitter=0.02, rotation_deg=2.0, iris_radius=0.8, penumbra_mm=0.1)
    t = c.transmission((101, 101), 1.0)
    assert t[50, 50] == pytest.approx(1.0) and t[0, 0] == pytest.approx(c.leakage, abs=1e-6)  # corners cut
    a = c.transmission((101, 101), 1.0, np.random.default_rng(1))
    b = c.transmission((101, 101), 1.0, np.random.default_rng(2))
    assert not np.allclose(a, b)


# --- anti-scatter grid ----------------------------------------------------------------------------------

def test_grid_transmissions_reduce_the_scatter_to_primary_ratio():
    g = hw.AntiScatterGrid(primary_transmission=0.7, scatter_transmission=0.14, line_amplitude=0.0)
    prim = np.full((8, 64), 100.0)
    scat = np.full((8, 64), 50.0)
    out = g.apply(prim, scat, 0.5)
    np.testing.assert_allclose(out, 0.7 * 100 + 0.14 * 50)
    spr_after = (0.14 * 50) / (0.7 * 100)
    assert spr_after == pytest.approx(0.5 * 0.14 / 0.7)


def test_grid_lines_alias_to_the_predicted_frequency_and_amplitude():
    g = hw.AntiScatterGrid(lines_per_cm=70.0, line_amplitude=0.1)
    p = 0.194 * 3  # 7 lines/mm sampled every 0.582 mm
    n = 512
    pattern = g.line_pattern(n, p)
    fa = hw.aliased_frequency(g.frequency, p)
    spec = np.abs(np.fft.rfft(pattern - pattern.mean())) / (n / 2)
    freqs = np.fft.rfftfreq(n, d=p)
    k = int(np.argmax(spec))
    assert freqs[k] == pytest.approx(fa, abs=1.0 / (n * p))
    assert spec[k] == pytest.approx(0.1 * abs(np.sinc(g.frequency * p)), rel=0.15)
    assert pattern.mean() == pytest.approx(1.0, abs=0.01)


# --- vignetting, MTF ------------------------------------------------------------------------------------

def test_vignetting_profile():
    v = hw.vignetting((41, 31), 0.2)
    assert v[15, 20] == pytest.approx(1.0)
    assert v[0, 0] == pytest.approx(0.8) and v[30, 40] == pytest.approx(0.8)
    assert v[15, 10] == pytest.approx(v[15, 30]) and v[5, 20] == pytest.approx(v[25, 20])  # radial symmetry
    with pytest.raises(ConfigError, match="strength"):
        hw.vignetting((4, 4), 1.5)


def test_mtf_scales_a_sinusoid_by_the_mtf():
    mtf = hw.detector_mtf(1.2, focal_sigma_mm=0.1)
    assert mtf(np.array(1.2)) == pytest.approx(0.5 * np.exp(-2 * np.pi**2 * 0.01 * 1.44))
    p = 0.2
    n = 256
    x = np.arange(n) * p
    f = 40 / (n * p)  # 40 cycles over the image
    img = np.tile(np.cos(2 * np.pi * f * x), (32, 1)) + 5.0
    out = hw.apply_mtf(img, p, mtf)
    centre = out[16, 64:192] - 5.0
    ref = np.cos(2 * np.pi * f * x[64:192])
    amp = np.dot(centre, ref) / np.dot(ref, ref)
    assert amp == pytest.approx(float(mtf(np.array(f))), rel=0.03)
    assert out.mean() == pytest.approx(img.mean(), rel=1e-3)  # the MTF is 1 at zero frequency


# --- ADC and defects ------------------------------------------------------------------------------------

def test_quantization_levels_and_saturation():
    x = np.linspace(-0.2, 1.5, 100000)
    q = hw.quantize(x, 1.0, bits=12)
    assert q.dtype == np.uint16 and q.max() == 4095 and q.min() == 0
    assert len(np.unique(q)) <= 4096
    inside = (x >= 0) & (x <= 1)
    assert np.max(np.abs(q[inside] / 4095.0 - x[inside])) <= 0.5 / 4095 + 1e-12
    assert (q[x > 1.0001] == 4095).all()  # saturation


def test_defect_map_is_fixed_for_a_detector_and_defined_at_native_pixels():
    spec = hw.DefectSpec(dead_fraction=0.01, hot_fraction=0.005, dead_columns=2)
    dev = geometry.Device("small", 80, 100, 0.2, 1000.0)
    a = hw.defect_map(dev, spec, "cios-fusion")
    b = hw.defect_map(dev, spec, "cios-fusion")
    c = hw.defect_map(dev, spec, "loopx")
    np.testing.assert_array_equal(a, b)
    assert a.shape == (80, 100) and not np.array_equal(a, c)
    assert (a == hw.DEFECT_HOT).sum() == pytest.approx(40, abs=1)
    assert (a == hw.DEFECT_DEAD).sum() >= 80
    cols = [j for j in range(100) if (a[:, j] == hw.DEFECT_DEAD).sum() >= 0.3 * 80]
    assert len(cols) == 2
    img = np.full((80, 100), 1000, np.uint16)
    out = hw.apply_defects(img, a, 4095)
    assert (out[a == hw.DEFECT_DEAD] == 0).all() and (out[a == hw.DEFECT_HOT] == 4095).all()
    assert (out[a == hw.DEFECT_OK] == 1000).all()
    # the native map does not depend on the output size: binned gains at two sizes see the same defects
    gain, offset = hw.native_gain_offset(dev, spec, "cios-fusion")
    assert (gain[a != hw.DEFECT_OK] == 0).all() and (offset[a == hw.DEFECT_HOT] == 1.0).all()


def test_defects_are_corrected_in_the_stored_image():
    s = _phantom_specimen()
    sc = get_scanner("cios-fusion", defects=hw.DefectSpec(dead_fraction=0.0, hot_fraction=0.0, dead_columns=3,
                                                           gain_sigma=0.0))
    _, st = sc.render(s, _P(geometry.CIOS_FUSION, 360), (360, 360), [np.random.default_rng(0)], foreign=False,
                      return_stages=True)
    st = st[0]
    # 4 x 4 binning: each dead native column lowers one binned column by 1/4: found in the flood, interpolated
    assert st.defects.sum() > 0 and np.median(st.gain[st.defects]) < 0.8
    cols = np.nonzero(st.defects.any(axis=0))[0]
    for c in cols:
        rows = st.defects[:, c]
        neighbours = 0.5 * (st.log[rows, c - 1] + st.log[rows, c + 1])
        assert np.abs(st.log[rows, c] - neighbours).mean() < 0.02  # no stripe left


# --- vendor processing ----------------------------------------------------------------------------------

def test_tone_curve_is_monotone_within_its_window():
    t = hw.ToneCurve(center=0.5, width=0.15)
    x = np.linspace(1.0, 5.0, 401)
    y = t(x, (1.0, 5.0))
    assert np.all(np.diff(y) >= 0) and y[0] == pytest.approx(1.0) and y[-1] == pytest.approx(5.0)
    slope = np.gradient(y, x)
    assert slope[200] > 1.5 > slope[5]  # contrast raised mid-window, compressed at the ends
    assert t(np.array([0.0, 9.0]), (1.0, 5.0)).tolist() == pytest.approx([1.0, 5.0])  # clipped outside
    lo, hi = hw.auto_window(np.arange(100.0), np.arange(100) < 50)
    assert lo == pytest.approx(0.49) and hi == pytest.approx(48.51)


def test_unsharp_mask_keeps_flat_regions_and_overshoots_edges():
    flat = np.full((20, 20), 3.0)
    np.testing.assert_allclose(hw.unsharp_mask(flat, 2.0, 0.7), flat)
    step = np.zeros((20, 40))
    step[:, 20:] = 1.0
    out = hw.unsharp_mask(step, 2.0, 0.7)
    assert out[10, 21] > 1.05 and out[10, 18] < -0.05  # overshoot on both sides
    # high-frequency gain 1 + amount: a Nyquist checkerboard
    cb = (np.indices((32, 32)).sum(0) % 2).astype(float) - 0.5
    assert np.abs(hw.unsharp_mask(cb, 3.0, 0.7)[16, 16]) == pytest.approx(0.5 * 1.7, rel=0.01)


# --- foreign objects ------------------------------------------------------------------------------------

def test_cylinder_and_box_chords():
    src = np.zeros((1, 3))
    dirs = np.array([[[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]]])  # [B=1, 1, 3 rays, 3]
    cyl = fo.Cylinder((100.0, -20.0, 0.0), (100.0, 20.0, 0.0), 2.0, "steel")  # along y at x = 100
    ch = fo.chord_cylinder(src, dirs, cyl)
    assert ch[0, 0, 0] == pytest.approx(4.0)  # across the axis: the diameter
    assert ch[0, 0, 1] == 0 and ch[0, 0, 2] == 0
    along = fo.Cylinder((0.0, 50.0, 0.0), (0.0, 80.0, 0.0), 1.0, "steel")
    assert fo.chord_cylinder(src, dirs, along)[0, 0, 1] == pytest.approx(30.0)  # along the axis: its length
    behind = fo.Cylinder((-100.0, -20.0, 0.0), (-100.0, 20.0, 0.0), 2.0, "steel")
    assert fo.chord_cylinder(src, dirs, behind)[0, 0, 0] == 0  # behind the source
    box = fo.Box((0.0, 0.0, 60.0), ((1, 0, 0), (0, 1, 0), (0, 0, 1)), (10.0, 10.0, 5.0), "carbon")
    assert fo.chord_box(src, dirs, box)[0, 0, 2] == pytest.approx(10.0)
    assert fo.chord_box(src, dirs, box)[0, 0, 0] == 0


def test_thin_wire_partial_volume_transmission():
    dev = geometry.CIOS_FUSION.binned(32)
    P = geometry.projection_matrix(dev, geometry.carm_pose(np.zeros(3), 600.0))
    wire = [fo.Cylinder((0.0, 0.0, -200.0), (0.0, 0.0, 200.0), 0.8, "steel")]  # along z through the isocentre
    e = np.array([40.0, 80.0])
    t = fo.transmission(wire, P, (32, 32), e, supersample=5)[0]
    full = np.exp(-fo.mass_attenuation("steel", e) * 8.0 * 0.16)  # 1.6 mm of steel
    centre_cols = t[:, 16, 14:18]  # the wire projects onto the central columns
    assert (centre_cols.min(axis=1) < 1.0).all() and (centre_cols.min(axis=1) > full - 1e-9).all()
    assert np.allclose(t[:, :, 0], 1.0)  # far from the wire nothing changes
    assert t[0, 16].min() < t[1, 16].min()  # metal stops more low-energy photons


def test_foreign_scene_implants_are_fixed_per_specimen():
    marks = {"ASIS-l": np.array([100.0, -40.0, 80.0]), "FH-l": np.array([80.0, 0.0, 0.0]),
             "ASIS-r": np.array([-100.0, -40.0, 80.0]), "FH-r": np.array([-80.0, 0.0, 0.0])}
    box = (np.array([-150.0, -100.0, -100.0]), np.array([150.0, 100.0, 150.0]))
    always = {"kwire": 1.0, "screw": 1.0, "cable": 0.0, "table": 0.0}
    a = fo.sample_scene("hip", marks, box, seeded_rng(0, "s1"), np.random.default_rng(1), always)
    b = fo.sample_scene("hip", marks, box, seeded_rng(0, "s1"), np.random.default_rng(2), always)
    assert a.objects == b.objects and a.kinds == ["kwire", "kwire", "screw", "screw"]
    c = fo.sample_scene("hip", marks, box, seeded_rng(0, "s2"), np.random.default_rng(1), always)
    assert c.objects != a.objects
    none = fo.sample_scene("chest", {}, box, seeded_rng(0), np.random.default_rng(0),
                           {"cable": 0.0, "electrode": 0.0})
    assert none.objects == []


# --- the whole acquisition ------------------------------------------------------------------------------

def _phantom_specimen() -> Specimen:
    sp = 8.0
    n = 24
    origin = (-(n - 1) / 2 * sp,) * 3
    c = (np.arange(n) - (n - 1) / 2) * sp
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    hu = np.full((n, n, n), -1000.0, np.float32)
    hu[(x / 80) ** 2 + (y / 70) ** 2 < 1] = 40.0
    hu[(x - 30) ** 2 + y**2 + z**2 < 25**2] = 900.0
    lab = (hu > 500).astype(np.uint8)
    s = Specimen("hip", hu, lab, (sp, sp, sp), origin, {}, specimen_id="phantom")
    s.anatomy = VoxelAnatomy.from_ct(s)
    return s


def _P(device, size):
    return geometry.projection_matrix(device.binned(size), geometry.carm_pose(np.zeros(3), 600.0))


def test_acquisition_is_deterministic_and_in_the_adc_range():
    s = _phantom_specimen()
    sc = get_scanner("cios-fusion")
    P = _P(geometry.CIOS_FUSION, 32)
    a, st = sc.render(s, P, (32, 32), [np.random.default_rng(7)], return_stages=True)
    b = sc.render(s, P, (32, 32), [np.random.default_rng(7)])
    c = sc.render(s, P, (32, 32), [np.random.default_rng(8)])
    assert a.dtype == np.float32 and a.shape == (1, 32, 32) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    st = st[0]
    assert st.counts.max() <= 4095 and len(np.unique(st.counts)) <= 4096
    # AEC: the median expected detected fluence of the central field is the target
    q = st.quanta[8:24, 8:24] / (geometry.CIOS_FUSION.binned(32).pixel_mm ** 2)
    assert np.median(q) == pytest.approx(CIOS_SCANNER.aec_quanta_per_mm2, rel=1e-6)
    # the bone sphere attenuates: brighter (higher log) than the soft tissue beside it
    assert st.log[16, 20:24].mean() > st.log[16, 6:10].mean()


def test_the_two_scanner_models_differ():
    s = _phantom_specimen()
    assert CIOS_SCANNER.bits == 12 and LOOPX_SCANNER.bits == 14
    assert CIOS_SCANNER.device.name == "cios-fusion" and LOOPX_SCANNER.device.name == "loopx"
    _, st = get_scanner("loopx").render(s, _P(geometry.LOOPX, 24), (24, 24), [np.random.default_rng(0)],
                                        return_stages=True)
    assert st[0].counts.max() > 4095 or st[0].counts.dtype == np.uint16
    with pytest.raises(ConfigError, match="unknown scanner"):
        get_scanner("carestream")
    assert get_scanner("loopx", bits=16).model.bits == 16


def test_heel_and_vignetting_visible_in_a_flat_field():
    s = _phantom_specimen()
    s.anatomy = VoxelAnatomy(np.full((4, 4, 4), -1000.0, np.float32), np.zeros((4, 4, 4), np.uint8),
                             np.zeros((4, 4, 4), np.uint8), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    sc = get_scanner("cios-fusion", collimator=hw.Collimator(margins=(0, 0, 0, 0), jitter=0.0, rotation_deg=0.0),
                     vignetting=0.0, grid=None, scatter=False)
    _, st = sc.render(s, _P(geometry.CIOS_FUSION, 32), (32, 32), [np.random.default_rng(0)], foreign=False,
                      return_stages=True)
    prim = st[0].primary
    assert prim[2, 16] < prim[16, 16] < prim[29, 16] * 1.05  # anode side (row 0) darker
    assert prim[16, 2] == pytest.approx(prim[16, 29], rel=1e-6)  # no heel across the columns
    # the flat-field correction removes the heel's intensity gradient from the stored log image
    log = st[0].log
    assert abs(log[2:8, 8:24].mean() - log[24:30, 8:24].mean()) < 0.01


def test_density_channels_and_missing_anatomy():
    from synthex_lib.anatomy.tissues import MATERIAL_COMPOSITION, Material, metal_hu

    hu_cort = metal_hu(*MATERIAL_COMPOSITION[Material.CORTICAL])  # HU of cortical bone at its nominal density
    hu = np.array([[[-1000.0, 40.0, hu_cort, 260.0]]], np.float32)
    mats = np.array([[[Material.AIR, Material.SOFT, Material.CORTICAL, Material.CANCELLOUS]]], np.uint8)
    ids, ch = density_channels(hu, mats)
    assert Material.AIR not in ids and len(ids) == 3 and ch.shape == (1, 1, 4, 3)
    assert ch[0, 0, 0].sum() == 0  # air left out
    soft = ch[0, 0, 1, ids.index(Material.SOFT)]
    assert 0.95 < soft < 1.15  # soft tissue about 1.05 g/cm^3
    cort = ch[0, 0, 2, ids.index(Material.CORTICAL)]
    assert cort == pytest.approx(MATERIAL_COMPOSITION[Material.CORTICAL][1], rel=1e-4)  # nominal HU -> nominal density
    assert density_channels(np.full((1, 1, 1), -1000.0), np.zeros((1, 1, 1), np.uint8))[1].sum() == 0
    spec = _phantom_specimen()
    spec.anatomy = None
    with pytest.raises(DataError, match="no anatomy"):
        get_scanner("cios-fusion").render(spec, _P(geometry.CIOS_FUSION, 8), (8, 8), [np.random.default_rng(0)])
