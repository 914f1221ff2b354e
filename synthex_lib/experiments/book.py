"""Execute the notebooks with papermill and render the Jupyter Book (``synthex book``).

Steps: (1) prepare the data the notebooks need at the profile (virtual lab cohorts and the
controlled hip dataset), (2) papermill-execute every notebook listed in ``_toc.yml`` with
``profile`` (and optional ``seed``/``dataset``) injected, in parallel where asked, into
``_build/src/``, (3) run ``jupyter-book build`` on ``_build/src`` with execution off, so the book
shows the papermill outputs, into ``_build/html``. A failing notebook fails the build with its
name, cell and error.

``--refresh-references`` instead executes the committed notebooks in place at the ``smoke``
profile: their stored outputs are the nbval reference outputs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import yaml

from synthex_lib import paths
from synthex_lib.errors import ConfigError, SynthexError


class NotebookFailed(SynthexError):
    """A notebook raised during execution."""


def repo_root() -> Path:
    root = paths.project_root()
    if root is None:
        raise ConfigError("synthex book needs a source checkout (the folder with _config.yml and _toc.yml)")
    return root


def toc_files(root: Path) -> list[str]:
    """Every ``file:`` entry of ``_toc.yml`` (root first), without extension."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    out = [toc["root"]]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "file" in node:
                out.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in toc.items() if k != "root"})
    return out


def notebooks(root: Path) -> list[Path]:
    return [root / f"{f}.ipynb" for f in toc_files(root) if (root / f"{f}.ipynb").exists()]


def prepare_data(profile: str, seed: int = 0, progress: bool = True) -> None:
    """Generate the lab cohorts and the controlled hip dataset once, before notebooks run in parallel."""
    from synthex_lib.anatomy import generate_cohort
    from synthex_lib.datasets.generate import ensure_dataset

    for cohort in ("lab", "scale", "chest", "tool"):
        generate_cohort(cohort, profile, seed=seed, progress=progress)
    ensure_dataset("hip-controlled", profile, seed=seed, progress=progress)


def _execute_one(nb: str, out: str, parameters: dict[str, Any], cwd: str) -> tuple[str, float, str | None]:
    import papermill as pm

    t0 = time.perf_counter()
    try:
        pm.execute_notebook(nb, out, parameters=parameters, kernel_name="python3", cwd=cwd, progress_bar=False,
                            log_output=False, request_save_on_cell_execute=False)
    except pm.PapermillExecutionError as exc:
        return nb, time.perf_counter() - t0, f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except Exception as exc:  # kernel died, timeout, ...
        return nb, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"
    return nb, time.perf_counter() - t0, None


def execute_notebooks(profile: str, jobs: int = 1, seed: int | None = None, dataset: str | None = None,
                      only: list[str] | None = None) -> Path:
    """Papermill-execute the book's notebooks into ``_build/src``; raises NotebookFailed naming the first failure."""
    root = repo_root()
    src = root / "_build" / "src"
    params: dict[str, Any] = {"profile": profile}
    if seed is not None:
        params["seed"] = seed
    if dataset is not None:
        params["dataset"] = dataset
    nbs = notebooks(root)
    if only:
        nbs = [n for n in nbs if n.stem in only or n.name in only]
        if not nbs:
            raise ConfigError(f"--notebooks {only} matches none of the book's notebooks")
    for nb in nbs:
        (src / nb.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
    failures = []
    env_threads = os.environ.get("OMP_NUM_THREADS")
    if jobs > 1 and env_threads is None:
        os.environ["OMP_NUM_THREADS"] = "1"  # kernels inherit it: no oversubscription of the cores
    with ProcessPoolExecutor(max_workers=max(1, jobs)) as pool:
        futs = [pool.submit(_execute_one, str(nb), str(src / nb.relative_to(root)), params, str(nb.parent))
                for nb in nbs]
        for fut in as_completed(futs):
            nb, secs, err = fut.result()
            name = Path(nb).relative_to(root)
            print(f"[synthex book] {name}: {'FAILED ' + err if err else 'ok'} ({secs:.0f} s)", flush=True)
            if err:
                failures.append(f"{name} {err}")
    if env_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    if failures:
        raise NotebookFailed("notebook execution failed: " + "; ".join(failures))
    return src


def assemble_sources(src: Path, use_committed: bool = False) -> None:
    """Copy the book's config and pages into ``src`` (and, with ``use_committed``, the committed notebooks)."""
    root = repo_root()
    src.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, src / name)
    for path in (root / "book").rglob("*"):
        if path.is_file():
            dest = src / path.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest)
    if use_committed:
        for nb in notebooks(root):
            dest = src / nb.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dest)


def build_html(src: Path, strict: bool = False) -> Path:
    """Run ``jupyter-book build`` on ``src`` into ``<repo>/_build/html``."""
    root = repo_root()
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(src), "--path-output", str(root), "--keep-going"]
    if strict:
        cmd.append("-W")
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    log = root / "_build" / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    index = root / "_build" / "html" / "index.html"
    if proc.returncode != 0 or not index.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SynthexError(f"jupyter-book build failed (exit {proc.returncode}); full log in {log}\n{tail}")
    return index


def refresh_references(only: list[str] | None = None) -> None:
    """Execute the committed notebooks in place at their default (smoke) parameters: nbval's references."""
    import nbformat
    from nbclient import NotebookClient

    root = repo_root()
    for nb_path in notebooks(root):
        if only and nb_path.stem not in only:
            continue
        t0 = time.perf_counter()
        nb = nbformat.read(nb_path, as_version=4)
        NotebookClient(nb, kernel_name="python3", timeout=1800,
                       resources={"metadata": {"path": str(nb_path.parent)}}).execute()
        for cell in nb.cells:
            cell.metadata.pop("execution", None)
        nbformat.write(nb, nb_path)
        print(f"[synthex book] refreshed {nb_path.relative_to(root)} ({time.perf_counter() - t0:.0f} s)", flush=True)


def run(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    only = [s.strip() for s in args.notebooks.split(",")] if args.notebooks else None
    if args.refresh_references:
        prepare_data("smoke", progress=not args.quiet)
        refresh_references(only)
        return 0
    from synthex_lib.experiments.profiles import get_profile

    profile = get_profile(args.profile).name
    if args.check:
        src = paths.project_root() / "_build" / "src-check"  # type: ignore[operator]
        shutil.rmtree(src, ignore_errors=True)
        assemble_sources(src, use_committed=True)
        index = build_html(src)
        print(f"[synthex book] book build check ok: {index}")
        return 0
    if not args.skip_data:
        prepare_data(profile, seed=args.seed or 0, progress=not args.quiet)
    src = execute_notebooks(profile, jobs=args.jobs, seed=args.seed, dataset=args.dataset, only=only)
    assemble_sources(src)
    if not args.no_html:
        index = build_html(src)
        print(f"[synthex book] {index} ({time.perf_counter() - t0:.0f} s)")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "book", help="execute the notebooks with papermill and render the Jupyter Book",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  synthex book --profile quick --jobs 2\n  synthex book --profile smoke "
               "--notebooks 04_training --no-html\n  synthex book --refresh-references   # regenerate nbval outputs\n"
               "  synthex book --check                # render the committed notebooks (no execution)",
    )
    p.add_argument("--profile", default="quick", help="profile injected into every notebook (default: quick)")
    p.add_argument("--jobs", type=int, default=1, help="notebooks executed in parallel (default: 1)")
    p.add_argument("--seed", type=int, default=None, help="seed injected into every notebook")
    p.add_argument("--dataset", default=None, help="dataset injected into every notebook (lab, deepfluoro, ...)")
    p.add_argument("--notebooks", default=None, help="comma-separated notebook names to execute (default: all)")
    p.add_argument("--no-html", action="store_true", help="execute only; do not run jupyter-book")
    p.add_argument("--skip-data", action="store_true", help="do not generate the lab data first")
    p.add_argument("--refresh-references", action="store_true",
                   help="execute the committed notebooks in place at smoke (nbval reference outputs)")
    p.add_argument("--check", action="store_true", help="render the committed notebooks without executing them")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)
    return p
