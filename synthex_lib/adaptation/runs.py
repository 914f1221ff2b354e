"""What every adaptation run shares: torch threads, seeded torch generators, atomic checkpoints that resume
only the run they belong to, the JSON record of a run, and the fault injection the tests kill runs with."""

from __future__ import annotations

import io
import json
import os
import pickle
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthex_lib.adaptation.config import FAULT_ENV
from synthex_lib.core import paths
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.hashing import canonical_json
from synthex_lib.core.seeding import seeded_rng


def torch_generator(*keys: int | str) -> torch.Generator:
    """A CPU torch generator seeded from ``seeded_rng(*keys)``: weights drawn with it depend on the keys only."""
    return torch.Generator().manual_seed(int(seeded_rng(*keys).integers(0, 2**62)))


def epoch_order(rng: np.random.Generator, n: int, length: int) -> np.ndarray:
    """``length`` indices into ``n`` images: seeded permutations of all of them, concatenated and cut."""
    reps = -(-length // n)
    return np.concatenate([rng.permutation(n) for _ in range(reps)])[:length]


def canonical_blob(obj: Any) -> Any:
    """A copy of ``obj`` whose pickle bytes depend on its values only: containers rebuilt (none shared), strings
    interned (every equal string one object). Pickle writes a second reference to one object as a back
    reference, so a resumed run, whose history and optimizer groups were partly unpickled, would otherwise
    serialise equal values to other bytes than an uninterrupted run. Tensors are kept as they are."""
    if isinstance(obj, str):
        return sys.intern(obj)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, OrderedDict) else {}
        for k, v in obj.items():
            out[canonical_blob(k)] = canonical_blob(v)
        meta = getattr(obj, "_metadata", None)  # a module state dict's version records
        if meta is not None:
            out._metadata = canonical_blob(meta)  # type: ignore[attr-defined]
        return out
    if isinstance(obj, list):
        return [canonical_blob(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(canonical_blob(v) for v in obj)
    return obj


def save_checkpoint(path: Path, blob: dict[str, Any]) -> None:
    """``torch.save`` of :func:`canonical_blob` of ``blob``, written atomically (nothing half-written under
    ``path``): equal values give equal bytes however the run got them (resumed or not)."""
    buf = io.BytesIO()
    torch.save(canonical_blob(blob), buf)
    paths.atomic_write_bytes(path, buf.getvalue())


def load_run_checkpoint(path: Path, kind: str, identity: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """The checkpoint of an interrupted run, checked to be of ``kind`` and of the same ``identity`` (config,
    seed, data); anything else raises one line naming the file and what to do."""
    try:
        blob = torch.load(path, map_location=device, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"{path}: truncated or corrupted checkpoint ({str(exc).splitlines()[0][:120]}); "
                        "delete it to train again") from None
    meta = blob.get(kind) if isinstance(blob, dict) else None
    if not isinstance(meta, dict) or "identity" not in meta:
        raise DataError(f"{path}: not a {kind} checkpoint of this library; delete it or use another out_dir")
    if canonical_json(meta["identity"]) != canonical_json(identity):
        diff = sorted(k for k in set(identity) | set(meta["identity"]) if meta["identity"].get(k) != identity.get(k))
        raise ConfigError(f"parameter 'out_dir': {path} belongs to a {kind} run of other {', '.join(diff)}; use "
                          "another out_dir or delete the checkpoint")
    return blob


def write_record(path: Path, record: dict[str, Any]) -> None:
    """The JSON record of a run (groups seen, history, timings), written atomically."""
    paths.atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True, default=str) + "\n")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run's JSON record; a missing or unreadable one raises :class:`DataError`."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: missing or unreadable run record ({exc}); train the run again") from None


class FaultInjector:
    """Raises ``RuntimeError`` once this call has done ``$SYNTHEX_ADAPT_FAULT_AFTER_STEPS`` steps (unset: never):
    the tests' simulated kill."""

    def __init__(self) -> None:
        raw = os.environ.get(FAULT_ENV)
        try:
            self.after = int(raw) if raw else None
        except ValueError:
            raise ConfigError(f"environment variable {FAULT_ENV} must be an integer number of steps") from None
        self.done = 0

    def tick(self) -> None:
        self.done += 1
        if self.after is not None and self.done >= self.after:
            raise RuntimeError(f"injected fault ({FAULT_ENV}={self.after}): simulated kill after {self.done} steps")
