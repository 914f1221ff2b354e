"""The book and the explorers in a real browser: headless Chromium driven over its DevTools protocol.

Chromium runs with ``--remote-debugging-pipe`` (CDP messages as NUL-terminated JSON on file
descriptors 3 and 4), so no WebSocket library and no browser download are needed. Every request
that would leave the machine is blocked and reported: the book and the app must work offline.

* every page of the built book (``$SYNTHEX_BOOK_HTML``, set by ``make browser`` after
  ``make book-check``; skipped when unset) loads without a console error, an uncaught exception, a
  failed or external request, a missing image or a broken internal link (file or ``#anchor``);
* the same checks catch a console error, a broken image and a broken link on a small generated page
  made broken on purpose, and pass its clean twin;
* the static explorer (generated here, and on chapter 02's page of the book) changes its picture when
  its slider moves by key presses, and its label overlay moves with a spatial effect;
* ``synthex explore`` redraws its figure when a control changes, and shows a bad value in one line.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]


def find_chromium() -> str | None:
    """``$SYNTHEX_CHROMIUM``, else chromium (Debian's package), chromium-browser or google-chrome on PATH."""
    env = os.environ.get("SYNTHEX_CHROMIUM")
    if env:
        return env if Path(env).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not found (apt-get install chromium, or set "
                                                          "SYNTHEX_CHROMIUM): browser tests skipped")

#: Console messages of the book's toolchain that the book cannot fix from its own pages, each with its
#: cause. Every other console error fails the test.
#: console messages of the tool chain itself that a page may log (pattern, reason); none today: the theme's
#: "invalid theme mode" error is gone since _config.yml sets html_context.default_mode
TOOLCHAIN_NOISE: tuple[tuple[str, str], ...] = ()


# -- a minimal DevTools-protocol client ---------------------------------------------------------------
class Chromium:
    """Headless Chromium over ``--remote-debugging-pipe``: :meth:`send` a command (optionally to a
    page session) and wait for its answer; events are kept in :attr:`events`."""

    def __init__(self, exe: str, timeout: float = 30.0):
        self.profile = tempfile.mkdtemp(prefix="synthex-chromium-")
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        # the child reads commands on fd 3 and writes answers on fd 4: move our ends out of the way first
        hi_r, hi_w = fcntl.fcntl(cmd_r, fcntl.F_DUPFD, 10), fcntl.fcntl(res_w, fcntl.F_DUPFD, 10)
        os.close(cmd_r)
        os.close(res_w)

        def child_fds() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        args = [exe, "--headless=new", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check", "--mute-audio",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--window-size=1280,900", f"--user-data-dir={self.profile}", "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=child_fds, pass_fds=(3, 4), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        os.close(hi_r)
        os.close(hi_w)
        self._w, self._r = cmd_w, res_r
        self._next = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._cv = threading.Condition()
        self.timeout = timeout
        threading.Thread(target=self._read, daemon=True).start()
        self.send("Browser.getVersion")

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            *msgs, buf = buf.split(b"\0")
            with self._cv:
                for raw in msgs:
                    m = json.loads(raw)
                    if "id" in m:
                        self._answers[m["id"]] = m
                    else:
                        self.events.append(m)
                self._cv.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float | None = None) -> dict[str, Any]:
        with self._cv:
            self._next += 1
            i = self._next
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        end = time.monotonic() + (timeout or self.timeout)
        with self._cv:
            while i not in self._answers:
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"chromium did not answer {method}")
                self._cv.wait(min(left, 0.5))
            answer = self._answers.pop(i)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    def new_page(self, block_remote: bool = True) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        return Page(self, session, target, block_remote)

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (TimeoutError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, evaluate JavaScript, press keys, and list what went wrong while loading."""

    def __init__(self, browser: Chromium, session: str, target: str, block_remote: bool = True):
        self.b, self.session, self.target = browser, session, target
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        if block_remote:  # nothing leaves the machine: remote requests fail at once and are reported
            self.send("Network.setBlockedURLs", {"urls": ["http://*", "https://*", "ws://*", "wss://*"]})
        self._mark = 0

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float | None = None) -> dict:
        return self.b.send(method, params, self.session, timeout)

    def _events(self) -> list[dict[str, Any]]:
        with self.b._cv:
            return [e for e in self.b.events[self._mark:] if e.get("sessionId") == self.session]

    def goto(self, url: str, timeout: float = 30.0) -> None:
        with self.b._cv:
            self._mark = len(self.b.events)
        self.send("Page.navigate", {"url": url})
        end = time.monotonic() + timeout
        while not any(e["method"] == "Page.loadEventFired" for e in self._events()):
            if time.monotonic() > end:
                raise TimeoutError(f"{url} did not finish loading in {timeout:.0f} s")
            time.sleep(0.05)

    def eval(self, expression: str, timeout: float | None = None) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                      timeout)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression[:80]}: {r['exceptionDetails'].get('exception', {}).get('description')}")
        return r["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20.0) -> Any:
        end = time.monotonic() + timeout
        while True:
            v = self.eval(expression)
            if v:
                return v
            if time.monotonic() > end:
                raise TimeoutError(f"still false after {timeout:.0f} s: {expression}")
            time.sleep(0.1)

    def press(self, selector: str, key: str = "ArrowRight", times: int = 1) -> None:
        """Focus ``selector`` and press ``key`` as a user would (real key events, not a set value)."""
        self.eval(f"document.querySelector({json.dumps(selector)}).focus()")
        codes = {"ArrowRight": 39, "ArrowLeft": 37, "ArrowUp": 38, "ArrowDown": 40, "End": 35, "Home": 36}
        for _ in range(times):
            for kind in ("rawKeyDown", "keyUp"):
                self.send("Input.dispatchKeyEvent", {"type": kind, "key": key, "code": key,
                                                     "windowsVirtualKeyCode": codes[key],
                                                     "nativeVirtualKeyCode": codes[key]})

    def screenshot(self, path: Path) -> None:
        path.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"]))

    def problems(self, settle: float = 0.3) -> list[str]:
        """Everything that went wrong since the last :meth:`goto`: console errors and assertions,
        uncaught exceptions, browser log errors, failed requests, HTTP errors, requests that leave the
        machine, and images that did not load (lazy ones are made eager first)."""
        self.eval("Array.from(document.images).forEach(function (i) { i.loading = 'eager'; })")
        try:
            self.wait_for("Array.from(document.images).every(function (i) { return i.complete; })", 10)
        except TimeoutError:
            pass
        time.sleep(settle)
        out: list[str] = []
        urls: dict[str, str] = {}
        for e in self._events():
            m, p = e["method"], e.get("params", {})
            if m == "Network.requestWillBeSent":
                url = p["request"]["url"]
                urls[p["requestId"]] = url
                if urlparse(url).scheme not in ("file", "data", "blob", "about") and \
                        urlparse(url).hostname not in ("127.0.0.1", "localhost", "::1"):
                    out.append(f"request leaves the machine (the page must work offline): {url}")
            elif m == "Network.loadingFailed" and p.get("blockedReason") is None:
                out.append(f"failed to load {urls.get(p['requestId'], '?')}: {p.get('errorText')}")
            elif m == "Network.responseReceived" and p["response"].get("status", 200) >= 400:
                out.append(f"HTTP {p['response']['status']} for {p['response']['url']}")
            elif m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"uncaught exception: {d.get('exception', {}).get('description') or d.get('text')} "
                           f"({d.get('url', '')}:{d.get('lineNumber', 0) + 1})")
            elif m == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
                out.append(f"console.{p['type']}: {text}")
            elif m == "Log.entryAdded" and p["entry"]["level"] == "error":
                ent = p["entry"]
                if ent.get("source") == "network" and "ERR_BLOCKED_BY_CLIENT" in ent.get("text", ""):
                    continue  # a blocked remote request: reported above as leaving the machine
                out.append(f"{ent.get('source')} error: {ent['text']} {ent.get('url', '')}".strip())
        broken = self.eval("Array.from(document.images).filter(function (i) { return !(i.complete && "
                           "i.naturalWidth > 0); }).map(function (i) { return i.currentSrc || i.src || "
                           "i.outerHTML.slice(0, 120); })")
        out += [f"image did not load: {src[:200]}" for src in broken]
        return [x for x in out if not any(re.search(rx, x) for rx, _ in TOOLCHAIN_NOISE)]

    def links(self) -> list[str]:
        return self.eval("Array.from(document.querySelectorAll('a[href]')).map(function (a) { return a.href; })")


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k == "id" or (tag == "a" and k == "name"):
                self.ids.add(v or "")


def broken_links(hrefs: list[str], cache: dict[Path, set[str]] | None = None) -> list[str]:
    """The file:// links among ``hrefs`` whose file does not exist or whose ``#anchor`` no element of the
    target page carries (remote, mailto and javascript links are not checked here)."""
    cache = {} if cache is None else cache
    bad = []
    for href in hrefs:
        u = urlparse(href)
        if u.scheme != "file":
            continue
        path = Path(unquote(u.path))
        if path.is_dir():
            path = path / "index.html"
        if not path.exists():
            bad.append(f"broken link: {href} ({path} does not exist)")
            continue
        if u.fragment and path.suffix == ".html":
            if path not in cache:
                parser = _Ids()
                parser.feed(path.read_text(encoding="utf-8", errors="replace"))
                cache[path] = parser.ids
            if unquote(u.fragment) not in cache[path]:
                bad.append(f"broken anchor: {href} (no id '{unquote(u.fragment)}' in {path.name})")
    return bad


def check_page(page: Page, url: str, cache: dict[Path, set[str]] | None = None) -> list[str]:
    """Every problem of the page at ``url``: load problems and broken internal links."""
    page.goto(url)
    return page.problems() + broken_links(page.links(), cache)


@pytest.fixture(scope="module")
def browser():
    b = Chromium(CHROMIUM)
    yield b
    b.close()


def _close(browser: Chromium, p: Page) -> None:
    try:
        browser.send("Target.closeTarget", {"targetId": p.target})
    except (RuntimeError, TimeoutError):
        pass


@pytest.fixture
def page(browser):
    p = browser.new_page()
    yield p
    _close(browser, p)


@pytest.fixture
def app_page(browser):
    """A tab that may reach the loopback server of ``synthex explore`` (file pages block every remote URL)."""
    p = browser.new_page(block_remote=False)
    yield p
    _close(browser, p)


# -- the checks catch what they claim to catch --------------------------------------------------------
_PNG_1PX = base64.b64encode(bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360f8cfc000000301010018dd8db00000000049454e44ae426082")).decode()


def _fixture_site(folder: Path, broken: bool) -> Path:
    """A two-page site; with ``broken``, a console error, a missing image, a broken link and anchor."""
    (folder / "img").mkdir()
    (folder / "img" / "ok.png").write_bytes(base64.b64decode(_PNG_1PX))
    (folder / "other.html").write_text('<!doctype html><title>o</title><h1 id="here">other</h1>')
    extra = ('<img src="img/missing.png" alt="gone"><a href="nowhere.html">x</a><a href="other.html#nothere">y</a>'
             "<script>console.error('deliberate failure');</script>") if broken else ""
    (folder / "index.html").write_text(
        f'<!doctype html><title>t</title><img src="img/ok.png" alt="ok"><img src="data:image/png;base64,{_PNG_1PX}"'
        f' alt="inline"><a href="other.html#here">ok</a><a href="#top" id="top">top</a>{extra}')
    return folder / "index.html"


def test_checks_pass_a_clean_page(page, tmp_path):
    assert check_page(page, _fixture_site(tmp_path, broken=False).as_uri()) == []


def test_checks_catch_a_console_error_a_broken_image_and_broken_links(page, tmp_path):
    found = check_page(page, _fixture_site(tmp_path, broken=True).as_uri())
    text = "\n".join(found)
    assert "console.error: deliberate failure" in text
    assert "image did not load" in text and "missing.png" in text
    assert "broken link" in text and "nowhere.html" in text
    assert "broken anchor" in text and "nothere" in text


def test_checks_catch_an_uncaught_exception_and_a_remote_request(page, tmp_path):
    html = ('<!doctype html><title>t</title><script src="https://cdn.example.invalid/lib.js"></script>'
            "<script>undefinedFunction();</script>")
    (tmp_path / "p.html").write_text(html)
    found = "\n".join(check_page(page, (tmp_path / "p.html").as_uri()))
    assert "uncaught exception: ReferenceError: undefinedFunction is not defined" in found
    assert "request leaves the machine" in found and "cdn.example.invalid" in found


# -- the static explorer ------------------------------------------------------------------------------
def _variant(page: Page) -> tuple[str, str, str]:
    """(digest of the randomized image, digest of its overlay, its caption) of the first static explorer."""
    v = page.eval("(function () { var r = document.querySelector('.sx-dr-explorer'); return [r.querySelector("
                  "'.sx-variant').src, r.querySelector('.sx-variant-ovl').src, r.dataset.state]; })()")
    return hashlib.sha1(v[0].encode()).hexdigest(), hashlib.sha1(v[1].encode()).hexdigest(), v[2]


def _select_effect(page: Page, title: str) -> None:
    page.eval("(function () { var s = document.querySelector('.sx-dr-explorer .sx-effect');"
              "var i = Array.from(s.options).findIndex(function (o) { return o.textContent === "
              f"{json.dumps(title)}; }}); s.value = String(i); s.dispatchEvent(new Event('change')); }})()")


def exercise_static_explorer(page: Page) -> None:
    """Move the strength slider with the keyboard: the picture changes; for the affine warp the label
    overlay moves too, for an intensity effect it stays the input's."""
    page.wait_for("document.querySelector('.sx-dr-explorer') && "
                  "document.querySelector('.sx-dr-explorer').dataset.ready === '1'")
    _select_effect(page, "affine")
    top = _variant(page)
    assert top[2].startswith("affine | rotate")
    page.press(".sx-dr-explorer .sx-strength", "ArrowLeft", times=2)
    lower = _variant(page)
    assert lower[0] != top[0], "moving the slider did not change the image"
    assert lower[1] != top[1], "the label overlay did not move with the affine warp"
    assert lower[2] != top[2]
    input_ovl = page.eval("document.querySelector('.sx-dr-explorer .sx-ovl').src")
    _select_effect(page, "noise")
    noise_top = _variant(page)
    page.press(".sx-dr-explorer .sx-strength", "Home")
    noise_low = _variant(page)
    assert noise_low[0] != noise_top[0]
    assert noise_low[1] == noise_top[1] == hashlib.sha1(input_ovl.encode()).hexdigest()
    page.eval("document.querySelector('.sx-dr-explorer .sx-labels').click()")
    assert page.eval("getComputedStyle(document.querySelector('.sx-dr-explorer .sx-variant-ovl')).visibility") \
        == "hidden"


def test_static_explorer_slider_changes_the_picture(page, tmp_path):
    from synthex_lib.figures.explorer_static import build_static_explorer
    from synthex_lib.figures.phantom import disc_phantom

    ex = build_static_explorer(disc_phantom(64, radius=4.0, seed=1), levels=3, source="disc phantom")
    (tmp_path / "static.html").write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>s</title>"
                                          f"</head><body>{ex.html()}</body></html>")
    page.goto((tmp_path / "static.html").as_uri())
    exercise_static_explorer(page)
    page.goto((tmp_path / "static.html").as_uri())
    assert page.problems() == []


# -- the built book -----------------------------------------------------------------------------------
def book_html() -> Path:
    env = os.environ.get("SYNTHEX_BOOK_HTML")
    if not env:
        pytest.skip("SYNTHEX_BOOK_HTML not set: `make browser` sets it after `make book-check` builds the book")
    root = Path(env).resolve()
    if not (root / "index.html").exists():
        pytest.fail(f"SYNTHEX_BOOK_HTML={env} holds no index.html: build the book first (make book-check)")
    return root


def test_book_pages_load_cleanly(page):
    root = book_html()
    pages = sorted(p for p in root.rglob("*.html") if "_static" not in p.relative_to(root).parts
                   and "_sources" not in p.relative_to(root).parts)
    assert root / "index.html" in pages and any(p.parent.name == "notebooks" for p in pages)
    cache: dict[Path, set[str]] = {}
    problems = {str(p.relative_to(root)): check_page(page, p.as_uri(), cache) for p in pages}
    bad = {k: v for k, v in problems.items() if v}
    assert not bad, "\n".join(f"{k}:\n  " + "\n  ".join(v) for k, v in bad.items())


def test_book_static_explorer_works(page):
    root = book_html()
    chapter = root / "notebooks" / "02_domain_randomization.html"
    assert chapter.exists(), f"{chapter} is missing from the built book"
    if "sx-dr-explorer" not in chapter.read_text(encoding="utf-8"):
        pytest.fail(f"{chapter.name} has no static explorer: refresh the notebook's stored outputs "
                    "(make nbval-refresh) and rebuild (make book-check)")
    page.goto(chapter.as_uri())
    exercise_static_explorer(page)


# -- synthex explore ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def explore_url():
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = "import sys; from synthex_lib.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen([sys.executable, "-c", cmd, "explore", "--phantom", "--port", str(port), "--copies", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env)
    line = ""
    end = time.monotonic() + 120
    while "serving" not in line:
        line = proc.stdout.readline()
        if (not line and proc.poll() is not None) or time.monotonic() > end:
            proc.kill()
            pytest.fail(f"synthex explore did not start: {line}{proc.stdout.read()}")
    url = re.search(r"http://\S+/", line).group(0)
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_explore_app_redraws_when_a_control_moves(app_page, explore_url):
    page = app_page
    page.goto(explore_url)
    page.wait_for("document.body.dataset.renders === '1' && !document.body.dataset.pending", 60)
    first = page.eval("document.getElementById('figure').src")
    assert first.startswith("data:image/png;base64,") and len(first) > 1000
    assert page.eval("document.getElementById('figure').naturalWidth") > 100
    # open the noise step and move its low sigma slider up with the keyboard
    page.eval("document.querySelector('details[data-step=noise]').open = true")
    page.press("details[data-step=noise] .ctl[data-key=sigma] input", "End")
    page.wait_for("document.body.dataset.renders === '2' && !document.body.dataset.pending", 60)
    second = page.eval("document.getElementById('figure').src")
    assert second != first, "the picture did not redraw"
    assert "noise" in page.eval("document.getElementById('config').textContent")
    assert page.eval("document.getElementById('status').textContent") == ""
    # a bad value: one line on the page, the last picture kept
    page.eval("(function () { var t = document.querySelector('details[data-step=pooling] .ctl[data-key=kernel] "
              "input'); t.value = '2, x'; t.dispatchEvent(new Event('change', {bubbles: true})); })()")
    status = page.wait_for("document.getElementById('status').textContent", 60)
    assert "ConfigError" in status and "\n" not in status
    assert page.eval("document.getElementById('figure').src") == second
    # the only trouble the browser saw: the 400 answer to the bad value (as a response and as its log line)
    others = [p for p in page.problems() if "api/render" not in p or "400" not in p]
    assert others == []
