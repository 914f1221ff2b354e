"""The ``synthex`` command. Each subcommand lives beside the code it drives and registers itself
through an ``add_parser(subparsers)`` function; heavy imports happen only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys

from synthex_lib import __version__
from synthex_lib.errors import SynthexError

#: subcommand name -> module defining ``add_parser(subparsers) -> argparse.ArgumentParser``
#: whose parser sets ``func(args) -> int``.
SUBCOMMANDS: dict[str, str] = {
    "lab": "synthex_lib.anatomy.cli",
    "render": "synthex_lib.simulate.cli",
    "simulate": "synthex_lib.datasets.cli",
    "train": "synthex_lib.training_cli",
    "results": "synthex_lib.experiments.results_cli",
    "book": "synthex_lib.experiments.book",
    "data": "synthex_lib.data.cli",
    "dr": "synthex_lib.randomization.cli",
    "profiles": "synthex_lib.experiments.profiles_cli",
}

EPILOG = """examples:
  synthex profiles                      # list the profiles and their sizes
  synthex lab generate --profile quick  # generate the virtual cadaver lab
  synthex book --profile quick          # execute every notebook and render the book
  synthex <command> --help              # help and an example for each command
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthex",
        description="SyntheX companion: simulate labelled X-rays from CT, randomize, train, and "
        "reproduce the paper's tables (Gao et al., Nat. Mach. Intell. 2023).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"synthex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except SynthexError as exc:
        print(f"synthex {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"synthex {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
