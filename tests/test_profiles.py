import pytest

from synthex_lib.core.config import PROFILES, get_profile
from synthex_lib.core.errors import ConfigError


def test_four_profiles_in_order_of_scale():
    assert list(PROFILES) == ["smoke", "quick", "full", "paper"]
    sizes = [PROFILES[n].train.image_size for n in PROFILES]
    assert sizes == sorted(sizes)


def test_paper_profile_holds_the_papers_numbers():
    p = get_profile("paper")
    assert p.train.image_size == 360 and p.sim.detector_px == 360
    assert p.lab.scale_specimens * p.sim.sim_per_specimen == 18_000  # 18,000 training images (Methods)
    assert (p.train.lr, p.train.momentum, p.train.weight_decay, p.train.batch_size) == (0.1, 0.9, 1e-5, 5)
    assert (p.train.lr_step_epochs, p.train.lr_gamma) == (10, 0.5)
    assert p.lab.lab_specimens == 6 and p.lab.chest_specimens == 143 and p.lab.tool_configs == 100


def test_unknown_profile_is_one_clear_error():
    with pytest.raises(ConfigError, match=r"unknown profile 'huge': choose one of smoke, quick, full, paper"):
        get_profile("huge")


@pytest.mark.parametrize("field,value", [("image_size", -8), ("batch_size", 0), ("ct_spacing_mm", -1.0),
                                         ("epochs", 2.5)])
def test_invalid_override_names_the_parameter(field, value):
    with pytest.raises(ConfigError, match=f"parameter '{field}'"):
        get_profile("smoke", **{field: value})


def test_unknown_override_field():
    with pytest.raises(ConfigError, match="unknown profile field"):
        get_profile("smoke", imagesize=3)


def test_override_keeps_other_fields():
    p = get_profile("quick", epochs=3)
    assert p.train.epochs == 3 and p.train.image_size == PROFILES["quick"].train.image_size


def test_task_train_overrides_one_tasks_runs_most_specific_key_last():
    import dataclasses

    p = dataclasses.replace(get_profile("quick"), task_train={"chest": {"epochs": 7, "lr": 1e-3},
                                                              "chest:real": {"epochs": 9}})
    assert p.for_run("chest", "realistic").train.epochs == 7 and p.for_run("chest", "real").train.epochs == 9
    assert p.for_run("chest", "real").train.lr == 1e-3 and p.for_run("tool", "real") is p
    assert p.for_run("chest", "real").train.batch_size == p.train.batch_size
    assert p.to_dict()["task_train"]["chest:real"] == {"epochs": 9}
    with pytest.raises(ConfigError, match=r"task_train\['chest'\].*'epoch'"):
        dataclasses.replace(p, task_train={"chest": {"epoch": 3}}).validate()
    with pytest.raises(ConfigError, match="parameter 'epochs'"):
        dataclasses.replace(p, task_train={"chest": {"epochs": 0}}).for_run("chest", "real")


def test_paper_profile_trains_covid_as_the_paper():
    p = get_profile("paper")  # NMI Methods: Sim2Real 20 epochs, the five-fold Real2Real 50
    assert p.for_run("chest", "realistic").train.epochs == 20 and p.for_run("chest", "real").train.epochs == 50


def test_an_explicit_override_beats_the_task_schedule():
    p = get_profile("paper", epochs=200)  # paper trains the lesion folds 50 epochs unless told otherwise
    assert p.for_run("chest", "real").train.epochs == 200 and not p.task_train
    q = get_profile("paper", lr=0.05)
    assert q.for_run("chest", "real").train.epochs == 50 and q.for_run("chest", "real").train.lr == 0.05
