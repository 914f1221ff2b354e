"""``synthex simulate``: generate a simulated dataset (HDF5, one file per image domain)."""

from __future__ import annotations

import argparse

from synthex_lib.core.cluster import parse_slurm_options
from synthex_lib.generate.cache import dataset_files
from synthex_lib.generate.engine import DEFAULT_CHUNK, ensure_dataset
from synthex_lib.generate.tasks import ALL_DOMAINS, TASKS

TASK_NAMES = tuple(TASKS)
DOMAIN_NAMES = ALL_DOMAINS

EPILOG = """examples:
  synthex simulate --task hip-controlled --profile quick
      # the precisely matched hip study of the virtual lab: real.h5 (emulated CIOS-like scanner),
      # naive.h5, heuristic.h5, realistic.h5 (+ *-loopx.h5 for the cross-scanner specimen)
  synthex simulate --task hip-scaled --projector realistic --profile full --workers 8
  synthex simulate --task hip-controlled --dataset deepfluoro --path data/real/deepfluoro/ipcai_2020_full_res_data.h5
  synthex simulate --task tool --profile quick --scheduler tcp://10.0.0.5:8786
  synthex simulate --task chest --profile paper --slurm queue=gpu cores=4 memory=16GB walltime=04:00:00 jobs=20

Generation is deterministic (same seed, same bytes, whatever the workers), resumes after a kill
(rerun the same command) and returns at once when the dataset is complete. "real" images of the
virtual lab come from emulated scanners, not from real patients.
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "simulate", help="generate a simulated dataset (task x image domain x profile -> HDF5)",
        description="Simulate labelled X-ray images of a task from the virtual cadaver lab (or render replicas of "
                    "a real dataset's images) and store them in the SyntheX/DeepFluoro HDF5 layout, one file per "
                    "image domain, under <data root>/sim/<profile>/<task>/.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, choices=list(TASK_NAMES), help="what to simulate")
    p.add_argument("--projector", "--domain", dest="domains", nargs="+", choices=[*DOMAIN_NAMES, "all"], default=None,
                   metavar="DOMAIN",
                   help=f"image domain(s) among {', '.join(DOMAIN_NAMES)} or 'all' (default: the task's: "
                        "hip-controlled all four, hip-scaled realistic, tool and chest realistic and real)")
    p.add_argument("--profile", default="smoke", help="profile (smoke, quick, full, paper; default smoke)")
    p.add_argument("--seed", type=int, default=0, help="experiment seed (default 0)")
    p.add_argument("--dataset", default="lab", help="controlled-study source for hip-controlled: lab or deepfluoro")
    p.add_argument("--path", default=None, help="the source's file or folder (deepfluoro)")
    g = p.add_argument_group("where the work runs (default: a local Dask cluster with one process per core)")
    g.add_argument("--workers", type=int, default=None, help="local worker processes (0: in this process)")
    g.add_argument("--scheduler", default=None, metavar="ADDR", help="address of an existing Dask scheduler")
    g.add_argument("--slurm", nargs="+", default=None, metavar="KEY=VALUE",
                   help="start a dask-jobqueue SLURMCluster with these options (queue, account, cores, memory, "
                        "walltime, job_extra_directives=a,b, jobs=N)")
    p.add_argument("--chunk-size", type=int, default=None, help="images per work unit (default 8)")
    p.add_argument("--force", action="store_true", help="regenerate even if the dataset is complete")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    domains = None
    if args.domains:
        domains = ALL_DOMAINS if "all" in args.domains else tuple(args.domains)
    slurm = parse_slurm_options(args.slurm) if args.slurm else None
    chunk = DEFAULT_CHUNK if args.chunk_size is None else args.chunk_size
    out = ensure_dataset(args.task, args.profile, domains=domains, seed=args.seed, dataset=args.dataset,
                         progress=not args.no_progress, path=args.path, workers=args.workers,
                         scheduler=args.scheduler, slurm=slurm, chunk_size=chunk,
                         force=args.force)
    print(out)
    for name, info in sorted(dataset_files(out).items()):
        n = sum(info.get("groups", {}).values())
        print(f"  {name}: {n} images in {len(info.get('groups', {}))} group(s), {info['bytes'] / 1e6:.1f} MB")
    return 0
