"""The live domain-randomization explorer as a local web app (``synthex explore``).

A standard-library HTTP server on the loopback interface serves one page (inline CSS and
JavaScript, no external resource, so it works offline) with the controls of the live Jupyter
explorer: preset, seed, epoch, copies and, per step, probability, on/off and every parameter.
Each change posts the edited values to ``/api/render``, which builds the configuration and draws
the figure with the same functions as the Jupyter widget
(:func:`synthex_lib.figures.explorer.explorer_config`, :func:`~synthex_lib.figures.explorer.explorer_figure`)
and answers with the PNG, the effects that fired and the configuration as YAML. A bad value is
answered with status 400 and one line, which the page shows while it keeps the last picture.

Endpoints: ``GET /`` (the page), ``GET /api/controls?preset=NAME`` (the controls as JSON),
``POST /api/render`` (JSON ``{"preset", "seed", "epoch", "copies", "values": {step: {key: value}}}``).
"""

from __future__ import annotations

import base64
import html
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import yaml

from synthex_lib.core.errors import ConfigError, DataError
from synthex_lib.figures.explorer import (
    MAX_COPIES,
    check_copies,
    explorer_config,
    explorer_figure,
    figure_png,
    step_controls,
)
from synthex_lib.randomization import PRESET_DOCS, DomainRandomization, preset_names

#: Largest request body accepted by ``/api/render`` (bytes); a control set is a few kB.
MAX_BODY = 1 << 20


def _int(name: str, v: Any, lo: int, hi: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"explorer: '{name}' must be an integer from {lo} to {hi}, got {v!r}")
    return v


class ExplorerApp:
    """The app's state: one ``sample`` (``image`` [H, W] or [1, H, W], ``labels`` [H, W],
    ``landmarks`` [L, 2] as (x, y) pixels, ``visible`` [L]), described by ``source``, and the
    initial settings. :meth:`render` is what ``/api/render`` answers."""

    def __init__(self, sample: dict[str, Any], source: str = "", preset: str = "strong", seed: int = 0,
                 copies: int = 6, columns: int = 3, dpi: int = 80):
        if preset not in preset_names():
            raise ConfigError(f"explorer: unknown preset {preset!r}; valid presets: {', '.join(preset_names())}")
        self.sample = sample
        self.source = source
        self.preset = preset
        self.seed = _int("seed", seed, 0, 2**31 - 1)
        self.copies = check_copies(copies)
        self.columns = columns
        self.dpi = dpi
        self._lock = threading.Lock()  # one figure at a time: the CPU is the limit, not the threads

    def controls(self, preset: str) -> dict[str, Any]:
        """The controls of ``preset`` as JSON data (raises :class:`ConfigError` for an unknown preset)."""
        return {"preset": preset, "doc": PRESET_DOCS.get(preset, ""),
                "steps": [s.as_json() for s in step_controls(preset)]}

    def render(self, request: dict[str, Any]) -> dict[str, Any]:
        """The figure a control set describes: ``{"png": base64 PNG, "fired": [[effect, ...] per copy],
        "config": YAML of the edited configuration}``. Raises :class:`ConfigError` naming a bad value."""
        if not isinstance(request, dict):
            raise ConfigError("explorer: the request must be a JSON object")
        preset = request.get("preset", self.preset)
        if preset not in preset_names():
            raise ConfigError(f"explorer: unknown preset {preset!r}; valid presets: {', '.join(preset_names())}")
        seed = _int("seed", request.get("seed", self.seed), 0, 2**31 - 1)
        epoch = _int("epoch", request.get("epoch", 0), 0, 10**6)
        copies = check_copies(request.get("copies", self.copies))
        values = request.get("values", {})
        if not isinstance(values, dict):
            raise ConfigError("explorer: 'values' must map step names to {control: value}")
        try:
            config = explorer_config(preset, values)
        except ConfigError:
            raise
        except ValueError as e:  # an int_choices text that is not a list of integers
            raise ConfigError(f"explorer: {e}") from e
        with self._lock:
            dr = DomainRandomization.from_config(config, seed=seed)
            fig = explorer_figure(self.sample, config, seed=seed, epoch=epoch, copies=copies, columns=self.columns)
            png = figure_png(fig, self.dpi)
        return {"png": base64.b64encode(png).decode("ascii"), "fired": dr.fired(range(copies), epoch),
                "config": yaml.safe_dump(config, sort_keys=False)}

    def page(self) -> str:
        """The app's page (self-contained HTML)."""
        options = "".join(f'<option value="{html.escape(p)}"{" selected" if p == self.preset else ""}>'
                          f"{html.escape(p)}</option>" for p in preset_names())
        return _PAGE.format(options=options, seed=self.seed, copies=self.copies, max_copies=MAX_COPIES,
                            source=html.escape(self.source))


class _Handler(BaseHTTPRequestHandler):
    server: ExplorerServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, data: Any) -> None:
        self._send(status, json.dumps(data).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlparse(self.path)
        app = self.server.app
        if url.path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, app.page().encode(), "text/html; charset=utf-8")
        elif url.path == "/api/controls":
            preset = parse_qs(url.query).get("preset", [app.preset])[0]
            try:
                self._json(HTTPStatus.OK, app.controls(preset))
            except ConfigError as e:
                self._json(HTTPStatus.BAD_REQUEST, {"error": str(e)})
        elif url.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no page {url.path}"})

    def do_POST(self) -> None:
        if urlparse(self.path).path != "/api/render":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no endpoint {self.path}"})
            return
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if not 0 < n <= MAX_BODY:
                raise ConfigError(f"explorer: request body of {n} bytes; send 1 byte to {MAX_BODY} bytes of JSON")
            try:
                request = json.loads(self.rfile.read(n))
            except ValueError as e:
                raise ConfigError(f"explorer: the request is not JSON ({e})") from e
            self._json(HTTPStatus.OK, self.server.app.render(request))
        except (ConfigError, DataError) as e:
            self._json(HTTPStatus.BAD_REQUEST, {"error": f"{type(e).__name__}: {e}"})
        except Exception as e:  # a fault while drawing: say so on the page, keep serving
            self._json(HTTPStatus.INTERNAL_SERVER_ERROR, {"error": f"{type(e).__name__}: {e}"})


class ExplorerServer(ThreadingHTTPServer):
    """The HTTP server of an :class:`ExplorerApp` (``url`` once bound)."""

    daemon_threads = True

    def __init__(self, app: ExplorerApp, port: int = 0, host: str = "127.0.0.1", verbose: bool = False):
        self.app = app
        self.verbose = verbose
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>SyntheX domain-randomization explorer</title>
<style>
body {{font: 14px/1.4 sans-serif; margin: 1em 1.5em; color: #222;}}
h1 {{font-size: 1.3em; margin: 0 0 0.3em;}}
#top {{display: flex; flex-wrap: wrap; gap: 0.5em 1.5em; align-items: center; margin-bottom: 0.6em;}}
#main {{display: flex; gap: 1.5em; align-items: flex-start;}}
#steps {{width: 500px; flex: none; max-height: 85vh; overflow-y: auto;}}
details {{border: 1px solid #ccc; border-radius: 4px; margin-bottom: 4px; padding: 2px 6px;}}
summary {{cursor: pointer; font-weight: 600;}}
.ctl {{display: flex; align-items: center; gap: 0.4em; margin: 3px 0;}}
.ctl > span.k {{width: 140px; flex: none; font-size: 12px;}}
.ctl input[type=range] {{width: 110px;}}
.ctl output {{font-size: 12px; min-width: 5em;}}
#status {{color: #b00; min-height: 1.3em;}}
#figure {{max-width: 100%;}}
pre {{background: #f4f4f4; padding: 0.5em; font-size: 12px; max-height: 20em; overflow: auto;}}
</style></head>
<body>
<h1>Domain-randomization explorer</h1>
<p>Sample: {source}. Every change redraws the input and randomized copies (dataset indices 0..copies-1)
with label outlines and landmarks, rendered by the companion's randomization library.</p>
<div id="top">
<label>preset <select id="preset">{options}</select></label>
<label>seed <input id="seed" type="number" min="0" step="1" value="{seed}" style="width: 6em"></label>
<label>epoch <input id="epoch" type="number" min="0" step="1" value="0" style="width: 5em"></label>
<label>copies <input id="copies" type="range" min="1" max="{max_copies}" step="1" value="{copies}">
<output id="copies-out">{copies}</output></label>
</div>
<div id="status"></div>
<div id="main">
<div id="steps"></div>
<div><img id="figure" alt="randomized copies"><p id="doc"></p><h3>Configuration</h3><pre id="config"></pre></div>
</div>
<script>
(function () {{
  "use strict";
  var $ = function (id) {{ return document.getElementById(id); }};
  var defaults = {{}}, seq = 0, shown = 0, renders = 0;
  function fmt(v) {{ return typeof v === "number" ? String(Math.round(v * 1000) / 1000) : String(v); }}
  function el(tag, attrs) {{
    var e = document.createElement(tag);
    Object.keys(attrs || {{}}).forEach(function (k) {{ e.setAttribute(k, attrs[k]); }});
    return e;
  }}
  function slider(c, v) {{
    return el("input", {{type: "range", min: c.lo, max: c.hi, step: c.step || "any", value: v}});
  }}
  function build(c) {{
    var row = el("div", {{"class": "ctl", "data-key": c.key, "data-kind": c.kind, title: c.doc}});
    var k = el("span", {{"class": "k"}}); k.textContent = c.key; row.appendChild(k);
    var out = el("output"), inputs = [];
    if (c.kind === "range" || c.kind === "int_range") {{
      inputs = [slider(c, c.value[0]), slider(c, c.value[1])];
    }} else if (c.kind === "float" || c.kind === "int") {{
      inputs = [slider(c, c.value)];
    }} else if (c.kind === "bool") {{
      var b = el("input", {{type: "checkbox"}}); b.checked = c.value; inputs = [b];
    }} else if (c.kind === "choice") {{
      var s = el("select");
      c.options.forEach(function (o) {{ var op = el("option", {{value: o}}); op.textContent = o; s.appendChild(op); }});
      s.value = c.value; inputs = [s];
    }} else if (c.kind === "choices") {{
      c.options.forEach(function (o) {{
        var lab = el("label"), cb = el("input", {{type: "checkbox", value: o}});
        cb.checked = c.value.indexOf(o) >= 0; lab.appendChild(cb); lab.appendChild(document.createTextNode(o));
        inputs.push(cb); row.appendChild(lab);
      }});
    }} else {{
      var t = el("input", {{type: "text", size: 10, value: c.value}}); inputs = [t];
    }}
    inputs.forEach(function (i) {{ if (c.disabled) i.disabled = true; if (c.kind !== "choices") row.appendChild(i); }});
    row.appendChild(out);
    row._inputs = inputs; row._out = out;
    return row;
  }}
  function value(row) {{
    var kind = row.dataset.kind, i = row._inputs;
    if (kind === "range" || kind === "int_range") {{
      var a = +i[0].value, b = +i[1].value;
      return [Math.min(a, b), Math.max(a, b)];
    }}
    if (kind === "float" || kind === "int") return +i[0].value;
    if (kind === "bool") return i[0].checked;
    if (kind === "choices") {{
      return i.filter(function (x) {{ return x.checked; }}).map(function (x) {{ return x.value; }});
    }}
    return i[0].value;
  }}
  function readouts() {{
    document.querySelectorAll("#steps .ctl").forEach(function (row) {{
      var v = value(row);
      row._out.textContent = Array.isArray(v) ? (row.dataset.kind === "choices" ? "" : v.map(fmt).join(" - ")) :
        (typeof v === "boolean" || row.dataset.kind === "choice" || row.dataset.kind === "int_choices" ? "" : fmt(v));
    }});
    $("copies-out").textContent = $("copies").value;
  }}
  function request() {{
    var values = {{}};
    document.querySelectorAll("#steps details").forEach(function (d) {{
      d.querySelectorAll(".ctl").forEach(function (row) {{
        var v = value(row), name = d.dataset.step, key = row.dataset.key;
        if (JSON.stringify(v) !== JSON.stringify(defaults[name][key])) {{
          (values[name] = values[name] || {{}})[key] = v;
        }}
      }});
    }});
    return {{preset: $("preset").value, seed: +$("seed").value, epoch: +$("epoch").value,
             copies: +$("copies").value, values: values}};
  }}
  function render() {{
    var my = ++seq;
    document.body.dataset.pending = "1";
    fetch("api/render", {{method: "POST", headers: {{"Content-Type": "application/json"}},
                         body: JSON.stringify(request())}})
      .then(function (r) {{ return r.json().then(function (j) {{ return [r.ok, j]; }}); }})
      .then(function (res) {{
        if (my < shown) return;
        shown = my;
        if (!res[0]) {{ $("status").textContent = res[1].error; return; }}
        $("status").textContent = "";
        $("figure").src = "data:image/png;base64," + res[1].png;
        $("config").textContent = res[1].config;
        document.body.dataset.renders = String(++renders);
      }})
      .catch(function (e) {{ $("status").textContent = "no answer from the explorer server: " + e; }})
      .finally(function () {{ if (my === seq) delete document.body.dataset.pending; }});
  }}
  function load(preset) {{
    return fetch("api/controls?preset=" + encodeURIComponent(preset)).then(function (r) {{ return r.json(); }})
      .then(function (j) {{
        var box = $("steps"); box.innerHTML = ""; defaults = {{}};
        $("doc").textContent = j.doc;
        j.steps.forEach(function (st) {{
          var d = el("details", {{"data-step": st.name}}), s = el("summary");
          s.textContent = st.title; d.appendChild(s); defaults[st.name] = {{}};
          st.controls.forEach(function (c) {{
            var row = build(c); d.appendChild(row); defaults[st.name][c.key] = value(row);
          }});
          box.appendChild(d);
        }});
        readouts();
        render();
      }});
  }}
  var timer = null;
  function later() {{ readouts(); clearTimeout(timer); timer = setTimeout(render, 150); }}
  $("steps").addEventListener("change", later);
  $("steps").addEventListener("input", readouts);
  ["seed", "epoch", "copies"].forEach(function (id) {{ $(id).addEventListener("change", later); }});
  $("copies").addEventListener("input", readouts);
  $("preset").addEventListener("change", function () {{ load($("preset").value); }});
  load($("preset").value);
}})();
</script>
</body></html>
"""
