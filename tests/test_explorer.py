"""The explorers without a browser: shared controls and figure, the static (kernel-free) explorer, the
local app's endpoints and ``synthex explore``'s bad input."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
import urllib.error
import urllib.request

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
import torch
from PIL import Image

from synthex_lib.cli import main
from synthex_lib.core.errors import ConfigError
from synthex_lib.figures.explorer import explorer_config, explorer_figure, figure_png, step_controls
from synthex_lib.figures.explorer_app import ExplorerApp, ExplorerServer
from synthex_lib.figures.explorer_static import (
    build_static_explorer,
    effect_sweeps,
    grey_png,
    overlay_png,
    reduce_sample,
)
from synthex_lib.figures.phantom import PHANTOM_LANDMARK_LABELS, disc_phantom
from synthex_lib.figures.widgets import dr_explorer
from synthex_lib.randomization import DomainRandomization, preset_config
from synthex_lib.randomization.presets import _PAPER_STRONG


@pytest.fixture(scope="module")
def sample() -> dict:
    return disc_phantom(64, radius=4.0, seed=3)


@pytest.fixture(scope="module")
def explorer(sample):
    return build_static_explorer(sample, preset="strong", levels=4, source="phantom")


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


# -- shared controls and figure -----------------------------------------------------------------------
def test_controls_edit_the_preset():
    steps = {s.name: s for s in step_controls("strong")}
    assert list(steps)[:2] == ["crop", "strong-2-of-11"] and steps["strong-2-of-11"].title.startswith("[group]")
    assert steps["crop"].controls["p"].disabled  # a resizing step cannot be gated per sample
    sigma = steps["noise"].controls["sigma"]
    assert sigma.kind == "range" and sigma.value == [0.005, 0.1] and sigma.lo == 0.0 and sigma.hi == 0.3
    cfg = explorer_config("strong", {"blur": {"p": 0.25, "modes": ("average",)}, "pooling": {"kernel": "2, 4"}})
    out = DomainRandomization.from_config(cfg).to_config()
    strong = {s.get("name", s["effect"]): s for s in out["steps"][1]["some_of"]}
    assert strong["blur"]["p"] == 0.25 and strong["blur"]["modes"] == ["average"]
    assert strong["pooling"]["kernel"] == [2, 4]
    with pytest.raises(ConfigError, match="no step 'blurr'"):
        explorer_config("strong", {"blurr": {"p": 0.1}})
    with pytest.raises(ConfigError, match="no control 'size'"):
        explorer_config("strong", {"blur": {"size": 3}})
    with pytest.raises(ValueError):
        explorer_config("strong", {"pooling": {"kernel": "2, x"}})


def test_widget_and_app_draw_the_same_figure(sample):
    ex = dr_explorer(sample, preset="strong", seed=2, copies=2).explorer
    ex._controls["noise"]["sigma"][1].value = [0.05, 0.2]
    app = ExplorerApp(sample, preset="strong", seed=2, copies=2)
    got = app.render({"preset": "strong", "seed": 2, "epoch": 0, "copies": 2,
                      "values": {"noise": {"sigma": [0.05, 0.2]}}})
    assert base64.b64decode(got["png"]) == figure_png(ex.figure(), app.dpi)
    assert got["fired"] == DomainRandomization.from_config(ex.config, seed=2).fired(range(2))
    assert "sigma:\n    - 0.05\n    - 0.2" in got["config"]


def test_figure_titles_name_what_fired(sample):
    cfg = {"steps": [{"effect": "invert", "p": 0.5}]}
    fig = explorer_figure(sample, cfg, seed=0, copies=4, columns=5)
    fired = DomainRandomization.from_config(cfg).fired(range(4))
    titles = [ax.get_title() for ax in fig.axes[:5]]
    assert titles[0] == "input" and titles[1:] == [f"#{i}: " + (", ".join(f) or "-") for i, f in enumerate(fired)]
    with pytest.raises(ConfigError, match="'copies'"):
        explorer_figure(sample, cfg, copies=0)


# -- the static explorer ------------------------------------------------------------------------------
def test_sweeps_run_from_the_presets_weakest_to_its_strongest():
    steps = {s["effect"]: s for s in _PAPER_STRONG}
    [(mode, noise)] = effect_sweeps({"effect": "noise", "sigma": [0.005, 0.1]}, 5)
    assert mode == "" and [e["sigma"] for _, e in noise] == [[v, v] for v in np.linspace(0.005, 0.1, 5)]
    salt = dict(effect_sweeps(steps["salt_pepper"], 4))  # the preset fixes 10 %: swept up to it
    assert list(salt) == ["impulse", "pepper", "salt"]
    assert [e["fraction"][0] for _, e in salt["pepper"]] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    [(_, affine)] = effect_sweeps(steps["affine"], 3)
    assert affine[-1][1] == {"rotate_deg": [5.0, 5.0], "translate_px": [20.0, 20.0], "shear_deg": [2.0, 2.0],
                             "scale": [1.1, 1.1]}
    pooling = dict(effect_sweeps(steps["pooling"], 5))
    assert list(pooling) == ["average", "max", "min", "median"]
    assert [e["kernel"] for _, e in pooling["max"]] == [[2], [3], [4]]
    [(_, inv)] = effect_sweeps(steps["invert"], 5)
    assert len(inv) == 1


def test_static_explorer_covers_every_effect_and_mode(explorer):
    titles = [e.title for e in explorer.entries]
    assert titles[0] == "crop" and "affine" in titles and "contrast: sigmoid" in titles and "gamma" in titles
    assert len(titles) == 1 + sum(len(effect_sweeps(s, 4)) for s in _PAPER_STRONG) + 2  # crop, 11 strong, noise+gamma
    # each level draws the pipeline of its own single-step configuration (p = 1, ranges pinned)
    for entry in explorer.entries:
        for lv in entry.levels:
            assert lv.step["p"] == 1.0 and lv.step["effect"] == entry.effect


def test_static_pictures_are_the_pipelines_output(sample, explorer):
    small = reduce_sample(sample, 128)
    batch = {"image": small["image"][None], "labels": small["labels"][None], "landmarks": small["landmarks"][None],
             "visible": small["visible"][None], "index": torch.tensor([0])}
    entry = next(e for e in explorer.entries if e.title == "affine")
    lv = entry.levels[-1]
    out = DomainRandomization.from_config({"steps": [lv.step]}, seed=0)({**batch, "epoch": 0})
    assert explorer.images[lv.image] == grey_png(out["image"][0])
    assert explorer.overlays[lv.overlay] == overlay_png(out["labels"][0], out["landmarks"][0], out["visible"][0],
                                                        (64, 64))


def test_labels_move_with_spatial_effects_only(explorer):
    by = {e.title: e for e in explorer.entries}
    for title in ("affine", "piecewise_affine", "crop"):
        assert all(lv.overlay != 0 for lv in by[title].levels), title
    for title in ("noise", "gamma", "invert", "blur: gaussian", "contrast: log", "dropout: coarse",
                  "multiply: elementwise"):
        assert all(lv.overlay == 0 for lv in by[title].levels), title  # the input's overlay, unchanged


def test_strength_grows_along_the_slider(sample, explorer):
    by = {e.title: e for e in explorer.entries}
    inp = _pixels(explorer.images[0]).astype(float)
    for title in ("noise", "salt_pepper: impulse", "dropout: pixel"):
        diffs = [np.abs(_pixels(explorer.images[lv.image]).astype(float) - inp).mean() for lv in by[title].levels]
        assert all(b > a for a, b in zip(diffs, diffs[1:], strict=False)), (title, diffs)
    # the warp: landmarks move further at each strength (same draw, larger rotation/shift/shear/scale)
    batch = {k: sample[k][None] for k in ("image", "labels", "landmarks", "visible")}
    shifts = []
    for lv in by["affine"].levels:
        out = DomainRandomization.from_config({"steps": [lv.step]})(batch)
        shifts.append(float((out["landmarks"][0] - sample["landmarks"]).norm(dim=-1).mean()))
    assert all(b > a for a, b in zip(shifts, shifts[1:], strict=False)), shifts
    labels = [lv.label for lv in by["affine"].levels]
    assert labels[-1] == "rotate 5 deg, shift 20 px, shear 2 deg, scale 1.1"


def test_overlay_marks_landmarks_on_their_labels(sample):
    png = overlay_png(sample["labels"], sample["landmarks"], sample["visible"], (64, 64))
    rgba = _pixels(png)
    for (x, y) in sample["landmarks"].round().long().tolist():
        assert tuple(rgba[y, x]) == (0, 229, 255, 255)  # the landmark colour at every landmark
    alpha = rgba[..., 3] > 0
    assert 0 < alpha.mean() < 0.3  # outlines and dots only


def test_reduce_sample_keeps_landmarks_on_their_labels():
    big = disc_phantom(256, radius=10.0, seed=5)
    small = reduce_sample(big, 64)
    assert small["image"].shape == (1, 64, 64) and small["labels"].shape == (64, 64)
    assert float(small["image"].mean()) == pytest.approx(float(big["image"].mean()), rel=1e-5)  # block average
    xy = small["landmarks"].round().long()
    assert torch.equal(small["labels"][xy[:, 1], xy[:, 0]], PHANTOM_LANDMARK_LABELS)
    assert reduce_sample(big, 256)["image"].shape == (1, 256, 256)
    with pytest.raises(ConfigError, match="max_side"):
        reduce_sample(big, 8)


def test_static_html_is_self_contained_and_light(sample):
    ex = build_static_explorer(disc_phantom(128, radius=4.0, seed=1), preset="strong", levels=5)
    page = ex.html()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)  # nothing fetched from anywhere
    assert len(page.encode()) < 2_000_000
    data = json.loads(re.search(r'<script type="application/json" class="sx-data">(.*?)</script>', page, re.S)
                      .group(1).replace("<\\/", "</"))
    assert len(data["images"]) == len(ex.images) and data["entries"][data["initial"]]["title"] == "affine"
    assert ex.n_variants > 90 and len(ex.images) < ex.n_variants  # duplicates stored once
    again = build_static_explorer(disc_phantom(128, radius=4.0, seed=1), preset="strong", levels=5).html()
    assert again == page  # same seed, same bytes


def test_static_explorer_bad_input(sample):
    with pytest.raises(ConfigError, match="levels"):
        build_static_explorer(sample, levels=0)
    with pytest.raises(ConfigError, match="unknown domain-randomization preset"):
        build_static_explorer(sample, preset="strongest")
    assert "no effect to show" in build_static_explorer(sample, preset="none").html()


# -- the app ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(sample):
    srv = ExplorerServer(ExplorerApp(sample, "phantom", copies=2), port=0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _post(url: str, body: bytes) -> tuple[int, dict]:
    req = urllib.request.Request(url + "api/render", data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_app_serves_page_controls_and_renders(server):
    assert server.url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(server.url, timeout=30) as r:
        page = r.read().decode()
    assert "<select id=\"preset\">" in page and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    with urllib.request.urlopen(server.url + "api/controls?preset=official-strong", timeout=30) as r:
        controls = json.loads(r.read())
    assert "elastic" in [s["name"] for s in controls["steps"]]
    status, got = _post(server.url, json.dumps({"preset": "regular", "seed": 1, "copies": 3,
                                                "values": {"gamma": {"gamma": [2.0, 2.5]}}}).encode())
    assert status == 200 and len(got["fired"]) == 3 and all("gamma" in f for f in got["fired"])
    assert Image.open(io.BytesIO(base64.b64decode(got["png"]))).size[0] > 200


@pytest.mark.parametrize(("body", "message"), [
    (b"{not json", "not JSON"),
    (json.dumps({"preset": "strongest"}).encode(), "unknown preset 'strongest'"),
    (json.dumps({"copies": 50}).encode(), "'copies' must be an integer from 1 to 12"),
    (json.dumps({"values": {"pooling": {"kernel": "2, x"}}}).encode(), "invalid literal"),
    (json.dumps({"values": {"noise": {"sigma": [0.5, 0.1]}}}).encode(), "low 0.5 > high 0.1"),
])
def test_app_answers_bad_values_with_one_line(server, body, message):
    status, got = _post(server.url, body)
    assert status == 400 and message in got["error"] and "\n" not in got["error"]
    assert got["error"].startswith("ConfigError")


def test_app_controls_of_an_unknown_preset(server):
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server.url + "api/controls?preset=nope", timeout=30)
    assert e.value.code == 400


# -- the command line ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--port", "70000"], "--port must be from 0 to 65535"),
    (["--preset", "strongest"], "--preset 'strongest' is unknown"),
    (["--copies", "0"], "--copies must be from 1 to 12"),
    (["--profile", "huge"], "unknown profile 'huge'"),
])
def test_explore_bad_input_exits_2_with_one_line(capsys, args, message):
    assert main(["explore", "--phantom", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_explore_port_in_use(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["explore", "--phantom", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"synthex explore: error: --port {port} is in use; choose another port, or --port 0 for any " \
                      "free port"


def test_presets_have_static_entries_for_their_effects():
    for name in ("regular", "official-strong"):
        effects = {s["effect"] for s in _walk(preset_config(name)["steps"])}
        ex = build_static_explorer(disc_phantom(64, radius=4.0), preset=name, levels=2)
        assert {e.effect for e in ex.entries} == effects


def _walk(steps):
    for st in steps:
        if "effect" in st:
            yield st
        else:
            yield from _walk(st.get("some_of", st.get("sequence", [])))
