"""The virtual lab as a controlled-study source: lab specimens with sampled poses, real images emulated."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from synthex_lib import geometry
from synthex_lib.anatomy import load_cohort
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.cases import ControlledCase
from synthex_lib.generate.poses import group_of, sample_projections
from synthex_lib.generate.tasks import task_device


def load_lab_cohort(cohort: str, profile: Profile, seed: int = 0) -> list[Any]:
    """The lab cohort's specimens (generated and cached by :mod:`synthex_lib.anatomy` on first use)."""
    return list(load_cohort(cohort, profile, seed=seed))


def lab_source(profile: str | Profile, seed: int = 0, **options: Any) -> Iterator[ControlledCase]:
    """The virtual lab's controlled-study cases: each lab specimen with ``profile.sim.real_per_specimen``
    poses of the hip sampler; the cross-scanner specimen is imaged by the Loop-X-like device.
    ``real`` is None: the real images are emulated by :mod:`synthex_lib.simulate.scanner`."""
    if options:
        raise ConfigError(f"the 'lab' dataset takes no options, got {sorted(options)}")
    prof = get_profile(profile)
    for i, spec in enumerate(load_lab_cohort("lab", prof, seed)):
        group = group_of(spec, i)
        dev_name = geometry.LOOPX.name if spec.meta.get("cross_scanner") else geometry.CIOS_FUSION.name
        dev = task_device("hip", dev_name, prof.sim.detector_px)
        P = sample_projections("hip", spec, dev, prof.sim.real_per_specimen, seed, "hip-controlled", "lab", group)
        yield ControlledCase(group=group, specimen=spec, P=P, image_size=(dev.cols, dev.rows), real=None,
                             device=dev_name)
