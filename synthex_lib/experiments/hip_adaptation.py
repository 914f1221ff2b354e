"""The domain-adaptation rows of the controlled hip study (paper: Methods, "Domain adaptation"; NMI Fig. 4d-f;
preprint Tables 4 and 5): CycleGAN and ADDA on realistic and on naive images, with regular and strong
randomization, tested like every other row on the held-out specimen's real images.

* ``<domain>-cyclegan``: one CycleGAN per (synthetic domain, held-out specimen), trained on the unlabelled
  synthetic and real images of the *training* specimens (:func:`cyclegan_checkpoint`); the whole synthetic
  file is translated into a dataset of the same layout (:func:`translated_file`, cached by the CycleGAN's
  configuration and data), and the multi-task network trains on it with the row's randomization exactly as
  on any other domain (validation split, best epoch, convergence).
* ``<domain>-adda``: the network trained on ``<domain>`` images with the row's randomization (the plain row of
  the study, trained if missing) is adapted by ADDA to the unlabelled real images of the training specimens
  (:mod:`synthex_lib.adaptation.adda`) and tested with its own heads. ADDA validates nothing (that would select
  on the real images); the row counts as converged when its source network did, and its record keeps the
  ADDA history (discriminator accuracy per epoch).

No image of the held-out specimen reaches either method: the collectors of :mod:`synthex_lib.adaptation.data`
refuse it, and every record lists the groups each method saw. Everything is stored under the results folder
of the profile (``adaptation/``) and resumed after a kill.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch.utils.data import Subset

from synthex_lib.adaptation.adda import train_adda
from synthex_lib.adaptation.config import adda_config, cyclegan_config
from synthex_lib.adaptation.cyclegan.train import train_cyclegan
from synthex_lib.adaptation.cyclegan.translate import translated_dataset
from synthex_lib.adaptation.data import unlabelled_training_images
from synthex_lib.adaptation.runs import read_record
from synthex_lib.core import paths
from synthex_lib.core.config import Profile, get_profile
from synthex_lib.core.errors import ConfigError
from synthex_lib.core.hashing import code_digest, stable_hash
from synthex_lib.experiments import hip, results
from synthex_lib.generate.cache import dataset_key
from synthex_lib.learning.training import load_trained_model

ADAPTED = hip.ADAPTED
ALL_DOMAINS = hip.ALL_DOMAINS
CYCLEGAN_ROOT = "synthex_lib.adaptation.cyclegan.train"
ADDA_ROOT = "synthex_lib.adaptation.adda"


def adaptation_dir(profile: Profile) -> Path:
    """Where the CycleGAN models, translated datasets and ADDA runs of a profile live."""
    return paths.results_dir(profile.name) / "adaptation"


def cyclegan_checkpoint(profile: str | Profile, *, seed: int = 0, dataset: str = "lab", domain: str = "realistic",
                        test_group: str = "01", data_path: str | None = None, progress: bool = True,
                        device: str = "cpu") -> Path:
    """The CycleGAN of (``domain``, held-out ``test_group``): simulated images of the training specimens (A) to
    their real images (B), trained at the dataset's image size with the profile's CycleGAN sizes; trained (or
    resumed) when missing. Returns its checkpoint."""
    profile = get_profile(profile)
    if domain not in ("realistic", "heuristic", "naive"):
        raise ConfigError(f"parameter 'domain' must be a synthetic domain (realistic, heuristic, naive), got "
                          f"{domain!r}")
    folder = hip.controlled_dir(profile, seed, dataset, data_path)
    cfg = cyclegan_config(profile.name)
    source_options = {"path": str(data_path)} if data_path else {}
    key = stable_hash({"config": cfg.to_dict(), "seed": seed, "domain": domain, "test_group": test_group,
                       "dataset_key": dataset_key("hip-controlled", profile, seed, dataset, source_options),
                       "code": code_digest(CYCLEGAN_ROOT)})
    out = adaptation_dir(profile) / f"cyclegan-{domain}-{test_group}-{key}"
    ckpt = out / "cyclegan.pt"
    if ckpt.exists() and (out / "cyclegan.json").exists():
        return ckpt
    a = unlabelled_training_images(folder / f"{domain}.h5", test_group)
    b = unlabelled_training_images(folder / "real.h5", test_group)
    return train_cyclegan(a, b, cfg, out, seed=seed, progress=progress, held_out=test_group, device=device)


def translated_file(profile: str | Profile, *, seed: int = 0, dataset: str = "lab", domain: str = "realistic",
                    test_group: str = "01", data_path: str | None = None, progress: bool = True,
                    device: str = "cpu") -> Path:
    """``<domain>.h5`` translated by the CycleGAN of (``domain``, ``test_group``), in the same layout (cached)."""
    profile = get_profile(profile)
    ckpt = cyclegan_checkpoint(profile, seed=seed, dataset=dataset, domain=domain, test_group=test_group,
                               data_path=data_path, progress=progress, device=device)
    folder = hip.controlled_dir(profile, seed, dataset, data_path)
    return translated_dataset(folder / f"{domain}.h5", ckpt, out_dir=ckpt.parent, progress=progress, device=device)


def run_adapted_experiment(profile: str | Profile = "smoke", *, seed: int = 0, dataset: str = "lab",
                           train_domain: str = "realistic-cyclegan", dr_preset: str | dict = "strong",
                           test_group: str = "01", threshold: float = 0.9, force: bool = False, progress: bool = True,
                           data_path: str | None = None, return_model: bool = False, device: str = "auto"
                           ) -> dict[str, Any]:
    """One adaptation row's run on held-out ``test_group`` (see the module docstring); returns the stored record,
    in the form of :func:`~synthex_lib.experiments.hip.run_hip_experiment`'s."""
    profile = get_profile(profile)
    if train_domain not in ADAPTED:
        raise ConfigError(f"unknown adapted train_domain {train_domain!r}: choose one of {', '.join(ADAPTED)}")
    base, method = ADAPTED[train_domain]
    dr_preset = hip.canonical_preset(dr_preset)
    params = hip.run_parameters(profile, seed, dataset, train_domain, dr_preset, test_group, threshold, data_path)
    if method == "cyclegan":
        params["adaptation"] = {"method": "cyclegan", "config": cyclegan_config(profile.name).to_dict(),
                                "code": code_digest(CYCLEGAN_ROOT)}
    else:
        params["adaptation"] = {"method": "adda", "config": adda_config(profile.name).to_dict(),
                                "code": code_digest(ADDA_ROOT)}
    existing = None if force else results.find_record(profile.name, hip.KIND, params)
    if existing is not None and not return_model:
        return existing
    started = results.now_iso()
    folder = hip.controlled_dir(profile, seed, dataset, data_path)
    adapt_dev = "cpu" if device == "auto" else device
    if method == "cyclegan":
        train_file = translated_file(profile, seed=seed, dataset=dataset, domain=base, test_group=test_group,
                                     data_path=data_path, progress=progress, device=adapt_dev)
        ckpt = paths.results_dir(profile.name) / "checkpoints" / f"{results.run_id(hip.KIND, params)}.pt"
        if force and ckpt.exists():
            ckpt.unlink()
        return hip.train_and_store(profile, params, folder, train_file, test_group, seed, dr_preset, threshold,
                                   started, ckpt, progress=progress, device=device, return_model=return_model,
                                   extra={"cyclegan": str(train_file.name)})
    source_rec = hip.run_hip_experiment(profile, seed=seed, dataset=dataset, train_domain=base, dr_preset=dr_preset,
                                        test_group=test_group, threshold=threshold, progress=progress,
                                        data_path=data_path, device=device)
    source_ckpt = paths.results_dir(profile.name) / "checkpoints" / f"{source_rec['run_id']}.pt"
    pool, train_idx, _ = hip.training_pool(profile, folder, folder / f"{base}.h5", test_group, seed)
    target = unlabelled_training_images(folder / "real.h5", test_group, image_size=profile.train.image_size)
    out = adaptation_dir(profile) / f"adda-{results.run_id(hip.KIND, params)}"
    adda_ckpt = train_adda(source_ckpt, Subset(pool, train_idx), target, adda_config(profile.name), out, seed=seed,
                           progress=progress, profile=profile, dr_preset=dr_preset, held_out=test_group,
                           device=adapt_dev)
    record = read_record(out / "adda.json")
    model = load_trained_model(adda_ckpt, profile)
    sm = source_rec["metrics"]
    extra = {"train_images": len(train_idx), "val_images": 0, "final_loss": record["history"][-1].get("loss", float(
        "nan")) if record["history"] else float("nan"), "best_epoch": len(record["history"]),
        "best_val_loss": float("nan"), "converged": bool(sm.get("converged")),
        "tail_improvement": sm.get("tail_improvement"), "source_run": source_rec["run_id"],
        "convergence_criterion": f"the source network's ({base}, {source_rec['run_id']}): "
                                 f"{sm.get('convergence_criterion')}",
        "adda_groups_seen": record["groups_seen"],
        "adda_disc_acc_last": record["history"][-1].get("disc_acc") if record["history"] else None}
    return hip.evaluate_and_store(model, profile, params, folder, test_group, threshold, started, record["history"],
                                  extra, device=device, return_model=return_model)


def run_controlled(profile: str | Profile = "smoke", **kwargs: Any) -> dict[str, Any]:
    """Any row of the controlled study: a plain training domain (``run_hip_experiment``) or an adapted one."""
    if kwargs.get("train_domain", "realistic") in ADAPTED:
        return run_adapted_experiment(profile, **kwargs)
    return hip.run_hip_experiment(profile, **kwargs)


def cyclegan_history(profile: str | Profile, **kwargs: Any) -> list[dict[str, Any]]:
    """The per-epoch losses of the CycleGAN of (``domain``, ``test_group``) (trained when missing)."""
    ckpt = cyclegan_checkpoint(profile, **kwargs)
    return list(read_record(ckpt.parent / "cyclegan.json")["history"])

