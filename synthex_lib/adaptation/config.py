"""Configuration of the domain-adaptation baselines (CycleGAN, ADDA), one size per profile.

The paper (Gao et al., Nat. Mach. Intell. 2023, Methods "Domain adaptation") compares SyntheX
with CycleGAN (Zhu et al., ICCV 2017) and ADDA (Tzeng et al., CVPR 2017). The ``paper`` and
``full`` sizes are theirs; ``smoke`` and ``quick`` are scaled down so that they run on 2 CPU
cores (``smoke``: seconds; ``quick``: CycleGAN on 5 x 60 images of 128 px in minutes).

**CycleGAN** (Zhu et al. 2017, section 4 and appendix 7.2; the paper's Methods): ResNet generators
with instance normalisation, 6 residual blocks for 128 px and 9 for 256 px and more; 70 x 70
PatchGAN discriminators (3 strided layers); least-squares GAN loss; cycle loss weight 10;
identity loss weight 0.5 x the cycle weight; a pool of the 50 last generated images; Adam,
learning rate 2e-4, betas (0.5, 0.999), constant for 100 epochs then linearly decayed to zero
over 100 more; batch 1; weights drawn from N(0, 0.02).

**ADDA** as the official SyntheX code (``train_adda.py``; ``/work/shared/reference/official-code.md``
section 6): a per-pixel discriminator on the 16-channel decoder features, relativistic loss,
``k_disc = 20`` discriminator steps then ``k_clf = 5`` network steps per iteration, adversarial
weight 0.01, discriminator Adam (1e-3, weight decay 1e-4) halved every 500 iterations, the task
network's own optimiser (the profile's ``train`` section) halved every ``lr_step_epochs`` epochs
and every 500 classifier steps. The reference gives no epoch count for ADDA; the ``epochs`` here
are an assumption (those of the profile's task training).

This module does not touch :mod:`synthex_lib.core.config`; a profile that carried these sizes
would need a section ``adapt`` with the fields of :class:`CycleGANConfig` (prefixed ``cyclegan_``)
and :class:`ADDAConfig` (prefixed ``adda_``), keyed into the runs that use them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from synthex_lib.core.config import Profile
from synthex_lib.core.errors import ConfigError

#: environment variable of the fault injection used by the tests: raise after this many training steps of
#: one call (a simulated kill; the run then resumes from its last checkpoint)
FAULT_ENV = "SYNTHEX_ADAPT_FAULT_AFTER_STEPS"


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"parameter '{name}' must be an integer >= {minimum}, got {value!r}")


def _number(name: str, value: Any, lo: float, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = True) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if ok:
        ok = (value > lo if lo_open else value >= lo) and (hi is None or (value < hi if hi_open else value <= hi))
    if not ok:
        lo_s = f"{'>' if lo_open else '>='} {lo}"
        hi_s = "" if hi is None else f" and {'<' if hi_open else '<='} {hi}"
        raise ConfigError(f"parameter '{name}' must be a number {lo_s}{hi_s}, got {value!r}")


@dataclass(frozen=True)
class CycleGANConfig:
    """Sizes and optimisation of one CycleGAN (Zhu et al. 2017). Sizes in px or channels, epochs over
    ``max(N_source, N_target)`` images (Zhu et al.'s unaligned epoch)."""

    ngf: int  #: generator filters of the first layer (Zhu et al.: 64)
    ndf: int  #: discriminator filters of the first layer (Zhu et al.: 64)
    n_blocks: int  #: residual blocks of the generator (Zhu et al.: 6 at 128 px, 9 at 256 px and more)
    epochs: int  #: epochs at the constant learning rate (Zhu et al.: 100)
    decay_epochs: int  #: further epochs, learning rate decayed linearly to 0 (Zhu et al.: 100)
    batch_size: int = 1  #: images per step (Zhu et al.: 1)
    n_layers_d: int = 3  #: strided layers of the PatchGAN (3: a 70 x 70 px receptive field)
    n_downsampling: int = 2  #: stride-2 convolutions of the generator (Zhu et al.: 2)
    lr: float = 2e-4  #: Adam learning rate (Zhu et al.)
    beta1: float = 0.5  #: Adam beta1 (Zhu et al.)
    beta2: float = 0.999  #: Adam beta2 (Zhu et al.)
    cycle_weight: float = 10.0  #: lambda of the cycle-consistency L1 loss (Zhu et al.: 10)
    identity_fraction: float = 0.5  #: identity loss weight as a fraction of ``cycle_weight`` (Zhu et al.: 0.5)
    pool_size: int = 50  #: generated images kept for the discriminators (Zhu et al.: 50; 0 = no pool)
    crop_px: int = 0  #: random square crop of this size per training image (0: the whole image)
    flip: bool = True  #: random horizontal flips of training images (Zhu et al.)
    #: the generator's output is ``output_range * tanh(.)`` in units of the per-image standard deviation: Zhu
    #: et al.'s tanh bounds an 8-bit image scaled to [-1, 1]; our inputs are z-scored, and 4 sd covers the
    #: line-integral images (an assumption: bone and air rarely lie beyond 4 sd of an image's mean)
    output_range: float = 4.0
    cpu_threads: int = 1  #: torch threads on the CPU (a CPU run's bytes depend on it)

    def validate(self) -> CycleGANConfig:
        for name in ("ngf", "ndf", "n_blocks", "batch_size", "n_layers_d", "cpu_threads"):
            _positive_int(name, getattr(self, name))
        for name in ("epochs", "decay_epochs", "pool_size", "crop_px", "n_downsampling"):
            _positive_int(name, getattr(self, name), minimum=0)
        if self.epochs + self.decay_epochs < 1:
            raise ConfigError(f"parameters 'epochs' + 'decay_epochs' must be >= 1, got {self.epochs} + "
                              f"{self.decay_epochs}")
        _number("lr", self.lr, 0.0, lo_open=True)
        _number("beta1", self.beta1, 0.0, 1.0)
        _number("beta2", self.beta2, 0.0, 1.0)
        _number("cycle_weight", self.cycle_weight, 0.0)
        _number("identity_fraction", self.identity_fraction, 0.0)
        _number("output_range", self.output_range, 0.0, lo_open=True)
        if not isinstance(self.flip, bool):
            raise ConfigError(f"parameter 'flip' must be True or False, got {self.flip!r}")
        if self.crop_px and self.crop_px < 2 ** (self.n_layers_d + 1):
            raise ConfigError(f"parameter 'crop_px' ({self.crop_px}) is too small for a PatchGAN of "
                              f"{self.n_layers_d} layers: use 0 or >= {2 ** (self.n_layers_d + 1)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, **overrides: Any) -> CycleGANConfig:
        """A validated copy with some fields changed; an unknown field raises :class:`ConfigError`."""
        return _override(self, overrides)


@dataclass(frozen=True)
class ADDAConfig:
    """ADDA as the official SyntheX code: schedule, discriminator and weights. The task network's optimiser,
    batch size and heatmap sigma come from the profile's ``train`` section."""

    epochs: int  #: epochs (each ``len(source) // (batch * (k_disc + k_clf))`` iterations, at least 1)
    k_disc: int = 20  #: discriminator steps per iteration (official: 20)
    k_clf: int = 5  #: task-network steps per iteration (official: 5)
    adv_weight: float = 0.01  #: weight of the adversarial loss in the network's total loss (official: 0.01)
    disc_lr: float = 1e-3  #: discriminator Adam learning rate (official)
    disc_weight_decay: float = 1e-4  #: discriminator Adam weight decay (official)
    disc_step_iterations: int = 500  #: discriminator learning rate x ``disc_gamma`` every this many steps
    disc_gamma: float = 0.5
    clf_step_iterations: int = 500  #: network learning rate x ``clf_gamma`` every this many network steps
    clf_gamma: float = 0.5
    disc_channels: tuple[int, ...] = (16, 8, 4)  #: hidden channels of the per-pixel discriminator (official)
    cpu_threads: int = 1  #: torch threads on the CPU (a CPU run's bytes depend on it)

    def validate(self) -> ADDAConfig:
        for name in ("epochs", "k_disc", "k_clf", "disc_step_iterations", "clf_step_iterations", "cpu_threads"):
            _positive_int(name, getattr(self, name))
        _number("adv_weight", self.adv_weight, 0.0)
        _number("disc_lr", self.disc_lr, 0.0, lo_open=True)
        _number("disc_weight_decay", self.disc_weight_decay, 0.0)
        _number("disc_gamma", self.disc_gamma, 0.0, 1.0, lo_open=True, hi_open=False)
        _number("clf_gamma", self.clf_gamma, 0.0, 1.0, lo_open=True, hi_open=False)
        ch = self.disc_channels
        if not isinstance(ch, tuple | list) or not ch or any(
                isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in ch):
            raise ConfigError(f"parameter 'disc_channels' must be a non-empty tuple of positive integers, got {ch!r}")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def with_overrides(self, **overrides: Any) -> ADDAConfig:
        """A validated copy with some fields changed; an unknown field raises :class:`ConfigError`."""
        if isinstance(overrides.get("disc_channels"), list):
            overrides = dict(overrides, disc_channels=tuple(overrides["disc_channels"]))
        return _override(self, overrides)


def _override(cfg: Any, overrides: dict[str, Any]) -> Any:
    valid = sorted(f.name for f in fields(cfg))
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ConfigError(f"unknown {type(cfg).__name__} field(s) {unknown}; valid fields: {valid}")
    return replace(cfg, **overrides).validate()


#: per profile: smoke (CI, seconds), quick (2 CPU cores, minutes), full (one GPU), paper (Zhu et al.'s sizes)
CYCLEGAN_PROFILES: dict[str, CycleGANConfig] = {
    "smoke": CycleGANConfig(ngf=4, ndf=4, n_blocks=1, epochs=1, decay_epochs=1, batch_size=2, n_layers_d=2,
                            pool_size=8),
    # 128 px (quick's detector_px): the paper's 6 blocks, 8 instead of 64 filters, random 64 px crops (Zhu et
    # al. crop too), 3 + 3 epochs of batch 4: 5 x 60 images = 450 steps of 0.4-0.9 s on one shared CPU core
    "quick": CycleGANConfig(ngf=8, ndf=8, n_blocks=6, epochs=3, decay_epochs=3, batch_size=4, crop_px=64),
    # 360 px: 9 blocks (the paper's choice for 256 px and more), Zhu et al.'s filters, 50 + 50 epochs
    "full": CycleGANConfig(ngf=64, ndf=64, n_blocks=9, epochs=50, decay_epochs=50, cpu_threads=4),
    "paper": CycleGANConfig(ngf=64, ndf=64, n_blocks=9, epochs=100, decay_epochs=100, cpu_threads=8),
}
ADDA_PROFILES: dict[str, ADDAConfig] = {
    "smoke": ADDAConfig(epochs=1, k_disc=2, k_clf=1, disc_channels=(8, 4)),
    "quick": ADDAConfig(epochs=10),
    "full": ADDAConfig(epochs=30, cpu_threads=4),
    "paper": ADDAConfig(epochs=50, cpu_threads=8),
}


def _profile_name(profile: str | Profile, table: dict[str, Any]) -> str:
    name = profile.name if isinstance(profile, Profile) else profile
    if name not in table:
        raise ConfigError(f"parameter 'profile': no adaptation sizes for {name!r}; choose one of {', '.join(table)}")
    return name


def cyclegan_config(profile: str | Profile = "smoke", **overrides: Any) -> CycleGANConfig:
    """The CycleGAN sizes of a profile (by name, or a :class:`~synthex_lib.core.config.Profile` of a registered
    name), with fields overridden by name (``cyclegan_config("quick", epochs=2)``)."""
    return CYCLEGAN_PROFILES[_profile_name(profile, CYCLEGAN_PROFILES)].with_overrides(**overrides)


def adda_config(profile: str | Profile = "smoke", **overrides: Any) -> ADDAConfig:
    """The ADDA schedule of a profile, with fields overridden by name."""
    return ADDA_PROFILES[_profile_name(profile, ADDA_PROFILES)].with_overrides(**overrides)


for _c in (*CYCLEGAN_PROFILES.values(), *ADDA_PROFILES.values()):
    _c.validate()
