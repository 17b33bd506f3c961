"""The model repository on disk: ``DIR/NAME/VERSION/`` folders, each described by a ``model.toml``.

    DIR/insects/1/model.toml   architecture = "resnet18"
                               weights = "insects.pth"      # a file in this folder
                               sha256 = "<64 hex digits>"   # of the weights file
                               labels = "labels.txt"        # optional: one label a line
                               backend = "torch"            # optional: --backend otherwise
    DIR/insects/1/insects.pth
    DIR/insects/1/labels.txt
    DIR/insects/2/model.toml   graph = "model.onnx"         # an exported model (`classify export`)
                               sha256 = "<64 hex digits>"   # of the graph; model.json beside it says the rest
    DIR/insects/2/model.onnx
    DIR/insects/2/model.json

Model folders are named like a model (letters, digits, ``_.-``); version folders
are positive integers. Anything else (``.tmp-3``, ``README``) is ignored, so a
version can be written under another name and renamed into place atomically.
Reading a folder checks every key and says which file and which key is wrong.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from service.core.architectures import ARCHITECTURES
from service.core.backends import ONNX_PRECISION
from service.core.exported import ManifestError, read_exported
from service.core.models import BACKENDS, ModelSpec
from service.core.weights import sha256_file
from service.errors import StartupError

MODEL_FILE = "model.toml"
REQUIRED_KEYS = ("architecture", "weights", "sha256")
OPTIONAL_KEYS = ("labels", "backend")
# A version holding an exported model instead of weights: no torch needed to serve it.
EXPORTED_KEYS = ("graph", "sha256")
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_VERSION = re.compile(r"^[1-9][0-9]{0,8}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ModelFileError(StartupError):
    """A version folder or its model.toml is wrong; the message names the file and the key."""


@dataclass(frozen=True)
class VersionFolder:
    """One ``DIR/NAME/VERSION`` folder."""

    name: str
    version: int
    path: Path

    @property
    def model_file(self) -> Path:
        return self.path / MODEL_FILE

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        """Names, sizes and modification times of the folder's files: changes when its files do."""
        entries = []
        try:
            for child in sorted(self.path.iterdir()):
                stat = child.stat()
                entries.append((child.name, stat.st_size, stat.st_mtime_ns))
        except OSError:
            return ()
        return tuple(entries)


def model_names(root: Path) -> list[str]:
    """The model folders of the repository, sorted."""
    if not root.is_dir():
        raise StartupError(f"model repository {root} is not a directory")
    return sorted(p.name for p in root.iterdir() if p.is_dir() and MODEL_NAME.match(p.name))


def version_folders(root: Path, name: str) -> list[VersionFolder]:
    """The version folders of model ``name``, lowest version first; empty if the model folder is absent."""
    folder = root / name
    if not MODEL_NAME.match(name) or not folder.is_dir():
        return []
    versions = [VersionFolder(name, int(p.name), p) for p in folder.iterdir() if p.is_dir() and _VERSION.match(p.name)]
    return sorted(versions, key=lambda v: v.version)


def _file_in_folder(folder: VersionFolder, key: str, value: str) -> Path:
    if not value or Path(value).name != value or value in (".", ".."):
        raise ModelFileError(f"{folder.model_file}: key {key!r} must be a file name in {folder.path}, got {value!r}")
    path = folder.path / value
    if not path.is_file():
        raise ModelFileError(f"{folder.model_file}: key {key!r} names {value!r}, which is not a file in {folder.path}")
    return path


def read_model_file(folder: VersionFolder) -> dict[str, str]:
    """The keys of the folder's model.toml, each checked for presence and type."""
    try:
        text = folder.model_file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelFileError(
            f"{folder.model_file} is missing: every version folder needs one with the keys {', '.join(REQUIRED_KEYS)}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ModelFileError(f"{folder.model_file} cannot be read: {error}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ModelFileError(f"{folder.model_file} is not valid TOML: {error}") from None
    required, optional = (EXPORTED_KEYS, ("backend",)) if "graph" in document else (REQUIRED_KEYS, OPTIONAL_KEYS)
    unknown = sorted(set(document) - set(required) - set(optional))
    if unknown:
        raise ModelFileError(
            f"{folder.model_file}: unknown key {unknown[0]!r}; known keys: {', '.join(required + optional)}"
            + (" (labels, preprocessing and architecture of an exported graph are in its manifest)" if "graph" in document else "")
        )
    for key in required:
        if key not in document:
            raise ModelFileError(f"{folder.model_file}: key {key!r} is required")
    for key, value in document.items():
        if not isinstance(value, str):
            raise ModelFileError(f"{folder.model_file}: key {key!r} must be a string, got {value!r}")
    return dict(document)


def read_spec(folder: VersionFolder, default_backend: str = "torch") -> ModelSpec:
    """The spec of one version folder, every key validated and the weights' (or graph's) digest checked."""
    keys = read_model_file(folder)
    if "graph" in keys:
        return _exported_spec(folder, keys)
    architecture = keys["architecture"]
    if architecture not in ARCHITECTURES:
        raise ModelFileError(
            f"{folder.model_file}: key 'architecture' is {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}"
        )
    expected = keys["sha256"].lower()
    if not _SHA256.match(expected):
        raise ModelFileError(f"{folder.model_file}: key 'sha256' must be 64 hex digits, got {keys['sha256']!r}")
    backend = keys.get("backend", default_backend)
    if backend not in BACKENDS:
        raise ModelFileError(f"{folder.model_file}: key 'backend' is {backend!r}; known: {', '.join(BACKENDS)}")
    weights = _file_in_folder(folder, "weights", keys["weights"])
    labels = _file_in_folder(folder, "labels", keys["labels"]) if "labels" in keys else None
    digest = sha256_file(weights)
    if digest != expected:
        raise ModelFileError(
            f"{folder.model_file}: key 'sha256' is {expected} but {weights} has SHA-256 {digest}: "
            "the file is corrupt, incomplete or not the one described"
        )
    return ModelSpec(
        name=folder.name,
        architecture=architecture,
        weights=weights,
        labels_file=labels,
        weights_sha256=digest,
        backend=backend,
        version=str(folder.version),
    )


def _exported_spec(folder: VersionFolder, keys: dict[str, str]) -> ModelSpec:
    """A version holding an exported graph: its digest checked against model.toml, its manifest read."""
    graph = _file_in_folder(folder, "graph", keys["graph"])
    expected = keys["sha256"].lower()
    if not _SHA256.match(expected):
        raise ModelFileError(f"{folder.model_file}: key 'sha256' must be 64 hex digits, got {keys['sha256']!r}")
    digest = sha256_file(graph)
    if digest != expected:
        raise ModelFileError(
            f"{folder.model_file}: key 'sha256' is {expected} but {graph} has SHA-256 {digest}: "
            "the file is corrupt, incomplete or not the one described"
        )
    try:
        manifest = read_exported(graph, verify_graph=False)  # verified just above
    except ManifestError as error:
        raise ModelFileError(f"{folder.model_file}: key 'graph': {error}") from None
    backend = keys.get("backend", manifest.backend)
    if backend not in ONNX_PRECISION:
        raise ModelFileError(f"{folder.model_file}: key 'backend' is {backend!r}; an exported graph serves on {manifest.backend}")
    return ModelSpec(
        name=folder.name,
        architecture=manifest.architecture,
        weights=graph,
        weights_sha256=manifest.source_weights_sha256,
        backend=backend,
        version=str(folder.version),
        exported=graph,
    )


def write_model_file(path: Path, keys: dict[str, str | None]) -> None:
    """Write a model.toml with these keys, None values left out (JSON string escapes are valid TOML basic strings)."""
    lines = [f"{key} = {json.dumps(value)}" for key, value in keys.items() if value is not None]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
