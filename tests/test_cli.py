"""The ``synthex`` command: help with examples everywhere, one clear line for bad parameters."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from synthex_lib.cli import SUBCOMMANDS, build_parser, main


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert name in out
    assert "examples:" in out


@pytest.mark.parametrize("name", list(SUBCOMMANDS))
def test_every_subcommand_has_help_with_an_example(name, capsys):
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower() and f"synthex {name}" in out
    assert len(build_parser()._subparsers._group_actions[0].choices[name].description or "") > 20


@pytest.mark.parametrize("argv", [["train", "--profile", "huge"], ["profiles", "--name", "huge"],
                                  ["results", "--profile", "huge"]])
def test_unknown_profile_is_one_line(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown profile 'huge'" in err[0] and "smoke, quick, full, paper" in err[0]


def test_console_script_runs():
    exe = Path(sys.executable).with_name("synthex")
    proc = subprocess.run([str(exe), "profiles", "--name", "paper"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "18,000" not in proc.stderr
    assert "image_size" in proc.stdout and "360" in proc.stdout
    assert "paper: chest:real: epochs=50" in proc.stdout  # the per-task schedules are listed too
