"""Configuration: the profiles, the one knob for scale, split by the concern each field serves.

A :class:`Profile` composes a :class:`LabConfig` (the virtual cadaver lab), a :class:`SimConfig`
(the simulated datasets) and a :class:`TrainConfig` (network and optimisation), plus the study
design (``folds``). Each artefact is keyed by the configuration it depends on only: a lab cohort
by ``lab``, a simulated dataset by ``lab`` and ``sim``, a training run by ``train`` and the key of
its dataset. Changing a training field therefore never regenerates data.

``smoke`` is for CI and nbval (each notebook in about a minute on 2 CPU cores), ``quick`` builds
the book on 2 CPU cores (96 emulated real images per lab specimen, where DeepFluoro has 61 on average, because
at 64 px 48 per specimen overfitted their poses; a U-Net of 32..256 channels at 64 px, where held-out Dice
matched 96 px at 40 % of the cost in our measurements, and 3 held-out specimens; 60 epochs on a cosine
learning-rate schedule, 120 for the tool and COVID-19 tasks; the scaled-up set 10 CTs of 96 images, twice the
controlled training set), ``full`` is one workstation GPU for hours, and ``paper`` holds the paper's
own figures (Gao et al. 2023, Methods: 18,000 training and 2,000 validation images per scaled-up
study, 360 x 360 px, SGD with learning rate 0.1, Nesterov momentum 0.9, weight decay 1e-5,
batch 5, learning rate halved every 10 epochs). The CPU profiles (``smoke``, ``quick``) train with
Adam instead of SGD: from scratch and for a few hundred steps, SGD at the paper's learning rate
barely leaves its initial plateau. A notebook never hard-codes a size: it reads it from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from synthex_lib.core.errors import ConfigError, require_positive


@dataclass(frozen=True)
class LabConfig:
    """The virtual cadaver lab: specimen counts and the simulated CT scans. Lengths in mm."""

    ct_spacing_mm: float  #: voxel size of the simulated CT scans of lab specimens
    lab_specimens: int  #: hip specimens of the `lab` cohort (DeepFluoro: 6)
    scale_specimens: int  #: hip CTs of the `scale` cohort (paper: 20 NMDID CTs)
    chest_specimens: int  #: chest CTs of the `chest` cohort (paper: 143)
    tool_configs: int  #: continuum-manipulator configurations of the `tool` cohort (100)
    #: chests of the `chest-real` cohort, the patients of the emulated chest radiographs (QaTa-COV19: 2,951 images
    #: of other patients than the CTs)
    chest_real_specimens: int = 12

    def validate(self) -> None:
        require_positive("ct_spacing_mm", self.ct_spacing_mm)
        for name in ("lab_specimens", "scale_specimens", "chest_specimens", "tool_configs", "chest_real_specimens"):
            require_positive(name, getattr(self, name), integer=True)


@dataclass(frozen=True)
class SimConfig:
    """The simulated datasets: image size and counts. Sizes in px. Rays are marched by exact slice
    stepping (one bilinear sample per CT slice), so no ray step is configured here."""

    detector_px: int  #: simulated image size after detector binning (paper: 360)
    real_per_specimen: int  #: emulated "real" images per lab specimen (DeepFluoro: 366 / 6)
    sim_per_specimen: int  #: scaled-up simulated images per CT (paper: 18,000 / 20)
    #: simulated training images per CM configuration of the `tool` cohort (paper: 28,000 + 2,800 / 100)
    tool_sim_per_config: int = 16
    #: emulated real images of each `tool-lab` cadaveric test (paper: 264 real images)
    tool_real_per_specimen: int = 48
    #: simulated training images per chest CT (paper: 18,000 + 1,800 / 143)
    chest_sim_per_specimen: int = 32
    #: emulated chest radiographs per `chest-real` patient
    chest_real_per_specimen: int = 24

    def validate(self) -> None:
        for name in ("detector_px", "real_per_specimen", "sim_per_specimen", "tool_sim_per_config",
                     "tool_real_per_specimen", "chest_sim_per_specimen", "chest_real_per_specimen"):
            require_positive(name, getattr(self, name), integer=True)


@dataclass(frozen=True)
class TrainConfig:
    """Network and optimisation of one training run. Sizes in px."""

    image_size: int  #: network input size (paper: 360, padded to 384 for TransUNet)
    epochs: int
    batch_size: int
    optimizer: str  #: "sgd" (the paper's: Nesterov momentum) or "adam" (CPU profiles: converges in minutes)
    lr: float
    momentum: float
    weight_decay: float
    lr_step_epochs: int  #: with ``lr_schedule="step"``: learning rate is multiplied by lr_gamma every this many epochs
    lr_gamma: float
    max_iterations: int  #: cap on optimizer steps per training run (0 = no cap)
    unet_channels: tuple[int, ...]  #: channels per U-Net level
    heatmap_sigma_px: float  #: Gaussian heatmap sigma at image_size (paper: 5 px at 360)
    #: fraction of each training specimen's images held out for validation and best-epoch selection
    val_fraction: float = 0.1
    #: torch threads of one run on the CPU: a CPU run's bytes depend on it, so it is fixed per profile and
    #: sweeps run several single-threaded runs side by side instead of one run on many threads
    cpu_threads: int = 1
    #: "unet" (MONAI residual U-Net of ``unet_channels``; the CPU profiles) or "transunet" (R50-ViT-B/16 with
    #: the ImageNet-21k weights, the paper's network; GPU profiles)
    network: str = "unet"
    #: the image size (px) the randomization's pixel lengths are written for (the presets: the paper's 360 px);
    #: training scales them by ``image_size / dr_reference_px`` so that an effect does the same to the anatomy at
    #: any network size (set it to ``image_size`` to apply them unscaled)
    dr_reference_px: int = 360
    #: 0: train all ``epochs``. Else ``epochs`` is a cap: training stops at the first epoch >= ``min_epochs`` at
    #: which the run's convergence criterion holds (validation loss improved by less than 2 % of its total
    #: improvement over the last fifth of the epochs). Measured at ``quick`` (Real2Real, strong DR, specimen 01):
    #: with min_epochs 40 the criterion held at epoch 45 on a slow drift (Dice 0.522, no landmark activated), where
    #: 80 epochs reached Dice 0.591 and 16 %; so no profile stops early, and a low ``min_epochs`` is a risk
    min_epochs: int = 0
    #: "step" (the paper's: ``lr`` times ``lr_gamma`` every ``lr_step_epochs`` epochs) or "cosine" (``lr`` annealed
    #: to 0 over ``epochs`` by a half cosine, without restarts; ``lr_step_epochs`` and ``lr_gamma`` unused)
    lr_schedule: str = "step"
    #: precision of the training steps on the CPU: "float32" or "bfloat16" (autocast: convolutions and matrix
    #: products in bfloat16, weights, losses and optimiser in float32; fast on CPUs with AVX512-BF16 or AMX).
    #: Validation and evaluation always run in float32. On a GPU training is mixed precision whatever this says
    cpu_precision: str = "float32"

    def validate(self) -> None:
        if self.lr_schedule not in ("step", "cosine"):
            raise ConfigError(f"parameter 'lr_schedule' must be 'step' or 'cosine', got {self.lr_schedule!r}")
        if self.cpu_precision not in ("float32", "bfloat16"):
            raise ConfigError(f"parameter 'cpu_precision' must be 'float32' or 'bfloat16', got {self.cpu_precision!r}")
        if not isinstance(self.val_fraction, int | float) or not 0 <= self.val_fraction < 1:
            raise ConfigError(f"parameter 'val_fraction' must be in [0, 1), got {self.val_fraction!r}")
        for name in ("lr", "heatmap_sigma_px"):
            require_positive(name, getattr(self, name))
        for name in ("image_size", "epochs", "batch_size", "lr_step_epochs", "cpu_threads", "dr_reference_px"):
            require_positive(name, getattr(self, name), integer=True)
        if self.network not in ("unet", "transunet"):
            raise ConfigError(f"parameter 'network' must be 'unet' or 'transunet', got {self.network!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"parameter 'optimizer' must be 'sgd' or 'adam', got {self.optimizer!r}")
        if isinstance(self.min_epochs, bool) or not isinstance(self.min_epochs, int) or self.min_epochs < 0:
            raise ConfigError(f"parameter 'min_epochs' must be an integer >= 0 (0: train all epochs), "
                              f"got {self.min_epochs!r}")
        if isinstance(self.max_iterations, bool) or not isinstance(self.max_iterations, int) \
                or self.max_iterations < 0:
            raise ConfigError(f"parameter 'max_iterations' must be an integer >= 0, got {self.max_iterations!r}")
        if not self.unet_channels or any(not isinstance(c, int) or c < 1 for c in self.unet_channels):
            raise ConfigError(f"parameter 'unet_channels' must be positive integers, got {self.unet_channels!r}")

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def lr_schedule_text(self) -> str:
        """The learning-rate schedule in words, for tables: ``x0.5 every 10 epochs`` or ``cosine to 0 over 120
        epochs``."""
        if self.lr_schedule == "cosine":
            return f"cosine to 0 over {self.epochs} epochs"
        return f"x{self.lr_gamma} every {self.lr_step_epochs} epochs"


#: the study design's fields of a profile (not in a section): held-out folds, and those of the adaptation rows
DESIGN_FIELDS = ("folds", "adapt_folds")
#: the sub-configurations of a profile, in pipeline order
SECTIONS: dict[str, type] = {"lab": LabConfig, "sim": SimConfig, "train": TrainConfig}


def section_of(field_name: str) -> str:
    """The section (``lab``, ``sim``, ``train``) that owns a field; ConfigError for an unknown name."""
    for section, cls in SECTIONS.items():
        if field_name in {f.name for f in fields(cls)}:
            return section
    raise ConfigError(f"unknown profile field {field_name!r}; valid fields: {sorted(field_names())}")


def field_names() -> list[str]:
    """Every field a profile override may name (flat: ``image_size``, ``ct_spacing_mm`` ...), plus ``folds``."""
    return [f.name for cls in SECTIONS.values() for f in fields(cls)] + list(DESIGN_FIELDS)


@dataclass(frozen=True)
class Profile:
    """One scale of experiment: a lab, a simulation and a training configuration, and the study design.

    Attributes:
        name, description: the profile's name and what it is for.
        lab, sim, train: the per-concern configurations.
        folds: leave-one-specimen-out folds evaluated (<= ``lab.lab_specimens``).
        adapt_folds: the first this many of those folds also run the domain-adaptation rows (CycleGAN and
            ADDA, each a model per fold; <= ``folds``).
        task_train: training fields that differ for one task's runs, by ``task`` or ``task:train_domain``
            (``{"chest:real": {"epochs": 50}}``: the paper trains COVID-19 Real2Real for 50 epochs); the more
            specific key wins. :meth:`for_run` applies them; the hip studies use ``train`` as it is.
    """

    name: str
    description: str
    lab: LabConfig
    sim: SimConfig
    train: TrainConfig
    folds: int
    adapt_folds: int = 1
    task_train: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Nested plain dict: ``{"name", "description", "lab": {...}, "sim": {...}, "train": {...}, "folds",
        "adapt_folds", "task_train"}``."""
        return {"name": self.name, "description": self.description, "lab": asdict(self.lab),
                "sim": asdict(self.sim), "train": self.train.to_dict(), "folds": self.folds,
                "adapt_folds": self.adapt_folds, "task_train": {k: dict(v) for k, v in self.task_train.items()}}

    def for_run(self, task: str, train_domain: str) -> Profile:
        """The profile one run of ``task`` trained on ``train_domain`` uses: ``train`` with the fields of
        ``task_train[task]`` and then of ``task_train[f"{task}:{train_domain}"]`` replaced (itself when none)."""
        changes = {**self.task_train.get(task, {}), **self.task_train.get(f"{task}:{train_domain}", {})}
        if not changes:
            return self
        out = replace(self, train=replace(self.train, **changes))
        out.validate()
        return out

    def flat(self) -> dict[str, Any]:
        """Every field by its flat name (the names :meth:`with_overrides` takes)."""
        out: dict[str, Any] = {}
        for section in SECTIONS:
            out.update(asdict(getattr(self, section)))
        out["folds"] = self.folds
        out["adapt_folds"] = self.adapt_folds
        return out

    def with_overrides(self, **overrides: Any) -> Profile:
        """A copy with some fields changed, named flat (``epochs=3``, ``ct_spacing_mm=2.0``). A training field
        changed here holds for every task's runs too: it is dropped from :attr:`task_train`.

        Unknown or invalid fields raise :class:`ConfigError` naming the parameter.
        """
        unknown = sorted(set(overrides) - set(field_names()))
        if unknown:
            raise ConfigError(f"unknown profile field(s) {unknown}; valid fields: {sorted(field_names())}")
        changes: dict[str, Any] = {}
        for section in SECTIONS:
            mine = {k: v for k, v in overrides.items() if k not in DESIGN_FIELDS and section_of(k) == section}
            if mine:
                if "unet_channels" in mine and isinstance(mine["unet_channels"], list):
                    mine["unet_channels"] = tuple(mine["unet_channels"])
                changes[section] = replace(getattr(self, section), **mine)
        for k in DESIGN_FIELDS:
            if k in overrides:
                changes[k] = overrides[k]
        if self.task_train:  # a field set here holds for every task: no per-task schedule overrides it again
            kept = {key: {f: v for f, v in fs.items() if f not in overrides} for key, fs in self.task_train.items()}
            changes["task_train"] = {key: fs for key, fs in kept.items() if fs}
        out = replace(self, **changes)
        out.validate()
        return out

    @property
    def is_registered(self) -> bool:
        """True for a profile exactly as defined in :data:`PROFILES`."""
        return PROFILES.get(self.name) == self

    def validate(self) -> None:
        self.lab.validate()
        self.sim.validate()
        self.train.validate()
        require_positive("folds", self.folds, integer=True)
        if self.folds > self.lab.lab_specimens:
            raise ConfigError(f"parameter 'folds' ({self.folds}) exceeds lab_specimens ({self.lab.lab_specimens})")
        require_positive("adapt_folds", self.adapt_folds, integer=True)
        train_fields = {f.name for f in fields(TrainConfig)}
        for key, changes in self.task_train.items():
            bad = sorted(set(changes) - train_fields)
            if bad or not isinstance(key, str) or not key:
                raise ConfigError(f"parameter 'task_train[{key!r}]': {bad or 'the key'} not training fields; "
                                  f"valid: {sorted(train_fields)}")
        if self.adapt_folds > self.folds:
            raise ConfigError(f"parameter 'adapt_folds' ({self.adapt_folds}) exceeds folds ({self.folds})")


def _adam(**kw: Any) -> dict[str, Any]:
    return {"optimizer": "adam", "momentum": 0.9, "weight_decay": 1e-5, "lr_gamma": 0.5, **kw}


def _sgd_paper(**kw: Any) -> dict[str, Any]:
    """The paper's optimiser (Methods): SGD, lr 0.1, Nesterov momentum 0.9, weight decay 1e-5, halved every 10."""
    return {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-5, "lr_step_epochs": 10,
            "lr_gamma": 0.5, "max_iterations": 0, "batch_size": 5, "image_size": 360, "heatmap_sigma_px": 5.0, **kw}


PROFILES: dict[str, Profile] = {
    "smoke": Profile(
        "smoke", "CI and nbval: each notebook in about a minute on 2 CPU cores",
        LabConfig(ct_spacing_mm=4.0, lab_specimens=3, scale_specimens=2, chest_specimens=2, tool_configs=4,
                  chest_real_specimens=3),
        SimConfig(detector_px=64, real_per_specimen=4, sim_per_specimen=8, tool_sim_per_config=4,
                  tool_real_per_specimen=4, chest_sim_per_specimen=6, chest_real_per_specimen=4),
        TrainConfig(**_adam(image_size=64, epochs=2, batch_size=4, lr=2e-3, lr_step_epochs=10, max_iterations=6,
                            unet_channels=(8, 16, 32), heatmap_sigma_px=2.0)),
        folds=1,
    ),
    "quick": Profile(
        "quick", "the default book build on 2 CPU cores",
        LabConfig(ct_spacing_mm=2.0, lab_specimens=6, scale_specimens=10, chest_specimens=6, tool_configs=20,
                  chest_real_specimens=12),
        # 96 real images per specimen (and so 96 poses per simulated domain): Real2Real, regular DR, held-out
        # specimen 03, measured with 48 (120 epochs) against 96 (60 epochs, the same steps): Dice 0.67-0.69 vs
        # 0.68-0.71, landmark error 12-15 vs 8-9 mm; with 48, Dice on unseen images of the training specimens was
        # 0.73 against 0.83 on their training images
        SimConfig(detector_px=128, real_per_specimen=96, sim_per_specimen=96, tool_sim_per_config=16,
                  tool_real_per_specimen=48, chest_sim_per_specimen=32, chest_real_per_specimen=24),
        # cosine schedule: with the lr halved every 30 of 120 epochs, 6 of 24 controlled runs missed the convergence
        # criterion (tails 2.3-9.6 %), each still improving after the last halving, at epoch 90 (Real2Real, 03,
        # annealed to 0: tail 0.0 % at 120 epochs, 0.24 % at 60). At 60 epochs 6 of 24 controlled runs still miss it
        # (tails 2.1-11.3 %), and Real2Real 02 at 120 reached Dice 0.730 against 0.702: 60 epochs is short.
        # The tool and COVID-19 tasks keep 120 epochs, where their runs converged
        # channels 32..256 (1.7x the time of 16..128): Real2Real, 03, 96 images, 60 epochs, regular DR: Dice 0.70 vs
        # 0.68-0.71 and 68 % of the landmarks activated vs 45-47 %; strong DR (48 images, 120 epochs): 0.66 and 38 %
        # vs 0.62 and 20 %, its training loss -0.80 vs -0.73: the narrower network underfitted strong DR
        # bfloat16 autocast (AVX512-BF16 here): Real2Real, 03, regular DR, 60 epochs, the same seed and data, two runs
        # side by side: 349 s against 410 s wall; Dice 0.739 vs 0.702 (paired per image: +0.037, 95 % CI 0.022 to
        # 0.052), landmarks activated 609 vs 629 of 930 visible, error on the landmarks both activated 7.17 vs 6.42 mm
        # (+0.75, CI -0.29 to 1.79; median difference 0): differences of the size of a change of seed
        TrainConfig(**_adam(image_size=64, epochs=60, batch_size=8, lr=2e-3, lr_step_epochs=30,
                            max_iterations=0, lr_schedule="cosine", cpu_precision="bfloat16",
                            unet_channels=(32, 64, 128, 256), heatmap_sigma_px=1.5)),
        folds=3,
        task_train={"tool": {"epochs": 120}, "chest": {"epochs": 120}},
    ),
    "full": Profile(
        "full", "one workstation GPU, hours",
        LabConfig(ct_spacing_mm=1.0, lab_specimens=6, scale_specimens=20, chest_specimens=40, tool_configs=100,
                  chest_real_specimens=40),
        SimConfig(detector_px=360, real_per_specimen=61, sim_per_specimen=200, tool_sim_per_config=60,
                  tool_real_per_specimen=44, chest_sim_per_specimen=100, chest_real_per_specimen=20),
        TrainConfig(**_sgd_paper(epochs=30, unet_channels=(32, 64, 128, 256, 512), cpu_threads=4,
                                 network="transunet")),
        folds=6, adapt_folds=6,
    ),
    "paper": Profile(
        "paper", "the paper's numbers of images, resolutions and epochs; a GPU cluster",
        LabConfig(ct_spacing_mm=1.0, lab_specimens=6, scale_specimens=20, chest_specimens=143, tool_configs=100,
                  chest_real_specimens=100),
        SimConfig(detector_px=360, real_per_specimen=61, sim_per_specimen=900, tool_sim_per_config=308,
                  tool_real_per_specimen=44, chest_sim_per_specimen=138, chest_real_per_specimen=30),
        TrainConfig(**_sgd_paper(epochs=50, unet_channels=(64, 128, 256, 512, 1024), cpu_threads=8,
                                 network="transunet")),
        folds=6, adapt_folds=6,
        # NMI Methods, COVID-19: Sim2Real trained for 20 epochs (the preprint: 10), Real2Real folds for 50
        task_train={"chest:realistic": {"epochs": 20}, "chest:real": {"epochs": 50}},
    ),
}


def get_profile(profile: str | Profile, **overrides: Any) -> Profile:
    """Look a profile up by name (``smoke``, ``quick``, ``full``, ``paper``), optionally overridden by flat
    field names (``get_profile("quick", epochs=3, ct_spacing_mm=2.5)``).

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
