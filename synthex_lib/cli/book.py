"""``synthex book``: execute the notebooks with papermill and render the Jupyter Book."""

from __future__ import annotations

import argparse
import shutil
import time

from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.experiments import book
from synthex_lib.experiments.book import (
    CELL_TIMEOUT_S,
    assemble_sources,
    build_html,
    execute_notebooks,
    prepare_data,
    prepare_runs,
    refresh_references,
)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    if args.cell_timeout < 1:
        raise ConfigError(f"--cell-timeout must be a positive number of seconds, got {args.cell_timeout}")
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be a positive integer (Dask workers and notebooks run in parallel), "
                          f"got {args.jobs}")
    only = [s.strip() for s in args.notebooks.split(",")] if args.notebooks else None
    if args.refresh_references:
        prepare_data("smoke", progress=not args.quiet)
        refresh_references(only)
        return 0
    profile = get_profile(args.profile).name
    if args.check:
        src = paths.build_dir() / "src-check"
        shutil.rmtree(src, ignore_errors=True)
        assemble_sources(src, use_committed=True)
        index = build_html(src)
        print(f"[synthex book] book build check ok: {index}")
        return 0
    if not args.skip_data:
        prepare_data(profile, seed=args.seed or 0, progress=not args.quiet, jobs=args.jobs)
        if not only:
            prepare_runs(profile, seed=args.seed or 0, progress=not args.quiet, jobs=args.jobs)
    src = execute_notebooks(profile, jobs=args.jobs, seed=args.seed, dataset=args.dataset, only=only,
                            use_cache=not args.no_cache, cell_timeout=args.cell_timeout)
    assemble_sources(src)
    if not args.no_html:
        index = build_html(src)
        print(f"[synthex book] {index} ({time.perf_counter() - t0:.0f} s)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "book", help="execute the notebooks with papermill and render the Jupyter Book",
        description=book.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  synthex book --profile quick --jobs 2\n  synthex book --profile smoke "
               "--notebooks 04_training --no-html\n  synthex book --refresh-references   # regenerate nbval outputs\n"
               "  synthex book --check                # render the committed notebooks (no execution)",
    )
    p.add_argument("--profile", default="quick", help="profile injected into every notebook (default: quick)")
    p.add_argument("--jobs", type=int, default=1,
                   help="Dask workers of the data generation and the training sweep, then notebooks executed in "
                        "parallel (default: 1)")
    p.add_argument("--seed", type=int, default=None, help="seed injected into every notebook")
    p.add_argument("--dataset", default=None, help="dataset injected into every notebook (lab, deepfluoro, ...)")
    p.add_argument("--notebooks", default=None, help="comma-separated notebook names to execute (default: all)")
    p.add_argument("--no-html", action="store_true", help="execute only; do not run jupyter-book")
    p.add_argument("--no-cache", action="store_true",
                   help="execute every notebook, even one whose code, parameters and runs are unchanged since the "
                        "last build (whose outputs are otherwise reused)")
    p.add_argument("--skip-data", action="store_true", help="do not generate the lab data and train the sweep first")
    p.add_argument("--refresh-references", action="store_true",
                   help="execute the committed notebooks in place at smoke (nbval reference outputs)")
    p.add_argument("--check", action="store_true", help="render the committed notebooks without executing them")
    p.add_argument("--cell-timeout", type=int, default=CELL_TIMEOUT_S, metavar="S",
                   help=f"seconds a notebook cell may run before its kernel counts as hung; a notebook whose kernel "
                        f"died or hung is executed once more (default: {CELL_TIMEOUT_S})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p
