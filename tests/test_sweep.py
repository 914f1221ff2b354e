"""Sweeps: runs as Dask tasks, read back from the results store, failures recorded while the others go on,
and the same bytes whatever the number of workers."""

from __future__ import annotations

import json

import pytest

from synthex_lib.core.config import get_profile
from synthex_lib.experiments import sweep
from synthex_lib.experiments.results import strict_json
from synthex_lib.generate.engine import ensure_dataset

TINY = get_profile("smoke", epochs=1, max_iterations=2, unet_channels=(4, 8), batch_size=2)


@pytest.fixture()
def data(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    ensure_dataset("hip-controlled", TINY, domains=("real", "naive"), workers=0, progress=False)
    return tmp_path


def _strip(rec):
    """The computed content of a record as strict JSON text (NaN-safe comparison)."""
    return json.dumps(strict_json({k: rec[k] for k in ("run_id", "parameters", "metrics", "per_image", "history")}),
                      sort_keys=True)


def test_sweep_in_process_and_on_two_workers_give_the_same_results(data, tmp_path, monkeypatch):
    specs = sweep.hip_specs(TINY, domains=("naive",), presets=("none",))
    assert len(specs) == TINY.folds and specs[0].kwargs["test_group"] == "01"
    one = sweep.hip_sweep(TINY, domains=("naive",), presets=("none", "regular"), workers=0, progress=False)
    assert [r["parameters"]["dr_preset"] for r in one] == ["none", "regular"]
    for r in one:  # recompute in worker processes into a fresh results folder
        (data / "results" / "smoke" / f"{r['run_id']}.json").unlink()
    two = sweep.hip_sweep(TINY, domains=("naive",), presets=("none", "regular"), workers=2, progress=False)
    assert [_strip(a) for a in one] == [_strip(b) for b in two]


def test_a_failing_run_is_recorded_and_the_others_go_on(data, capsys):
    specs = [sweep.RunSpec("hip-controlled", TINY, {"train_domain": "naive", "dr_preset": "none",
                                                     "test_group": "01"}),
             sweep.RunSpec("hip-controlled", TINY, {"train_domain": "naive", "dr_preset": "no-such-preset",
                                                     "test_group": "01"})]
    out = sweep.run_sweep(specs, workers=0, progress=False)
    assert out[0]["status"] == "done"
    assert out[1]["status"] == "failed" and "no-such-preset" in out[1]["error"]
    failed = json.loads(open(out[1]["record"]).read())
    assert failed["arguments"]["dr_preset"] == "no-such-preset" and "Traceback" in failed["traceback"]


def test_sweep_command_trains_reads_back_and_names_bad_input(data, capsys):
    from synthex_lib.cli import main

    argv = ["sweep", "--profile", "smoke", "--domain", "naive", "--preset", "none", "--workers", "0", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "naive" in out and "none" in out
    stored = sorted((data / "results" / "smoke").glob("hip-controlled-*.json"))
    assert len(stored) == 1
    mtime = stored[0].stat().st_mtime_ns
    assert main(argv) == 0  # read back, not retrained
    assert stored[0].stat().st_mtime_ns == mtime
    capsys.readouterr()
    assert main(["sweep", "--profile", "smoke", "--domain", "cartoon"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--domain 'cartoon'" in err[0]
