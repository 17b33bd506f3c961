"""Exported models on disk: the manifest round-trips, every bad key is named, writing is atomic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.core.architectures import RESNET18, imagenet_labels
from service.core.exported import Manifest, ManifestError, manifest_path, read_exported, write_exported
from service.core.repository import ModelFileError, read_spec, version_folders, write_model_file
from service.core.weights import sha256_file

GRAPH_BYTES = b"not really ONNX, but the manifest logic never parses the graph"


def _manifest(**fields: object) -> Manifest:
    values: dict[str, object] = {
        "name": "pets",
        "architecture": "resnet18",
        "precision": "fp32",
        "source_weights_sha256": "ab" * 32,
        "preprocessing": RESNET18.preprocessing,
        "labels": ("cat", "dog"),
    }
    return Manifest(**{**values, **fields})  # type: ignore[arg-type]


def _write(graph: Path, manifest: Manifest | None = None) -> Manifest:
    return write_exported(graph, manifest or _manifest(), lambda path: path.write_bytes(GRAPH_BYTES))


def test_a_written_model_reads_back_with_the_graph_digest(tmp_path: Path) -> None:
    graph = tmp_path / "out" / "pets.onnx"
    written = _write(graph)
    assert written.graph_sha256 == sha256_file(graph)
    assert read_exported(graph) == written
    assert sorted(p.name for p in graph.parent.iterdir()) == ["pets.json", "pets.onnx"]


def test_a_failed_export_leaves_nothing_behind(tmp_path: Path) -> None:
    """Neither the graph nor its manifest appears under its name, and no temporary file stays."""

    def broken(path: Path) -> None:
        path.write_bytes(b"half a graph")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_exported(tmp_path / "pets.onnx", _manifest(), broken)
    assert list(tmp_path.iterdir()) == []


def test_labels_of_a_model_are_imagenets_by_default() -> None:
    assert len(imagenet_labels()) == 1000 and imagenet_labels()[0] == "tench"


def _tamper(graph: Path, **changes: object) -> None:
    path = manifest_path(graph)
    document = json.loads(path.read_text())
    for key, value in changes.items():
        if value is None:
            del document[key]
        else:
            document[key] = value
    path.write_text(json.dumps(document))


BAD_MANIFESTS = {
    "unknown key": ({"layers": 18}, "unknown key 'layers'"),
    "missing key": ({"labels": None}, "key 'labels' is required"),
    "format": ({"format": "onnx"}, "key 'format' is 'onnx'"),
    "precision": ({"precision": "fp8"}, "key 'precision' is 'fp8'"),
    "digest": ({"source_weights_sha256": "xyz"}, "key 'source_weights_sha256' must be 64"),
    "labels": ({"labels": ["cat", ""]}, "key 'labels' must be a non-empty list"),
    "preprocessing": ({"preprocessing": {"resize_size": 256}}, "key 'preprocessing' is invalid"),
    "revision": ({"export_revision": 1}, "export the model again"),
    "type": ({"opset": "17"}, "key 'opset' must be an integer"),
}


@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_a_bad_manifest_names_the_file_and_the_key(case: str, tmp_path: Path) -> None:
    changes, message = BAD_MANIFESTS[case]
    graph = tmp_path / "pets.onnx"
    _write(graph)
    _tamper(graph, **changes)
    with pytest.raises(ManifestError) as error:
        read_exported(graph)
    assert str(manifest_path(graph)) in str(error.value) and message in str(error.value)


def test_a_replaced_graph_is_refused(tmp_path: Path) -> None:
    graph = tmp_path / "pets.onnx"
    _write(graph)
    graph.write_bytes(GRAPH_BYTES + b"!")
    with pytest.raises(ManifestError, match="key 'graph_sha256' is .* but .* has SHA-256"):
        read_exported(graph)


def test_a_graph_without_manifest_is_refused(tmp_path: Path) -> None:
    graph = tmp_path / "pets.onnx"
    graph.write_bytes(GRAPH_BYTES)
    with pytest.raises(ManifestError, match="has no manifest pets.json beside it"):
        read_exported(graph)


def _exported_version(root: Path, **keys: str | None) -> Path:
    folder = root / "pets" / "1"
    folder.mkdir(parents=True)
    written = _write(folder / "model.onnx")
    write_model_file(folder / "model.toml", {"graph": "model.onnx", "sha256": written.graph_sha256, **keys})
    return folder


def test_a_repository_version_may_hold_an_exported_model(tmp_path: Path) -> None:
    """model.toml names the graph and its digest; the manifest gives architecture and the backend."""
    folder = _exported_version(tmp_path)
    spec = read_spec(version_folders(tmp_path, "pets")[0])
    assert (spec.name, spec.version, spec.exported, spec.backend) == ("pets", "1", folder / "model.onnx", "onnxruntime")
    assert spec.weights_sha256 == "ab" * 32  # the source weights are the version's identity


@pytest.mark.parametrize(
    ("keys", "message"),
    [({"labels": "labels.txt"}, "unknown key 'labels'"), ({"backend": "torch"}, "an exported graph serves on onnxruntime")],
)
def test_an_exported_version_refuses_what_its_manifest_decides(keys: dict[str, str], message: str, tmp_path: Path) -> None:
    _exported_version(tmp_path, **keys)
    with pytest.raises(ModelFileError, match=message):
        read_spec(version_folders(tmp_path, "pets")[0])


def test_a_tampered_exported_version_is_refused(tmp_path: Path) -> None:
    folder = _exported_version(tmp_path)
    with (folder / "model.onnx").open("ab") as stream:
        stream.write(b"tampered")
    with pytest.raises(ModelFileError, match=r"model\.toml: key 'sha256' is [0-9a-f]{64} but .* has SHA-256"):
        read_spec(version_folders(tmp_path, "pets")[0])
