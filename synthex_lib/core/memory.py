"""Memory estimates made before rendering or generating, so that what cannot fit is refused at once with the
figure (rather than a numpy ``ArrayMemoryError`` or the kernel's OOM killer half-way through)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

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


#: glibc allocator settings for the array-heavy work of this library (bytes): blocks up to this size come
#: from the heap and are reused after ``free`` instead of being mapped fresh from the kernel and zeroed page by
#: page on each allocation. Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` switches glibc's adaptive threshold
#: off, so that every array over 128 KiB is an ``mmap``: the quick book spent as much time in the kernel's
#: page-fault handler (sys time 1865 s) as in its own code (user 2336 s).
MALLOC_THRESHOLD_BYTES = 1 << 30
#: the same settings as environment variables, for processes started by this one (Dask workers, kernels)
MALLOC_ENV: dict[str, str] = {"MALLOC_MMAP_THRESHOLD_": str(MALLOC_THRESHOLD_BYTES),
                              "MALLOC_TRIM_THRESHOLD_": str(MALLOC_THRESHOLD_BYTES)}
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)


def tune_allocator() -> bool:
    """Apply :data:`MALLOC_ENV` to this process (``mallopt``) and to the processes it starts (``os.environ``).
    Returns whether this process's allocator was changed (False off glibc, where nothing is done)."""
    for k, v in MALLOC_ENV.items():
        os.environ.setdefault(k, v)
    name = ctypes.util.find_library("c")
    if os.name != "posix" or not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, MALLOC_THRESHOLD_BYTES)) and \
        bool(mallopt(_M_TRIM_THRESHOLD, MALLOC_THRESHOLD_BYTES))
