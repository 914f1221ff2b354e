"""Download (pooch, sha256, resume), safe unzip, lock file, import and verify: against a local HTTP server."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.realdata import fetch as F
from synthex_lib.realdata.manifest import Manifest, load_manifest

PAYLOAD = bytes(range(256)) * 1200  # 307 kB


def _zip(members: dict[str, bytes], symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


class _Server:
    """A bounded HTTP server on 127.0.0.1: serves ``files``, honours Range (unless ``no_range``), can cut
    the first response to a path after ``cut[path]`` bytes, logs requests, and stops itself after 60 s."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.no_range = False
        self.log: list[tuple[str, str | None]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                self._serve(head=True)

            def do_GET(self):
                self._serve()

            def _serve(self, head=False):
                rng = self.headers.get("Range")
                outer.log.append((self.path, rng))
                data = outer.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if rng and not outer.no_range:
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if head:
                    return
                cut = outer.cut.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.wfile.flush()
                if cut is not None:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.timer = threading.Timer(60.0, self.httpd.shutdown)  # bounded: stops itself

    def __enter__(self) -> _Server:
        self.thread.start()
        self.timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self.timer.cancel()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    with _Server() as s:
        yield s


@pytest.fixture(autouse=True)
def data_root(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHEX_DATA", str(tmp_path / "data"))
    return tmp_path / "data"


def _manifest(name: str, files: list[dict], access: str = "open", expect: tuple[str, ...] = ()) -> Manifest:
    return Manifest.from_dict({
        "name": name, "title": f"test dataset {name}", "kind": "real", "description": "a tiny test dataset",
        "source": {"doi": None, "url": "http://127.0.0.1/"}, "license": "CC0",
        "citation": {"text": "Nobody. A test. (2026)."}, "access": {"type": access, "terms": "none at all",
                                                                   "how_to_obtain": "Register at the test site."},
        "size": "1 kB", "files": files, "expect": list(expect), "layout": "file.bin", "used_for": "tests only",
    })


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_fetch_with_published_hash_then_skip(server, data_root):
    server.files["/file.bin"] = PAYLOAD
    m = _manifest("t-hash", [{"name": "file.bin", "url": server.url + "/file.bin", "sha256": _sha(PAYLOAD)}])
    msgs: list[str] = []
    rep = F.fetch(m, progress=False, echo=msgs.append)
    target = data_root / "real" / "t-hash" / "file.bin"
    assert rep.fetched == ["file.bin"] and target.read_bytes() == PAYLOAD and not rep.recorded
    n = len(server.log)
    rep = F.fetch(m, progress=False, echo=msgs.append)
    assert rep.skipped == ["file.bin"] and len(server.log) == n  # verified locally, nothing downloaded
    assert [c.status for c in F.verify(m)] == ["ok"]


def test_wrong_published_hash_keeps_nothing(server, data_root):
    server.files["/file.bin"] = PAYLOAD
    m = _manifest("t-bad", [{"name": "file.bin", "url": server.url + "/file.bin", "sha256": "0" * 64}])
    with pytest.raises(DataError, match="sha256 of the download does not match the manifest hash") as e:
        F.fetch(m, progress=False, echo=lambda s: None)
    assert "file.bin" in str(e.value)
    folder = data_root / "real" / "t-bad"
    assert [p.name for p in folder.iterdir()] == []  # no file, no partial, no temporary


def test_first_download_records_hash_in_lock(server, data_root):
    server.files["/file.bin"] = PAYLOAD
    m = _manifest("t-lock", [{"name": "file.bin", "url": server.url + "/file.bin"}])
    msgs: list[str] = []
    rep = F.fetch(m, progress=False, echo=msgs.append)
    assert rep.recorded == ["file.bin"]
    assert any("recorded the first-seen sha256" in s and _sha(PAYLOAD) in s for s in msgs)
    lock = json.loads(F.lock_path().read_text())
    entry = lock["datasets"]["t-lock"]["file.bin"]
    assert entry["sha256"] == _sha(PAYLOAD) and entry["hash_origin"] == "first-seen"
    # later: the lock is the reference; a changed upstream file is refused and nothing is kept
    server.files["/file.bin"] = PAYLOAD[::-1]
    with pytest.raises(DataError, match="does not match the lock hash"):
        F.fetch(m, force=True, progress=False, echo=msgs.append)
    assert not (data_root / "real" / "t-lock" / "file.bin").exists()


def test_verify_finds_a_corrupted_byte(server, data_root):
    server.files["/file.bin"] = PAYLOAD
    m = _manifest("t-verify", [{"name": "file.bin", "url": server.url + "/file.bin"}])
    F.fetch(m, progress=False, echo=lambda s: None)
    target = data_root / "real" / "t-verify" / "file.bin"
    data = bytearray(target.read_bytes())
    data[1234] ^= 0x01
    target.write_bytes(bytes(data))
    with pytest.raises(DataError, match="1 corrupted file") as e:
        F.verify(m)
    assert str(target) in str(e.value)


def test_resume_after_an_interrupted_download(server, data_root):
    server.files["/big.bin"] = PAYLOAD
    server.cut["/big.bin"] = 200_000  # the first response stops after 200 kB
    m = _manifest("t-resume", [{"name": "big.bin", "url": server.url + "/big.bin", "sha256": _sha(PAYLOAD)}])
    with pytest.raises(DataError, match="interrupted after [0-9]+ bytes.*run the same command again to resume"):
        F.fetch(m, progress=False, echo=lambda s: None)
    folder = data_root / "real" / "t-resume"
    have = (folder / ".big.bin.partial").stat().st_size  # whole chunks received before the cut
    assert not (folder / "big.bin").exists() and 100_000 < have <= 200_000
    assert F.status(m).detail.endswith(".big.bin.partial")
    F.fetch(m, progress=False, echo=lambda s: None)
    assert server.log[-1] == ("/big.bin", f"bytes={have}-")  # asked only for the rest
    assert (folder / "big.bin").read_bytes() == PAYLOAD and not (folder / ".big.bin.partial").exists()


def test_server_without_range_support_restarts(server, data_root):
    server.files["/big.bin"] = PAYLOAD
    server.no_range = True
    m = _manifest("t-norange", [{"name": "big.bin", "url": server.url + "/big.bin", "sha256": _sha(PAYLOAD)}])
    folder = data_root / "real" / "t-norange"
    folder.mkdir(parents=True)
    (folder / ".big.bin.partial").write_bytes(b"garbage" * 100)
    F.fetch(m, progress=False, echo=lambda s: None)
    assert (folder / "big.bin").read_bytes() == PAYLOAD


def test_resumed_download_with_a_bad_prefix_starts_over(server, data_root):
    server.files["/big.bin"] = PAYLOAD
    m = _manifest("t-badpart", [{"name": "big.bin", "url": server.url + "/big.bin", "sha256": _sha(PAYLOAD)}])
    folder = data_root / "real" / "t-badpart"
    folder.mkdir(parents=True)
    (folder / ".big.bin.partial").write_bytes(b"\xff" * 1000)  # not the file's first bytes
    msgs: list[str] = []
    F.fetch(m, progress=False, echo=msgs.append)
    assert [r for _, r in server.log] == ["bytes=1000-", None]  # resumed, mismatched, then from scratch
    assert any("downloading from scratch" in s for s in msgs)
    assert (folder / "big.bin").read_bytes() == PAYLOAD


def test_fetch_and_unpack_zip_then_verify_members(server, data_root):
    members = {"pkg/a.h5": PAYLOAD, "pkg/sub/b.txt": b"hello"}
    server.files["/data.zip"] = _zip(members)
    m = _manifest("t-zip", [{"name": "data.zip", "url": server.url + "/data.zip", "unpack": "zip",
                             "members": ["pkg/a.h5"]}], expect=("pkg/a.h5",))
    rep = F.fetch(m, progress=False, echo=lambda s: None)
    folder = data_root / "real" / "t-zip"
    assert sorted(rep.unpacked) == sorted(members) and (folder / "pkg/sub/b.txt").read_bytes() == b"hello"
    assert not list(folder.glob(".unpack-*"))
    assert F.status(m).state == "present"
    (folder / "pkg/sub/b.txt").unlink()  # a lost member is unpacked again from the intact archive
    n = len(server.log)
    rep = F.fetch(m, progress=False, echo=lambda s: None)
    assert rep.fetched == [] and "pkg/sub/b.txt" in rep.unpacked and len(server.log) == n
    assert (folder / "pkg/sub/b.txt").read_bytes() == b"hello"
    (folder / "data.zip").unlink()  # the archive may be deleted: members are still verified
    assert {c.status for c in F.verify(m)} == {"ok"}
    assert F.fetch(m, progress=False, echo=lambda s: None).skipped == ["data.zip"]
    (folder / "pkg/a.h5").write_bytes(PAYLOAD[:-1] + b"\x00")
    with pytest.raises(DataError, match=r"corrupted file.*pkg/a\.h5"):
        F.verify(m)


@pytest.mark.parametrize("members, symlink, match", [
    ({"../evil.txt": b"x", "ok.txt": b"y"}, None, r"member '\.\./evil\.txt' would escape"),
    ({"ok.txt": b"y", "a/../../evil.txt": b"x"}, None, "would escape the target folder"),
    ({"/abs/evil.txt": b"x"}, None, "has an absolute path"),
    ({"C:/evil.txt": b"x"}, None, "has an absolute path"),
    ({"ok.txt": b"y"}, "link", "is a symbolic link"),
])
def test_unsafe_zip_is_refused_and_nothing_is_written(server, data_root, tmp_path, members, symlink, match):
    server.files["/evil.zip"] = _zip(members, symlink)
    m = _manifest("t-evil", [{"name": "evil.zip", "url": server.url + "/evil.zip", "unpack": "zip"}])
    with pytest.raises(DataError, match=match) as e:
        F.fetch(m, progress=False, echo=lambda s: None)
    assert "evil.zip" in str(e.value) and "refusing to unpack" in str(e.value)
    folder = data_root / "real" / "t-evil"
    assert list(folder.iterdir()) == []  # archive removed, nothing extracted
    assert not (data_root / "real" / "evil.txt").exists() and not Path("/abs/evil.txt").exists()
    assert "t-evil" not in F.read_lock()["datasets"]
    # import refuses it too, before copying anything
    src = tmp_path / "evil.zip"
    src.write_bytes(server.files["/evil.zip"])
    with pytest.raises(DataError, match=match):
        F.import_file(m, src, echo=lambda s: None)
    assert list(folder.iterdir()) == []


def test_truncated_zip_is_refused(server, data_root):
    server.files["/cut.zip"] = _zip({"a.bin": PAYLOAD})[:-40]
    m = _manifest("t-cut", [{"name": "cut.zip", "url": server.url + "/cut.zip", "unpack": "zip"}])
    with pytest.raises(DataError, match="not a readable zip archive"):
        F.fetch(m, progress=False, echo=lambda s: None)
    assert list((data_root / "real" / "t-cut").iterdir()) == []


def test_http_error_names_the_file_and_the_way_out(server):
    m = _manifest("t-404", [{"name": "gone.bin", "url": server.url + "/gone.bin"}])
    with pytest.raises(DataError, match="404.*synthex data import t-404 FILE"):
        F.fetch(m, progress=False, echo=lambda s: None)


def test_auto_unpack_keeps_archive_beside_content(server, data_root):
    server.files["/x.h5"] = _zip({"x.h5": PAYLOAD})  # the host answers with a zip holding the file itself
    m = _manifest("t-auto", [{"name": "x.h5", "url": server.url + "/x.h5", "unpack": "auto", "members": ["x.h5"]}])
    F.fetch(m, progress=False, echo=lambda s: None)
    folder = data_root / "real" / "t-auto"
    assert (folder / "x.h5").read_bytes() == PAYLOAD and (folder / "x.h5.zip").exists()
    assert {c.status for c in F.verify(m)} == {"ok"}


# --- import ---------------------------------------------------------------------------------------------

def test_import_checks_hash_and_records(tmp_path, data_root):
    src = tmp_path / "file.bin"
    src.write_bytes(PAYLOAD)
    m = _manifest("t-imp", [{"name": "file.bin", "url": None, "sha256": _sha(PAYLOAD)}], access="manual")
    target = F.import_file(m, src, echo=lambda s: None)
    assert target.read_bytes() == PAYLOAD and src.exists()
    assert {c.status for c in F.verify(m)} == {"ok"}
    bad = tmp_path / "bad.bin"
    bad.write_bytes(PAYLOAD[:-1])
    target.unlink()
    with pytest.raises(DataError, match="does not match the manifest hash.*nothing was imported"):
        F.import_file(m, bad, as_name="file.bin", echo=lambda s: None)
    assert not target.exists()


def test_import_member_and_unknown_name(tmp_path, data_root):
    m = load_manifest("deepfluoro")
    h5 = tmp_path / "ipcai_2020_full_res_data.h5"
    h5.write_bytes(PAYLOAD)
    msgs: list[str] = []
    F.import_file(m, h5, mode="link", echo=msgs.append)
    placed = data_root / "real" / "deepfluoro" / "ipcai_2020_full_res_data.h5"
    assert placed.is_symlink() and placed.read_bytes() == PAYLOAD
    assert any("first-seen sha256" in s for s in msgs)
    assert F.status(m).state == "present"
    assert {c.status for c in F.verify(m)} == {"ok"}
    other = tmp_path / "random.h5"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a file of dataset 'deepfluoro'.*--as"):
        F.import_file(m, other, echo=lambda s: None)


def test_import_unlisted_zip_for_manual_dataset(tmp_path, data_root):
    m = load_manifest("qata-cov19")
    z = tmp_path / "qatacov19-dataset.zip"
    z.write_bytes(_zip({"QaTa-COV19/QaTa-COV19-v1/Images/covid_1.png": b"i",
                        "QaTa-COV19/QaTa-COV19-v1/Ground-truths/mask_covid_1.png": b"m"}))
    F.import_file(m, z, echo=lambda s: None)
    folder = data_root / "real" / "qata-cov19"
    assert (folder / "QaTa-COV19/QaTa-COV19-v1/Images/covid_1.png").exists()
    assert F.status(m).state == "present"


# --- restricted data and the command line --------------------------------------------------------------

def test_restricted_dataset_says_how_to_obtain_access():
    with pytest.raises(F.AccessRequiredError, match="(?s)access restricted.*Register at the NMDID site"):
        F.fetch("nmdid", echo=lambda s: None)
    with pytest.raises(ConfigError, match="generated by the library"):
        F.import_file("lab", __file__)


def _cli(argv: list[str]) -> int:
    from synthex_lib.cli.data import add_parser

    parser = argparse.ArgumentParser(prog="synthex")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli(server, data_root, tmp_path, monkeypatch, capsys):
    assert _cli(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("deepfluoro", "deepfluoro-8x", "nmdid", "qata-cov19", "lab", "totalsegmentator"):
        assert f"  {name} " in out
    assert _cli(["data", "fetch", "nmdid"]) == 3
    assert "How to obtain it" in capsys.readouterr().out
    assert _cli(["data", "status", "deepfluoro"]) == 0
    out = capsys.readouterr().out
    assert "missing" in out and "10.7281/T1/IFSXNV/EAN9GH" in out and "CC BY-NC 4.0" in out
    # a user's own manifest folder, fetched through the command
    mdir = tmp_path / "manifests"
    mdir.mkdir()
    server.files["/f.bin"] = PAYLOAD
    (mdir / "mine.yaml").write_text(
        "name: mine\ntitle: my dataset\nkind: real\ndescription: a tiny test dataset\n"
        f"source: {{url: '{server.url}/'}}\nlicense: CC0\ncitation: {{text: 'Me. My data. 2026.'}}\n"
        "access: {type: open, terms: 'free to use'}\nsize: 77 kB\n"
        f"files: [{{name: f.bin, url: '{server.url}/f.bin'}}]\nlayout: f.bin\nused_for: testing the CLI\n")
    monkeypatch.setenv("SYNTHEX_MANIFESTS", str(mdir))
    assert _cli(["data", "fetch", "mine", "--no-progress"]) == 0
    assert "first-seen sha256" in capsys.readouterr().out
    assert _cli(["data", "verify", "mine"]) == 0
    assert "1 file(s) verified" in capsys.readouterr().out
    with pytest.raises(DataError, match="nothing to verify.*synthex data fetch empty"):
        F.verify(_manifest("empty", [{"name": "z.bin", "url": server.url + "/z.bin"}]))


def test_cli_import_of_an_incomplete_dataset_exits_2_unless_partial(tmp_path, data_root, capsys):
    """A zip with the images but not the masks: the file is imported, and the command says the dataset is
    incomplete with exit 2 (or 0 with --partial)."""
    from synthex_lib.cli import main

    z = tmp_path / "qatacov19-dataset.zip"
    z.write_bytes(_zip({"QaTa-COV19/QaTa-COV19-v1/Images/covid_1.png": b"i"}))
    assert main(["data", "import", "qata-cov19", str(z)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "still incomplete" in err[0] and "**/Ground-truths" in err[0] and "--partial" in err[0]
    assert (data_root / "real" / "qata-cov19" / "QaTa-COV19/QaTa-COV19-v1/Images/covid_1.png").exists()
    assert main(["data", "import", "qata-cov19", str(z), "--partial"]) == 0
    assert "still missing: **/Ground-truths" in capsys.readouterr().out
