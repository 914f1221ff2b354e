"""Safe unpacking of zip archives.

Members are checked before anything is written: a member with an absolute path, a ``..``
component, a drive letter or a symbolic link is refused (Python's ``zipfile`` silently rewrites
such names instead of refusing them), and so is any member that is not a regular file or a folder
(FIFO, device, socket). The total unpacked size is checked too: more than :data:`MAX_RATIO` times
the archive's size (a "zip bomb") or more than the free disk space is refused. Extraction goes
to a temporary folder first.
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
#: largest accepted ratio of unpacked size to archive size (the paper's archives hold compressed data: ~1-10)
MAX_RATIO = 100


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
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise DataError(f"{path}: refusing to unpack: member {name!r} is a symbolic link")
        kind = stat.S_IFMT(mode)
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise DataError(f"{path}: refusing to unpack: member {name!r} is not a regular file or folder "
                            f"(file type {oct(kind)})")
    total = sum(i.file_size for i in infos)
    size = max(path.stat().st_size, 1)
    if total > MAX_RATIO * size and total > 1 << 20:
        raise DataError(f"{path}: refusing to unpack: {total / 1e6:.0f} MB from a {size / 1e6:.1f} MB archive "
                        f"(over {MAX_RATIO}x: a zip bomb or a corrupted archive); delete it and fetch again")
    return infos


def _check_space(archive: Path, dest: Path, infos: list[zipfile.ZipInfo]) -> None:
    total = sum(i.file_size for i in infos)
    free = shutil.disk_usage(dest).free
    if total > free:
        raise DataError(f"{archive}: unpacking needs {total / 1e9:.2f} GB but {dest} has {free / 1e9:.2f} GB free; "
                        "free some space or point SYNTHEX_DATA elsewhere")


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
    _check_space(archive, dest, infos)
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
