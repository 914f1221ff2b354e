"""The book's structure: every TOC entry exists; every notebook has exactly one literal parameters cell."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
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


# ---- presentation of the notebooks in the rendered book (experiments.book.present_notebook) ----------------------

def _presented(tmp_path: Path, injected: bool = True) -> tuple[nbformat.NotebookNode, dict]:
    from synthex_lib.experiments.book import present_notebook

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "smoke"\nseed = 0\ncopies = 3')
    params.metadata["tags"] = ["parameters"]
    cells = [nbformat.v4.new_markdown_cell("# Title"), params]
    if injected:
        inj = nbformat.v4.new_code_cell('# Parameters\nprofile = "quick"\n')
        inj.metadata["tags"] = ["injected-parameters"]
        cells.append(inj)
    code = nbformat.v4.new_code_cell("# NBVAL_IGNORE_OUTPUT\nx = 1\n  # NBVAL_CHECK_OUTPUT\nprint(x)")
    code.outputs = [nbformat.v4.new_output("stream", name="stderr", text="UserWarning: noisy\n"),
                    nbformat.v4.new_output("stream", name="stdout", text="1\n")]
    only_marker = nbformat.v4.new_code_cell("# NBVAL_SKIP")
    cells += [code, only_marker]
    nb.cells = cells
    return nb, present_notebook(nb)


def test_present_notebook_hides_parameters_markers_and_logs(tmp_path):
    nb, counts = _presented(tmp_path)
    tags = {i: c.metadata.get("tags", []) for i, c in enumerate(nb.cells)}
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])][0]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])][0]
    assert "remove-cell" in params.metadata["tags"] and "remove-cell" in injected.metadata["tags"]
    note = nb.cells[1]
    assert note.cell_type == "markdown" and "Parameters of this build" in note.source
    assert "`profile = 'quick'` (set for this build)" in note.source
    assert "`seed = 0`" in note.source and "`copies = 3`" in note.source and "smoke" not in note.source
    code = [c for c in nb.cells if c.cell_type == "code" and "print(x)" in c.source][0]
    assert "NBVAL" not in code.source and code.source == "x = 1\nprint(x)"
    assert [o["name"] for o in code.outputs] == ["stdout"]
    assert counts["markers"] == 3 and counts["stderr"] == 1 and counts["first_stderr"] == "UserWarning: noisy"
    empty = [c for c in nb.cells if c.cell_type == "code" and not c.source.strip()]
    assert empty and all("remove-cell" in c.metadata["tags"] for c in empty)
    assert all("remove-cell" not in t for i, t in tags.items() if nb.cells[i].cell_type == "markdown")


def test_present_notebook_without_papermill_lists_the_defaults(tmp_path):
    nb, _ = _presented(tmp_path, injected=False)
    note = nb.cells[1].source
    assert "default values" in note and "`profile = 'smoke'`" in note and "set for this build" not in note


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebooks_keep_their_nbval_markers_and_render_without_them(path):
    """nbval reads the markers from the committed sources; the page must not show them."""
    from synthex_lib.experiments.book import present_notebook

    nb = nbformat.read(path, as_version=4)
    n_markers = sum(c.source.count("# NBVAL_") for c in nb.cells if c.cell_type == "code")
    counts = present_notebook(nb)
    assert counts["markers"] == n_markers
    assert not any("NBVAL_" in c.source for c in nb.cells if c.cell_type == "code")
    assert sum("Parameters of this build" in c.source for c in nb.cells if c.cell_type == "markdown") == 1


def test_prune_images_removes_only_unreferenced_files(tmp_path):
    from synthex_lib.experiments.book import prune_images

    html = tmp_path / "html"
    (html / "_images").mkdir(parents=True)
    (html / "notebooks").mkdir()
    for name in ("used.png", "also-used.png", "stale.png"):
        (html / "_images" / name).write_bytes(b"png")
    (html / "index.html").write_text('<img src="_images/used.png" alt="">')
    (html / "notebooks" / "a.html").write_text("<img src='../_images/also-used.png'>")
    assert prune_images(html) == ["stale.png"]
    assert sorted(p.name for p in (html / "_images").iterdir()) == ["also-used.png", "used.png"]
    assert prune_images(tmp_path / "missing") == []


# ---- configuration and pages ---------------------------------------------------------------------------------------

def test_config_loads_no_thebe_and_one_search_box():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text())
    sph = cfg["sphinx"]
    assert sph["recursive_update"] is True
    exts = sph["config"]["extensions"]
    assert "sphinx_thebe" not in exts
    from jupyter_book.config import get_default_sphinx_config

    assert set(exts) == set(get_default_sphinx_config()["extensions"]) - {"sphinx_thebe"}
    assert sph["config"]["html_theme_options"]["navbar_persistent"] == []
    assert (ROOT / "_static" / "book.css").exists()
    assert "pre-wrap" in (ROOT / "_static" / "book.css").read_text()


def test_references_and_data_pages_link_the_paper_and_every_dataset_doi():
    refs = (ROOT / "book" / "references.md").read_text()
    data = (ROOT / "book" / "data.md").read_text()
    for link in ("https://doi.org/10.1038/s42256-023-00629-1", "https://arxiv.org/abs/2206.06127",
                 "https://github.com/arcadelab/SyntheX"):
        assert link in refs and link in data, link
    dois = set()
    for manifest in sorted((ROOT / "data_manifests").glob("*.yaml")):
        m = yaml.safe_load(manifest.read_text())
        for section in ("source", "citation"):
            doi = (m.get(section) or {}).get("doi")
            if doi:
                dois.add(doi)
    assert len(dois) >= 10
    missing = [d for d in sorted(dois) if f"https://doi.org/{d}" not in data]
    assert not missing, f"book/data.md lacks a link to {missing}"


def test_pages_carry_no_developer_wording():
    pages = [p.read_text() for p in (ROOT / "book").glob("*.md")]
    for path in NOTEBOOKS:
        if path.name == "02_domain_randomization.ipynb":
            continue  # owned elsewhere
        nb = nbformat.read(path, as_version=4)
        pages += [c.source for c in nb.cells if c.cell_type == "markdown"]
    text = "\n".join(pages).lower()
    for phrase in ("the issue", "an open issue", "development machine", "tests/test_", "todo"):
        assert phrase not in text, phrase


# ---- the book's figures and tables (synthex_lib.figures.style, .tables, .overlay) ----------------------------------

def test_one_label_colour_map_and_a_colour_blind_safe_palette():
    from synthex_lib.figures import lab, overlay, plots, simulation, style

    assert plots.LABEL_CMAP is style.LABEL_CMAP is overlay.LABEL_CMAP is simulation.LABEL_CMAP
    assert lab.LABEL_COLOURS is style.LABEL_COLORS and len(set(style.LABEL_COLORS)) == 6
    okabe = set(style.OKABE_ITO.values())
    assert set(style.LABEL_COLORS) <= okabe and set(style.DOMAIN_COLORS.values()) <= okabe
    assert style.domain_color("real strong DR") == style.GOLD
    others = [style.domain_color(f"{d} regular DR") for d in ("realistic", "heuristic", "naive")]
    assert len(set(others)) == 3 and style.GOLD not in others and style.OKABE_ITO["yellow"] not in others
    assert style.domain_color("something else") != style.GOLD


def test_book_resolution_is_at_least_100_dpi_at_column_width():
    import matplotlib as mpl

    from synthex_lib.figures import style

    assert mpl.rcParams["savefig.dpi"] >= 100 and style.BOOK_DPI >= 100
    assert style.COLUMN_IN * mpl.rcParams["savefig.dpi"] >= 700  # wider than the ~700 CSS px text column


def test_robust_window_ignores_dropouts_and_shared_window_keeps_intensity_changes():
    from synthex_lib.core.seeding import seeded_rng
    from synthex_lib.figures.style import robust_window, shared_window

    rng = seeded_rng(0, "test-robust-window")
    img = 4.3 + 1.7 * rng.random((64, 64))
    holes = img.copy()
    holes.ravel()[rng.choice(img.size, img.size // 10, replace=False)] = 0.0  # 10 % dropout
    lo, hi = robust_window(holes)
    assert lo > 0.6 * img.min() and hi == pytest.approx(img.max(), abs=1e-9)  # the holes at 0 lie outside it
    lo, hi = shared_window([img, 0.5 * img, 1.5 * img])
    assert lo == pytest.approx(0.5 * img.min(), rel=1e-6) and hi == pytest.approx(1.5 * img.max(), rel=1e-6)
    assert robust_window(np.full((4, 4), 2.0)) == (1.5, 2.5)


def test_gallery_rows_share_one_window_fill_the_column_and_have_a_legend():
    import matplotlib.pyplot as plt

    from synthex_lib.figures.overlay import effect_gallery
    from synthex_lib.figures.phantom import disc_phantom
    from synthex_lib.figures.style import COLUMN_IN

    sample = disc_phantom(96, radius=4.0)
    fig = effect_gallery(sample, presets=("regular",), copies=2, only=("multiply", "dropout"))
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_IN)
    axes = np.array(fig.axes).reshape(3, 3)
    for row in axes:
        clims = {ax.images[0].get_clim() for ax in row}
        assert len(clims) == 1, clims
    mult = axes[1]
    means = [float(np.mean(ax.images[0].get_array())) for ax in mult]
    lo, hi = mult[0].images[0].get_clim()
    assert lo <= min(means) and hi >= max(means) and lo < means[0] < hi
    assert fig.legends and any("left femur" in t.get_text() for t in fig.legends[0].get_texts())
    plt.close(fig)


def test_book_html_shows_whole_cells_no_bare_index_and_reader_values():
    from synthex_lib.figures.tables import book_html

    long = "6 cadavers (366 CIOS Fusion X-rays) + 1 imaged with Loop-X (60 X-rays), " * 3
    df = pd.DataFrame({"cohort": ["lab", "chest"], "paper": [long, "143 CTs"], "x": [0.1234567, 12345.6],
                       "cross-scanner": [True, False], "P": [0.0004, 0.51234], "n": [np.nan, 3.0]})
    html = book_html(df)
    assert long.strip() in html and "..." not in html
    assert "<th>0</th>" not in html and ">0<" not in html  # no 0..n-1 index column
    assert ">0.1235<" in html and ">12,346<" in html and ">yes<" in html and ">no<" in html
    assert "&lt; 0.001" in html and ">0.51<" in html and ">–<" in html
    assert 'class="book-table-wrap"' in html
    named = book_html(pd.DataFrame({"v": [1.5]}, index=pd.Index(["naive"], name="domain")))
    assert ">naive<" in named and ">domain<" in named
    assert book_html(df) == html  # deterministic: stored outputs compare equal


def test_style_claims_words_and_p_values():
    from synthex_lib.figures.tables import style_claims

    df = pd.DataFrame({"claim": ["a beats b", "a beats b", "c on par with d"], "metric": ["Dice", "mm", "Dice"],
                       "P": [0.012345, 0.5, np.nan], "P (Holm)": ["0.037", "< 0.001", "n/a"],
                       "held here": [True, False, None]})
    out = style_claims(df)
    assert list(out["P"]) == ["0.012", "0.5", "n/a"]
    assert list(out["P (Holm)"]) == ["0.037", "< 0.001", "n/a"]
    assert list(out["held here"]) == ["held", "not held", "not testable"]
    assert out.index.name == "claim"
    gated = style_claims(df.assign(testable=[True, False, True]))
    assert list(gated["held here"]) == ["held", "not testable", "not testable"] and "testable" not in gated
    wide = style_claims(pd.DataFrame({"claim": ["a"], "test": ["t"], "pairs": [3], "paper": ["held"],
                                      "verdict": ["held"], "metric": ["Dice"]}))
    assert list(wide.columns) == ["metric", "verdict", "paper", "test", "pairs"]  # the verdict in view first


def test_with_paper_detection_puts_the_papers_rate_beside_ours():
    from synthex_lib.figures.tables import PAPER_ACTIVATION_PERCENT, with_paper_detection

    df = pd.DataFrame({"train domain": ["real", "realistic-x"], "detected (ours)": ["40%", "38%"],
                       "landmark mm (paper: preprint Tables 4-5)": ["8.93 ± 19.76", "n/a"]})
    out = with_paper_detection(df)
    cols = list(out.columns)
    assert cols.index("detected (paper: preprint Table 5)") == cols.index("detected (ours)") + 1
    assert list(out["detected (paper: preprint Table 5)"]) == [f"{PAPER_ACTIVATION_PERCENT} %", "–"]
    rows = pd.DataFrame({"landmarks activated": ["40%", "at NCC > 0.9"]}, index=["ours (lab)", "paper (preprint)"])
    assert with_paper_detection(rows).loc["paper (preprint)", "landmarks activated"] == "90 %"


def test_a_notebook_whose_prose_changed_reuses_its_outputs_and_one_whose_code_changed_runs(tmp_path, monkeypatch):
    from synthex_lib.experiments.book import _cached_or_execute, notebook_key

    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    nb_path, out = tmp_path / "ch.ipynb", tmp_path / "out.ipynb"
    _tiny_notebook(nb_path, "import time\nfrom synthex_lib.core import seeding\nprint('ran at', time.time_ns())")
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.insert(1, nbformat.v4.new_markdown_cell("First words."))
    nbformat.write(nb, nb_path)
    params = {"profile": "quick"}
    key = notebook_key(nb_path, params)
    cached = tmp_path / "cache" / f"ch-{key}.ipynb"
    _, _, err, reused = _cached_or_execute(str(nb_path), str(out), params, str(tmp_path), str(cached))
    assert err is None and not reused and cached.exists()
    first = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"]

    nb.cells[1].source = "Other words."  # prose only: same key, outputs reused, new prose shown
    nbformat.write(nb, nb_path)
    assert notebook_key(nb_path, params) == key
    _, _, err, reused = _cached_or_execute(str(nb_path), str(out), params, str(tmp_path), str(cached))
    shown = nbformat.read(out, as_version=4)
    assert reused and shown.cells[-1].outputs[0]["text"] == first
    assert [c.source for c in shown.cells if c.cell_type == "markdown"] == ["Other words."]
    assert "injected-parameters" in shown.cells[1].metadata["tags"]  # right after the parameters cell

    assert notebook_key(nb_path, {"profile": "smoke"}) != key  # other parameters
    (tmp_path / "data" / "results" / "quick").mkdir(parents=True)
    (tmp_path / "data" / "results" / "quick" / "hip-controlled-0.json").write_text("{}")
    assert notebook_key(nb_path, params) != key  # another run in the store
    (tmp_path / "data" / "results" / "quick" / "hip-controlled-0.json").unlink()
    nb.cells[-1].source += "\nprint('more')"  # code: another key
    nbformat.write(nb, nb_path)
    assert notebook_key(nb_path, params) != key


def _code_notebook(path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell{i}"
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def test_a_dead_or_hung_kernel_is_retried_once_and_a_cell_error_is_not(tmp_path, capsys):
    from synthex_lib.experiments.book import _execute_one

    mark = tmp_path / "died-once"
    dies = _code_notebook(tmp_path / "dies.ipynb",
                          f"import os, pathlib\np = pathlib.Path({str(mark)!r})\n"
                          "if not p.exists():\n    p.write_text('x')\n    os._exit(1)\nprint('second try')")
    nb, _, err = _execute_one(str(dies), str(tmp_path / "out1.ipynb"), {}, str(tmp_path))
    assert err is None and mark.exists()
    assert "executing it again (1 of 1)" in capsys.readouterr().out
    assert "second try" in (tmp_path / "out1.ipynb").read_text()
    hangs = _code_notebook(tmp_path / "hangs.ipynb", "import time\ntime.sleep(60)")
    _, secs, err = _execute_one(str(hangs), str(tmp_path / "out2.ipynb"), {}, str(tmp_path), cell_timeout=2)
    assert err is not None and "Timeout" in err and secs < 50  # two tries of 2 s each, plus kernel starts
    assert capsys.readouterr().out.count("executing it again") == 1
    raises = _code_notebook(tmp_path / "raises.ipynb", "raise ValueError('bad parameter')")
    _, _, err = _execute_one(str(raises), str(tmp_path / "out3.ipynb"), {}, str(tmp_path))
    assert "ValueError: bad parameter" in err and "executing it again" not in capsys.readouterr().out
