"""``synthex profiles``: list the profiles and their sizes."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from synthex_lib.experiments.profiles import PROFILES, get_profile

    names = [args.name] if args.name else list(PROFILES)
    profiles = [get_profile(n) for n in names]
    if args.json:
        print(json.dumps({p.name: p.to_dict() for p in profiles}, indent=1))
        return 0
    fields = list(profiles[0].to_dict())
    width = max(len(f) for f in fields)
    print(f"{'':{width}}  " + "  ".join(f"{p.name:>12}" for p in profiles))
    for f in fields[2:]:
        vals = [str(getattr(p, f)) for p in profiles]
        print(f"{f:{width}}  " + "  ".join(f"{v:>12}" for v in vals))
    for p in profiles:
        print(f"\n{p.name}: {p.description}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("profiles", help="list the profiles (smoke, quick, full, paper) and their sizes",
                       description="Show every setting of the profiles: the one knob for scale shared by notebooks "
                                   "and commands.",
                       epilog="examples:\n  synthex profiles\n  synthex profiles --name paper --json",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", default=None, help="show one profile")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)
    return p
