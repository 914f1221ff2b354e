"""Figures and tables of the simulation chapter (notebook ``01_simulation``).

The paper's Fig. 3b (one pose in every image domain), the spectra, material decomposition
slices, the emulated scanner's signal chain, label overlays and a timing table. Everything is
computed by the library (projectors, scanners, datasets); these functions only arrange it.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from synthex_lib.anatomy.tissues import MATERIAL_NAMES
from synthex_lib.core.constants import HIP_LABELS
from synthex_lib.core.errors import ConfigError
from synthex_lib.datasets.layout import SpecimenImages, read_group
from synthex_lib.figures.style import (
    COLUMN_IN,
    INVISIBLE_COLOR,
    LABEL_CMAP,
    LABEL_COLORS,
    LANDMARK_COLOR,
    label_legend,
)
from synthex_lib.generate.lab_source import FEMUR_CENTRES
from synthex_lib.generate.poses import pose_center
from synthex_lib.generate.registration import DEFAULT_REGISTRATION_ERROR, pose_difference
from synthex_lib.generate.render import image_rng
from synthex_lib.generate.sources import get_source
from synthex_lib.simulate.physics import density as dens
from synthex_lib.simulate.registry import get_projector
from synthex_lib.simulate.scanner import SCANNERS, get_scanner

#: image domains in the order of the paper's Fig. 3b (least to most realistic, then real)
DOMAIN_ORDER = ("naive", "heuristic", "realistic", "real")
#: the paper's simulation throughput: about 2 hours for 10,000 hip images on an RTX 3090 (Methods)
PAPER_SECONDS_PER_IMAGE = 2 * 3600 / 10000


def read_domains(folder: Any, group: str, suffix: str = "", domains: Sequence[str] = DOMAIN_ORDER
                 ) -> dict[str, SpecimenImages]:
    """The images of one specimen group in every domain file of a controlled dataset folder."""

    return {d: read_group(Path(folder) / f"{d}{suffix}.h5", group) for d in domains}


def _show(ax: plt.Axes, img: np.ndarray, title: str, fontsize: float = 9, wrap: int = 0) -> None:
    lo, hi = np.percentile(img, [0.5, 99.5])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_title(textwrap.fill(title, wrap) if wrap else title, fontsize=fontsize)
    ax.axis("off")


def plot_fig3b(images: dict[str, SpecimenImages], index: int = 0, real_label: str = "real (emulated)") -> plt.Figure:
    """One pose in every domain side by side (the paper's Fig. 3b), each shown with its own window."""
    names = [d for d in DOMAIN_ORDER if d in images]
    w = min(COLUMN_IN / max(len(names), 1), 2.7)
    fig, axes = plt.subplots(1, len(names), figsize=(w * len(names), w + 0.3))
    for ax, d in zip(np.atleast_1d(axes), names, strict=True):
        _show(ax, images[d].projs[index], real_label if d == "real" else d)
    fig.tight_layout()
    return fig


def domain_statistics(images: dict[str, SpecimenImages]) -> pd.DataFrame:
    """Per domain: value range and contrast of the stored (log-domain) images, rounded."""
    rows = []
    for d, im in images.items():
        p = im.projs
        rows.append({"domain": d, "images": len(p), "min": float(p.min()), "median": float(np.median(p)),
                     "max": float(p.max()), "std within image": float(np.mean([x.std() for x in p]))})
    return pd.DataFrame(rows).set_index("domain").round(2)


def plot_label_overlays(images: SpecimenImages, indices: Sequence[int], title: str = "real (emulated)"
                        ) -> plt.Figure:
    """Images with the projected label map (the book's label colours, :mod:`synthex_lib.figures.style`, legend
    above) and the landmarks: visible ones as white dots, invisible ones as crosses (kept, flagged)."""

    idx = [i for i in indices if i < len(images.projs)]
    w = min(COLUMN_IN / max(len(idx), 1), 2.8)
    fig, axes = plt.subplots(1, len(idx), figsize=(w * len(idx), w + 0.3), squeeze=False)
    xy = images.landmarks_xy
    vis = images.visibility()
    h, wd = images.projs.shape[1:]
    for ax, i in zip(axes[0], idx, strict=True):
        _show(ax, images.projs[i], f"{title} #{i}")
        ax.imshow(np.ma.masked_equal(images.segs[i], 0), cmap=LABEL_CMAP, vmin=0, vmax=len(LABEL_COLORS),
                  alpha=0.45, interpolation="nearest")
        v = vis[i]
        ax.scatter(xy[i, v, 0], xy[i, v, 1], s=14, c=LANDMARK_COLOR, edgecolors="black", linewidths=0.6)
        ax.scatter(xy[i, ~v, 0], xy[i, ~v, 1], s=16, marker="x", c=INVISIBLE_COLOR, linewidths=1)
        ax.set_xlim(-0.5, wd - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
    fig.tight_layout()
    label_legend(fig, landmarks=True, invisible=True, ncol=4)
    return fig


def spectra_table(size: int = 64) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], pd.DataFrame]:
    """Normalised spectra of the realistic projector and of the emulated scanners (centre and both
    ends of the heel axis), with their mean energies (keV) and relative intensities."""

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    rows = []
    sp = get_projector("realistic").spectrum
    out["realistic projector (90 kVp, 4 mm Al)"] = (sp.energies_kev, sp.weights / sp.weights.sum())
    rows.append({"spectrum": "realistic projector", "kVp": sp.kvp, "mean keV": sp.mean_energy_kev,
                 "relative intensity": 1.0})
    for name in SCANNERS:
        sc = get_scanner(name)
        dev = sc.model.device.binned(size)
        e, fl = sc.spectra((size, size), dev.pixel_mm)
        centre = fl[size // 2]
        anode_idx = 0 if sc.model.anode_first else size - 1
        for label, f in (("centre", centre), ("anode edge", fl[anode_idx]), ("cathode edge", fl[size - 1 - anode_idx])):
            out[f"{name} {label}"] = (e, f / centre.sum())
            rows.append({"spectrum": f"{name} {label}", "kVp": sc.model.kvp, "mean keV": float((e * f).sum() / f.sum()),
                         "relative intensity": float(f.sum() / centre.sum())})
    return out, pd.DataFrame(rows).set_index("spectrum").round(3)


def plot_spectra(spectra: dict[str, tuple[np.ndarray, np.ndarray]]) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(COLUMN_IN, 3.4))
    for label, (e, f) in spectra.items():
        style = "-" if "centre" in label or "projector" in label else ":"
        ax.plot(e, f / (e[1] - e[0]) if len(e) > 1 else f, style, label=label, lw=1.2)
    ax.set_xlabel("photon energy (keV)")
    ax.set_ylabel("photons per keV (normalised)")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig


def material_slices(specimen: Any, y_mm: float | None = None) -> dict[str, np.ndarray]:
    """A coronal slice (constant y, LPS mm; default through the femoral heads) of the CT, of the
    realistic projector's threshold materials (air / soft tissue / bone) and of the anatomy's true
    material classes (when the specimen has an anatomy), all on the CT's grid."""

    if y_mm is None:
        fh = [specimen.landmarks[n] for n in ("FH-l", "FH-r") if n in specimen.landmarks]
        y_mm = float(np.mean([p[1] for p in fh])) if fh else float(specimen.center_lps[1])
    j = int(np.clip(round((y_mm - specimen.origin[1]) / specimen.spacing[1]), 0, specimen.ct_hu.shape[1] - 1))
    hu = specimen.ct_hu[:, j, :]
    frac = np.asarray(dens.material_fractions(np.asarray(hu, np.float32)))
    out = {"CT (HU)": hu[::-1], "threshold materials (projector)": np.argmax(frac, axis=0)[::-1]}
    if getattr(specimen, "anatomy", None) is not None:
        lo = np.asarray(specimen.origin, np.float64)
        hi = lo + specimen.extent_mm
        lo_s, hi_s = lo.copy(), hi.copy()
        lo_s[1] = hi_s[1] = lo[1] + j * specimen.spacing[1]
        r = specimen.anatomy.rasterize(float(min(specimen.spacing)), (lo_s, hi_s))
        out["true materials (anatomy)"] = np.asarray(r.materials)[:, 0, :][::-1]
    return out


def plot_material_slices(slices: dict[str, np.ndarray]) -> plt.Figure:
    w = min(COLUMN_IN / max(len(slices), 1), 3.4)
    fig, axes = plt.subplots(1, len(slices), figsize=(w * len(slices), w + 0.2))
    for ax, (title, im) in zip(np.atleast_1d(axes), slices.items(), strict=True):
        if title.startswith("CT"):
            ax.imshow(im, cmap="gray", vmin=-400, vmax=1200)
        elif "threshold" in title:
            m = ax.imshow(im, cmap="viridis", vmin=0, vmax=2, interpolation="nearest")
            cb = fig.colorbar(m, ax=ax, ticks=[0, 1, 2], fraction=0.046)
            cb.ax.set_yticklabels(["air", "soft", "bone"], fontsize=7)
        else:
            m = ax.imshow(im, cmap="tab10", vmin=0, vmax=9, interpolation="nearest")
            present = sorted(int(v) for v in np.unique(im))
            cb = fig.colorbar(m, ax=ax, ticks=present, fraction=0.046)
            cb.ax.set_yticklabels([MATERIAL_NAMES.get(v, str(v)) for v in present], fontsize=7)
        ax.set_title(textwrap.fill(title, 22), fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_scanner_stages(stages: Any, title: str = "emulated CIOS-like scanner") -> plt.Figure:
    """The signal chain of one emulated acquisition: primary behind the grid, scatter, raw ADC counts,
    log image, vendor-processed output."""
    panels = [("primary (keV/pixel)", stages.primary), ("scatter before grid", stages.scatter),
              ("ADC counts (raw)", stages.counts.astype(float)), ("-log(counts / air)", stages.log),
              ("vendor-processed (stored)", stages.output)]
    w = min(COLUMN_IN / len(panels), 2.6)
    fig, axes = plt.subplots(1, len(panels), figsize=(w * len(panels), w + 0.6))
    for ax, (t, im) in zip(axes, panels, strict=True):
        _show(ax, im, t, fontsize=8, wrap=16)
    fig.suptitle(f"{title}; foreign objects: {', '.join(stages.foreign) or 'none'}", fontsize=9)
    fig.tight_layout()
    return fig


def scanner_parameters() -> pd.DataFrame:
    """The documented parameters of the two emulated scanners side by side."""

    rows = {}
    for name, m in SCANNERS.items():
        g = m.grid
        rows[name] = {
            "detector": f"{m.device.cols} x {m.device.rows} px, {m.device.pixel_mm} mm, SDD {m.device.sdd_mm:.0f} mm",
            "tube": f"{m.kvp:.0f} kVp, " + " + ".join(f"{t} mm {mat}" for mat, t in m.filtration)
                    + f", anode {m.anode_angle_deg:.0f} deg, focal spot {m.focal_spot_mm} mm",
            "detector blur": f"MTF50 {m.mtf50_cyc_per_mm} cycles/mm, CsI {m.csi_mm} mm",
            "grid": "none" if g is None else (f"{g.lines_per_cm:.0f} lines/cm, ratio {g.ratio:.0f}, "
                                              f"Tp {g.primary_transmission}, Ts {g.scatter_transmission}"),
            "collimation": ("iris + blades" if m.collimator.iris_radius else "blades")
                           + f", penumbra {m.collimator.penumbra_mm} mm, leakage {m.collimator.leakage}",
            "exposure": f"AEC {m.aec_quanta_per_mm2:.0e} photons/mm^2, {m.bits}-bit ADC",
            "processing": f"sigmoid LUT (width {m.tone.width}), unsharp mask {m.edge_sigma_mm} mm x {m.edge_amount}",
        }
    return pd.DataFrame(rows)


def time_projectors(specimen: Any, P: np.ndarray, size: tuple[int, int], repeats: int = 2,
                    scanner: str | None = "cios-fusion") -> pd.DataFrame:
    """Seconds per image of each projector (and the emulated scanner) on this machine, after one warm-up."""

    P = np.asarray(P, np.float64).reshape(-1, 3, 4)[:1]
    rows = []
    fns = {d: (lambda d=d: get_projector(d).render(specimen, P, size, rng=np.random.default_rng(0)))
           for d in ("naive", "heuristic", "realistic")}
    if scanner is not None and getattr(specimen, "anatomy", None) is not None:
        sc = get_scanner(scanner)
        fns[f"emulated {scanner}"] = lambda: sc.render(specimen, P, size, [np.random.default_rng(0)])
    for name, fn in fns.items():
        fn()  # warm-up: caches, compilation
        t0 = time.perf_counter()
        for _ in range(repeats):
            fn()
        dt = (time.perf_counter() - t0) / repeats
        rows.append({"projector": name, "seconds per image": dt, "images per second": 1.0 / dt})
    rows.append({"projector": "paper (DeepDRR, RTX 3090)", "seconds per image": PAPER_SECONDS_PER_IMAGE,
                 "images per second": 1.0 / PAPER_SECONDS_PER_IMAGE})
    return pd.DataFrame(rows).set_index("projector").round(3)


def scanner_stages(case: Any, seed: int, pose_index: int) -> tuple[np.ndarray, Any]:
    """Re-acquire image ``pose_index`` of a lab case exactly as the dataset did (same scanner, specimen as it
    lies in the X-ray session, true pose, the dataset's own random draws); returns (image [H, W], stages)."""
    scanner = get_scanner(case.device)
    size = tuple(int(s) for s in case.image_size)
    rng = image_rng(seed, "hip-controlled", case.group, "ctl", pose_index, "real")
    out, stages = scanner.render(case.imaged_specimen, case.P_acquired[pose_index:pose_index + 1], size, [rng],
                                 seed=seed, return_stages=True)
    return out[0], stages[0]


def registration_summary(case: Any) -> pd.DataFrame:
    """How the registered poses of a case (labels, replicas) differ from the true ones (the real images):
    rotation angle and the displacement of the registered structure's centre in the camera frame, per
    structure, beside the error model's figures."""
    if case.P_true is None:
        raise ConfigError(f"group {case.group}: the case has no true poses (not a virtual-lab case)")
    model = DEFAULT_REGISTRATION_ERROR
    parts = {"pelvis": (case.P, pose_center(case.specimen, "hip"), np.eye(4))}
    for label, name in FEMUR_CENTRES.items():
        if label in case.P_parts:
            F = np.asarray(case.part_from_ct.get(label, np.eye(4)), np.float64)
            parts[HIP_LABELS[label]] = (case.P_parts[label], case.specimen.landmarks[name], F)
    rows = []
    for part, (P_reg, centre, F) in parts.items():
        d = [pose_difference(Pt @ F, Pr, centre) for Pt, Pr in zip(case.P_true, P_reg, strict=True)]
        ang = np.array([a for a, _ in d])
        sh = np.array([v for _, v in d])
        rows.append({"structure": part, "images": len(d), "rotation mean (deg)": float(ang.mean()),
                     "in-plane shift sd (mm)": float(np.sqrt(np.mean(sh[:, :2] ** 2))),
                     "depth shift sd (mm)": float(np.sqrt(np.mean(sh[:, 2] ** 2)))})
    rows.append({"structure": "model (expected)", "images": np.nan,
                 "rotation mean (deg)": 2 * model.rotation_sd_deg * np.sqrt(2 / np.pi),
                 "in-plane shift sd (mm)": model.inplane_sd_mm, "depth shift sd (mm)": model.depth_sd_mm})
    return pd.DataFrame(rows).set_index("structure").round(2)


def controlled_case(dataset: str, profile: Any, seed: int, group: str, **options: Any) -> Any:
    """The controlled-study case (specimen and poses) of one group of a source (``lab``, ``deepfluoro``)."""

    seen = []
    for case in get_source(dataset)(profile, seed, **options):
        if case.group == group:
            return case
        seen.append(case.group)
    raise ConfigError(f"group {group!r} is not in dataset {dataset!r}: choose one of {seen}")
