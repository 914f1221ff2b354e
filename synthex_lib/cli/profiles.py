"""``synthex profiles``: list the profiles and their sizes."""

from __future__ import annotations

import argparse
import json

from synthex_lib.core.config import DESIGN_FIELDS, PROFILES, SECTIONS, get_profile, section_of


def run(args: argparse.Namespace) -> int:
    names = [args.name] if args.name else list(PROFILES)
    profiles = [get_profile(n) for n in names]
    if args.json:
        print(json.dumps({p.name: p.to_dict() for p in profiles}, indent=1))
        return 0
    flat = [p.flat() for p in profiles]
    width = max(len(f) for f in flat[0]) + 2
    print(f"{'':{width}}  " + "  ".join(f"{p.name:>12}" for p in profiles))
    for section in (*SECTIONS, "study"):
        print(f"[{section}]")
        for f in flat[0]:
            if (section_of(f) if f not in DESIGN_FIELDS else "study") == section:
                print(f"  {f:{width - 2}}  " + "  ".join(f"{str(d[f]):>12}" for d in flat))
    print("[task_train]  (training fields that differ for one task's runs, 'task' or 'task:train_domain')")
    for p in profiles:
        for key, changes in p.task_train.items():
            print(f"  {p.name}: {key}: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
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
