"""DeepDRR's side of ``bench gpu``: render the benchmark's CT at its poses through the DeepDRR adapter and time it.

DeepDRR 1.2.2 pins numpy < 2 and needs cupy, so it lives in its own environment (``make deepdrr-env`` ->
``.venv-deepdrr``, from ``constraints-deepdrr.txt``). This module imports only what that environment has (the
adapter and the engine: numpy, scipy, torch, kornia, spekpy, xraydb), so ``bench gpu`` can run it there:

    .venv-deepdrr/bin/python -m synthex_lib.bench.deepdrr_side IN.npz OUT.npz

``IN.npz`` holds ``hu`` [z, y, x], ``spacing``, ``origin``, ``P`` [B, 3, 4], ``size`` (W, H) and the
projector's ``photon_count``, ``photon_pixel_mm`` (NaN for none), ``noise``, ``step_mm``, ``repeats``;
``OUT.npz`` gets ``images`` [B, H, W] (neglog), ``first_call_s`` and ``s_per_batch`` (median).
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from synthex_lib.simulate.deepdrr_adapter import DeepDRRProjector


def render_and_time(volume: Any, P: np.ndarray, size: tuple[int, int], photon_count: float,
                    photon_pixel_mm: float | None, noise: bool, step_mm: float, repeats: int) -> dict[str, Any]:
    """DeepDRR's neglog images of ``volume`` at ``P`` (one batch) and its times (first call, median batch)."""
    projector = DeepDRRProjector(photon_count=photon_count, photon_pixel_mm=photon_pixel_mm, noise=noise,
                                 step_mm=step_mm)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    images = projector.render(volume, P, size, "neglog", rng=rng)
    first = time.perf_counter() - t0
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        projector.render(volume, P, size, "neglog", rng=rng)
        times.append(time.perf_counter() - t0)
    return {"images": images, "first_call_s": first, "s_per_batch": statistics.median(times)}


def write_request(path: Path, volume: Any, P: np.ndarray, size: tuple[int, int], photon_count: float,
                  photon_pixel_mm: float | None, noise: bool, step_mm: float, repeats: int) -> None:
    """The ``IN.npz`` of :func:`main`."""
    np.savez(path, hu=np.asarray(volume.ct_hu, np.float32), spacing=np.asarray(volume.spacing, np.float64),
             origin=np.asarray(volume.origin, np.float64), P=np.asarray(P, np.float64), size=np.asarray(size),
             photon_count=float(photon_count), photon_pixel_mm=np.nan if photon_pixel_mm is None else photon_pixel_mm,
             noise=bool(noise), step_mm=float(step_mm), repeats=int(repeats))


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m synthex_lib.bench.deepdrr_side IN.npz OUT.npz", file=sys.stderr)
        return 2
    req = np.load(args[0])
    volume = SimpleNamespace(ct_hu=req["hu"], spacing=tuple(req["spacing"]), origin=tuple(req["origin"]),
                             source="bench gpu")
    pitch = float(req["photon_pixel_mm"])
    out = render_and_time(volume, req["P"], tuple(int(s) for s in req["size"]), float(req["photon_count"]),
                          None if np.isnan(pitch) else pitch, bool(req["noise"]), float(req["step_mm"]),
                          int(req["repeats"]))
    np.savez(args[1], **out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
