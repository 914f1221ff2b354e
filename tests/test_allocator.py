"""The allocator settings (core.memory.tune_allocator): freed arrays are reused instead of page-faulted fresh, in
this process, in Dask workers (whose default MALLOC_TRIM_THRESHOLD_ would switch glibc's adaptive threshold off)
and in the processes the library starts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from synthex_lib.core.cluster import ClusterOptions, run_units
from synthex_lib.core.memory import MALLOC_ENV

LOOP = """
import resource, numpy as np
{setup}
r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    a = np.ones((160, 256, 256), np.float32)  # 42 MB, allocated and freed each time
    b = a * 2.0
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
"""


def _faults(setup: str, env: dict[str, str]) -> int:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-c", LOOP.format(setup=setup)], env={**clean, **env}, check=True,
                         capture_output=True, text=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tuned_allocator_reuses_freed_arrays_instead_of_faulting_them_in_again():
    dask_default = {"MALLOC_TRIM_THRESHOLD_": "65536"}  # what a Dask nanny sets by default
    untuned = _faults("", dask_default)
    tuned = _faults("from synthex_lib.core.memory import tune_allocator\nassert tune_allocator()", dask_default)
    # 30 x 2 arrays of 42 MB fresh from the kernel: ~600,000 pages faulted in (fewer with transparent huge pages)
    assert tuned * 5 < untuned, (tuned, untuned)
    assert _faults("", MALLOC_ENV) * 5 < untuned  # the environment variables do the same for child processes


def _environ(_unit: int) -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in MALLOC_ENV}


def test_local_cluster_workers_start_with_the_allocator_settings():
    out = run_units(_environ, [0], ClusterOptions(workers=1), progress=False)
    assert out == [MALLOC_ENV]
