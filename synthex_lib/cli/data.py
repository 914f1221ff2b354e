"""``synthex data``: list, check, download and register the real datasets of the paper."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from synthex_lib.core.errors import DataError
from synthex_lib.generate.cache import simulated_datasets, verify_dataset
from synthex_lib.realdata.fetch import AccessRequiredError, fetch, import_file, missing_expected, status, verify
from synthex_lib.realdata.manifest import all_manifests, load_manifest, manifest_dir, manifest_names

EPILOG = """examples:
  synthex data list                         # every dataset: access, size, what the book uses it for
  synthex data status deepfluoro            # present? where? how to obtain it
  synthex data fetch deepfluoro             # download (resumable), check sha256, unpack safely
  synthex data import qata-cov19 ~/Downloads/archive.zip   # register a file downloaded by hand
  synthex data verify deepfluoro            # re-hash every file: finds a corrupted byte
  synthex data verify sim --profile quick   # re-hash the simulated datasets (or: verify <dataset folder>)

The data folder is $SYNTHEX_DATA/real/<dataset> (default: <checkout>/data/real/<dataset>).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "data", help="list, fetch, import and verify the paper's real datasets",
        description="Manage the real datasets declared in data_manifests/: DeepFluoro (full resolution and "
        "2x-16x), NMDID, QaTa-COV19, the COVID-19 CT sets, CTPelvic1K, TotalSegmentator, and the virtual "
        "lab's cohorts. Downloads check sha256 (or record a first-seen hash in a lock file) and resume.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="ACTION")
    p.set_defaults(func=_help(p))

    q = sub.add_parser("list", help="list every dataset", description="List every dataset of data_manifests/.",
                       epilog="example:\n  synthex data list", formatter_class=argparse.RawDescriptionHelpFormatter)
    q.set_defaults(func=_list)

    q = sub.add_parser("status", help="where a dataset is and whether it is present",
                       description="Show each dataset's folder and state (present, partial, missing; generated "
                       "profiles for the lab cohorts) and, with a name, its source, license, layout and how to "
                       "obtain it. Does not hash files (use verify).",
                       epilog="example:\n  synthex data status deepfluoro",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("names", nargs="*", metavar="NAME", help="datasets (default: all)")
    q.set_defaults(func=_status)

    q = sub.add_parser("verify", help="re-hash a dataset's files (finds a corrupted byte)",
                       description="Re-hash every downloaded or imported file and unpacked member against the "
                       "manifest's sha256 or the first-seen hash of the lock file (lab cohorts: against the "
                       "sha256 their generator recorded; 'sim' or a dataset folder: the simulated datasets against "
                       "their dataset.json). Exit status 2 names every corrupted file.",
                       epilog="example:\n  synthex data verify deepfluoro-8x",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("name", metavar="NAME")
    q.add_argument("--profile", default=None,
                   help="lab cohorts: check this profile only (default: every generated one)")
    q.set_defaults(func=_verify)

    q = sub.add_parser("fetch", help="download a dataset (resumable, sha256-checked, safely unpacked)",
                       description="Download an open dataset with pooch into $SYNTHEX_DATA/real/NAME, resuming an "
                       "interrupted download, checking sha256 (or recording the first-seen hash in the lock file) "
                       "and unpacking zips while refusing absolute or '..' paths. For datasets that cannot be "
                       "downloaded (manual, on request, restricted) it prints how to obtain them (exit status 3).",
                       epilog="example:\n  synthex data fetch deepfluoro-8x",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("name", metavar="NAME")
    q.add_argument("--force", action="store_true", help="download again even if present and verified")
    q.add_argument("--no-progress", action="store_true", help="no progress bar")
    q.set_defaults(func=_fetch)

    q = sub.add_parser("import", help="register a file you downloaded elsewhere",
                       description="Copy (or move, or link) a file you downloaded by hand into "
                       "$SYNTHEX_DATA/real/NAME, check its sha256, record it in the lock file and unpack it safely "
                       "when it is a zip.",
                       epilog="example:\n  synthex data import deepfluoro ~/Downloads/ipcai_2020_full_res_data.zip",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("name", metavar="NAME")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--as", dest="as_name", default=None, help="the manifest file name it stands for")
    q.add_argument("--mode", choices=("copy", "move", "link"), default="copy",
                   help="copy (default), move, or symlink (for large files; not for zips)")
    q.add_argument("--partial", action="store_true",
                   help="accept a dataset that still lacks some expected files (exit 0)")
    q.set_defaults(func=_import)
    return p


def _help(p: argparse.ArgumentParser) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        p.print_help()
        return 0

    return run


def _list(args: argparse.Namespace) -> int:
    ms = all_manifests()
    print(f"{len(ms)} datasets (manifests in {manifest_dir()}):")
    w, ws = max(len(m.name) for m in ms), max(len(m.size) for m in ms)
    for m in ms:
        print(f"  {m.name:<{w}}  {m.access_type:<10}  {m.size:<{ws}}  {m.title}")
    print("\n'synthex data status NAME' shows the source, license, layout and how to obtain one.")
    return 0


def _status(args: argparse.Namespace) -> int:
    names = args.names or manifest_names()
    for name in names:
        m = load_manifest(name)
        st = status(m)
        print(f"{m.name}: {st.state} ({st.detail})\n  folder: {st.folder}")
        if args.names:
            print(f"  {m.title}\n  {m.description}")
            print("  " + m.how_to_obtain().replace("\n", "\n  "))
            print(f"  Cite: {' '.join(m.citation['text'].split())}")
            print(f"  Used for: {m.used_for}")
            print("  Layout:\n    " + m.layout.rstrip().replace("\n", "\n    "))
    return 0


def _verify(args: argparse.Namespace) -> int:
    if args.name == "sim" or (Path(args.name) / "dataset.json").is_file():
        return _verify_sim(args)
    checks = verify(args.name, echo=print, profile=args.profile)
    ok = sum(c.status == "ok" for c in checks)
    print(f"{args.name}: {ok} file(s) verified, {sum(c.status == 'unverified' for c in checks)} without a reference "
          f"hash, {sum(c.status == 'missing' for c in checks)} missing")
    return 0


def _verify_sim(args: argparse.Namespace) -> int:
    folders = [Path(args.name)] if args.name != "sim" else simulated_datasets(args.profile)
    if not folders:
        raise DataError(f"no simulated dataset{' of profile ' + args.profile if args.profile else ''} found; "
                        "generate one with 'synthex simulate'")
    bad: list[str] = []
    n_ok = 0
    for folder in folders:
        for path, state in verify_dataset(folder):
            print(f"{state:>10}  {path}")
            n_ok += state == "ok"
            if state != "ok":
                bad.append(f"{path} ({state})")
    if bad:
        raise DataError(f"{len(bad)} simulated dataset file(s) missing or not matching their sha256: {'; '.join(bad)}; "
                        "rerun 'synthex simulate' with the same options to regenerate them")
    print(f"sim: {n_ok} file(s) in {len(folders)} dataset(s) verified")
    return 0


def _fetch(args: argparse.Namespace) -> int:
    try:
        rep = fetch(args.name, force=args.force, progress=not args.no_progress)
    except AccessRequiredError as exc:
        print(str(exc))
        return 3
    print(f"{rep.dataset}: {len(rep.fetched)} file(s) downloaded, {len(rep.skipped)} already present, "
          f"{len(rep.unpacked)} unpacked, in {rep.folder}")
    return 0


def _import(args: argparse.Namespace) -> int:
    import_file(args.name, args.file, as_name=args.as_name, mode=args.mode, echo=lambda s: None)
    missing = missing_expected(args.name)
    if missing and not args.partial:
        raise DataError(f"{args.name}: imported {args.file}, but the dataset is still incomplete ({', '.join(missing)} "
                        "not found); import the remaining files, or pass --partial to accept it as it is")
    print(f"{args.name}: imported {args.file}" + (f"; still missing: {', '.join(missing)}" if missing else ""))
    return 0
