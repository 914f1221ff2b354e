"""The emulated scanner's scatter, material and noise code share nothing with the training projectors.

The import closure (within ``synthex_lib``) of :mod:`synthex_lib.simulate.scanner` and of every module
of :mod:`synthex_lib.simulate.reality` is computed by parsing the modules with ``ast`` (as
``tests/test_architecture.py`` and :func:`synthex_lib.core.hashing.module_closure` find imports); no module
of :mod:`synthex_lib.simulate.physics` and not :mod:`synthex_lib.simulate.projectors` may be in it. The ray
marcher :mod:`synthex_lib.simulate.raymarch` (pure geometry) is shared.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from synthex_lib.core.hashing import module_closure

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = ("synthex_lib.simulate.physics", "synthex_lib.simulate.projectors")


def _files(pkg_dir: Path) -> dict[str, Path]:
    root = pkg_dir.parent
    out = {}
    for p in pkg_dir.rglob("*.py"):
        parts = p.relative_to(root).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def _imports(mod: str, path: Path, files: dict[str, Path], top: str) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if (m == top or m.startswith(top + ".")) and m in files}


def closure(roots: list[str], pkg_dir: Path) -> set[str]:
    """Modules of the package at ``pkg_dir`` imported (directly or transitively) by ``roots``, roots included;
    importing ``a.b.c`` also runs ``a/__init__`` and ``a/b/__init__``."""
    files = _files(pkg_dir)
    top = pkg_dir.name
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        m = todo.pop()
        if m in seen or m not in files:
            continue
        seen.add(m)
        todo.extend(_imports(m, files[m], files, top) - seen)
        parent = m.rpartition(".")[0]
        if parent:
            todo.append(parent)
    return seen


def forbidden_in(mods: set[str]) -> list[str]:
    return sorted(m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))


def _reality_roots() -> list[str]:
    return ["synthex_lib.simulate.scanner", *sorted(m for m in _files(ROOT / "synthex_lib")
                                                       if m.startswith("synthex_lib.simulate.reality"))]


def test_scanner_and_reality_import_no_training_physics():
    roots = _reality_roots()
    assert "synthex_lib.simulate.reality.montecarlo" in roots and "synthex_lib.simulate.reality.flatfield" in roots
    mods = closure(roots, ROOT / "synthex_lib")
    assert "synthex_lib.simulate.raymarch" in mods  # the shared geometry is found, so the parser works
    assert forbidden_in(mods) == []
    # the library's own closure (used for the cache keys) agrees
    assert forbidden_in(set(module_closure(*roots))) == []


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text, encoding="utf-8")


@pytest.mark.parametrize("how", ["absolute", "relative", "from-package", "plain-import"])
def test_the_closure_finds_a_forbidden_import_added_transitively(tmp_path: Path, how: str):
    pkg = tmp_path / "synthex_lib"
    for rel in ("__init__.py", "simulate/__init__.py", "simulate/physics/__init__.py", "simulate/physics/scatter.py",
                "simulate/projectors.py", "simulate/raymarch.py", "simulate/reality/__init__.py"):
        _write(pkg, rel, "")
    _write(pkg, "simulate/scanner.py", "from synthex_lib.simulate.reality import helper\n"
                                       "from synthex_lib.simulate.raymarch import line_integrals\n")
    clean = "import numpy as np\n"
    bad = {"absolute": "from synthex_lib.simulate.physics.scatter import scatter_estimate\n",
           "relative": "from ..physics import scatter\n",
           "from-package": "from synthex_lib.simulate import projectors\n",
           "plain-import": "import synthex_lib.simulate.physics.scatter\n"}[how]
    _write(pkg, "simulate/reality/helper.py", clean)
    assert forbidden_in(closure(["synthex_lib.simulate.scanner"], pkg)) == []
    _write(pkg, "simulate/reality/helper.py", clean + bad)
    found = forbidden_in(closure(["synthex_lib.simulate.scanner"], pkg))
    assert found, f"a {how} import of the training physics went unnoticed"
