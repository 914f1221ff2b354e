"""The image-resolution study of the controlled hip study (preprint Tables 4 and 5: every row trained and tested at
180 x 180, 360 x 360 and 480 x 480 px; NMI 'Benchmark hip-imaging investigation', "image resolution").

A resolution run is a run of the controlled study (:func:`~synthex_lib.experiments.hip.run_hip_experiment`: same
specimens, physics, poses, folds, validation split and evaluation) whose network trains and is tested at another
image size. The profile's ``image_size`` plays the paper's 360 px; the other two sizes keep the paper's ratio
(180 : 360 : 480), rounded to whole pixels. What scales with the size, so that a run at any size sees the same
anatomy in the same way:

* the images, labels and landmarks, resized from the stored detector images by
  :class:`~synthex_lib.datasets.torch_dataset.ImageDataset` (millimetre errors use the resized pixel size);
* the heatmap sigma (``heatmap_sigma_px`` x size / ``image_size``; the paper gives 5 px at 360 px only);
* the randomization's pixel lengths (training scales them by size / ``dr_reference_px`` in any case).

The run at the profile's own size is the controlled study's run itself (the same key), so the study adds two
runs per (training domain, preset, held-out specimen). Tables, claims and verdicts:
:mod:`synthex_lib.experiments.resolution_analysis`, outside every run key.
"""

from __future__ import annotations

from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError

#: the paper's image sizes (px), the middle one being the size of every other study
PAPER_SIZES = (180, 360, 480)
#: the paper's size that a profile's ``image_size`` stands for
REFERENCE_SIZE = 360
#: the rows trained at every size by default: the headline comparison (realistic simulation against real data)
DEFAULT_DOMAINS = ("real", "realistic")
DEFAULT_PRESETS = ("strong",)
#: smallest image size a resolution run may use (px)
MIN_SIZE = 16


def resolution_sizes(profile: str | Profile) -> tuple[int, ...]:
    """The study's image sizes (px) for ``profile``: its ``image_size`` times 180/360, 1 and 480/360, rounded
    (``quick``, 64 px: 32, 64, 85; ``full`` and ``paper``: 180, 360, 480)."""
    base = get_profile(profile).train.image_size
    return tuple(max(MIN_SIZE, int(round(base * s / REFERENCE_SIZE))) for s in PAPER_SIZES)


def paper_size(profile: str | Profile, size: int) -> int:
    """The paper's image size (px) that ``size`` stands for in ``profile``'s study."""
    sizes = resolution_sizes(profile)
    if size not in sizes:
        raise ConfigError(f"parameter 'size': {size} px is not one of the study's sizes {list(sizes)}")
    return PAPER_SIZES[sizes.index(size)]


def resolution_profile(profile: str | Profile, size: int) -> Profile:
    """``profile`` with the network at ``size`` px and the heatmap sigma scaled with it (itself at its own size)."""
    profile = get_profile(profile)
    cfg = profile.train
    if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIZE:
        raise ConfigError(f"parameter 'size' must be an integer >= {MIN_SIZE} px, got {size!r}")
    if size == cfg.image_size:
        return profile
    return profile.with_overrides(image_size=size, heatmap_sigma_px=cfg.heatmap_sigma_px * size / cfg.image_size)
