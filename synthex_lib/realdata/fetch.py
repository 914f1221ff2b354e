"""Fetch, import and verify real datasets: the entry points of ``synthex data``.

Each job is one module: :mod:`~synthex_lib.realdata.download` (pooch with a resumable HTTP
downloader), :mod:`~synthex_lib.realdata.archives` (safe unzip: absolute, ``..`` and symbolic-link
members refused) and :mod:`~synthex_lib.realdata.lockfile` (first-seen hashes). This module
strings them together:

* Hashes: a manifest's published sha256 wins; where a manifest has none, the first verified
  download or import records the sha256 it saw in the lock file
  ``$SYNTHEX_DATA/real/synthex-data.lock.json`` (and says so), and later fetches and
  ``verify`` check against it, for the unpacked members of an archive as well.
* Files already present and verified are skipped; a dataset the library cannot download raises
  :class:`AccessRequiredError` saying how to obtain it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthex_lib.core import paths
from synthex_lib.core.config import PROFILES
from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.core.hashing import sha256_file
from synthex_lib.realdata.archives import check_zip, is_zip, safe_extract
from synthex_lib.realdata.download import Echo, download
from synthex_lib.realdata.lockfile import lock_entry, lock_path, member_record, now, read_lock, write_lock_entry
from synthex_lib.realdata.manifest import FileEntry, Manifest, dataset_dir, load_manifest


class AccessRequiredError(DataError):
    """The dataset cannot be downloaded by the library: the message says how to obtain it."""


# --- reports -------------------------------------------------------------------------------------

@dataclass
class FileCheck:
    """The state of one file: ``ok``, ``corrupted``, ``missing`` or ``unverified`` (no reference hash)."""

    path: Path
    status: str
    expected: str | None = None
    actual: str | None = None
    note: str = ""


@dataclass
class FetchReport:
    dataset: str
    folder: Path
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unpacked: list[str] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)


# --- fetch -----------------------------------------------------------------------------------------

def _as_manifest(dataset: str | Manifest) -> Manifest:
    return dataset if isinstance(dataset, Manifest) else load_manifest(dataset)


def _reference_hash(m: Manifest, f: FileEntry) -> tuple[str | None, str]:
    if f.sha256:
        return f.sha256, "manifest"
    entry = lock_entry(m.name, f.name)
    if entry and entry.get("sha256"):
        return str(entry["sha256"]), "lock"
    return None, ""


def fetch(dataset: str | Manifest, *, force: bool = False, progress: bool = True, echo: Echo = print) -> FetchReport:
    """Download every file of an open dataset into ``paths.real_dir(name)``, verify and unpack it.

    Files already present and matching their hash are skipped (``force`` downloads again). A
    dataset that the library cannot download (manual, on request, restricted, generated) raises
    :class:`AccessRequiredError` whose message says how to obtain it.
    """

    m = _as_manifest(dataset)
    if not m.downloadable:
        raise AccessRequiredError(f"'{m.name}' cannot be downloaded by synthex.\n{m.how_to_obtain()}")
    dest = dataset_dir(m.name)
    dest.mkdir(parents=True, exist_ok=True)
    report = FetchReport(m.name, dest)
    for f in m.files:
        if not f.url:
            echo(f"{m.name}/{f.name}: no download URL; obtain it by hand and run 'synthex data import {m.name} FILE'")
            continue
        if not force and _already_present(m, f, dest):
            report.skipped.append(f.name)
            echo(f"{m.name}/{f.name}: present and verified, skipped")
            continue
        known, origin = _reference_hash(m, f)
        target = dest / f.name
        if force:
            target.unlink(missing_ok=True)
        before = target.stat().st_ino if target.exists() else None
        download(f.url, target, known=known, origin=origin, progress=progress, echo=echo, label=f"{m.name}/{f.name}",
                 by_hand=f"if the host moved the file, download it by hand from "
                         f"{m.source.get('listing', m.source['url'])} and run 'synthex data import {m.name} FILE'")
        if before is not None and target.stat().st_ino == before:
            echo(f"{m.name}/{f.name}: already present, not downloaded again")
        else:
            report.fetched.append(f.name)
        _register(m, f, target, source=f.url, known=known, echo=echo, report=report)
    _warn_missing_expected(m, dest, echo)
    return report


def _already_present(m: Manifest, f: FileEntry, dest: Path) -> bool:
    """The file (or, once its archive is deleted, its unpacked members) is present and matches its hashes.

    An intact archive whose members went missing is not "present": fetch then unpacks it again
    without downloading (pooch finds the file with the right hash)."""
    entry = lock_entry(m.name, f.name) or {}
    stored = dest / entry.get("stored_as", f.name)
    known, _ = _reference_hash(m, f)
    members = entry.get("members") or {}
    if stored.exists():
        return known is not None and sha256_file(stored) == known and \
            all(_member_ok(dest / k, v, hashed=False) for k, v in members.items())
    return bool(members) and all(_member_ok(dest / k, v) for k, v in members.items())


def _member_ok(path: Path, rec: dict[str, Any], hashed: bool = True) -> bool:
    if not path.exists() or path.stat().st_size != rec.get("size", path.stat().st_size):
        return False
    return not hashed or "sha256" not in rec or sha256_file(path) == rec["sha256"]


def _register(m: Manifest, f: FileEntry, stored: Path, *, source: str, known: str | None, echo: Echo,
              report: FetchReport | None = None, digest: str | None = None) -> None:
    """Check a verified file, unpack it when it is a zip, and record it (and its members) in the lock."""
    digest = digest or sha256_file(stored)
    unpack = f.unpack == "zip" or (f.unpack == "auto" and is_zip(stored))
    if f.unpack == "zip" and not is_zip(stored):
        stored.unlink(missing_ok=True)
        raise DataError(f"{stored}: expected a zip archive but got another kind of file; nothing was kept")
    if unpack:
        try:
            check_zip(stored)  # refuse unsafe archives before recording or unpacking anything
        except DataError:
            stored.unlink(missing_ok=True)
            raise
        if f.unpack == "auto":  # keep the archive beside its content under a distinct name
            archive = stored.with_name(stored.name + ".zip")
            os.replace(stored, archive)
            stored = archive
    entry: dict[str, Any] = {"sha256": digest, "size": stored.stat().st_size, "source": source,
                             "recorded": now(), "stored_as": stored.name,
                             "hash_origin": "manifest" if f.sha256 else ("lock" if known else "first-seen")}
    if unpack:
        members = safe_extract(stored, stored.parent)
        entry.update(member_record(stored.parent, members))
        if report is not None:
            report.unpacked.extend(members)
        echo(f"{m.name}/{stored.name}: unpacked {len(members)} file(s) into {stored.parent}")
    write_lock_entry(m.name, f.name, entry)
    if not f.sha256 and not known:
        if report is not None:
            report.recorded.append(f.name)
        echo(f"{m.name}/{f.name}: the manifest publishes no sha256; recorded the first-seen sha256 {digest} in "
             f"{lock_path()}; later fetches and 'synthex data verify' check against it")


def missing_expected(dataset: str | Manifest, dest: Path | None = None) -> list[str]:
    """The files a dataset's manifest expects (``expect`` globs) that are not under its folder."""
    m = dataset if isinstance(dataset, Manifest) else load_manifest(dataset)
    dest = dest or dataset_dir(m.name)
    return [p for p in m.expect if not any(dest.glob(p))]


def _warn_missing_expected(m: Manifest, dest: Path, echo: Echo) -> None:
    missing = missing_expected(m, dest)
    if missing:
        echo(f"{m.name}: expected but not found under {dest}: {', '.join(missing)}")


# --- import ---------------------------------------------------------------------------------------

def import_file(dataset: str | Manifest, source: str | os.PathLike[str], *, as_name: str | None = None,
                mode: str = "copy", echo: Echo = print) -> Path:
    """Register a file the user downloaded elsewhere: check its hash, copy/link/move it into
    ``paths.real_dir(name)``, unpack it when it is a zip, and record its sha256 in the lock.

    ``as_name`` is the manifest file (or unpacked member) it stands for; by default the source's
    file name. ``mode`` is ``copy`` (default), ``move`` or ``link`` (a symbolic link, for large
    files; the link is not unpacked). A file whose hash differs from the manifest's or the lock's
    raises :class:`DataError` and nothing is written.
    """
    m = _as_manifest(dataset)
    if m.kind == "generated":
        raise ConfigError(f"'{m.name}' is generated by the library, not imported: {m.access.get('how_to_obtain', '')}")
    if mode not in ("copy", "move", "link"):
        raise ConfigError(f"parameter 'mode' must be copy, move or link, got {mode!r}")
    src = Path(source).expanduser().resolve()
    if not src.is_file():
        raise DataError(f"{src}: no such file to import")
    name = as_name or src.name
    dest = dataset_dir(m.name)
    entry, member_of = _match_file(m, name)
    if entry is None and member_of is None:  # a file the manifest does not list (manual datasets)
        entry = FileEntry(name=name, unpack="auto")
    known, origin = None, ""
    if entry is not None:
        known, origin = _reference_hash(m, entry)
    elif member_of is not None:
        rec = ((lock_entry(m.name, member_of.name) or {}).get("members") or {}).get(name, {})
        known, origin = rec.get("sha256"), "lock"
    digest = sha256_file(src)
    if known and digest != known:
        raise DataError(f"{src}: sha256 {digest} does not match the {origin} hash {known} of {m.name}/{name}; "
                        "the file is corrupted or a different version: nothing was imported")
    unpack_zip = entry is not None and (entry.unpack == "zip" or (entry.unpack == "auto" and is_zip(src)))
    if entry is not None and entry.unpack == "zip" and not is_zip(src):
        raise DataError(f"{src}: {m.name}/{name} must be a zip archive; nothing was imported")
    if unpack_zip:
        check_zip(src)  # refuse before copying anything
        if mode == "link":
            raise ConfigError(f"{src}: a zip archive is unpacked, not linked: use --mode copy or move")
    target = dest / name
    _place(src, target, mode)
    echo(f"{m.name}: imported {src} as {target} ({mode})")
    if member_of is not None:
        lock = lock_entry(m.name, member_of.name) or {"source": f"import:{src}", "recorded": now(),
                                                        "stored_as": member_of.name, "hash_origin": "first-seen"}
        members = dict(lock.get("members") or {})
        members[name] = {"sha256": digest, "size": src.stat().st_size}
        lock["members"] = members
        write_lock_entry(m.name, member_of.name, lock)
        if not known:
            echo(f"{m.name}/{name}: no reference hash; recorded the first-seen sha256 {digest} in {lock_path()}")
        return target
    assert entry is not None
    _register(m, entry, target, source=f"import:{src}", known=known, echo=echo, digest=digest)
    _warn_missing_expected(m, dest, echo)
    return target


def _match_file(m: Manifest, name: str) -> tuple[FileEntry | None, FileEntry | None]:
    """(file entry named ``name``, or None; file entry having ``name`` as a member, or None)."""
    for f in m.files:
        if f.name == name:
            return f, None
    for f in m.files:
        if name in f.members and name != f.name:
            return None, f
    if m.files and all(f.members for f in m.files) and not any(name.endswith(x) for x in (".zip",)):
        valid = sorted({f.name for f in m.files} | {x for f in m.files for x in f.members})
        raise ConfigError(f"{name!r} is not a file of dataset {m.name!r}: pass --as with one of {valid}")
    return None, None


def _place(src: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if mode == "link":
        tmp = target.with_name(f".{target.name}.link")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(src)
        os.replace(tmp, target)
    elif mode == "move":
        with paths.atomic_path(target) as tmp:
            shutil.move(src, tmp)
    else:
        with paths.atomic_path(target) as tmp:
            shutil.copyfile(src, tmp)


# --- verify and status ----------------------------------------------------------------------------

LAB_MANIFEST = "manifest.json"


def _generated_checks(m: Manifest, profile: str | None) -> list[FileCheck]:
    """Checks of a virtual-lab cohort against the sha256 its generator recorded in ``manifest.json``."""

    cohort = (m.generated or {}).get("cohort", m.name)
    profiles = [profile] if profile else [p for p in PROFILES if (paths.lab_dir(p, cohort) / LAB_MANIFEST).exists()]
    checks: list[FileCheck] = []
    for prof in profiles:
        folder = paths.lab_dir(prof, cohort)
        man_path = folder / LAB_MANIFEST
        if not man_path.exists():
            checks.append(FileCheck(man_path, "missing", note=f"generate it: {m.access.get('how_to_obtain', '')}"))
            continue
        try:
            members = json.loads(man_path.read_text())["members"]
            entries = [(folder / e["specimen_id"] / name, h) for e in members for name, h in e["files"].items()]
        except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise DataError(f"{man_path}: not a lab cohort manifest ({exc}); delete the folder to regenerate it") \
                from exc
        for path, expected in entries:
            if not path.exists():
                checks.append(FileCheck(path, "missing", expected))
            else:
                actual = sha256_file(path)
                checks.append(FileCheck(path, "ok" if actual == expected else "corrupted", expected, actual))
    return checks


def verify(dataset: str | Manifest, *, echo: Echo | None = None, profile: str | None = None) -> list[FileCheck]:
    """Re-hash every recorded file and unpacked member of a dataset.

    For a virtual-lab cohort (``lab``, ``scale``, ``chest``, ``tool``) the files of every generated
    profile (or of ``profile``) are checked against the sha256 of the cohort's ``manifest.json``.
    Returns one :class:`FileCheck` per file; raises :class:`DataError` listing every corrupted
    file (wrong sha256 or size) and :class:`DataError` when nothing of the dataset is present.
    """
    m = _as_manifest(dataset)
    dest = dataset_dir(m.name)
    if m.kind == "generated":
        checks = _generated_checks(m, profile)
        how = " ".join(str(m.access.get("how_to_obtain", "")).split())
        _report(m, checks, echo, f"not generated yet (no {LAB_MANIFEST} under {paths.data_root() / 'lab'}): {how}")
        return checks
    lock = read_lock()["datasets"].get(m.name, {})
    names = [f.name for f in m.files] + [n for n in lock if n not in {f.name for f in m.files}]
    checks = []
    for name in names:
        entry = lock.get(name, {})
        f = next((x for x in m.files if x.name == name), None)
        stored = dest / entry.get("stored_as", name)
        expected = (f.sha256 if f and f.sha256 else None) or entry.get("sha256")
        if stored.exists():
            actual = sha256_file(stored)
            if expected is None:
                checks.append(FileCheck(stored, "unverified", None, actual, "no reference hash"))
            else:
                checks.append(FileCheck(stored, "ok" if actual == expected else "corrupted", expected, actual))
        for member, rec in (entry.get("members") or {}).items():
            p = dest / member
            if not p.exists():
                checks.append(FileCheck(p, "missing", rec.get("sha256")))
            elif p.stat().st_size != rec.get("size", p.stat().st_size):
                checks.append(FileCheck(p, "corrupted", rec.get("sha256"), None,
                                        f"size {p.stat().st_size} != recorded {rec['size']}"))
            elif "sha256" in rec:
                actual = sha256_file(p)
                checks.append(FileCheck(p, "ok" if actual == rec["sha256"] else "corrupted", rec["sha256"], actual))
            else:
                checks.append(FileCheck(p, "ok", None, None, "size only"))
        if not stored.exists() and not entry.get("members"):
            checks.append(FileCheck(stored, "missing", expected))
    for pattern in m.expect:
        if not any(dest.glob(pattern)):
            checks.append(FileCheck(dest / pattern, "missing", note="expected by the manifest"))
    how = f"run 'synthex data fetch {m.name}'" if m.downloadable else f"see 'synthex data status {m.name}'"
    _report(m, checks, echo, f"nothing to verify under {dest}: {how}")
    return checks


def _report(m: Manifest, checks: list[FileCheck], echo: Echo | None, if_empty: str) -> None:
    if echo is not None:
        for c in checks:
            echo(f"{c.status:>10}  {c.path}" + (f"  ({c.note})" if c.note else ""))
    bad = [c for c in checks if c.status == "corrupted"]
    if bad:
        lines = "; ".join(f"{c.path}: sha256 {c.actual} != expected {c.expected}" if c.actual else f"{c.path}: {c.note}"
                          for c in bad)
        raise DataError(f"{m.name}: {len(bad)} corrupted file(s): {lines}; delete them and fetch, import or "
                        "generate again")
    if not checks or all(c.status == "missing" for c in checks):
        raise DataError(f"{m.name}: {if_empty}")


@dataclass
class DatasetStatus:
    name: str
    kind: str
    access: str
    folder: Path
    state: str  # present | partial | missing | generated (profiles) | not generated
    detail: str = ""


def status(dataset: str | Manifest) -> DatasetStatus:
    """Presence of a dataset without hashing (use :func:`verify` for hashes)."""
    m = _as_manifest(dataset)
    if m.kind == "generated":
        cohort = (m.generated or {}).get("cohort", m.name)
        have = [p for p in PROFILES if (paths.lab_dir(p, cohort) / LAB_MANIFEST).exists()]
        folder = paths.data_root() / "lab"
        return DatasetStatus(m.name, m.kind, m.access_type, folder, "generated" if have else "not generated",
                             f"profiles: {', '.join(have)}" if have else "made on first use by the notebooks")
    dest = dataset_dir(m.name)
    lock = read_lock()["datasets"].get(m.name, {})
    found = [p for p in m.expect if any(dest.glob(p))]
    if m.expect:
        state = "present" if len(found) == len(m.expect) else ("partial" if found or lock else "missing")
    else:
        state = "present" if lock else "missing"
    partials = sorted(p.name for p in dest.glob(".*.partial")) if dest.exists() else []
    detail = f"{len(lock)} file(s) recorded in the lock" if lock else "no file recorded in the lock"
    if partials:
        detail += f"; interrupted download(s) to resume: {', '.join(partials)}"
    return DatasetStatus(m.name, m.kind, m.access_type, dest, state, detail)
