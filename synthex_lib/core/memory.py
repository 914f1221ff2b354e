"""Memory estimates made before rendering or generating, so that what cannot fit is refused at once with the
figure (rather than a numpy ``ArrayMemoryError`` or the kernel's OOM killer half-way through)."""

from __future__ import annotations

import psutil

from synthex_lib.core.errors import ConfigError

#: working bytes per detector pixel of one image, by physics: the image, ray set-up, the per-material line
#: integrals and (realistic) 16 energy bins at a time, in float32 and float64 (conservative)
BYTES_PER_PIXEL: dict[str, int] = {"naive": 64, "heuristic": 128, "realistic": 512, "real": 512}
#: working bytes per CT voxel (the HU volume, densities and material maps derived from it)
BYTES_PER_VOXEL = 24


def available_bytes() -> int:
    """Memory the system can give this process now (``MemAvailable``)."""
    return int(psutil.virtual_memory().available)


def estimate_render_bytes(projector: str, width: int, height: int, n_images: int = 1, voxels: int = 0) -> int:
    """Estimated peak memory of rendering ``n_images`` images of ``width`` x ``height`` pixels from a CT of
    ``voxels`` voxels with the named physics."""
    per_pixel = BYTES_PER_PIXEL.get(projector, max(BYTES_PER_PIXEL.values()))
    return int(per_pixel) * int(width) * int(height) * int(n_images) + BYTES_PER_VOXEL * int(voxels)


def require_memory(needed: int, what: str, hint: str) -> None:
    """Raise :class:`ConfigError` when ``needed`` bytes exceed the memory available, naming both figures."""
    avail = available_bytes()
    if needed > avail:
        raise ConfigError(f"{what} needs about {needed / 2**30:.1f} GiB of memory but {avail / 2**30:.1f} GiB are "
                          f"available; {hint}")
