"""Safe unpacking of zip archives.

Members are checked before anything is written: a member with an absolute path, a ``..``
component, a drive letter or a symbolic link is refused (Python's ``zipfile`` silently rewrites
such names instead of refusing them). Extraction goes to a temporary folder first.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

from synthex_lib.core.errors import DataError

_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def is_zip(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) in _ZIP_MAGIC


def check_zip(path: str | os.PathLike[str]) -> list[zipfile.ZipInfo]:
    """The members of a zip archive, after refusing unsafe ones.

    Raises :class:`DataError` naming the archive and the member for an absolute path, a drive
    letter, a ``..`` component or a symbolic link, and for a truncated or corrupted archive.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{path}: not a readable zip archive ({exc}); it may be truncated: delete it and fetch again") \
            from exc
    for info in infos:
        name = info.filename
        parts = [p for p in re.split(r"[\\/]+", name) if p]
        if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
            raise DataError(f"{path}: refusing to unpack: member {name!r} has an absolute path")
        if ".." in parts:
            raise DataError(f"{path}: refusing to unpack: member {name!r} would escape the target folder ('..')")
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DataError(f"{path}: refusing to unpack: member {name!r} is a symbolic link")
    return infos


def _move_into(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, merging folders and replacing files."""
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _move_into(child, dst / child.name)
        src.rmdir()
    else:
        if dst.is_dir():
            shutil.rmtree(dst)
        os.replace(src, dst)


def safe_extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> list[str]:
    """Unpack a zip into ``dest`` after :func:`check_zip`; returns the extracted files (relative paths).

    Everything is extracted into a temporary folder inside ``dest`` first and then moved into
    place, so an error (corrupted member, full disk) leaves no half-written file.
    """
    archive, dest = Path(archive), Path(dest)
    infos = check_zip(archive)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise DataError(f"{archive}: corrupted zip archive ({exc}); delete it and fetch again") from exc
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
        for child in list(tmp.iterdir()):
            _move_into(child, dest / child.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not files and infos:
        raise DataError(f"{archive}: the archive holds only folders, no files")
    return files
