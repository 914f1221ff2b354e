"""``synthex train``: train and evaluate hip models (one run, or the controlled-study sweep)."""

from __future__ import annotations

import argparse

from synthex_lib.experiments import hip, hip_analysis, sweep


def run(args: argparse.Namespace) -> int:
    if args.sweep:
        recs = sweep.hip_sweep(args.profile, seed=args.seed, dataset=args.dataset, domains=tuple(args.domains),
                               presets=tuple(args.presets), data_path=args.path, workers=args.workers)
        print(hip_analysis.table1(recs).to_string(index=False))
        return 0
    rec = hip.run_hip_experiment(args.profile, seed=args.seed, dataset=args.dataset, train_domain=args.domains[0],
                                 dr_preset=args.presets[0], test_group=args.test_group, force=args.force,
                                 data_path=args.path, device=args.device)
    m = rec["metrics"]
    print(f"{rec['run_id']}: landmark error {m['landmark_error_mm_mean']:.2f} ± {m['landmark_error_mm_std']:.2f} mm "
          f"({m['detection_rate']:.0%} detected), Dice {m['dice_mean']:.3f} ± {m['dice_std']:.3f}")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "train", help="train a multi-task hip model (leave one specimen out) and store its metrics",
        description="Train on every specimen but the held-out one (images of a training domain), test on the "
                    "held-out specimen's real images, and store the run in the results store. Resumes an "
                    "interrupted run from its last epoch; a stored run is not recomputed unless --force.",
        epilog="examples:\n  synthex train --profile smoke --domain realistic --preset strong --test-group 01\n"
               "  synthex train --profile quick --sweep --domain real realistic heuristic naive "
               "--preset regular strong",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", default="quick")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dataset", default="lab", help="lab (virtual cadaver lab) or deepfluoro")
    p.add_argument("--path", default=None, help="path of the real dataset file (dataset deepfluoro)")
    p.add_argument("--domain", dest="domains", nargs="+", default=["realistic"],
                   help="training domain(s): real, realistic, heuristic, naive")
    p.add_argument("--preset", dest="presets", nargs="+", default=["strong"],
                   help="domain randomization preset(s): none, regular, strong, official-regular, official-strong")
    p.add_argument("--test-group", default="01", help="held-out specimen (single run)")
    p.add_argument("--sweep", action="store_true", help="every domain x preset x held-out specimen of the profile")
    p.add_argument("--force", action="store_true", help="recompute even if stored")
    p.add_argument("--workers", type=int, default=0,
                   help="--sweep: runs in parallel on a local Dask cluster (default 0: in this process)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:N] (single run)")
    p.set_defaults(func=run)
    return p
