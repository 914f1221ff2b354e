"""Where networks run: the device (CUDA when present, overridable) and the precision (mixed on GPUs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from synthex_lib.core.errors import ConfigError


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when present, else the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ... as given.
    A CUDA device on a machine without one raises :class:`ConfigError` naming the parameter."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"parameter 'device' must be auto, cpu or cuda[:N], got {device!r} ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"parameter 'device' is {device!r} but this machine has no CUDA device; use 'auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"parameter 'device' must be auto, cpu or cuda[:N], got {device!r}")
    return dev


def autocast_for(device: torch.device, cpu_precision: str = "float32") -> Any:
    """Mixed precision on a GPU (bfloat16 where supported, else float16); on the CPU ``cpu_precision``: full
    float32 (the default) or bfloat16 autocast. Both are bit-reproducible on the CPU for a fixed thread count."""
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast(device_type="cuda", dtype=dtype)
    if cpu_precision == "bfloat16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    if cpu_precision != "float32":
        raise ConfigError(f"parameter 'cpu_precision' must be 'float32' or 'bfloat16', got {cpu_precision!r}")
    return contextlib.nullcontext()


@contextlib.contextmanager
def cpu_threads(n: int) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads, restoring the previous count (a CPU run's bytes depend on it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
