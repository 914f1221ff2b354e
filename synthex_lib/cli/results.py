"""``synthex results``: list stored runs, or print the hip Table 1 beside the paper's numbers."""

from __future__ import annotations

import argparse

import pandas as pd

from synthex_lib.core.config import get_profile
from synthex_lib.experiments import hip, hip_analysis, results


def run(args: argparse.Namespace) -> int:
    profile = get_profile(args.profile).name
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 20)
    if args.table == "runs":
        df = results.records_frame(profile)
        print(df.to_string(index=False) if not df.empty else f"no runs stored for profile {profile}")
        return 0
    stored = list(results.iter_records(profile, hip.KIND))
    recs = hip_analysis.controlled_records(stored, profile)
    if len(recs) < len(stored):
        print(f"({len(stored) - len(recs)} stored hip run(s) of other training fields or older code left out)")
    if not recs:
        print(f"no hip runs stored for profile {profile}: run 'synthex train --profile {profile}' first")
        return 0
    ours = hip_analysis.table1(recs)
    dataset = recs[0]["parameters"]["dataset"]
    print(hip_analysis.compare_with_paper(ours, profile, dataset).to_string(index=False))
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("results", help="show stored runs and the hip results table beside the paper's",
                       description="Read the results store (one JSON per run) and print the runs or the hip table.",
                       epilog="examples:\n  synthex results --profile quick\n"
                              "  synthex results --profile quick --table runs",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick")
    p.add_argument("--table", choices=("hip", "runs"), default="hip")
    p.set_defaults(func=run)
    return p
