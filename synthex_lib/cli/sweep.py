"""``synthex sweep``: every run of the controlled hip study (and, with ``--scaled``, of the scaled-up and size
studies) as a task on a Dask cluster."""

from __future__ import annotations

import argparse

from synthex_lib.core.cluster import parse_slurm_options
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.experiments import (
    hip,
    hip_analysis,
    hip_scaled,
    results,
    scaled_analysis,
    sweep,
    task_analysis,
    task_runs,
)
from synthex_lib.learning.device import resolve_device


def run_task(args: argparse.Namespace, slurm: dict | None) -> int:
    """``--task tool|chest``: the Sim2Real run and the Real2Real folds of that task."""
    profile = get_profile(args.profile)
    dataset = args.dataset
    expected = len(task_runs.task_specs_kwargs(profile, args.task, seed=args.seed, dataset=dataset,
                                               data_path=args.path))
    recs = sweep.task_sweep(profile, args.task, seed=args.seed, dataset=dataset, data_path=args.path,
                            dr_preset=args.presets[-1], progress=not args.no_progress, workers=args.workers,
                            scheduler=args.scheduler, slurm=slurm, device=args.device)
    if recs:
        print(task_analysis.results_table(recs, args.task).to_string())
    if len(recs) < expected:
        print(f"synthex sweep: {expected - len(recs)} of {expected} run(s) failed (recorded under "
              f"{sweep.failed_dir(profile.name)}); run the command again to retry them")
        return 1
    return 0


def run(args: argparse.Namespace) -> int:
    if args.task is not None:
        if args.task not in task_runs.KINDS:
            raise ConfigError(f"--task {args.task!r}: choose one of {', '.join(task_runs.KINDS)}")
        if args.scheduler is None and args.slurm is None:
            resolve_device(args.device)
        return run_task(args, parse_slurm_options(args.slurm) if args.slurm else None)
    for d in args.domains:
        if d not in hip.DOMAINS:
            raise ConfigError(f"--domain {d!r} is not a training domain: choose among {', '.join(hip.DOMAINS)}")
    if args.scheduler is None and args.slurm is None:
        resolve_device(args.device)  # a CUDA device asked for on a machine without one: one line, before any work
    slurm = parse_slurm_options(args.slurm) if args.slurm else None
    profile = get_profile(args.profile)
    scaled = hip_scaled.scaled_specs_kwargs(profile, seed=args.seed, presets=tuple(args.presets), dataset=args.dataset,
                                            data_path=args.path) if args.scaled else []
    recs = sweep.hip_sweep(args.profile, seed=args.seed, dataset=args.dataset, domains=tuple(args.domains),
                           presets=tuple(args.presets), data_path=args.path, workers=args.workers,
                           scheduler=args.scheduler, slurm=slurm, device=args.device,
                           progress=not args.no_progress, scaled=scaled)
    print(hip_analysis.table1(recs).to_string(index=False))
    failed = 0
    if scaled:
        done = []
        for kw in scaled:
            params = hip_scaled.run_parameters(profile, kw["seed"], hip.canonical_preset(kw["dr_preset"]),
                                               kw["train_size"], 0.9, kw["dataset"], kw["data_path"])
            found = results.find_record(profile.name, hip_scaled.KIND, params)
            if found is None:
                failed += 1
            else:
                done.append(found)
        print(scaled_analysis.size_table(scaled_analysis.size_curve(done, args.presets[0])).to_string())
    expected = len(args.domains) * len(args.presets) * len(hip.held_out_groups(profile, args.seed, args.dataset,
                                                                                args.path))
    failed += expected - len(recs)
    if failed:
        print(f"synthex sweep: {failed} of {expected + len(scaled)} run(s) failed (recorded under "
              f"{sweep.failed_dir(profile.name)}); run the command again to retry them")
        return 1
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "sweep", help="run every (domain, preset, held-out specimen) of the controlled study on a Dask cluster",
        description="Train and evaluate every run of the controlled hip study, each run one Dask task: a local "
                    "cluster (default), an existing scheduler or a Slurm cluster through dask-jobqueue. Runs "
                    "already in the results store are read back; an interrupted run resumes from its "
                    "checkpoint; a failing run is recorded with its error and the others go on.",
        epilog="examples:\n  synthex sweep --profile quick --workers 2\n"
               "  synthex sweep --profile full --scheduler tcp://10.0.0.5:8786 --device cuda\n"
               "  synthex sweep --profile paper --device cuda --slurm queue=gpu cores=8 memory=32GB "
               "walltime=08:00:00 job_extra_directives=--gres=gpu:1 jobs=8",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="lab", help="lab (virtual cadaver lab), deepfluoro, or (--task chest) "
                                                     "qata-cov19")
    p.add_argument("--path", default=None, help="path of the real dataset file or folder (deepfluoro, qata-cov19)")
    p.add_argument("--domain", dest="domains", nargs="+", default=list(hip.DOMAINS),
                   help=f"training domain(s) (default: all of {', '.join(hip.DOMAINS)})")
    p.add_argument("--preset", dest="presets", nargs="+", default=["regular", "strong"],
                   help="domain randomization preset(s) (default: regular strong)")
    p.add_argument("--device", default="auto", help="where each run trains: auto (CUDA when present), cpu, cuda[:N]")
    g = p.add_argument_group("where the runs go (default: a local Dask cluster, one process per core)")
    g.add_argument("--workers", type=int, default=None, help="local worker processes (0: in this process)")
    g.add_argument("--scheduler", default=None, metavar="ADDR", help="address of an existing Dask scheduler")
    g.add_argument("--slurm", nargs="+", default=None, metavar="KEY=VALUE",
                   help="start a dask-jobqueue SLURMCluster with these options (queue, account, cores, memory, "
                        "walltime, job_extra_directives=--gres=gpu:1, jobs=N)")
    p.add_argument("--scaled", action="store_true",
                   help="also the scaled-up study: each preset on the whole scaled-up set, and the training-set "
                        "size study with the first preset")
    p.add_argument("--task", default=None, metavar="TASK",
                   help="instead of the hip studies, the Sim2Real run and the five Real2Real folds of another task: "
                        "tool (manipulator detection) or chest (COVID-19 lesions; --dataset qata-cov19 --path "
                        "FOLDER tests on QaTa-COV19); trained with the last --preset (default strong)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p
