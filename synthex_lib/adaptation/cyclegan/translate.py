"""Translation of images and of whole simulated datasets with a trained CycleGAN generator.

:func:`translate` standardises each image (zero mean, unit sd, as in training), runs the generator and undoes
the standardisation with the *input* image's mean and sd: the output lives on the scale of its input (the
generator's output, in units of the input's sd around its mean, mapped back), so translating ``a * x + b`` gives
``a * translate(x) + b`` for any gain ``a > 0`` and offset ``b``. The task network z-scores its inputs anyway.
The CPU gives the same bytes for the same checkpoint and images.

:func:`translated_dataset` translates every ``projs`` image of a simulated HDF5 file (all groups) into a new
file of the same layout (``segs``, ``lands``, ``visible``, ``P``, ``P_*``, ``land-names`` and attributes
copied; the paper's ``cyc-realistic.h5``), written atomically under a name holding its key: the CycleGAN's
config, the sha256 of the input file and of the checkpoint (which fixes the images the CycleGAN saw) and the
digest of this code. A rerun with the same inputs finds the file and reads it back.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

from synthex_lib.adaptation.config import CycleGANConfig
from synthex_lib.adaptation.cyclegan.networks import ResnetGenerator
from synthex_lib.adaptation.cyclegan.train import KIND
from synthex_lib.adaptation.data import as_domain_images, destandardize, standardize
from synthex_lib.core import paths
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.h5io import open_h5, read_array
from synthex_lib.core.hashing import canonical_json, code_digest, sha256_cached, stable_hash
from synthex_lib.datasets.layout import H5_LIBVER, list_groups
from synthex_lib.learning.device import cpu_threads, resolve_device

#: the module whose code (with what it imports) makes translated datasets
TRANSLATION_ROOT = "synthex_lib.adaptation.cyclegan.translate"
#: the two directions: source (simulated) to target (real), and back
DIRECTIONS = {"AB": "g_ab", "BA": "g_ba"}


def _load(checkpoint: str | os.PathLike[str], device: torch.device) -> dict[str, Any]:
    try:
        blob = torch.load(checkpoint, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{checkpoint}: truncated or corrupted CycleGAN checkpoint "
                        f"({str(exc).splitlines()[0][:120]}); train it again") from None
    if not isinstance(blob, dict) or KIND not in blob or "g_ab" not in blob:
        raise DataError(f"{checkpoint}: not a CycleGAN checkpoint of this library (train_cyclegan writes them)")
    return blob


def load_generator(checkpoint: str | os.PathLike[str], direction: str = "AB", device: str | torch.device = "cpu"
                   ) -> ResnetGenerator:
    """The generator of ``direction`` (``AB``: simulated to real) of a CycleGAN checkpoint, in evaluation mode."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"parameter 'direction' must be one of {sorted(DIRECTIONS)}, got {direction!r}")
    dev = resolve_device(device)
    blob = _load(checkpoint, dev)
    c = CycleGANConfig(**blob[KIND]["identity"]["config"])
    g = ResnetGenerator(c.ngf, c.n_blocks, c.n_downsampling, c.output_range).to(dev)
    g.load_state_dict(blob[DIRECTIONS[direction]])
    g.cpu_threads = c.cpu_threads  # the training's torch threads: translation on the CPU runs with them too
    return g.eval()


@torch.no_grad()
def translate_with(generator: ResnetGenerator, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """``images`` float [N, H, W] -> translated float32 [N, H, W], each mapped back with its input's mean and sd.
    On the CPU it runs with the generator's ``cpu_threads`` (the training config's; 1 when not set)."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"parameter 'batch' must be a positive integer, got {batch!r}")
    x = as_domain_images(images, "images").images
    dev = next(generator.parameters()).device
    out = np.empty(x.shape, np.float32)
    threads = getattr(generator, "cpu_threads", 1) if dev.type == "cpu" else torch.get_num_threads()
    with cpu_threads(threads):  # a CPU result's bytes depend on the thread count: fixed by the config
        for i in range(0, len(x), batch):
            z, m, s = standardize(torch.from_numpy(x[i:i + batch])[:, None].to(dev))
            out[i:i + batch] = destandardize(generator(z), m, s)[:, 0].cpu().numpy()
    return out


def translate(checkpoint: str | os.PathLike[str], images: np.ndarray, batch: int = 8, *, direction: str = "AB",
              device: str | torch.device = "cpu") -> np.ndarray:
    """Translate ``images`` float [N, H, W] (log domain, any scale) with the CycleGAN of ``checkpoint``
    (``direction`` ``AB``: source/simulated to target/real). Returns float32 [N, H, W] on the scale of the
    input: the generator's standardised output times the input image's sd plus its mean. Deterministic: the same
    bytes for the same inputs on the CPU."""
    return translate_with(load_generator(checkpoint, direction, device), images, batch)


def translation_params(source_h5: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
                       direction: str = "AB") -> dict[str, Any]:
    """Everything a translated dataset's bytes depend on; :func:`stable_hash` of it names the file."""
    blob = _load(checkpoint, torch.device("cpu"))
    ident = blob[KIND]["identity"]
    return {"kind": "cyclegan-translation", "direction": direction, "cyclegan_config": ident["config"],
            "cyclegan_seed": ident["seed"], "cyclegan_data": {k: ident[k]["sha256"] for k in ("source", "target")},
            "source_file": {"name": Path(source_h5).name, "sha256": sha256_cached(source_h5)},
            "checkpoint_sha256": sha256_cached(checkpoint), "code": code_digest(TRANSLATION_ROOT)}


def translated_path(source_h5: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
                    out_dir: str | os.PathLike[str] | None = None, direction: str = "AB") -> Path:
    """Where :func:`translated_dataset` writes: ``<out_dir>/cyc-<stem>-<key>.h5`` (default: beside the input)."""
    src = Path(source_h5)
    key = stable_hash(translation_params(src, checkpoint, direction))
    return Path(out_dir or src.parent) / f"cyc-{src.stem}-{key}.h5"


def translated_dataset(source_h5: str | os.PathLike[str], checkpoint: str | os.PathLike[str],
                       out_dir: str | os.PathLike[str] | None = None, *, batch: int = 8, direction: str = "AB",
                       progress: bool = True, device: str | torch.device = "cpu") -> Path:
    """Translate every image of the simulated file ``source_h5`` (all groups) with the CycleGAN of ``checkpoint``
    into a new file of the same layout; returns its path (:func:`translated_path`).

    ``projs`` are replaced by their translations (float32, chunked per image, gzip, Fletcher-32, like the
    generated files); every other dataset and attribute is copied as it is, and the file attributes gain
    ``adaptation`` (``"cyclegan"``), ``adaptation_key``, ``adaptation_params`` (JSON), ``source_file`` and
    ``projector`` ``cyclegan(<input projector>)``. When the file exists with the same key it is returned as it is.
    """
    src = Path(source_h5)
    params = translation_params(src, checkpoint, direction)
    key = stable_hash(params)
    out = Path(out_dir or src.parent) / f"cyc-{src.stem}-{key}.h5"
    if out.exists():
        with open_h5(out) as f:
            if f.attrs.get("adaptation_key") == key:
                return out
        raise DataError(f"{out}: exists but is not the translation of key {key}; delete it and rerun")
    gen = load_generator(checkpoint, direction, device)
    groups = list_groups(src)
    with open_h5(src) as fin:
        n_total = sum(int(fin[g]["projs"].shape[0]) for g in groups if "projs" in fin[g])
        bar = tqdm(total=n_total, desc="cyclegan translate", disable=not progress, leave=False)
        with paths.atomic_path(out) as tmp, h5py.File(tmp, "w", libver=H5_LIBVER) as fout:
            for k in sorted(fin.attrs):
                fout.attrs[k] = fin.attrs[k]
            fout.attrs["adaptation"] = "cyclegan"
            fout.attrs["adaptation_key"] = key
            fout.attrs["adaptation_params"] = canonical_json(params)
            fout.attrs["source_file"] = src.name
            fout.attrs["projector"] = f"cyclegan({fin.attrs.get('projector', src.stem)})"
            for name in sorted(fin.keys()):
                if name not in groups:  # land-names and anything else that is not a specimen group
                    fin.copy(fin[name], fout, name=name)
                    continue
                _translate_group(fin, fout, name, gen, batch, src, bar)
        bar.close()
    return out


def _translate_group(fin: h5py.File, fout: h5py.File, name: str, gen: ResnetGenerator, batch: int, src: Path,
                     bar: Any) -> None:
    gin = fin[name]
    if "projs" not in gin:
        raise DataError(f"{src}: group {name!r} has no 'projs' to translate")
    gout = fout.create_group(name)
    for k in sorted(gin.attrs):
        gout.attrs[k] = gin.attrs[k]
    for k in sorted(gin.keys()):
        if k != "projs":
            fin.copy(gin[k], gout, name=k)
    din = gin["projs"]
    n, h, w = din.shape
    dout = gout.create_dataset("projs", (n, h, w), np.float32, chunks=(1, h, w), compression="gzip",
                               compression_opts=1, fletcher32=True)
    for i in range(0, n, batch):
        x = read_array(gin, "projs", src, dtype="number", index=slice(i, i + batch)).astype(np.float32)
        dout[i:i + len(x)] = translate_with(gen, x, batch)
        bar.update(len(x))
