"""``synthex dr``: list, show and check domain-randomization presets and configurations."""

from __future__ import annotations

import argparse

from synthex_lib.randomization import PRESET_DOCS, DomainRandomization, preset_names

EPILOG = """examples:
  synthex dr presets                          # the presets and what they do
  synthex dr show official-strong > my.yaml   # a preset as editable YAML
  synthex dr check my.yaml                    # validate an edited configuration
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("dr", help="domain-randomization presets and configurations",
                              description="List the domain-randomization presets (paper text and released code), "
                                          "print one as YAML to edit, or check an edited configuration.",
                              epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("presets", "show", "check"), help="what to do")
    p.add_argument("spec", nargs="?", default="strong",
                   help="preset name, YAML/JSON text or a .yaml/.json file (show, check; default: strong)")
    p.add_argument("--reproduce-defects", action="store_true",
                   help="show: the official preset with the released code's label misalignment")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.action == "presets":
        for name in preset_names():
            print(f"{name:17s} {PRESET_DOCS[name]}")
        return 0
    if args.action == "show" and args.spec in preset_names():
        dr = DomainRandomization.from_preset(args.spec, reproduce_defects=args.reproduce_defects)
    else:
        dr = DomainRandomization.from_spec(args.spec)
    if args.action == "show":
        print(dr.to_yaml(), end="")
    else:
        print(f"ok: {dr.name}: {len(dr.effect_names())} effects ({', '.join(dr.effect_names())}); "
              f"360 x 360 px -> {dr.output_size((360, 360))}")
    return 0
