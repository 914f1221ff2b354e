"""Execute the notebooks with papermill and render the Jupyter Book (``synthex book``).

Steps: (1) prepare the data the notebooks need at the profile (virtual lab cohorts and the
controlled hip dataset), (2) papermill-execute every notebook listed in ``_toc.yml`` with
``profile`` (and optional ``seed``/``dataset``) injected, in parallel where asked, into
``_build/src/``, (3) run ``jupyter-book build`` on ``_build/src`` with execution off, so the book
shows the papermill outputs, into ``_build/html``. A failing notebook fails the build with its
name, cell and error.

Before rendering, every notebook copied into the build sources is prepared for readers
(:func:`present_notebook`): the parameters cells (the default one and papermill's injected one) are
removed from the page and replaced by a collapsed note "Parameters of this build"; the
``# NBVAL_*`` marker lines of the nbval tests are stripped from the shown code (the committed
notebooks keep them); log output on stderr is dropped and counted in the build's console. After
rendering, ``_images`` files that no page references are deleted (:func:`prune_images`).

``--refresh-references`` instead executes the committed notebooks in place at the ``smoke``
profile: their stored outputs are the nbval reference outputs.
"""

from __future__ import annotations

import ast
import copy
import os
import re
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

from synthex_lib import __version__
from synthex_lib.anatomy import generate_cohort
from synthex_lib.anatomy.cohorts import COHORTS
from synthex_lib.core import paths
from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError, SynthexError
from synthex_lib.core.hashing import code_digest, stable_hash
from synthex_lib.experiments import hip, hip_scaled, sweep, task_runs
from synthex_lib.generate.engine import ensure_dataset


class NotebookFailedError(SynthexError):
    """A notebook raised during execution."""


#: the nbval marker comments (``# NBVAL_IGNORE_OUTPUT`` ...): a whole line, stripped from the rendered code
NBVAL_MARKER = re.compile(r"^[ \t]*#[ \t]*NBVAL_[A-Z_]+[ \t]*$\n?", re.MULTILINE)
#: the tags jupyter-book reads to remove a cell from the page
REMOVE_TAG = "remove-cell"


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


def prepare_data(profile: str, seed: int = 0, progress: bool = True, jobs: int = 1) -> None:
    """Generate the lab cohorts, the controlled hip dataset and the scaled-up set once, before notebooks run in
    parallel; the simulation's work units go to a local Dask cluster of ``jobs`` workers (1: in this process)."""

    for cohort in COHORTS:
        generate_cohort(cohort, profile, seed=seed, progress=progress)
    for task in ("hip-controlled", "hip-scaled", *task_runs.KINDS):
        ensure_dataset(task, profile, seed=seed, progress=progress, workers=jobs if jobs > 1 else 0)


def prepare_runs(profile: str, seed: int = 0, progress: bool = True, jobs: int = 1) -> list[dict[str, Any]]:
    """Train (or read back) every run the result chapters show, as one sweep on a local Dask cluster of
    ``jobs`` workers (1: in this process), so that the notebooks then only read the results store. Returns
    the sweep's records (failed runs are reported by the sweep and left out)."""
    prof = get_profile(profile)
    tasks = [kw for task in task_runs.KINDS for kw in task_runs.task_specs_kwargs(prof, task, seed=seed)]
    workers = jobs if jobs > 1 else 0
    records = sweep.hip_sweep(prof, seed=seed, domains=hip.ALL_DOMAINS, progress=progress, workers=workers,
                              scaled=hip_scaled.scaled_specs_kwargs(prof, seed=seed), tasks=tasks)
    by_size = sweep.resolution_sweep(prof, seed=seed, progress=progress, workers=workers)  # its base size: read back
    return records + [r for size, recs in by_size.items() if size != prof.train.image_size for r in recs]


#: longest a notebook cell may run (seconds) before its kernel is stopped: the book's cells read runs back and
#: draw (the training sweep runs before them), so a cell this slow is a hung kernel
CELL_TIMEOUT_S = 1800
#: how many times a notebook whose kernel died or hung is executed again (an error raised by a cell is not retried)
KERNEL_RETRIES = 1


def _execute_one(nb: str, out: str, parameters: dict[str, Any], cwd: str, cell_timeout: int = CELL_TIMEOUT_S,
                 retries: int = KERNEL_RETRIES) -> tuple[str, float, str | None]:
    """Execute one notebook with papermill; a kernel that dies or a cell that runs past ``cell_timeout`` seconds
    gets the notebook executed again, up to ``retries`` times, with one line saying so. Returns (notebook,
    seconds, error or None)."""
    t0 = time.perf_counter()
    attempt = 0
    while True:
        try:
            pm.execute_notebook(nb, out, parameters=parameters, kernel_name="python3", cwd=cwd, progress_bar=False,
                                log_output=False, request_save_on_cell_execute=False, execution_timeout=cell_timeout)
            return nb, time.perf_counter() - t0, None
        except pm.PapermillExecutionError as exc:  # a cell raised: executing again would raise again
            return nb, time.perf_counter() - t0, f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
        except Exception as exc:  # the kernel died, or a cell ran past the timeout
            error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            if attempt >= retries:
                return nb, time.perf_counter() - t0, error
            attempt += 1
            print(f"[synthex book] {Path(nb).name}: {error}; executing it again ({attempt} of {retries})", flush=True)


def notebook_key(nb_path: Path, parameters: dict[str, Any]) -> str:
    """What a notebook's executed outputs depend on, hashed: its code cells (not its prose), the injected
    parameters, the digest of every library module its code imports (transitively), the runs in the results
    store of the profile, and the Python and library versions. Data on disk is keyed by code and configuration
    already (see ARCHITECTURE.md), so the same key gives the same outputs."""
    nb = nbformat.read(nb_path, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    roots: set[str] = set()
    for source in code:
        try:
            tree = ast.parse(source)
        except SyntaxError:  # IPython magics: depend on the whole library
            roots.add("synthex_lib")
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots.update(a.name for a in node.names if a.name.startswith("synthex_lib"))
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("synthex_lib"):
                roots.add(str(node.module))
                roots.update(f"{node.module}.{a.name}" for a in node.names)
    results = paths.results_dir(str(parameters.get("profile", "")))
    runs = sorted(f.name for f in results.glob("*.json")) if results.is_dir() else []
    return stable_hash({"code": code, "parameters": parameters, "library": code_digest(*sorted(roots)) if roots else "",
                        "runs": runs, "python": sys.version, "synthex": __version__}, 20)


def cache_dir() -> Path:
    """Executed notebooks by :func:`notebook_key`: ``_build/cache/<name>-<key>.ipynb``."""
    return paths.build_dir() / "cache"


def reuse_outputs(executed: nbformat.NotebookNode, current: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``current`` (the notebook as it is now) with the outputs of ``executed`` (a papermill execution of a
    notebook with the same code cells): prose from ``current``, code cells and their outputs, the injected
    parameters cell and the execution metadata from ``executed``. Raises ValueError when the code differs."""
    def is_injected(c: nbformat.NotebookNode) -> bool:
        return "injected-parameters" in c.metadata.get("tags", [])

    done = [c for c in executed.cells if c.cell_type == "code" and not is_injected(c)]
    injected = [c for c in executed.cells if is_injected(c)]
    code = [c for c in current.cells if c.cell_type == "code"]
    if [c.source for c in done] != [c.source for c in code]:
        raise ValueError("the executed notebook has other code cells")
    out = copy.deepcopy(executed)
    cells, it = [], iter(done)
    for c in current.cells:
        if c.cell_type != "code":
            cells.append(copy.deepcopy(c))
            continue
        cells.append(copy.deepcopy(next(it)))
        if "parameters" in c.metadata.get("tags", []):
            cells.extend(copy.deepcopy(injected))
    out.cells = cells
    return out


def _cached_or_execute(nb: str, out: str, parameters: dict[str, Any], cwd: str, cached: str | None,
                       cell_timeout: int = CELL_TIMEOUT_S) -> tuple[str, float, str | None, bool]:
    """Reuse the outputs of ``cached`` (an executed notebook of the same key) when it exists, else execute;
    returns (notebook, seconds, error, reused)."""
    t0 = time.perf_counter()
    if cached and Path(cached).exists():
        try:
            merged = reuse_outputs(nbformat.read(cached, as_version=4), nbformat.read(nb, as_version=4))
        except (ValueError, OSError, nbformat.reader.NotJSONError):
            pass  # a damaged or foreign cache entry: execute again
        else:
            with paths.atomic_path(out) as tmp:
                nbformat.write(merged, tmp)
            return nb, time.perf_counter() - t0, None, True
    nb, secs, err = _execute_one(nb, out, parameters, cwd, cell_timeout)
    if err is None and cached:
        Path(cached).parent.mkdir(parents=True, exist_ok=True)
        with paths.atomic_path(cached) as tmp:
            shutil.copyfile(out, tmp)
    return nb, secs, err, False


def execute_notebooks(profile: str, jobs: int = 1, seed: int | None = None, dataset: str | None = None,
                      only: list[str] | None = None, use_cache: bool = True, cell_timeout: int = CELL_TIMEOUT_S
                      ) -> Path:
    """Papermill-execute the book's notebooks into ``_build/src``; raises NotebookFailedError naming the first
    failure. With ``use_cache`` a notebook whose :func:`notebook_key` is unchanged since an earlier build (only
    its prose changed, or nothing) is not executed again: its earlier outputs are reused. A notebook whose kernel
    dies or whose cell runs past ``cell_timeout`` seconds is executed once more before it counts as failed."""
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
        futs = [pool.submit(_cached_or_execute, str(nb), str(src / nb.relative_to(root)), params, str(nb.parent),
                            str(cache_dir() / f"{nb.stem}-{notebook_key(nb, params)}.ipynb") if use_cache else None,
                            cell_timeout)
                for nb in nbs]
        for fut in as_completed(futs):
            nb, secs, err, reused = fut.result()
            name = Path(nb).relative_to(root)
            state = "FAILED " + err if err else ("outputs reused (code, parameters and runs unchanged)" if reused
                                                 else "ok")
            print(f"[synthex book] {name}: {state} ({secs:.0f} s)", flush=True)
            if err:
                failures.append(f"{name} {err}")
    if env_threads is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    if failures:
        raise NotebookFailedError("notebook execution failed: " + "; ".join(failures))
    return src


def _assignments(source: str) -> dict[str, Any]:
    """``name = literal`` assignments of a parameters cell, in order (other statements are skipped)."""
    out: dict[str, Any] = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                out[node.targets[0].id] = ast.unparse(node.value)
    return out


def parameters_note(defaults: dict[str, Any], injected: dict[str, Any]) -> str:
    """A collapsed MyST note listing the parameters a page was computed with (injected values marked)."""
    lines = [":::{admonition} Parameters of this build", ":class: dropdown note", ""]
    if injected:
        lines.append("Set for this build (papermill); the other values are the chapter's defaults.")
    else:
        lines.append("The chapter's default values.")
    lines.append("")
    for name in [*defaults, *[k for k in injected if k not in defaults]]:
        value = injected.get(name, defaults.get(name))
        mark = " (set for this build)" if name in injected else ""
        lines.append(f"* `{name} = {value!r}`{mark}")
    lines.append(":::")
    return "\n".join(lines)


def present_notebook(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """Prepare a notebook (in place) for the rendered book; returns counts of what was changed.

    * the cell tagged ``parameters`` and papermill's ``injected-parameters`` cell get ``remove-cell``, and
      a collapsed note listing the parameters (:func:`parameters_note`) takes their place;
    * ``# NBVAL_*`` marker lines are stripped from code sources (a cell left empty is removed);
    * stream outputs on stderr (warnings, progress bars, log lines) are dropped.
    """
    counts: dict[str, Any] = {"markers": 0, "stderr": 0, "first_stderr": ""}
    defaults: dict[str, Any] = {}
    injected: dict[str, Any] = {}
    anchor = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        if "parameters" in tags or "injected-parameters" in tags:
            (injected if "injected-parameters" in tags else defaults).update(_assignments(cell.source))
            anchor = i if anchor is None else anchor
            if REMOVE_TAG not in tags:
                cell.metadata["tags"] = [*tags, REMOVE_TAG]
            continue
        stripped, n = NBVAL_MARKER.subn("", cell.source)
        if n:
            counts["markers"] += n
            cell.source = stripped.strip("\n")
            if not cell.source.strip():
                cell.metadata["tags"] = [*tags, REMOVE_TAG]
        outputs = cell.get("outputs", [])
        kept = [o for o in outputs if not (o.get("output_type") == "stream" and o.get("name") == "stderr")]
        for o in outputs:
            if o not in kept and not counts.get("first_stderr"):
                counts["first_stderr"] = str(o.get("text", "")).strip().splitlines()[0][:160] if o.get("text") else ""
        counts["stderr"] += len(outputs) - len(kept)
        if "outputs" in cell:
            cell.outputs = kept
    if anchor is not None:
        nb.cells.insert(anchor, nbformat.v4.new_markdown_cell(parameters_note(defaults, injected)))
    return counts


def present_sources(src: Path) -> None:
    """Apply :func:`present_notebook` to every notebook of the book under ``src``, with one console line for
    each notebook whose stderr output was dropped (how many, and the first line of it)."""
    for nb_path in sorted(src.rglob("*.ipynb")):
        if ".ipynb_checkpoints" in nb_path.parts:
            continue
        nb = nbformat.read(nb_path, as_version=4)
        counts = present_notebook(nb)
        nbformat.write(nb, nb_path)
        if counts["stderr"]:
            print(f"[synthex book] {nb_path.relative_to(src)}: {counts['stderr']} stderr output(s) not shown "
                  f"(first: {counts['first_stderr']!r})", flush=True)


def assemble_sources(src: Path, use_committed: bool = False) -> None:
    """Copy the book's config, pages and ``_static`` into ``src`` (and, with ``use_committed``, the committed
    notebooks), then prepare every notebook there for readers (:func:`present_sources`)."""
    root = repo_root()
    src.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(root / name, src / name)
    shutil.rmtree(src / "_static", ignore_errors=True)
    for folder in ("book", "_static"):
        for path in (root / folder).rglob("*") if (root / folder).is_dir() else ():
            if path.is_file():
                dest = src / path.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
    if use_committed:
        for nb in notebooks(root):
            dest = src / nb.relative_to(root)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(nb, dest)
    present_sources(src)


def prune_images(html: Path) -> list[str]:
    """Delete the files of ``html/_images`` that no page (``*.html``) references; returns their names."""
    images = html / "_images"
    if not images.is_dir():
        return []
    text = "\n".join(p.read_text(encoding="utf-8", errors="replace") for p in html.rglob("*.html"))
    used = set(re.findall(r"_images/([^\"'\s)?#]+)", text))
    removed = []
    for f in sorted(images.iterdir()):
        if f.is_file() and f.name not in used:
            f.unlink()
            removed.append(f.name)
    return removed


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
    removed = prune_images(out / "html")
    if removed:
        print(f"[synthex book] removed {len(removed)} unreferenced image(s) from _images", flush=True)
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
