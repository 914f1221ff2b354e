"""``synthex explore``: the live domain-randomization explorer as a local web app (offline)."""

from __future__ import annotations

import argparse
import errno
import sys

from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.figures.dr_samples import example_sample
from synthex_lib.figures.explorer import MAX_COPIES
from synthex_lib.figures.explorer_app import ExplorerApp, ExplorerServer
from synthex_lib.figures.phantom import disc_phantom
from synthex_lib.randomization import preset_names

EPILOG = """examples:
  synthex explore                              # http://127.0.0.1:8765/ on the quick profile's hip image
  synthex explore --port 9000 --profile smoke  # another port, the smoke profile's (64 px) image
  synthex explore --phantom --preset official-strong --port 0   # disc phantom, any free port

The page needs no network: its controls and scripts are served by this command, and every
change is rendered by the companion's randomization library (the same functions as the
notebook widget of chapter 02). Ctrl-C stops the server.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "explore", help="serve the live domain-randomization explorer on localhost",
        description="Serve the domain-randomization explorer (preset, seed, epoch and every effect's "
                    "probability, switch and parameters, drawn over one labelled hip image) as a web page on "
                    "127.0.0.1, offline.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8765, help="TCP port on 127.0.0.1 (0: any free port; default 8765)")
    p.add_argument("--profile", default="quick",
                   help="profile of the simulated hip image (generated when missing; default quick)")
    p.add_argument("--dataset", default="lab", help="dataset of the hip image (default lab)")
    p.add_argument("--seed", type=int, default=0, help="initial randomization seed (default 0)")
    p.add_argument("--preset", default="strong", help=f"initial preset: {', '.join(preset_names())}")
    p.add_argument("--copies", type=int, default=6, help=f"initial number of copies, 1-{MAX_COPIES} (default 6)")
    p.add_argument("--phantom", action="store_true", help="use the synthetic disc phantom (no data needed)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65535 (0: any free port), got {args.port}")
    if args.preset not in preset_names():
        raise ConfigError(f"--preset {args.preset!r} is unknown; valid presets: {', '.join(preset_names())}")
    if not 1 <= args.copies <= MAX_COPIES:
        raise ConfigError(f"--copies must be from 1 to {MAX_COPIES}, got {args.copies}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer, got {args.seed}")
    profile = get_profile(args.profile).name
    if args.phantom:
        sample, source = disc_phantom(128, radius=4.0, seed=args.seed), "synthetic disc phantom (128 px)"
    else:
        print(f"synthex explore: loading the {profile} hip image (generated first when missing)", flush=True)
        sample, source = example_sample(profile, seed=args.seed, dataset=args.dataset)
    app = ExplorerApp(sample, source, preset=args.preset, seed=args.seed, copies=args.copies)
    try:
        server = ExplorerServer(app, port=args.port, verbose=args.verbose)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ConfigError(f"--port {args.port} is in use; choose another port, or --port 0 for any free "
                              "port") from e
        raise
    print(f"synthex explore: serving {server.url} ({source}); Ctrl-C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("synthex explore: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
