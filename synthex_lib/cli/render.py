"""``synthex render``: one image from a CT file.

Contract (relied on outside the project)::

    synthex render CT --projector {naive,heuristic,realistic} --P p11,p12,...,p34 --size W H
                   --quantity {water-path-mm,intensity,neglog} --out FILE.npy

``CT`` is any NIfTI/NRRD/MHA file; ``P`` (row-major 3x4) maps LPS mm to pixel (col, row), pixel centres at
integers; the output is a float32 ``(H, W)`` ``.npy``; ``water-path-mm`` is the integral of ``1 + HU/1000``
(clamped at 0) along the ray in mm.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from synthex_lib.core.errors import ConfigError
from synthex_lib.core.memory import estimate_render_bytes, require_memory
from synthex_lib.core.paths import atomic_path
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.volume_io import volume_from_file

EPILOG = """example:
  synthex render ct.nii.gz --projector naive --size 256 192 --quantity water-path-mm --out drr.npy \\
      --P 1000,0,127.5,76500,0,-1000,95.5,57300,0,0,1,600

The matrix above looks along +z (LPS superior) from 600 mm below the origin with a focal length of 1000 px.
Noise of the heuristic and realistic projectors is seeded by --seed (default 0).
"""


def _parse_p(text: str):


    try:
        vals = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise ConfigError(f"--P must be 12 comma-separated numbers p11,p12,...,p34, got {text!r}") from None
    if len(vals) != 12:
        raise ConfigError(f"--P must be 12 comma-separated numbers p11,p12,...,p34, got {len(vals)}")
    return np.array(vals, np.float64).reshape(3, 4)


def run(args: argparse.Namespace) -> int:


    P = _parse_p(args.P)
    W, H = args.size
    if W <= 0 or H <= 0:
        raise ConfigError(f"--size W H must be positive integers, got {W} {H}")
    if not str(args.out).endswith(".npy"):
        raise ConfigError(f"--out must name a .npy file, got {args.out!r}")
    folder = Path(args.out).expanduser().absolute().parent
    if not folder.is_dir():
        raise ConfigError(f"--out {args.out}: the folder {folder} does not exist; create it first")
    try:  # can a file be made there? (os.access says yes for root on /proc)
        fd, probe = tempfile.mkstemp(prefix=".synthex-probe-", suffix=".part", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write in {folder} ({exc.strerror or exc}); choose a writable "
                          "folder") from None
    require_memory(estimate_render_bytes(args.projector, W, H), f"rendering a {W}x{H} image ({args.projector})",
                   "use a smaller --size")
    volume = volume_from_file(args.ct)
    require_memory(estimate_render_bytes(args.projector, W, H, voxels=volume.ct_hu.size),
                   f"rendering a {W}x{H} image ({args.projector}) from {volume.ct_hu.shape} voxels",
                   "use a smaller --size or a coarser CT")
    params = {} if args.step_mm is None else {"step_mm": args.step_mm}
    projector = get_projector(args.projector, **params)
    image = projector.render(volume, P, (W, H), quantity=args.quantity, rng=np.random.default_rng(args.seed))[0]
    try:
        with atomic_path(args.out) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, image.astype(np.float32))
    except OSError as exc:
        raise ConfigError(f"--out {args.out}: cannot write it ({exc.strerror or exc}); choose a writable "
                          "folder") from None
    print(f"wrote {args.out}: {args.projector} {args.quantity} {H}x{W}, "
          f"min {float(image.min()):.4g} max {float(image.max()):.4g}")
    return 0


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "render",
        help="render one X-ray image from a CT file",
        description="Render one X-ray image (naive, heuristic or realistic physics) from a CT file "
        "(NIfTI/NRRD/MHA in HU) with a 3x4 projection matrix mapping LPS mm to pixel (col, row).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("ct", help="CT file in HU (NIfTI .nii/.nii.gz, NRRD, MHA)")
    parser.add_argument("--projector", choices=["naive", "heuristic", "realistic"], default="naive",
                        help="physics (default: naive)")
    parser.add_argument("--P", required=True, metavar="p11,...,p34",
                        help="row-major 3x4 projection matrix, LPS mm -> pixel (col, row), 12 numbers")
    parser.add_argument("--size", nargs=2, type=int, required=True, metavar=("W", "H"), help="detector size in pixels")
    parser.add_argument("--quantity", choices=["water-path-mm", "intensity", "neglog"], default="neglog",
                        help="water-path-mm: integral of 1 + HU/1000 (mm); intensity: detector signal; "
                        "neglog: -log(I/I0) (default)")
    parser.add_argument("--out", required=True, help="output .npy file (float32, H x W)")
    parser.add_argument("--step-mm", type=float, default=None,
                        help="sampling step along the ray in mm (default: the projector's own)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise (default 0)")
    parser.set_defaults(func=run)
    return parser
