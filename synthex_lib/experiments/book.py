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

import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import yaml
from nbclient import NotebookClient

from synthex_lib.anatomy import generate_cohort
from synthex_lib.core import paths
from synthex_lib.core.errors import ConfigError, SynthexError
from synthex_lib.generate.engine import ensure_dataset


class NotebookFailedError(SynthexError):
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

    for cohort in ("lab", "scale", "chest", "tool"):
        generate_cohort(cohort, profile, seed=seed, progress=progress)
    ensure_dataset("hip-controlled", profile, seed=seed, progress=progress)


def _execute_one(nb: str, out: str, parameters: dict[str, Any], cwd: str) -> tuple[str, float, str | None]:
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
    """Papermill-execute the book's notebooks into ``_build/src``; raises NotebookFailedError naming the first
    failure."""
    root = repo_root()
    src = paths.build_dir() / "src"
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
        raise NotebookFailedError("notebook execution failed: " + "; ".join(failures))
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
    """Run ``jupyter-book build`` on ``src`` into ``paths.build_dir() / "html"``."""
    root = repo_root()
    out = paths.build_dir()
    shutil.rmtree(out / "html", ignore_errors=True)  # no stale pages or images of earlier builds
    exe = Path(sys.executable).with_name("jupyter-book")
    cmd = [str(exe), "build", str(src), "--path-output", str(out.parent), "--keep-going"]
    if strict:
        cmd.append("-W")
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
    log = out / "jupyter-book.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(proc.stdout + proc.stderr)
    index = out / "html" / "index.html"
    if proc.returncode != 0 or not index.exists():
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise SynthexError(f"jupyter-book build failed (exit {proc.returncode}); full log in {log}\n{tail}")
    return index


def refresh_references(only: list[str] | None = None) -> None:
    """Execute the committed notebooks in place at their default (smoke) parameters: nbval's references."""

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
