"""Running independent work units on a Dask cluster (or in this process).

Three kinds of cluster, chosen by :class:`ClusterOptions`:

* local (default): ``distributed.LocalCluster`` with ``n_workers`` worker *processes* and
  ``threads_per_worker=1`` (each unit then runs single-threaded, so results do not depend on
  the number of workers);
* an existing scheduler: ``scheduler="tcp://host:8786"`` (``dask scheduler`` / ``dask worker``
  started by the user);
* Slurm: ``slurm={...}`` keyword arguments of ``dask_jobqueue.SLURMCluster`` (``queue``,
  ``account``, ``cores``, ``memory``, ``walltime``, ``job_extra_directives`` ...) plus ``jobs``
  (how many batch jobs to start).

``workers=0`` runs the units one after the other in this process (no Dask): for debugging, the
tests and tiny jobs. Units are plain picklable objects; the function must be importable by the
workers (a module-level function of the library).

Local worker processes are started with ``spawn``, which imports the user's ``__main__`` script
again in every worker. A script that calls into the library at module level without an
``if __name__ == "__main__":`` guard would then start clusters recursively and hang; such a call is
detected (:func:`unguarded_script`) and its units run in this process instead, after one line
on stderr saying what to add for parallel workers. The bytes are the same either way.
"""

from __future__ import annotations

import ast
import multiprocessing
import os
import shutil
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, as_completed
from tqdm.auto import tqdm

from synthex_lib.core.errors import ConfigError
from synthex_lib.core.memory import MALLOC_ENV, tune_allocator

#: keys of ``ClusterOptions.slurm`` consumed here rather than passed to SLURMCluster
_SLURM_OWN_KEYS = ("jobs",)


@dataclass(frozen=True)
class ClusterOptions:
    """Where work units run.

    Attributes:
        workers: worker processes of the local cluster (None: one per CPU core, at most one per
            unit); 0: run in this process without Dask.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        slurm: keyword arguments of ``dask_jobqueue.SLURMCluster`` plus ``jobs`` (default 1);
            overrides ``workers``.
    """

    workers: int | None = None
    scheduler: str | None = None
    slurm: dict[str, Any] | None = field(default=None)

    def __post_init__(self) -> None:
        if self.workers is not None and (not isinstance(self.workers, int) or self.workers < 0):
            raise ConfigError(f"parameter 'workers' must be a non-negative integer, got {self.workers!r}")
        if self.scheduler is not None and self.slurm is not None:
            raise ConfigError("give either 'scheduler' (an existing cluster) or 'slurm' (a new one), not both")

    @property
    def in_process(self) -> bool:
        return self.workers == 0 and self.scheduler is None and self.slurm is None

    def check_reachable(self, timeout_s: float = 5.0) -> None:
        """Raise :class:`ConfigError` at once (not after Dask's 30 s timeout) when the scheduler does not answer
        or Slurm's ``sbatch`` is not on the PATH."""
        if self.scheduler is not None:
            addr = self.scheduler.split("://", 1)[-1]
            host, _, port = addr.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(f"parameter 'scheduler' must be an address like tcp://host:8786, got "
                                  f"{self.scheduler!r}")
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler {self.scheduler} ({exc.strerror or exc}); start "
                                  "it ('dask scheduler') or fix --scheduler") from None
        if self.slurm is not None and shutil.which("sbatch") is None:
            raise ConfigError("--slurm needs Slurm's 'sbatch' on the PATH, which is not found here; run on a Slurm "
                              "login node, or use --workers / --scheduler instead")


def make_slurm_cluster(options: dict[str, Any], scale: bool = True) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` built from ``options`` (its keyword arguments; ``jobs`` is
    removed and used to scale unless ``scale=False``). Defaults: one core and one process per job,
    4 GB, 1 hour."""
    # imported here: dask_jobqueue installs signal handlers at import, which fails outside the main thread
    # (a Dask worker's task thread importing this module)
    from dask_jobqueue import SLURMCluster  # only for Slurm clusters: signal handlers at import

    kwargs = {k: v for k, v in options.items() if k not in _SLURM_OWN_KEYS}
    kwargs.setdefault("cores", 1)
    kwargs.setdefault("processes", 1)
    kwargs.setdefault("memory", "4GB")
    kwargs.setdefault("walltime", "01:00:00")
    try:
        cluster = SLURMCluster(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"invalid Slurm option: {exc}") from None
    jobs = int(options.get("jobs", 1))
    if jobs < 1:
        cluster.close()
        raise ConfigError(f"Slurm option 'jobs' must be >= 1, got {jobs}")
    if scale:
        cluster.scale(jobs=jobs)
    return cluster


def parse_slurm_options(items: Sequence[str]) -> dict[str, Any]:
    """``["queue=gpu", "cores=4", "memory=16GB", "jobs=10"]`` -> SLURMCluster keyword arguments.

    Integers and floats are converted; a value with commas becomes a list (for
    ``job_extra_directives=--gres=gpu:1,--exclusive``).
    """
    out: dict[str, Any] = {}
    for it in items:
        if "=" not in it:
            raise ConfigError(f"Slurm option {it!r} must be KEY=VALUE (e.g. queue=short, cores=4, jobs=10)")
        k, v = it.split("=", 1)
        k = k.strip().replace("-", "_")
        val: Any = v.strip()
        if "," in val:
            val = [s for s in val.split(",") if s]
        else:
            for conv in (int, float):
                try:
                    val = conv(val)
                    break
                except ValueError:
                    continue
        out[k] = val
    return out


@lru_cache(maxsize=16)
def _guarded_lines(path: str) -> tuple[tuple[int, int], ...]:
    """Line ranges of the bodies of ``if __name__ == "__main__":`` blocks in a script."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return ()
    out = []
    for node in tree.body:
        if isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test):
            out.append((node.body[0].lineno, max(getattr(n, "end_lineno", n.lineno) for n in node.body)))
    return tuple(out)


def unguarded_script() -> str | None:
    """The path of the ``__main__`` script when this call comes from its module-level code outside an
    ``if __name__ == "__main__":`` block, or when this process is a spawned child still importing its
    parent's script; else None (notebooks, ``python -m``, guarded scripts, the ``synthex`` command)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if main is None or not path or not str(path).endswith(".py"):
        return None
    if multiprocessing.parent_process() is not None and main.__name__ == "__mp_main__":
        return str(path)
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals.get("__name__") == "__main__":
            line = frame.f_lineno
            inside = any(a <= line <= b for a, b in _guarded_lines(frame.f_code.co_filename))
            return None if inside else str(path)
        frame = frame.f_back
    return None


def run_units(fn: Callable[..., Any], units: Sequence[Any], options: ClusterOptions, *,
              shared: Callable[[Any], Any] | None = None, desc: str = "units", progress: bool = True) -> list[Any]:
    """Run ``fn(unit, *extra)`` for every unit; returns the results in the order of ``units``.

    ``shared(unit)`` optionally returns a large object the unit needs (for example a specimen);
    equal objects (same ``id``) are sent once per cluster (``Client.scatter``). The first failing
    unit's exception is raised after the cluster is shut down; units finished before it keep
    their outputs (the caller's resume logic skips them next time).
    """
    units = list(units)
    if not units:
        return []
    script = None if options.in_process or options.scheduler or options.slurm else unguarded_script()
    if script is not None:
        print(f"synthex: {script} calls the library at module level without an 'if __name__ == \"__main__\":' "
              f"guard, which worker processes need; running {len(units)} unit(s) in this process (add the guard "
              "for parallel workers)", file=sys.stderr)
    # a worker process of a cluster (daemonic) cannot start worker processes of its own: nested work runs here
    nested = not options.in_process and multiprocessing.current_process().daemon and not options.scheduler \
        and not options.slurm
    if options.in_process or script is not None or nested:
        tune_allocator()
        out = []
        for u in tqdm(units, desc=desc, disable=not progress):
            out.append(fn(u, shared(u)) if shared else fn(u))
        return out

    options.check_reachable()
    cluster = None
    if options.scheduler is not None:
        client = Client(options.scheduler)
    else:
        if options.slurm is not None:
            cluster = make_slurm_cluster(options.slurm)
        else:
            n = options.workers or (os.cpu_count() or 1)
            environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **MALLOC_ENV}
            with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
                cluster = LocalCluster(n_workers=max(1, min(n, len(units))), threads_per_worker=1, processes=True,
                                       dashboard_address=":0", silence_logs=40)
        client = Client(cluster)
    try:
        futures = []
        scattered: dict[int, Any] = {}
        for i, u in enumerate(units):
            args = [u]
            if shared is not None:
                obj = shared(u)
                key = id(obj)
                if key not in scattered:
                    scattered[key] = client.scatter(obj, broadcast=False, hash=False)
                args.append(scattered[key])
            futures.append(client.submit(fn, *args, key=f"{desc}-{i}", pure=False, retries=0))
        index = {f.key: i for i, f in enumerate(futures)}
        results: list[Any] = [None] * len(units)
        with tqdm(total=len(units), desc=desc, disable=not progress) as bar:
            for fut in as_completed(futures):
                results[index[fut.key]] = fut.result()  # raises the unit's exception
                bar.update(1)
        return results
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def describe(options: ClusterOptions) -> str:
    """One line saying where units run."""
    if options.in_process:
        return "in this process"
    if options.scheduler:
        return f"on the Dask scheduler {options.scheduler}"
    if options.slurm is not None:
        return f"on a Slurm cluster ({options.slurm.get('jobs', 1)} job(s))"
    return f"on a local Dask cluster ({options.workers or os.cpu_count()} worker process(es))"

