"""``synthex lab``: generate and list the virtual cadaver lab."""

from __future__ import annotations

import argparse

from synthex_lib.anatomy import io
from synthex_lib.anatomy.cohorts import COHORTS, MANIFEST, cohort_members, generate_cohort
from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import DataError

EPILOG = """examples:
  synthex lab generate --profile quick                 # every cohort (lab, scale, chest, tool)
  synthex lab generate --profile smoke --cohort lab    # only the DeepFluoro-like lab cohort
  synthex lab list --profile quick                     # what is on disk
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "lab", help="generate the virtual cadaver lab (procedural hip, chest and tool specimens)",
        description="The virtual cadaver lab: procedural hip, chest and continuum-manipulator specimens with "
        "simulated CT scans, written as NIfTI + 3D Slicer markups under <data>/lab/<profile>/<cohort>.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION")
    gen = sub.add_parser("generate", help="generate cohorts (resumable; cached)",
                         description="Generate lab cohorts (resumable, byte-identical for a seed).",
                         epilog="example:\n  synthex lab generate --profile quick --cohort all --seed 0",
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    gen.add_argument("--profile", default="quick", help="smoke, quick, full or paper (default: quick)")
    gen.add_argument("--cohort", default="all", choices=[*COHORTS, "all"],
                     help="which cohort (default: all)")
    gen.add_argument("--seed", type=int, default=0, help="experiment seed (default: 0)")
    gen.add_argument("--quiet", action="store_true", help="no progress bars")
    gen.set_defaults(func=_generate)
    ls = sub.add_parser("list", help="list the generated specimens",
                        description="List the cohorts of a profile and their specimens on disk.",
                        epilog="example:\n  synthex lab list --profile quick",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--profile", default="quick", help="smoke, quick, full or paper (default: quick)")
    ls.set_defaults(func=_list)
    parser.set_defaults(func=lambda args: (parser.print_help(), 0)[1])
    return parser


def _generate(args: argparse.Namespace) -> int:
    prof = get_profile(args.profile)
    cohorts = COHORTS if args.cohort == "all" else (args.cohort,)
    for c in cohorts:
        folder = generate_cohort(c, prof, seed=args.seed, progress=not args.quiet)
        print(f"{c}: {folder}")
    return 0


def _list(args: argparse.Namespace) -> int:
    prof = get_profile(args.profile)
    for c in COHORTS:
        folder = paths.lab_dir(prof.name, c)
        members = cohort_members(c, prof)
        try:
            man = io.read_json(folder / MANIFEST) if (folder / MANIFEST).exists() else None
        except DataError:
            man = None
        done = {e["specimen_id"] for e in (man or {}).get("members", [])}
        seed = (man or {}).get("seed", "-")
        print(f"{c:6s} {len(done)}/{len(members)} generated  seed={seed}  {folder}")
        for m in members:
            flag = "ok " if m.specimen_id in done else "-- "
            extra = "  cross-scanner (Loop-X-like)" if m.cross_scanner else ""
            print(f"   {flag}{m.specimen_id:10s} group {m.group} kind {m.kind}{extra}")
    return 0
