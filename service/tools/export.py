"""`classify export`: a model's weights as an exported ONNX graph and manifest, servable without torch."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from service.core import onnx_backend
from service.core.exported import Manifest, manifest_path, read_exported
from service.core.model_options import model_specs
from service.core.models import BackendOptions, ModelSpec, export_model, graph_cache_dir, spec_labels
from service.core.weights import verify_weights
from service.errors import StartupError
from service.settings import Settings
from service.tools.weights_store import FetchError, place_version

REPOSITORY_GRAPH = "model.onnx"


@dataclass(frozen=True)
class Exported:
    """Where an export went and what it holds."""

    graph: Path
    manifest: Manifest
    version_folder: Path | None = None  # set when placed in a model repository
    cached: bool = False  # written to the graph cache, where `classify serve` finds it by the weights' digest


def _spec(option: str, settings: Settings) -> ModelSpec:
    (spec,) = model_specs(
        [option], resnet18_weights=settings.weights, resnet18_sha256=settings.weights_sha256,
        default_labels=settings.labels, allow_fallback=False, cache_dir=settings.cache_dir,
    )
    if spec.exported is not None:
        raise StartupError(f"{spec.exported} is already an exported graph; serve it with --model {spec.exported}")
    return spec


def export(
    option: str,
    settings: Settings,
    *,
    out: Path | None = None,
    repository: Path | None = None,
    name: str | None = None,
    version: int | None = None,
) -> Exported:
    """Export the model ``option`` names (as ``--model`` does) to:

    - ``repository``: a new version folder of model ``name`` (default: the model's name);
    - ``out``: ``OUT/NAME.onnx`` and ``OUT/NAME.json``, served with ``--model OUT/NAME.onnx``;
    - neither: the graph cache where `classify serve` looks for it (beside the
      weights when writable, else ``--cache-dir``), so the next start imports no torch.
    """
    spec = _spec(option, settings)
    digest = verify_weights(spec.weights, spec.weights_sha256)
    labels = spec_labels(spec)
    if repository is not None:
        target = name or spec.name
        holder: list[Manifest] = []

        def fill(folder: Path) -> dict[str, str | None]:
            holder.append(export_model(spec, digest, labels, folder / REPOSITORY_GRAPH))
            return {"graph": REPOSITORY_GRAPH, "sha256": holder[0].graph_sha256}

        try:
            folder = place_version(repository, target, fill, version)
        except FetchError as error:
            raise StartupError(str(error)) from None
        except OSError as error:
            raise StartupError(f"cannot write a version of {target!r} in {repository}: {_reason(error)}; "
                               "pass --repository DIR (a writable model repository)") from None
        return Exported(folder / REPOSITORY_GRAPH, holder[0], folder)
    if out is not None:
        graph = out / f"{spec.name}.onnx"
        remedy = "pass --out DIR (a writable directory)"
    else:
        cache = graph_cache_dir(spec, BackendOptions(cache_dir=settings.cache_dir), temporary_fallback=False)
        graph = onnx_backend.graph_path(cache, spec.name, digest, "fp32")
        remedy = "pass --cache-dir DIR (a writable directory) or --out DIR"
    try:
        manifest = export_model(spec, digest, labels, graph)
    except OSError as error:
        raise StartupError(f"cannot write {graph}: {_reason(error)}; {remedy}") from None
    read_exported(graph)  # what serving will check, checked now
    return Exported(graph, manifest, cached=out is None)


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def describe(result: Exported) -> str:
    """What `classify export` prints: the files and how to serve them."""
    lines = [
        f"{result.graph}: {result.manifest.architecture} {result.manifest.precision}, "
        f"{len(result.manifest.labels)} classes, graph sha256={result.manifest.graph_sha256}",
        f"{manifest_path(result.graph)}: its manifest (weights sha256={result.manifest.source_weights_sha256})",
    ]
    if result.version_folder is not None:
        lines.append(f"{result.version_folder}: version {result.version_folder.name} of model {result.version_folder.parent.name}")
    elif result.cached:
        lines.append("`classify serve` with these weights now serves this graph: no torch imported, no export at start")
    else:
        lines.append(f"serve it without torch: classify serve --model {result.graph}")
    return "\n".join(lines)
