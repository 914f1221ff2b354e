"""The adaptation rows of the controlled study: CycleGAN and ADDA run as sweep tasks, never see the held-out
specimen, are stored and read back like the other rows, and bring their claims into the claims table."""

from __future__ import annotations

import json

import pytest

from synthex_lib.core.config import get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.experiments import hip, hip_adaptation, hip_analysis, sweep
from synthex_lib.generate.engine import ensure_dataset

TINY = get_profile("smoke", epochs=1, max_iterations=2, unet_channels=(4, 8), batch_size=2)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("adaptation-rows")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEX_DATA", str(root))
        ensure_dataset("hip-controlled", TINY, workers=0, progress=False)
        yield root


def test_adaptation_rows_run_in_waves_and_never_see_the_held_out_specimen(data):
    domains = ("naive", "naive-cyclegan", "naive-adda")
    recs = sweep.hip_sweep(TINY, domains=domains, presets=("regular",), workers=0, progress=False)
    assert [r["parameters"]["train_domain"] for r in recs] == list(domains)
    held_out = recs[0]["parameters"]["test_group"]
    cyc, adda = recs[1], recs[2]
    assert cyc["parameters"]["adaptation"]["method"] == "cyclegan"
    assert adda["parameters"]["adaptation"]["method"] == "adda"
    # ADDA starts from the plain naive row of the same fold and preset, and saw only training specimens
    assert adda["metrics"]["source_run"] == recs[0]["run_id"]
    assert held_out not in adda["metrics"]["adda_groups_seen"]["target"]
    assert held_out not in adda["metrics"]["adda_groups_seen"]["source"]
    # the CycleGAN of (naive, held-out) saw only training specimens, and its translation is what trained
    ckpt = hip_adaptation.cyclegan_checkpoint(TINY, domain="naive", test_group=held_out, progress=False)
    seen = json.loads((ckpt.parent / "cyclegan.json").read_text())["groups_seen"]
    assert held_out not in seen["source"] and held_out not in seen["target"] and seen["source"]
    assert cyc["metrics"]["cyclegan"] in {p.name for p in ckpt.parent.glob("cyc-naive-*.h5")}
    # read back, not retrained; the same records in the same order
    again = sweep.hip_sweep(TINY, domains=domains, presets=("regular",), workers=0, progress=False)
    assert [r["run_id"] for r in again] == [r["run_id"] for r in recs]
    table = hip_analysis.table1(recs)
    assert list(table["train_domain"]) == list(domains)


def test_claims_on_adaptation_appear_with_the_rows():
    plain = {c["claim"] for c in hip_analysis.claims_table("strong")}
    more = {c["claim"] for c in hip_analysis.claims_table("strong", adaptation=True)}
    assert not any("CycleGAN" in c or "ADDA" in c for c in plain)
    assert {"CycleGAN beats ADDA (realistic, regular DR)", "ADDA: regular DR beats strong DR (realistic)",
            "CycleGAN on naive on par with real data (strong DR)"} <= more - plain


def test_unknown_rows_are_refused_with_one_line(data):
    with pytest.raises(ConfigError, match="unknown training domain"):
        sweep.hip_sweep(TINY, domains=("cartoon-cyclegan",), workers=0, progress=False)
    with pytest.raises(ConfigError, match="adaptation rows"):
        hip.run_hip_experiment(TINY, train_domain="naive-adda")
    with pytest.raises(ConfigError, match="synthetic domain"):
        hip_adaptation.cyclegan_checkpoint(TINY, domain="real")
