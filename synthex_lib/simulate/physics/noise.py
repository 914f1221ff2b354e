"""Detector noise: quantum (Poisson) noise with the detector's spatial correlation, and electronic noise.

Random draws come from a ``torch.Generator`` seeded from the caller's numpy ``Generator`` (see
:func:`torch_generator`), so a seed gives the same image on a given device.
"""

from __future__ import annotations

import numpy as np
import torch

#: 3x3 spatial correlation of a flat-panel detector's quantum noise (Wang et al., Med. Phys. 2014; the same
#: published values DeepDRR uses). We normalise it to unit L2 norm so that it shapes the noise power
#: spectrum without changing the per-pixel variance of the white noise it filters.
DETECTOR_NOISE_KERNEL = np.array([[0.03, 0.06, 0.02], [0.11, 0.98, 0.11], [0.02, 0.06, 0.03]])


def torch_generator(rng: np.random.Generator | None, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded by one draw from ``rng`` (a fresh unseeded one if None)."""
    rng = np.random.default_rng() if rng is None else rng
    g = torch.Generator(device=torch.device(device))
    g.manual_seed(int(rng.integers(0, 2**62)))
    return g


def correlate(noise: torch.Tensor, kernel: np.ndarray | None = DETECTOR_NOISE_KERNEL) -> torch.Tensor:
    """Filter white noise ``[..., H, W]`` with ``kernel`` normalised to unit L2 norm (variance preserved)."""
    if kernel is None:
        return noise
    k = torch.as_tensor(kernel / np.sqrt(np.sum(np.square(kernel))), dtype=noise.dtype, device=noise.device)
    shape = noise.shape
    x = noise.reshape(-1, 1, *shape[-2:])
    y = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect"), k[None, None])
    return y.reshape(shape)


def poisson_counts(expected: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Photon counts drawn from Poisson(``expected``) (float tensor of counts)."""
    return torch.poisson(torch.clamp(expected, min=0.0), generator=generator)


def quantum_noise(signal: torch.Tensor, transmission: torch.Tensor, photon_count: float,
                  generator: torch.Generator, kernel: np.ndarray | None = DETECTOR_NOISE_KERNEL) -> torch.Tensor:
    """Signal with quantum noise: the relative Poisson fluctuation of the expected photon count
    ``N = transmission x photon_count`` (photons per pixel; ``photon_count`` in the flat field) applied to the
    energy signal, spatially correlated by ``kernel``. Returns the noisy signal (same units as ``signal``)."""
    n_exp = torch.clamp(transmission * float(photon_count), min=1e-12)
    rel = (poisson_counts(n_exp, generator) - n_exp) / n_exp
    return signal + correlate(rel * signal, kernel)


def electronic_noise(signal: torch.Tensor, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """Add white Gaussian read-out noise of standard deviation ``sigma`` (signal units)."""
    if sigma <= 0:
        return signal
    noise = torch.randn(signal.shape, generator=generator, dtype=signal.dtype, device=signal.device)
    return signal + sigma * noise
