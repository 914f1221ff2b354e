"""Profiles: the one knob for scale, shared by notebooks, the CLI and the tests.

``smoke`` is for CI and nbval (each notebook in about a minute on 2 CPU cores), ``quick`` builds
the book (the whole book in at most 30 minutes on 2 CPU cores), ``full`` is one workstation GPU
for hours, and ``paper`` holds the paper's own figures (Gao et al. 2023, Methods: 18,000
training and 2,000 validation images per scaled-up study, 360 x 360 px, SGD with learning rate
0.1, Nesterov momentum 0.9, weight decay 1e-5, batch 5, learning rate halved every 10 epochs).
The CPU profiles (``smoke``, ``quick``) train with Adam instead of SGD: from scratch and for a few
hundred steps, SGD at the paper's learning rate barely leaves its initial plateau.
A notebook never hard-codes a size: it reads it from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from synthex_lib.errors import ConfigError, require_positive


@dataclass(frozen=True)
class Profile:
    """Sizes and training settings of one scale of experiment. Lengths in mm, sizes in px."""

    name: str
    description: str
    # --- virtual cadaver lab -------------------------------------------------------------
    ct_spacing_mm: float  #: voxel size of the simulated CT scans of lab specimens
    lab_specimens: int  #: hip specimens of the `lab` cohort (DeepFluoro: 6)
    scale_specimens: int  #: hip CTs of the `scale` cohort (paper: 20 NMDID CTs)
    chest_specimens: int  #: chest CTs of the `chest` cohort (paper: 143)
    tool_configs: int  #: continuum-manipulator configurations of the `tool` cohort (100)
    # --- simulation ------------------------------------------------------------------------
    detector_px: int  #: simulated image size after detector binning (paper: 360)
    real_per_specimen: int  #: emulated "real" images per lab specimen (DeepFluoro: 366 / 6)
    sim_per_specimen: int  #: scaled-up simulated images per CT (paper: 18,000 / 20)
    step_mm: float  #: ray-marching step
    # --- training --------------------------------------------------------------------------
    image_size: int  #: network input size (paper: 360, padded to 384 for TransUNet)
    epochs: int
    batch_size: int
    optimizer: str  #: "sgd" (the paper's: Nesterov momentum) or "adam" (CPU profiles: converges in minutes)
    lr: float
    momentum: float
    weight_decay: float
    lr_step_epochs: int  #: learning rate is multiplied by lr_gamma every this many epochs
    lr_gamma: float
    max_iterations: int  #: cap on optimizer steps per training run (0 = no cap)
    unet_channels: tuple[int, ...]  #: channels per U-Net level
    heatmap_sigma_px: float  #: Gaussian heatmap sigma at image_size (paper: 5 px at 360)
    folds: int  #: leave-one-specimen-out folds evaluated (<= lab_specimens)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> Profile:
        """Return a copy with some fields changed; unknown or invalid fields raise ConfigError."""
        unknown = sorted(set(overrides) - set(self.to_dict()))
        if unknown:
            raise ConfigError(f"unknown profile field(s) {unknown}; valid fields: {sorted(self.to_dict())}")
        out = replace(self, **overrides)
        out.validate()
        return out

    def validate(self) -> None:
        for field in ("ct_spacing_mm", "step_mm", "lr", "heatmap_sigma_px"):
            require_positive(field, getattr(self, field))
        for field in (
            "lab_specimens", "scale_specimens", "chest_specimens", "tool_configs", "detector_px",
            "real_per_specimen", "sim_per_specimen", "image_size", "epochs", "batch_size",
            "lr_step_epochs", "folds",
        ):
            require_positive(field, getattr(self, field), integer=True)
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"parameter 'optimizer' must be 'sgd' or 'adam', got {self.optimizer!r}")
        if self.max_iterations < 0:
            raise ConfigError(f"parameter 'max_iterations' must be >= 0, got {self.max_iterations}")
        if self.folds > self.lab_specimens:
            raise ConfigError(f"parameter 'folds' ({self.folds}) exceeds lab_specimens ({self.lab_specimens})")


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        name="smoke", description="CI and nbval: each notebook in about a minute on 2 CPU cores",
        ct_spacing_mm=4.0, lab_specimens=3, scale_specimens=2, chest_specimens=2, tool_configs=4,
        detector_px=64, real_per_specimen=4, sim_per_specimen=8, step_mm=4.0,
        image_size=64, epochs=2, batch_size=4, optimizer="adam", lr=2e-3, momentum=0.9, weight_decay=1e-5,
        lr_step_epochs=10, lr_gamma=0.5, max_iterations=6, unet_channels=(8, 16, 32),
        heatmap_sigma_px=2.0, folds=1,
    ),
    "quick": Profile(
        name="quick", description="the default book build: the whole book in at most 30 min on 2 CPU cores",
        ct_spacing_mm=2.0, lab_specimens=6, scale_specimens=6, chest_specimens=6, tool_configs=20,
        detector_px=128, real_per_specimen=16, sim_per_specimen=48, step_mm=2.0,
        image_size=128, epochs=30, batch_size=8, optimizer="adam", lr=2e-3, momentum=0.9, weight_decay=1e-5,
        lr_step_epochs=15, lr_gamma=0.5, max_iterations=0, unet_channels=(16, 32, 64, 128),
        heatmap_sigma_px=2.5, folds=1,
    ),
    "full": Profile(
        name="full", description="one workstation GPU, hours",
        ct_spacing_mm=1.0, lab_specimens=6, scale_specimens=20, chest_specimens=40, tool_configs=100,
        detector_px=360, real_per_specimen=61, sim_per_specimen=200, step_mm=1.0,
        image_size=360, epochs=30, batch_size=5, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-5,
        lr_step_epochs=10, lr_gamma=0.5, max_iterations=0, unet_channels=(32, 64, 128, 256, 512),
        heatmap_sigma_px=5.0, folds=6,
    ),
    "paper": Profile(
        name="paper", description="the paper's numbers of images, resolutions and epochs; a GPU cluster",
        ct_spacing_mm=1.0, lab_specimens=6, scale_specimens=20, chest_specimens=143, tool_configs=100,
        detector_px=360, real_per_specimen=61, sim_per_specimen=900, step_mm=0.5,
        image_size=360, epochs=50, batch_size=5, optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-5,
        lr_step_epochs=10, lr_gamma=0.5, max_iterations=0, unet_channels=(64, 128, 256, 512, 1024),
        heatmap_sigma_px=5.0, folds=6,
    ),
}


def get_profile(profile: str | Profile, **overrides: Any) -> Profile:
    """Look a profile up by name (``smoke``, ``quick``, ``full``, ``paper``), optionally overridden.

    Raises :class:`ConfigError` with one line naming the parameter for an unknown name.
    """
    if isinstance(profile, Profile):
        base = profile
    else:
        if profile not in PROFILES:
            raise ConfigError(f"unknown profile {profile!r}: choose one of {', '.join(PROFILES)}")
        base = PROFILES[profile]
    return base.with_overrides(**overrides) if overrides else base


for _p in PROFILES.values():
    _p.validate()
