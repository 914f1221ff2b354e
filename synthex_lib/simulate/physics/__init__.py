"""Physics of X-ray image formation, as small composable functions (units in each module's docstring)."""

from synthex_lib.simulate.physics.density import (
    MATERIALS,
    heuristic_mu,
    hu_to_density,
    material_density_channels,
    material_fractions,
    material_index,
    water_fraction,
)
from synthex_lib.simulate.physics.detector import (
    flat_field_signal,
    monoenergetic_transmission,
    neglog,
    polychromatic_signal,
    saturate,
)
from synthex_lib.simulate.physics.materials import linear_attenuation, mass_attenuation, mass_attenuation_table
from synthex_lib.simulate.physics.noise import (
    correlate,
    electronic_noise,
    poisson_counts,
    quantum_noise,
    torch_generator,
)
from synthex_lib.simulate.physics.scatter import scatter_estimate
from synthex_lib.simulate.physics.spectrum import Spectrum, monoenergetic, tube_spectrum

__all__ = [
    "MATERIALS", "Spectrum", "correlate", "electronic_noise", "flat_field_signal", "heuristic_mu", "hu_to_density",
    "linear_attenuation", "mass_attenuation", "mass_attenuation_table", "material_density_channels",
    "material_fractions", "material_index", "monoenergetic", "monoenergetic_transmission", "neglog", "poisson_counts",
    "polychromatic_signal", "quantum_noise", "saturate", "scatter_estimate", "torch_generator", "tube_spectrum",
    "water_fraction",
]
