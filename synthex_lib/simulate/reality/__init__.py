"""The emulated scanners' own physics ("reality" of the virtual lab), independent of the training simulators.

:mod:`.attenuation` (elemental cross sections, Bragg additivity), :mod:`.partial_volume` (anti-aliased
density channels of the anatomy), :mod:`.montecarlo` (coarse Monte Carlo photon transport for
scatter) and :mod:`.flatfield` (offset / gain calibration and defect correction of the flat panel).
Nothing here imports :mod:`synthex_lib.simulate.physics` or :mod:`synthex_lib.simulate.projectors`
(``tests/test_reality_independence.py`` checks the import closure).
"""
