"""Downloading one file: :func:`pooch.retrieve` (hash check, temporary file, atomic move) with a resumable
HTTP downloader.

An interrupted download keeps its bytes in ``.<file>.partial`` and the next attempt asks the
server for the rest (an HTTP ``Range`` request). pooch's own HTTP downloader restarts from zero,
hence the small downloader class here.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pooch
import requests
from tqdm.auto import tqdm

from synthex_lib.core.errors import DataError

Echo = Callable[[str], None]


class ResumableDownloader:
    """A pooch downloader (``downloader(url, output_file, pooch)``) that resumes partial downloads.

    Bytes are written to ``partial``; when it already holds bytes, the request asks for the rest
    with ``Range: bytes=N-``. A server that ignores the range (status 200) restarts the file. On
    success the partial file is moved onto pooch's temporary output, which pooch then hashes.
    """

    def __init__(self, partial: Path, progressbar: bool = True, timeout: tuple[float, float] = (15.0, 120.0),
                 chunk_size: int = 1 << 16) -> None:
        self.partial = Path(partial)
        self.progressbar = progressbar
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.resumed_from = 0

    def __call__(self, url: str, output_file: Any, pooch: Any, check_only: bool = False) -> bool | None:
        if check_only:
            r = requests.head(url, allow_redirects=True, timeout=self.timeout)
            return r.status_code == 200
        offset = self.partial.stat().st_size if self.partial.exists() else 0
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        self.resumed_from = 0
        with requests.get(url, headers=headers, stream=True, timeout=self.timeout, allow_redirects=True) as r:
            if not (offset and r.status_code == 416):  # 416: the partial file already holds every byte
                r.raise_for_status()
                start = _content_range_start(r.headers.get("Content-Range", ""))
                if offset and r.status_code == 206 and start == offset:
                    mode, self.resumed_from = "ab", offset
                else:
                    mode, offset = "wb", 0
                length = int(r.headers.get("Content-Length", 0) or 0)
                with open(self.partial, mode) as fh, tqdm(
                    total=(offset + length) or None, initial=offset, unit="B", unit_scale=True,
                    disable=not self.progressbar, desc=self.partial.name.strip(".").removesuffix(".partial"),
                ) as bar:
                    for chunk in r.iter_content(self.chunk_size):
                        fh.write(chunk)
                        bar.update(len(chunk))
            else:
                self.resumed_from = offset
        out = output_file if isinstance(output_file, str | os.PathLike) else output_file.name
        os.replace(self.partial, out)
        return None


def _content_range_start(value: str) -> int | None:
    m = re.match(r"bytes\s+(\d+)-", value)
    return int(m.group(1)) if m else None


def download(url: str, target: Path, *, known: str | None, origin: str, progress: bool, echo: Echo,
             label: str, by_hand: str) -> None:
    """Download ``url`` to ``target`` (resuming ``.<name>.partial``), checked against sha256 ``known``.

    A resumed download that does not match is downloaded once more from scratch. Raises
    :class:`DataError` naming ``target`` on a mismatch (the ``origin`` of the hash is named:
    manifest or lock), an HTTP error (``by_hand`` says how to obtain the file by hand) or an
    interrupted connection (the partial bytes are kept for the next attempt). ``label`` prefixes
    the messages given to ``echo``.
    """
    dest = target.parent
    partial = dest / f".{target.name}.partial"
    for attempt in (1, 2):
        downloader = ResumableDownloader(partial, progressbar=progress)
        pooch_log = pooch.get_logger()
        level = pooch_log.level
        pooch_log.setLevel(logging.WARNING)
        try:
            pooch.retrieve(url, known_hash=f"sha256:{known}" if known else None, fname=target.name, path=dest,
                           downloader=downloader)
            return
        except ValueError as exc:  # pooch: hash mismatch (the temporary file is already deleted)
            partial.unlink(missing_ok=True)
            if downloader.resumed_from and attempt == 1:
                echo(f"{label}: the resumed download did not match its sha256; downloading from scratch")
                continue
            raise DataError(f"{target}: sha256 of the download does not match the {origin} hash ({exc}); "
                            "nothing was kept: try again, or report a changed file upstream") from exc
        except requests.exceptions.HTTPError as exc:
            raise DataError(f"{target}: download failed ({exc}); {by_hand}") from exc
        except requests.exceptions.RequestException as exc:
            have = partial.stat().st_size if partial.exists() else 0
            raise DataError(f"{target}: download interrupted after {have} bytes ({type(exc).__name__}); run "
                            "the same command again to resume") from exc
        finally:
            pooch_log.setLevel(level)
