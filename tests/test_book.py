"""The book's structure: every TOC entry exists; every notebook has exactly one literal parameters cell."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from synthex_lib.experiments.book import notebooks, toc_files

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_toc_is_jb_book_and_every_entry_exists():
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    assert toc["format"] == "jb-book"
    for f in toc_files(ROOT):
        assert (ROOT / f"{f}.md").exists() or (ROOT / f"{f}.ipynb").exists(), f
    assert {p.name for p in notebooks(ROOT)} == {p.name for p in NOTEBOOKS}


def test_config_renders_papermill_outputs_without_executing():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    assert cfg["execute"]["execute_notebooks"] == "off"
    assert cfg["only_build_toc_files"] is True


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_one_parameters_cell_with_literal_values(path):
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    tree = ast.parse(cells[0].source)
    names = []
    for node in tree.body:
        assert isinstance(node, ast.Assign) and len(node.targets) == 1, f"{path.name}: only assignments allowed"
        ast.literal_eval(node.value)  # raises on a derived value
        names.append(node.targets[0].id)
    assert {"profile", "seed", "dataset"} <= set(names)
    assert dict(zip(names, [ast.literal_eval(n.value) for n in tree.body], strict=True))["profile"] == "smoke"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_hold_reference_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), f"{path.name}: run 'make nbval-refresh'"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name} stores an error output"


def _tiny_notebook(path: Path, body: str) -> None:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_papermill_execution_injects_parameters_and_names_failures(tmp_path):
    from synthex_lib.experiments.book import _execute_one

    good, bad = tmp_path / "good.ipynb", tmp_path / "bad.ipynb"
    _tiny_notebook(good, "print('profile is', profile)")
    _tiny_notebook(bad, "from synthex_lib.core.config import get_profile\nget_profile(profile)")
    name, _, err = _execute_one(str(good), str(tmp_path / "out.ipynb"), {"profile": "quick"}, str(tmp_path))
    assert err is None
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert "injected-parameters" in out.cells[1].metadata["tags"]
    assert "profile is quick" in out.cells[2].outputs[0]["text"]
    name, _, err = _execute_one(str(bad), str(tmp_path / "out2.ipynb"), {"profile": "huge"}, str(tmp_path))
    assert name.endswith("bad.ipynb")
    assert err.startswith("cell ") and "ConfigError" in err and "unknown profile 'huge'" in err


def test_coverage_page_names_only_pages_of_the_book():
    """The paper-to-book coverage table stays true: each page it links exists and is in _toc.yml."""
    root = Path(__file__).resolve().parents[1]
    text = (root / "book" / "coverage.md").read_text()
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    files = {toc["root"]} | {c["file"] for part in toc["parts"] for c in part["chapters"]}
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| paper item")]
    assert len(rows) >= 15
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 5, row
        links = re.findall(r"\]\(([^)]+)\)", cells[4])
        assert links, f"no page linked in {row}"
        for link in links:
            target = (root / "book" / link).resolve()
            assert target.exists(), f"{link} does not exist"
            rel = str(target.relative_to(root).with_suffix(""))
            assert rel in files, f"{rel} is not in _toc.yml"
    for item in ("Table 1", "Fig. 3b", "Fig. 4a-c", "Extended Data Table 6", "preprint Tables 4, 5"):
        assert item in text
