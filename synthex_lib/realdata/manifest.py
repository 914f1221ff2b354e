"""Dataset manifests: one YAML per dataset in ``data_manifests/``, validated by its ``schema.json``.

A manifest says where a dataset comes from (DOI, URL), its license, citation and access terms, its
size, the files that make it up (with sha256 where known), the expected layout, and what the book
uses it for. The folder is ``$SYNTHEX_MANIFESTS`` when set, else ``<checkout>/data_manifests``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from synthex_lib.core import paths
from synthex_lib.core.errors import ConfigError, DataError

#: Access types whose data 'synthex data fetch' can download itself.
DOWNLOADABLE = ("open",)


@dataclass(frozen=True)
class FileEntry:
    """One file of a dataset: what ``fetch`` downloads or ``import`` registers.

    Attributes:
        name: file name inside the dataset folder.
        url: direct download URL (None when the file must be downloaded by hand).
        sha256: published sha256 (None when unknown: the first verified download records one).
        size_bytes: expected size in bytes (approximate unless ``approximate_size`` is False).
        unpack: ``"none"``, ``"zip"`` or ``"auto"`` (unpack only if the download is a zip).
        members: paths (relative to the dataset folder) the file provides once unpacked.
    """

    name: str
    url: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    approximate_size: bool = True
    unpack: str = "none"
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """A dataset manifest (see ``data_manifests/schema.json`` for every field)."""

    name: str
    title: str
    kind: str
    description: str
    source: dict[str, Any]
    license: str
    citation: dict[str, Any]
    access: dict[str, Any]
    size: str
    layout: str
    used_for: str
    files: tuple[FileEntry, ...] = ()
    expect: tuple[str, ...] = ()
    loader: str | None = None
    notebooks: tuple[str, ...] = ()
    generated: dict[str, Any] | None = None
    notes: str = ""
    path: Path | None = field(default=None, compare=False)

    @property
    def access_type(self) -> str:
        return str(self.access["type"])

    @property
    def downloadable(self) -> bool:
        return self.access_type in DOWNLOADABLE and any(f.url for f in self.files)

    def file(self, name: str) -> FileEntry:
        for f in self.files:
            if f.name == name:
                return f
        raise ConfigError(f"dataset {self.name!r} has no file {name!r}; its files: {[f.name for f in self.files]}")

    def how_to_obtain(self) -> str:
        """Instructions for getting the data (access terms, where to ask, how to register it)."""
        lines = [f"{self.title} ({self.name}): access {self.access_type}.", f"Terms: {self.access['terms']}"]
        if self.access.get("how_to_obtain"):
            lines.append(f"How to obtain it: {' '.join(str(self.access['how_to_obtain']).split())}")
        doi = f" (doi:{self.source['doi']})" if self.source.get("doi") else ""
        lines.append(f"Source: {self.source['url']}{doi}")
        lines.append(f"License: {self.license}")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, data: dict[str, Any], path: Path | None = None) -> Manifest:
        validate_manifest(data, path)
        files = tuple(
            FileEntry(name=f["name"], url=f.get("url"), sha256=f.get("sha256"), size_bytes=f.get("size_bytes"),
                      approximate_size=bool(f.get("approximate_size", True)), unpack=f.get("unpack", "none"),
                      members=tuple(f.get("members", ())))
            for f in data.get("files", [])
        )
        return cls(
            name=data["name"], title=data["title"], kind=data["kind"],
            description=" ".join(data["description"].split()),
            source=dict(data["source"]), license=data["license"], citation=dict(data["citation"]),
            access=dict(data["access"]), size=str(data["size"]), layout=data["layout"],
            used_for=" ".join(data["used_for"].split()), files=files, expect=tuple(data.get("expect", ())),
            loader=data.get("loader"), notebooks=tuple(data.get("notebooks", ())), generated=data.get("generated"),
            notes=data.get("notes", ""), path=path,
        )


def manifest_dir() -> Path:
    """The manifest folder: ``$SYNTHEX_MANIFESTS`` or ``<checkout>/data_manifests``."""
    env = os.environ.get("SYNTHEX_MANIFESTS")
    if env:
        return Path(env).expanduser().resolve()
    root = paths.project_root()
    if root is None:
        raise ConfigError("no data_manifests folder: set SYNTHEX_MANIFESTS to the data_manifests/ folder of a checkout")
    return root / "data_manifests"


@lru_cache(maxsize=4)
def _schema(folder: str) -> dict[str, Any]:
    path = Path(folder) / "schema.json"
    if not path.exists():
        # a user's own manifest folder may lack the schema: use the checkout's
        root = paths.project_root()
        path = root / "data_manifests" / "schema.json" if root else path
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the manifest schema ({exc})") from exc


def validate_manifest(data: Any, path: Path | None = None) -> None:
    """Raise :class:`ConfigError` naming the file and the first schema violation."""

    where = str(path) if path else "manifest"
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a manifest must be a mapping, got {type(data).__name__}")
    schema = _schema(str(path.parent if path else manifest_dir()))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        loc = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ConfigError(f"{where}: invalid manifest at '{loc}': {err.message}")
    if path is not None and data["name"] != path.name.removesuffix(".yaml"):
        raise ConfigError(f"{where}: manifest name {data['name']!r} must equal the file name {path.stem!r}")


def load_manifest_file(path: str | os.PathLike[str]) -> Manifest:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise DataError(f"{path}: cannot read the manifest ({exc})") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    return Manifest.from_dict(data, path)


def manifest_names(folder: str | os.PathLike[str] | None = None) -> list[str]:
    folder = Path(folder) if folder else manifest_dir()
    return sorted(p.name.removesuffix(".yaml") for p in folder.glob("*.yaml"))


def load_manifest(name: str, folder: str | os.PathLike[str] | None = None) -> Manifest:
    """The manifest of dataset ``name``; an unknown name raises :class:`ConfigError` listing the known ones."""
    folder = Path(folder) if folder else manifest_dir()
    path = folder / f"{name}.yaml"
    if not path.exists():
        known = ", ".join(manifest_names(folder)) or "(none)"
        raise ConfigError(f"unknown dataset {name!r}: choose one of {known} (manifests in {folder})")
    return load_manifest_file(path)


def all_manifests(folder: str | os.PathLike[str] | None = None) -> list[Manifest]:
    return [load_manifest(n, folder) for n in manifest_names(folder)]


def dataset_dir(name: str) -> Path:
    """Where a real dataset lives: ``paths.real_dir(name)`` (``$SYNTHEX_DATA/real/<name>``)."""
    return paths.real_dir(name)
