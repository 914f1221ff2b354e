"""The ``synthex`` command: the top layer. One module per subcommand in this package, each with an
``add_parser(subparsers)`` function whose parser sets ``func(args) -> int``. Only the module of the
subcommand being run is loaded (``synthex render`` never imports torch's training stack); the
top-level help loads them all."""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

from synthex_lib import __version__
from synthex_lib.core.errors import SynthexError
from synthex_lib.core.memory import tune_allocator

#: subcommand name -> module defining ``add_parser(subparsers) -> argparse.ArgumentParser``
#: whose parser sets ``func(args) -> int``.
SUBCOMMANDS: dict[str, str] = {
    "lab": "synthex_lib.cli.lab",
    "render": "synthex_lib.cli.render",
    "simulate": "synthex_lib.cli.simulate",
    "train": "synthex_lib.cli.train",
    "sweep": "synthex_lib.cli.sweep",
    "results": "synthex_lib.cli.results",
    "book": "synthex_lib.cli.book",
    "data": "synthex_lib.cli.data",
    "dr": "synthex_lib.cli.dr",
    "profiles": "synthex_lib.cli.profiles",
    "explore": "synthex_lib.cli.explore",
}

EPILOG = """examples:
  synthex profiles                      # list the profiles and their sizes
  synthex lab generate --profile quick  # generate the virtual cadaver lab
  synthex book --profile quick          # execute every notebook and render the book
  synthex <command> --help              # help and an example for each command
"""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand, or of ``only`` (a subcommand name) when given."""
    parser = argparse.ArgumentParser(
        prog="synthex",
        description="SyntheX companion: simulate labelled X-rays from CT, randomize, train, and "
        "reproduce the paper's tables (Gao et al., Nat. Mach. Intell. 2023).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"synthex {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        if only is None or name == only:
            importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv[0] if argv and argv[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    tune_allocator()  # reuse freed arrays instead of page-faulting fresh ones (see core.memory)
    try:
        return int(args.func(args) or 0)
    except SynthexError as exc:
        print(f"synthex {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a folder that cannot be written (read-only, a file in the way, full disk, ...)
        print(f"synthex {args.command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"synthex {args.command}: error: out of memory; use a smaller profile, --size or --chunk-size",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"synthex {args.command}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def _os_error_line(exc: OSError) -> str:
    """One line for an operating-system error: the file, what went wrong, and what to do."""
    where = exc.filename or ""
    what = exc.strerror or str(exc)
    env = os.environ.get("SYNTHEX_DATA")
    hint = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
            errno.EPERM: "permission denied", errno.ENOTDIR: "a file stands where a folder is needed",
            errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded"}.get(exc.errno or 0)
    fix = "point SYNTHEX_DATA to a writable folder" if env is None else \
        f"point SYNTHEX_DATA (now {env}) to a writable folder"
    if hint is None:
        return f"{where}: {what}" if where else what
    return f"{where}: {what} ({hint}); {fix}" if where else f"{what} ({hint}); {fix}"


if __name__ == "__main__":
    sys.exit(main())
