"""The two dependency lists agree, torch is pinned everywhere, and the book tooling is bounded."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_lists_the_same_pins_as_pyproject():
    pp = _pyproject()["project"]
    wanted = {_norm(r) for r in pp["dependencies"] + pp["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip_section if not r.startswith("-")}
    assert listed == wanted
    assert "python=3.11" in env["dependencies"]


def test_every_main_dependency_is_pinned_or_bounded():
    for req in _pyproject()["project"]["dependencies"]:
        assert re.search(r"==|>=.*<|~=", req), f"unpinned dependency {req}"


def test_jupyter_book_has_floor_and_ceiling():
    reqs = [r for r in _pyproject()["project"]["dependencies"] if r.lower().startswith("jupyter-book")]
    assert reqs == ["jupyter-book>=1.0.4.post1,<2"]


def test_torch_pinned_in_pyproject_and_constraints():
    assert "torch==2.13.0" in _pyproject()["project"]["dependencies"]
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    assert "torch==2.13.0" in lines
    pinned = [ln for ln in lines if ln and not ln.startswith("#")]
    assert all("==" in ln for ln in pinned)


def test_console_entry_point():
    assert _pyproject()["project"]["scripts"]["synthex"] == "synthex_lib.cli:main"
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt torch==2.13.0" in makefile
    assert (ROOT / ".ci" / "run").read_text().strip().endswith("make test")
