"""The one-way architecture: every import of the library points down the pipeline, with no cycle.

Layers, bottom to top (ARCHITECTURE.md): a module may import its own layer's modules (without
a cycle) and any lower layer, never a higher one. In-function imports of the library are not
allowed at all; in-function imports of third-party packages only for the optional heavy back
ends listed in OPTIONAL, each with a reason comment on the line.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "synthex_lib"

#: bottom to top; each entry is a layer of top-level subpackages / modules of synthex_lib
LAYERS: list[tuple[str, ...]] = [
    ("core",),
    ("geometry",),
    ("anatomy",),
    ("simulate",),
    ("datasets",),
    ("realdata",),
    ("generate",),
    ("randomization",),
    ("learning",),
    ("adaptation",),
    ("experiments",),
    ("figures",),
    ("cli", "bench"),
]
#: third-party packages that may be imported inside functions: optional, heavy, or CUDA-only; and dask_jobqueue,
#: whose import installs signal handlers and so fails in a Dask worker's task thread
OPTIONAL = ("dask_jobqueue", "deepdrr", "killeengeo", "cupy", "diffdrr", "nanodrr", "albumentations", "torchio", "cv2",
            "voila")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def parse_graph(pkg: Path = PKG) -> tuple[dict[str, set[str]], list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    """(module -> imported library modules, in-function library imports, in-function third-party imports)."""
    root = pkg.parent
    files = {module_name(p) if pkg == PKG else ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(
        ".__init__"): p for p in pkg.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in files}
    lib_inner: list[tuple[str, int, str]] = []
    ext_inner: list[tuple[str, int, str]] = []
    top = pkg.name
    for mod, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        is_pkg = path.name == "__init__.py"

        def visit(node: ast.AST, in_func: bool, mod: str = mod, is_pkg: bool = is_pkg) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    targets = []
                    if isinstance(child, ast.ImportFrom):
                        if child.level:
                            base_parts = mod.split(".") if is_pkg else mod.split(".")[:-1]
                            base_parts = base_parts[: len(base_parts) - (child.level - 1)]
                            base = ".".join([*base_parts, child.module] if child.module else base_parts)
                        else:
                            base = child.module or ""
                        # `from pkg import module` imports the module; `from pkg import name` the package
                        subs = [f"{base}.{a.name}" for a in child.names if f"{base}.{a.name}" in files]
                        targets = subs if len(subs) == len(child.names) else [base, *subs]
                    else:
                        targets = [a.name for a in child.names]
                    lib = [t for t in targets if t == top or t.startswith(top + ".")]
                    for t in lib:
                        if t in files and t != mod:
                            graph[mod].add(t)
                    if in_func and lib:
                        lib_inner.append((mod, child.lineno, targets[0]))
                    elif in_func:
                        ext_inner.append((mod, child.lineno, targets[0]))
                visit(child, in_func or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda))

        visit(tree, False)
    return graph, lib_inner, ext_inner


def layer_of(mod: str) -> int | None:
    parts = mod.split(".")
    if len(parts) < 2:
        return None  # synthex_lib/__init__ (the version): importable from everywhere
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{mod} is in no layer: add its package to LAYERS and to ARCHITECTURE.md")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for a, targets in graph.items():
        la = layer_of(a)
        for b in targets:
            lb = layer_of(b)
            if la is not None and lb is not None and lb > la:
                out.append(f"{a} (layer {LAYERS[la]}) imports {b} (layer {LAYERS[lb]}), which is above it")
    return sorted(out)


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def _package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between a package's ``__init__`` and its submodules is a parent/child relation, not a cycle
    of design: we still forbid it, as importing the package runs ``__init__``."""
    return graph


GRAPH, LIB_INNER, EXT_INNER = parse_graph()


def test_every_module_is_in_a_layer():
    for mod in GRAPH:
        layer_of(mod)


def test_no_import_points_up_the_pipeline():
    assert upward_imports(GRAPH) == []


def test_no_import_cycle():
    assert cycles(_package_graph(GRAPH)) == []


def test_no_library_import_inside_a_function():
    assert [f"{m}:{line} imports {t}" for m, line, t in LIB_INNER] == []


def test_in_function_imports_only_for_optional_heavy_dependencies_with_a_reason():
    bad = []
    for mod, line, target in EXT_INNER:
        src = (ROOT / Path(*mod.split("."))).with_suffix(".py")
        if not src.exists():
            src = ROOT / Path(*mod.split(".")) / "__init__.py"
        text = src.read_text(encoding="utf-8").splitlines()[line - 1]
        if not target.startswith(OPTIONAL) or "# " not in text:
            bad.append(f"{mod}:{line} imports {target} inside a function ({text.strip()})")
    assert bad == []


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    pkg = tmp_path / "synthex_lib"
    for rel, text in files.items():
        p = pkg / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return pkg


def test_the_checks_fail_on_an_upward_import_and_on_a_cycle(tmp_path):
    pkg = _fake_package(tmp_path, {
        "__init__.py": "", "core/__init__.py": "", "core/a.py": "from synthex_lib.learning import b\n",
        "learning/__init__.py": "", "learning/b.py": "from synthex_lib.learning import c\n",
        "learning/c.py": "import synthex_lib.learning.b\n",
        "geometry.py": "def f():\n    from synthex_lib.core import a\n",
    })
    graph, inner, _ = parse_graph(pkg)
    assert upward_imports(graph) == [
        "synthex_lib.core.a (layer ('core',)) imports synthex_lib.learning.b (layer ('learning',)), which is above it"]
    assert cycles(graph) == [["synthex_lib.learning.b", "synthex_lib.learning.c"]]
    assert inner == [("synthex_lib.geometry", 2, "synthex_lib.core.a")]


def test_architecture_document_names_every_layer():
    text = (ROOT / "ARCHITECTURE.md").read_text()
    for names in LAYERS:
        for name in names:
            assert f"`{name}" in text, f"ARCHITECTURE.md does not mention the layer {name}"


@pytest.mark.parametrize("script", ["unguarded"])
def test_a_script_without_main_guard_finishes(tmp_path, script):
    """A plain script that runs Dask work at module level finishes (in this process) instead of hanging."""
    path = tmp_path / f"{script}.py"
    path.write_text("from synthex_lib.core.cluster import ClusterOptions, run_units\n"
                    "print(run_units(abs, [-1, -2, 3], ClusterOptions(workers=2), progress=False))\n")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[1, 2, 3]"
    err = [ln for ln in proc.stderr.splitlines() if "guard" in ln]
    assert len(err) == 1 and 'if __name__ == "__main__":' in err[0] and str(path) in err[0]


def test_a_guarded_script_uses_worker_processes(tmp_path):
    path = tmp_path / "guarded.py"
    path.write_text("import os\nfrom synthex_lib.core.cluster import ClusterOptions, run_units\n\n\n"
                    "def pid(_):\n    return os.getpid()\n\n\n"
                    "if __name__ == '__main__':\n"
                    "    pids = run_units(pid, [0, 1, 2], ClusterOptions(workers=2), progress=False)\n"
                    "    print(os.getpid() not in pids)\n")
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "True" and "guard" not in proc.stderr


def _nested(_):
    from synthex_lib.core.cluster import ClusterOptions, run_units

    return run_units(abs, [-4, 5], ClusterOptions(workers=2), progress=False)


def test_work_started_inside_a_worker_runs_in_that_worker():
    """A unit that itself calls run_units (e.g. a training run whose data must be generated) does not try
    to start worker processes from a daemonic worker."""
    from synthex_lib.core.cluster import ClusterOptions, run_units

    assert run_units(_nested, [0], ClusterOptions(workers=1), progress=False) == [[4, 5]]
