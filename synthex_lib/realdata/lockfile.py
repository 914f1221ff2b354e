"""The lock file of real datasets: the sha256 first seen of every file a manifest publishes no hash for.

``$SYNTHEX_DATA/real/synthex-data.lock.json`` maps dataset -> file -> entry (``sha256``, ``size``,
``source``, ``recorded``, ``stored_as``, ``hash_origin`` and, for an unpacked archive, its
``members``). Unpacked members are hashed too (up to :data:`MAX_HASHED_MEMBERS` files per
archive; larger archives record member sizes), so ``verify`` finds a corrupted byte even after the
archive was deleted.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

from synthex_lib.core import paths
from synthex_lib.core.errors import DataError
from synthex_lib.core.hashing import sha256_file

#: Archives with more members than this record member sizes only (not per-file sha256).
MAX_HASHED_MEMBERS = 256
LOCK_NAME = "synthex-data.lock.json"


def lock_path() -> Path:
    """The lock file recording first-seen hashes: ``$SYNTHEX_DATA/real/synthex-data.lock.json``."""
    return paths.data_root() / "real" / LOCK_NAME


def read_lock() -> dict[str, Any]:
    path = lock_path()
    if not path.exists():
        return {"version": 1, "datasets": {}}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: unreadable lock file ({exc}); fix or delete it (hashes are then recorded "
                        "again)") from exc
    if not isinstance(data, dict) or not isinstance(data.get("datasets"), dict):
        raise DataError(f"{path}: not a synthex lock file (no 'datasets' mapping); fix or delete it")
    return data


def lock_entry(dataset: str, file: str) -> dict[str, Any] | None:
    return read_lock()["datasets"].get(dataset, {}).get(file)


def write_lock_entry(dataset: str, file: str, entry: dict[str, Any]) -> None:
    """Record (replace) one file's entry, atomically."""
    data = read_lock()
    data["datasets"].setdefault(dataset, {})[file] = entry
    paths.atomic_write_text(lock_path(), json.dumps(data, indent=1, sort_keys=True) + "\n")


def now() -> str:
    """The UTC time stamp of a lock entry."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def member_record(dest: Path, members: list[str]) -> dict[str, Any]:
    """The lock-entry fields describing the unpacked ``members`` (paths relative to ``dest``)."""
    if len(members) <= MAX_HASHED_MEMBERS:
        return {"members": {m: {"sha256": sha256_file(dest / m), "size": (dest / m).stat().st_size} for m in members}}
    digest = hashlib.sha256()
    for m in members:
        digest.update(f"{m}\0{(dest / m).stat().st_size}\n".encode())
    return {"member_count": len(members), "members_size_digest": digest.hexdigest(),
            "members": {m: {"size": (dest / m).stat().st_size} for m in members[:MAX_HASHED_MEMBERS]}}
