"""Where data, generated datasets and results live.

The root is ``$SYNTHEX_DATA`` when set; otherwise ``<checkout>/data`` when the library runs from
a source checkout (the folder holding ``pyproject.toml``), else ``~/.cache/synthex``. Layout::

    <root>/lab/<profile>/<cohort>/...     virtual cadaver lab specimens (NIfTI + markups JSON)
    <root>/sim/<profile>/<task>/...       simulated datasets (HDF5)
    <root>/results/<profile>/...          one JSON per training/evaluation run
    <root>/real/<dataset>/...             real datasets the user fetched or imported
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from synthex_lib.core.errors import ConfigError

_PKG = Path(__file__).resolve().parents[1]  # the synthex_lib package


def project_root() -> Path | None:
    """The source checkout holding this package, or None for an installed wheel."""
    root = _PKG.parent
    return root if (root / "pyproject.toml").exists() else None


def data_root() -> Path:
    env = os.environ.get("SYNTHEX_DATA")
    if env:
        root = Path(env).expanduser().resolve()
        if root.exists() and not root.is_dir():
            raise ConfigError(f"SYNTHEX_DATA={env} is a file, not a folder; point it to a folder (it is created "
                              "when missing)")
        return root
    root = project_root()
    return (root / "data") if root else Path.home() / ".cache" / "synthex"


def build_dir() -> Path:
    """Where ``synthex book`` writes (``<this>/src``, ``<this>/html``): ``$SYNTHEX_BUILD/_build`` when the
    environment variable is set (a read-only checkout, several builds side by side), else the checkout's
    ``_build``."""
    env = os.environ.get("SYNTHEX_BUILD")
    if env:
        base = Path(env).expanduser().resolve()
        if base.exists() and not base.is_dir():
            raise ConfigError(f"SYNTHEX_BUILD={env} is a file, not a folder; point it to a folder")
        return base / "_build"
    root = project_root()
    if root is None:
        raise ConfigError("synthex book needs a source checkout (notebooks/, book/, _toc.yml); run it there")
    return root / "_build"


def lab_dir(profile: str, cohort: str) -> Path:
    return data_root() / "lab" / profile / cohort


def sim_dir(profile: str, task: str) -> Path:
    return data_root() / "sim" / profile / task


def results_dir(profile: str) -> Path:
    return data_root() / "results" / profile


def real_dir(dataset: str) -> Path:
    return data_root() / "real" / dataset


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on error delete it.

    Nothing half-written is ever visible under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
