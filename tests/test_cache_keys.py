"""Every cache is keyed by exactly what it depends on: datasets ignore training fields, runs cover every
training field, the dataset key and the code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import pytest

from synthex_lib.core.config import TrainConfig, get_profile
from synthex_lib.core.hashing import code_digest, module_closure, stable_hash
from synthex_lib.experiments import hip_scaled
from synthex_lib.experiments.hip import RUN_CODE_ROOTS, run_parameters
from synthex_lib.experiments.results import run_id
from synthex_lib.generate.cache import dataset_dir, dataset_key

ROOT = Path(__file__).resolve().parents[1]
#: a value different from the quick profile's for each training field
OTHER = {"image_size": 80, "epochs": 7, "batch_size": 3, "optimizer": "sgd", "lr": 0.0123, "momentum": 0.5,
         "weight_decay": 3e-4, "lr_step_epochs": 3, "lr_gamma": 0.25, "max_iterations": 11,
         "unet_channels": (4, 8), "heatmap_sigma_px": 1.25, "val_fraction": 0.25, "cpu_threads": 3,
         "network": "transunet", "dr_reference_px": 180, "min_epochs": 3, "lr_schedule": "step",
         "cpu_precision": "float32"}


def _run_id(profile, **kw):
    return run_id("hip-controlled", run_parameters(profile, 0, "lab", "realistic", "strong", "01", 0.9, **kw))


def test_other_covers_every_training_field():
    assert set(OTHER) == {f.name for f in fields(TrainConfig)}


@pytest.mark.parametrize("field", sorted(OTHER))
def test_a_training_field_changes_the_run_key_but_not_the_dataset(field, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    base = get_profile("quick")
    changed = get_profile("quick", **{field: OTHER[field]})
    assert dataset_key("hip-controlled", changed) == dataset_key("hip-controlled", base)
    assert dataset_dir("hip-controlled", changed) == dataset_dir("hip-controlled", base)
    assert _run_id(changed) != _run_id(base)


@pytest.mark.parametrize("field,value", [("ct_spacing_mm", 2.5), ("lab_specimens", 5), ("detector_px", 96),
                                         ("real_per_specimen", 8), ("sim_per_specimen", 12)])
def test_a_lab_or_simulation_field_changes_the_dataset_and_the_run(field, value, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path))
    base = get_profile("quick")
    changed = get_profile("quick", **{field: value})
    assert dataset_key("hip-controlled", changed) != dataset_key("hip-controlled", base)
    assert dataset_dir("hip-controlled", changed) != dataset_dir("hip-controlled", base)
    assert _run_id(changed) != _run_id(base)


def test_the_dataset_source_path_is_in_the_run_key():
    p = get_profile("smoke")
    assert _run_id(p, data_path="/a/deepfluoro.h5") != _run_id(p, data_path="/b/deepfluoro.h5")


def test_the_code_closure_is_found_from_the_modules():
    closure = module_closure(*RUN_CODE_ROOTS)
    for needed in ("synthex_lib.learning.training", "synthex_lib.learning.losses", "synthex_lib.learning.models",
                   "synthex_lib.randomization.pipeline", "synthex_lib.datasets.torch_dataset",
                   "synthex_lib.generate.engine", "synthex_lib.simulate.raymarch"):
        assert needed in closure
    assert not any(m.startswith(("synthex_lib.figures", "synthex_lib.cli")) for m in closure)
    # tables, claims and verdicts do not change a run's result: rewording one never retrains a run
    assert "synthex_lib.experiments.hip_analysis" not in closure
    assert "synthex_lib.experiments.hip_adaptation" not in closure  # its rows add their own code to their keys
    scaled = module_closure(*hip_scaled.RUN_CODE_ROOTS)
    assert "synthex_lib.experiments.hip_scaled" in scaled and "synthex_lib.learning.training" in scaled
    assert not any(m.endswith(("hip_analysis", "scaled_analysis")) or m.startswith("synthex_lib.figures")
                   for m in scaled)
    gen = module_closure("synthex_lib.generate.engine")
    assert "synthex_lib.simulate.projectors" in gen and not any(m.startswith("synthex_lib.learning") for m in gen)


_DIGEST = "from synthex_lib.core.hashing import code_digest; print(code_digest({roots}))"


def _digest_in(tree: Path, roots: tuple[str, ...]) -> str:
    code = _DIGEST.format(roots=", ".join(repr(r) for r in roots))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tree, timeout=120,
                          env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_editing_a_training_module_changes_the_run_code_digest_only(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(ROOT / "synthex_lib", tree / "synthex_lib", ignore=shutil.ignore_patterns("__pycache__"))
    before_run = _digest_in(tree, RUN_CODE_ROOTS)
    before_gen = _digest_in(tree, ("synthex_lib.generate.engine",))
    assert before_run == code_digest(*RUN_CODE_ROOTS)
    losses = tree / "synthex_lib" / "learning" / "losses.py"
    losses.write_text(losses.read_text() + "\n# a change of the loss code\n")
    assert _digest_in(tree, RUN_CODE_ROOTS) != before_run
    assert _digest_in(tree, ("synthex_lib.generate.engine",)) == before_gen  # datasets do not depend on it


def test_stable_hash_is_canonical():
    assert stable_hash({"a": (1, 2), "b": 1.0}) == stable_hash({"b": 1.0, "a": [1, 2]})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
