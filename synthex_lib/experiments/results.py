"""The results store: one JSON file per run with parameters, metrics, provenance and timestamps.

Runs are keyed by a hash of their parameters, so a sweep that is interrupted and started again
skips the runs already stored (resumable), and every table in the book is read back from here.
Files live in ``paths.results_dir(profile)`` and are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import platform
import warnings
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from synthex_lib import __version__
from synthex_lib.core import paths
from synthex_lib.core.errors import DataError
from synthex_lib.core.hashing import json_default


def run_id(kind: str, parameters: dict[str, Any]) -> str:
    """Deterministic id of a run: kind plus the first 12 hex digits of the parameters' sha256."""
    blob = json.dumps({"kind": kind, **parameters}, sort_keys=True, default=json_default).encode()
    return f"{kind}-{hashlib.sha256(blob).hexdigest()[:12]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def make_record(kind: str, parameters: dict[str, Any], metrics: dict[str, Any], *, started: str,
                per_image: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:

    rec = {
        "run_id": run_id(kind, parameters),
        "kind": kind,
        "parameters": parameters,
        "metrics": metrics,
        "per_image": per_image or {},
        "provenance": {
            "synthex_version": __version__,
            "torch_version": torch.__version__,
            "numpy_version": np.__version__,
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
        "started": started,
        "finished": now_iso(),
    }
    if extra:
        rec.update(extra)
    body = json.dumps({k: rec[k] for k in ("kind", "parameters", "metrics", "per_image")}, sort_keys=True,
                      default=json_default).encode()
    rec["content_sha256"] = hashlib.sha256(body).hexdigest()
    return rec


def record_path(profile: str, rid: str) -> Path:
    return paths.results_dir(profile) / f"{rid}.json"


def strict_json(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float replaced by None, so that the JSON is strict (RFC 8259)."""
    if isinstance(obj, float | np.floating):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [strict_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return strict_json(obj.tolist())
    return obj


def save_record(record: dict[str, Any], profile: str) -> Path:
    """Write a record atomically as strict JSON (NaN as null)."""
    path = record_path(profile, record["run_id"])
    text = json.dumps(strict_json(record), indent=1, sort_keys=True, default=json_default, allow_nan=False)
    paths.atomic_write_text(path, text)
    return path


def load_record(path: str | Path) -> dict[str, Any]:
    """Read a record; metrics stored as null (NaN or inf when written) come back as NaN."""
    path = Path(path)
    try:
        rec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: corrupted results file ({exc.msg}); delete it to recompute the run") from exc
    if isinstance(rec, dict) and isinstance(rec.get("metrics"), dict):
        rec["metrics"] = {k: float("nan") if v is None else v for k, v in rec["metrics"].items()}
    return rec


def find_record(profile: str, kind: str, parameters: dict[str, Any]) -> dict[str, Any] | None:
    path = record_path(profile, run_id(kind, parameters))
    return load_record(path) if path.exists() else None


def iter_records(profile: str, kind: str | None = None) -> Iterable[dict[str, Any]]:
    root = paths.results_dir(profile)
    if not root.exists():
        return
    for p in sorted(root.glob("*.json")):
        rec = load_record(p)
        if not isinstance(rec, dict) or not {"run_id", "kind", "parameters", "metrics"} <= set(rec):
            warnings.warn(f"{p}: not a run record of this library; skipped", stacklevel=2)
            continue
        if kind is None or rec.get("kind") == kind:
            yield rec


def records_frame(profile: str, kind: str | None = None) -> pd.DataFrame:
    """One row per run: flattened parameters (``p.*``) and scalar metrics (``m.*``)."""
    rows = []
    for rec in iter_records(profile, kind):
        row: dict[str, Any] = {"run_id": rec["run_id"], "kind": rec["kind"], "finished": rec.get("finished")}
        row.update({f"p.{k}": v for k, v in rec["parameters"].items() if not isinstance(v, dict | list)})
        row.update({f"m.{k}": v for k, v in rec["metrics"].items() if isinstance(v, int | float | str | None)})
        rows.append(row)
    return pd.DataFrame(rows)
