"""Exported models: an ONNX graph beside a small JSON manifest that says how to serve it.

    resnet18.onnx    the graph (input ``input`` float32 [N, 3, H, W], output ``logits`` [N, classes])
    resnet18.json    {"format": "classify.exported-model/1", "name": "resnet18",
                      "architecture": "resnet18", "precision": "fp32",
                      "source_weights_sha256": "<64 hex>", "graph_sha256": "<64 hex>",
                      "preprocessing": {"resize_size": 256, "crop_size": 224, ...},
                      "labels": ["tench", ...], "export_revision": 3, "opset": 17, ...}

The manifest holds everything serving needs besides the graph, so a process
with ONNX Runtime, NumPy and Pillow serves it: no torch, no weights file.
Writing is atomic (temporary names, then renames, the manifest last), and
reading checks every key and the graph's SHA-256, naming the file and the key.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from service.core.onnx_backend import EXPORT_REVISION, INPUT, OPSET, OUTPUT
from service.core.preprocessing import Preprocessing
from service.core.weights import sha256_file
from service.errors import StartupError

FORMAT = "classify.exported-model/1"
PRECISIONS = ("fp32", "int8")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_KEYS = (
    "format", "name", "architecture", "precision", "source_weights_sha256", "graph_sha256",
    "preprocessing", "labels", "export_revision", "opset", "input", "output",
)


_KINDS = {str: "a string", int: "an integer", list: "a list", dict: "an object"}


class ManifestError(StartupError):
    """An exported model's manifest or graph is missing or wrong; the message names the file and the key."""


@dataclass(frozen=True)
class Manifest:
    """What an exported graph is and how to feed it."""

    name: str
    architecture: str
    precision: str
    source_weights_sha256: str
    preprocessing: Preprocessing
    labels: tuple[str, ...]
    graph_sha256: str = ""  # filled in when the graph is written
    export_revision: int = EXPORT_REVISION
    opset: int = OPSET
    input: str = INPUT
    output: str = OUTPUT

    @property
    def backend(self) -> str:
        """The backend that serves this graph: onnxruntime (fp32) or onnxruntime-int8."""
        return "onnxruntime" if self.precision == "fp32" else "onnxruntime-int8"

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "architecture": self.architecture,
            "precision": self.precision,
            "source_weights_sha256": self.source_weights_sha256,
            "graph_sha256": self.graph_sha256,
            "preprocessing": self.preprocessing.to_json(),
            "labels": list(self.labels),
            "export_revision": self.export_revision,
            "opset": self.opset,
            "input": self.input,
            "output": self.output,
        }


def manifest_path(graph: Path) -> Path:
    """The manifest beside ``graph``: same name, ``.json`` instead of ``.onnx``."""
    return graph.with_suffix(".json")


@contextmanager
def _temporary(target: Path, suffix: str) -> Iterator[Path]:
    """A temporary name beside ``target`` (same file system, so a rename is atomic), removed unless used."""
    with tempfile.NamedTemporaryFile(dir=target.parent, prefix=f".{target.name}.", suffix=suffix, delete=False) as tmp:
        partial = Path(tmp.name)
    try:
        yield partial
    finally:
        partial.unlink(missing_ok=True)


def write_exported(graph: Path, manifest: Manifest, write_graph: Callable[[Path], None]) -> Manifest:
    """Write the graph (``write_graph(path)`` fills a temporary file) and its manifest beside it, atomically.

    The graph is renamed into place first and the manifest last, so a manifest
    always describes a complete graph; on any failure neither is left behind
    under its final name. OSError names the directory that cannot be written.
    """
    graph.parent.mkdir(parents=True, exist_ok=True)
    with _temporary(graph, ".onnx.part") as partial_graph, _temporary(graph, ".json.part") as partial_manifest:
        write_graph(partial_graph)
        written = replace(manifest, graph_sha256=sha256_file(partial_graph))
        partial_manifest.write_text(json.dumps(written.to_json(), indent=1) + "\n", encoding="utf-8")
        for partial in (partial_graph, partial_manifest):
            partial.chmod(0o644)  # NamedTemporaryFile creates 0600
        os.replace(partial_graph, graph)
        os.replace(partial_manifest, manifest_path(graph))
    return written


def read_exported(graph: Path, *, verify_graph: bool = True) -> Manifest:
    """The manifest of the exported ``graph``, every key checked, and (``verify_graph``) the graph's digest."""
    path = manifest_path(graph)
    if not graph.is_file():
        raise ManifestError(f"exported graph {graph} does not exist; create it with `classify export`")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(
            f"{graph} has no manifest {path.name} beside it: serve graphs written by `classify export`"
        ) from None
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise ManifestError(f"manifest {path} cannot be read: {error}") from None
    if not isinstance(document, dict):
        raise ManifestError(f"manifest {path} must hold a JSON object")
    manifest = _parse(path, document)
    if verify_graph:
        digest = sha256_file(graph)
        if digest != manifest.graph_sha256:
            raise ManifestError(
                f"manifest {path}: key 'graph_sha256' is {manifest.graph_sha256} but {graph} has SHA-256 {digest}: "
                "the graph is corrupt or was replaced; export it again"
            )
    return manifest


def _parse(path: Path, document: dict[str, Any]) -> Manifest:
    def key(name: str, kind: type) -> Any:
        if name not in document:
            raise ManifestError(f"manifest {path}: key {name!r} is required")
        value = document[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ManifestError(f"manifest {path}: key {name!r} must be {_KINDS[kind]}, got {value!r}")
        return value

    unknown = sorted(set(document) - set(_KEYS))
    if unknown:
        raise ManifestError(f"manifest {path}: unknown key {unknown[0]!r}; known keys: {', '.join(_KEYS)}")
    if key("format", str) != FORMAT:
        raise ManifestError(f"manifest {path}: key 'format' is {document['format']!r}; this server reads {FORMAT!r}")
    precision = key("precision", str)
    if precision not in PRECISIONS:
        raise ManifestError(f"manifest {path}: key 'precision' is {precision!r}; known: {', '.join(PRECISIONS)}")
    for digest_key in ("source_weights_sha256", "graph_sha256"):
        if not _SHA256.match(key(digest_key, str)):
            raise ManifestError(f"manifest {path}: key {digest_key!r} must be 64 lowercase hex digits")
    labels = key("labels", list)
    if not labels or not all(isinstance(label, str) and label.strip() for label in labels):
        raise ManifestError(f"manifest {path}: key 'labels' must be a non-empty list of non-empty strings")
    try:
        preprocessing = Preprocessing.from_json(key("preprocessing", dict))
    except (KeyError, TypeError, ValueError) as error:
        raise ManifestError(f"manifest {path}: key 'preprocessing' is invalid: {error}") from None
    revision = key("export_revision", int)
    if revision != EXPORT_REVISION:
        raise ManifestError(
            f"manifest {path}: key 'export_revision' is {revision}, this server serves revision {EXPORT_REVISION}; "
            "export the model again with this version's `classify export`"
        )
    return Manifest(
        name=key("name", str),
        architecture=key("architecture", str),
        precision=precision,
        source_weights_sha256=document["source_weights_sha256"],
        graph_sha256=document["graph_sha256"],
        preprocessing=preprocessing,
        labels=tuple(labels),
        export_revision=revision,
        opset=key("opset", int),
        input=key("input", str),
        output=key("output", str),
    )
