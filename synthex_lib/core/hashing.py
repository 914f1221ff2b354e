"""Hashing: file digests, stable digests of parameters, and digests of the code that makes an artefact.

Every cache of the project (lab cohorts, simulated datasets, training runs) is keyed by the
configuration it depends on plus :func:`code_digest` of the modules that produce it. The code
digest is computed from the modules themselves: the source of the named modules and of every
``synthex_lib`` module they import, transitively (module-level and in-function imports alike),
found by parsing their syntax trees. Nobody keeps a list of file names.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import json
import os
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

PACKAGE = "synthex_lib"
#: modules whose content enters every key as data (the configuration values), not as code
NOT_CODE = frozenset({"synthex_lib.core.config"})


def sha256_file(path: str | os.PathLike[str], block: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in ``block``-byte pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            h.update(chunk)
    return h.hexdigest()


#: name of the per-folder cache of :func:`sha256_cached` (file name -> size, mtime, inode, sha256)
SHA_CACHE = ".sha256-cache.json"


def sha256_cached(path: str | os.PathLike[str]) -> str:
    """:func:`sha256_file` of ``path``, cached in ``<folder>/.sha256-cache.json`` by size, mtime (ns) and inode,
    so that checking a large unchanged file again is instant; any change of the file re-hashes it. A cache
    that cannot be read or written (a read-only folder) is ignored."""
    p = Path(path)
    st = p.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    cache_file = p.parent / SHA_CACHE
    try:
        cache = json.loads(cache_file.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    hit = cache.get(p.name)
    if isinstance(hit, list) and len(hit) == 4 and hit[:3] == stamp and isinstance(hit[3], str):
        return hit[3]
    digest = sha256_file(p)
    cache[p.name] = [*stamp, digest]
    tmp = cache_file.with_name(f"{SHA_CACHE}.{os.getpid()}.part")
    try:
        tmp.write_text(json.dumps(cache, sort_keys=True))
        os.replace(tmp, cache_file)
    except OSError:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
    return digest


def json_default(o: Any) -> Any:
    """``json.dumps(default=...)`` for numpy arrays and scalars, paths, tuples and sets."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, tuple | set | frozenset):
        return sorted(o) if isinstance(o, set | frozenset) else list(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")


def canonical_json(obj: Any) -> str:
    """The JSON text that every key hashes: sorted keys, tuples as lists, numpy scalars as Python numbers."""
    return json.dumps(obj, sort_keys=True, default=json_default, separators=(",", ":"))


def stable_hash(obj: Any, length: int = 16) -> str:
    """The first ``length`` hex digits of the sha256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:length]


def _module_file(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin)


def _imported_modules(name: str, path: Path) -> set[str]:
    """``synthex_lib`` modules imported anywhere in the file of module ``name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".") if is_pkg else name.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import module`
    return {m for m in out if m == PACKAGE or m.startswith(PACKAGE + ".")}


@cache
def module_closure(*roots: str) -> tuple[str, ...]:
    """The named modules and every ``synthex_lib`` module they import, transitively (sorted)."""
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        path = _module_file(name)
        if path is None:  # a name imported from a package (a function), not a module
            continue
        seen.add(name)
        todo.extend(_imported_modules(name, path) - seen)
        parent = name.rpartition(".")[0]
        if parent and parent not in seen:  # importing a.b.c runs a/__init__ and a/b/__init__
            todo.append(parent)
    return tuple(sorted(seen))


@cache
def code_digest(*roots: str) -> str:
    """sha256 (16 hex) of the source of ``roots`` and of every library module they import, transitively.

    Line endings are normalised, so a checkout on another OS gives the same digest. Modules in
    :data:`NOT_CODE` are left out: their values enter the keys as configuration.
    """
    h = hashlib.sha256()
    for name in module_closure(*roots):
        if name in NOT_CODE:
            continue
        path = _module_file(name)
        assert path is not None
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes().replace(b"\r\n", b"\n") + b"\0")
    return h.hexdigest()[:16]


def digest_modules(names: Iterable[str]) -> str:
    """:func:`code_digest` of several roots given as an iterable."""
    return code_digest(*sorted(set(names)))
